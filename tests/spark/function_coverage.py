"""Spark SQL's built-in functions against Vitrine's, checked on Spark's own examples.

    python3 tests/spark/function_coverage.py path/to/vitrine docs/spark-functions.md

Lists Spark's built-in functions (`SHOW SYSTEM FUNCTIONS` in pyspark), takes the examples of each
from `DESCRIBE FUNCTION EXTENDED`, runs every example in Spark and in Vitrine (one
`vitrine run --continue-on-error --format json` over a scratch warehouse), and compares the
results value by value. Each function is then:

- same: every example gives Spark's result;
- differs: an example gives another result or an error (the first such example is shown);
- missing: Vitrine has no function of that name (none listed, and no example runs);
- unchecked: Spark gives no runnable example; present or missing by name only.

Writes the table as Markdown. The session time zone is UTC on both sides. With
SPARK_EXAMPLES_CACHE=file, Spark's side is kept in (or read from) that file.
"""

import datetime
import decimal
import json
import os
import re
import subprocess
import sys
import tempfile

from local_spark import local_spark

os.environ["TZ"] = "UTC"

NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# Functions whose examples depend on the moment or on randomness.
NONDETERMINISTIC = {
    "current_date", "current_timestamp", "now", "localtimestamp", "curdate", "current_timezone",
    "rand", "randn", "random", "uuid", "shuffle", "monotonically_increasing_id", "spark_partition_id",
    "input_file_name", "input_file_block_start", "input_file_block_length", "current_user", "user",
    "session_user", "current_catalog", "current_database", "current_schema", "version",
    "randstr", "uniform", "current_time", "reflect", "java_method", "try_reflect",
}


def examples(spark, name):
    """The `SELECT …;` examples of a function's documentation."""
    text = "\n".join(r[0] for r in spark.sql(f"DESCRIBE FUNCTION EXTENDED {name}").collect())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("> SELECT") and line.endswith(";"):
            found.append(line[2:-1])
    return found


def plain(value):
    """A value from either side, in one comparable form."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, dict):
        return {str(plain(k)): plain(v) for k, v in value.items()}
    if hasattr(value, "asDict"):  # a struct (a Row is also a tuple)
        return {k: plain(v) for k, v in value.asDict().items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def vitrine_value(value, spark_value):
    """A Vitrine JSON value read as the type Spark's value has."""
    if value is None:
        return None
    if isinstance(spark_value, datetime.datetime) and isinstance(value, str):
        text = value.replace("Z", "+00:00")
        parsed = datetime.datetime.fromisoformat(text)
        return plain(parsed)
    if isinstance(spark_value, datetime.date) and isinstance(value, str):
        return value[:10]
    if isinstance(spark_value, (bytes, bytearray)) and isinstance(value, str):
        return value.lower()
    if isinstance(spark_value, decimal.Decimal) and isinstance(value, str):
        return float(value)
    if isinstance(spark_value, dict) and isinstance(value, list):
        return {str(plain(e["key"])): plain(e["value"]) for e in value}
    return plain(value)


def main():
    vitrine, out = sys.argv[1], sys.argv[2]
    cache = os.environ.get("SPARK_EXAMPLES_CACHE")
    if cache and os.path.exists(cache):
        import pickle

        with open(cache, "rb") as f:
            names, cases = pickle.load(f)
    else:
        names, cases = spark_cases()
        if cache:
            import pickle

            with open(cache, "wb") as f:
                pickle.dump((names, cases), f)
    compare(vitrine, out, names, cases)


def spark_cases():
    """Spark's function names, and each runnable example with Spark's result."""
    spark = local_spark()
    names = sorted(
        {r[0] for r in spark.sql("SHOW SYSTEM FUNCTIONS").collect() if NAME.match(r[0])}
    )
    cases = []  # (function, example, Spark's rows or None when Spark itself fails)
    for name in names:
        if name in NONDETERMINISTIC:
            continue
        for example in examples(spark, name):
            try:
                raw = [list(r) for r in spark.sql(example).collect()]
                rows = [[plain(v) for v in r] for r in raw]
            except Exception:  # noqa: BLE001 - an example Spark cannot run is not compared
                continue
            cases.append((name, example, rows, raw))
    spark.stop()
    return names, cases


def compare(vitrine, out, names, cases):
    """Runs the examples in Vitrine and writes the table."""

    with tempfile.TemporaryDirectory() as warehouse:
        script = os.path.join(warehouse, "examples.sql")
        with open(script, "w") as f:
            for _, example, _, _ in cases:
                f.write(example.replace("\n", " ") + ";\n")
        run = subprocess.run(
            [vitrine, "--warehouse", warehouse, "run", "--continue-on-error",
             "--format", "json", script],
            capture_output=True, text=True,
        )
    answered = {}
    for line in run.stdout.splitlines():
        document = json.loads(line)
        answered[document["statement"]] = document
    errors = [l for l in run.stderr.splitlines() if l.strip()]
    vitrine_functions = set()
    probe = subprocess.run(
        [vitrine, "--warehouse", tempfile.mkdtemp(), "run", "--format", "jsonl", "-e",
         "SELECT DISTINCT lower(routine_name) AS name FROM information_schema.routines"],
        capture_output=True, text=True, check=True,
    )
    for line in probe.stdout.splitlines():
        vitrine_functions.add(json.loads(line)["name"])
    # A function without an example counts as present when a call with one argument runs.
    unexampled = [n for n in names if n not in {c[0] for c in cases} and n not in vitrine_functions]
    with tempfile.TemporaryDirectory() as warehouse:
        script = os.path.join(warehouse, "probes.sql")
        with open(script, "w") as f:
            for name in unexampled:
                f.write(f"SELECT {name}('1');\n")
        run = subprocess.run(
            [vitrine, "--warehouse", warehouse, "run", "--continue-on-error",
             "--format", "json", script],
            capture_output=True, text=True,
        )
    for line in run.stdout.splitlines():
        vitrine_functions.add(unexampled[json.loads(line)["statement"] - 1])
    vitrine_functions |= {"explode", "rand", "collect_set_distinct"}  # rewritten by name

    verdicts = {}
    ran = set()  # functions with an example Vitrine ran without an error
    for index, (name, example, rows, raw) in enumerate(cases, start=1):
        document = answered.get(index)
        verdict = verdicts.setdefault(name, {"examples": 0, "same": 0, "first_difference": None})
        verdict["examples"] += 1
        if document is None:
            got = "error"
        else:
            ran.add(name)
            columns = [c["name"] for c in document["columns"]]
            got = [
                [vitrine_value(r.get(c), raw[i][j] if i < len(raw) and j < len(raw[i]) else None)
                 for j, c in enumerate(columns)]
                for i, r in enumerate(document["rows"])
            ]
        if got == rows:
            verdict["same"] += 1
        elif verdict["first_difference"] is None:
            verdict["first_difference"] = (example, rows, got)

    lines = [
        "# Spark SQL's built-in functions in Vitrine",
        "",
        "Generated by `python3 tests/spark/function_coverage.py target/release/vitrine "
        "docs/spark-functions.md` (pyspark " + __import__("pyspark").__version__ + "): every "
        "function `SHOW SYSTEM FUNCTIONS` lists, each example of its documentation run in Spark "
        "and in Vitrine, results compared value by value (session time zone UTC).",
        "",
        "Differences that run through many rows below (known, not yet changed):",
        "",
        "- Integer literals are `BIGINT` (Spark: `INT`), so `SELECT 1` types differ.",
        "- String literals keep backslashes as written (Spark reads `'\\\\d'` as `\\d`): "
        "regular expressions from Spark examples need single backslashes.",
        "- Arrays are indexed from 1 with `a[i]` (Spark: from 0).",
        "- Mathematical functions outside their domain give NULL (Spark: NaN), e.g. `acos(2)`.",
        "- Date functions do not cast strings to dates implicitly (`date_add('2016-07-30', 1)` "
        "fails; `date_add(DATE '2016-07-30', 1)` works).",
        "- Lambda functions (`transform`, `filter`, `exists`, `aggregate`, `array_sort` with a "
        "comparator) are not supported.",
        "- Java date-time patterns (`date_format(d, 'yyyy')`, `from_unixtime(s, fmt)`) are not "
        "translated.",
        "",
        "Spark functions Vitrine computes as a DataFusion expression are listed in "
        "`src/sql/functions/expansions.rs`; the others are DataFusion's, `datafusion-spark`'s or "
        "Vitrine's own (`src/sql/functions/`).",
        "",
    ]
    counts = {"same": 0, "differs": 0, "missing": 0, "unchecked": 0}
    table = ["| function | Vitrine | examples same | note |", "|---|---|---|---|"]
    for name in names:
        verdict = verdicts.get(name)
        present = name in vitrine_functions or name in ran
        if verdict is None:
            status = "unchecked" if name in NONDETERMINISTIC or present else "missing"
            if status == "unchecked" and not present:
                status = "missing"
            note = "no example Spark can run here" if status == "unchecked" else ""
            if name in NONDETERMINISTIC:
                note = "depends on the moment or on chance: not compared"
            table.append(f"| `{name}` | {status} | – | {note} |")
            counts[status] += 1
            continue
        same = f"{verdict['same']}/{verdict['examples']}"
        if verdict["same"] == verdict["examples"]:
            status, note = "same", ""
        elif not present:
            status, note = "missing", ""
        else:
            status = "differs"
            example, want, got = verdict["first_difference"]
            note = f"`{example}`: Spark {json.dumps(want, default=str)}, Vitrine {json.dumps(got, default=str)}"
            note = note.replace("|", "\\|")
        counts[status] += 1
        table.append(f"| `{name}` | {status} | {same} | {note} |")
    lines.append(
        f"{len(names)} functions: {counts['same']} same on every example, {counts['differs']} "
        f"differ, {counts['missing']} missing, {counts['unchecked']} present but unchecked."
    )
    lines.append("")
    lines.extend(table)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
