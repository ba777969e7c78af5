"""Reads back what Vitrine wrote, with the tools other teams use, and prints what they see.

    python3 tests/spark/read_back.py --lance DIR --delta DIR --parquet DIR

Prints one JSON object: for each reader, the column types it reports and the rows it reads, with
timestamps written as UTC text (`2024-07-01T17:00:00.123456Z`) or, without a zone, as wall-clock
text (`2024-07-01T10:00:00.000000`), maps as objects and structs as objects. Readers:

- `spark_parquet`: Spark (pyspark, local, session time zone UTC) reading the Parquet files that
  `COPY … STORED AS PARQUET` wrote;
- `spark_delta_files`: Spark reading the Parquet data files of the Delta table (Spark's own Delta
  reader needs the delta-spark jars, which are not on the machine);
- `deltalake`: the `deltalake` package reading the Delta table (Arrow types), and `delta_schema`,
  the table's schema as its log declares it (what Databricks sees);
- `lance`: the `pylance` package reading the Lance table (Arrow types).

The test `timestamps::spark_and_deltalake_read_what_vitrine_writes` runs it and compares.
"""

import argparse
import datetime
import json
import re

from local_spark import local_spark

SPARK_JSON = {
    "timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX",
    "timestampNTZFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSS",
}


def plain(value):
    """A Python value from Arrow as the JSON Spark's `to_json` writes with SPARK_JSON."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            return value.strftime("%Y-%m-%dT%H:%M:%S.%f")
        return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
            return {k: plain(v) for k, v in value}
        return [plain(v) for v in value]
    return value


def arrow_reader(table):
    table = table.sort_by("id")
    rows = [
        {k: plain(v) for k, v in row.items() if v is not None}
        for row in table.to_pylist(maps_as_pydicts=None)
    ]
    # The name of a list's item field differs between writers (`item`, `element`) and means nothing.
    types = {
        f.name: re.sub(r"list<(item|element): ", "list<", str(f.type)) for f in table.schema
    }
    return {"types": types, "rows": rows}


def spark_reader(spark, df):
    options = ", ".join(f"'{k}', \"{v}\"" for k, v in SPARK_JSON.items())
    rows = [
        json.loads(r[0])
        for r in df.orderBy("id").selectExpr(f"to_json(struct(*), map({options}))").collect()
    ]
    return {"types": dict(df.dtypes), "rows": rows}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lance", required=True)
    parser.add_argument("--delta", required=True)
    parser.add_argument("--parquet", required=True)
    args = parser.parse_args()

    import deltalake
    import lance

    spark = local_spark()
    delta = deltalake.DeltaTable(args.delta)
    seen = {
        "spark_parquet": spark_reader(spark, spark.read.parquet(args.parquet)),
        "spark_delta_files": spark_reader(spark, spark.read.parquet(*delta.file_uris())),
        "deltalake": arrow_reader(delta.to_pyarrow_table()),
        "delta_schema": {
            f["name"]: f["type"] for f in json.loads(delta.schema().to_json())["fields"]
        },
        "lance": arrow_reader(lance.dataset(args.lance).to_table()),
    }
    spark.stop()
    print(json.dumps(seen, sort_keys=True))


if __name__ == "__main__":
    main()
