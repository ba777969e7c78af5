"""The DuckDB peer of `benches/phases/run.sh`: phase 0 (the catalog's CSV files into tables), the
phase-1 stand-in (`sql/demo/attributes_from_ground_truth.sql`) and phase 2
(`sql/02_join_enriched_attributes.sql`), the same statements on the same files, into a durable
database file, one step per process as Vitrine runs one script per process.

    python3 benches/phases/duckdb_phases.py RAW_DIR DB_FILE load|extract|phase2

Dialect adaptations, done textually: DuckDB spells `ARRAY_JOIN` `array_to_string`, `SIZE` `len`,
`pmod` `mod`, `DISTRIBUTE BY c SORT BY RAND()` `ORDER BY random()`; `main.fashion_demo.` becomes `fashion_demo.`; Delta's `ALTER … SET TBLPROPERTIES`
has no counterpart (skipped), `OPTIMIZE … ZORDER BY (a, b)` becomes a rewrite of the table
ordered by (a, b) (DuckDB's way of clustering a table), `COMMENT ON TABLE` runs as it is.
Prints one line per statement: seconds and the statement's first words; then the process's
peak resident memory.
"""

import os
import re
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def statements(path):
    text = open(os.path.join(ROOT, path)).read()
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def duck(s):
    s = s.replace("main.fashion_demo.", "fashion_demo.").replace("ARRAY_JOIN(", "array_to_string(")
    s = s.replace("SIZE(", "len(").replace("pmod(", "mod(").replace("CURRENT_TIMESTAMP()", "current_timestamp")
    s = s.replace("CAST(array() AS ARRAY<STRING>)", "CAST([] AS VARCHAR[])").replace("array('", "list_value('")
    s = s.replace("CAST(NULL AS STRING)", "CAST(NULL AS VARCHAR)")
    s = re.sub(r"DISTRIBUTE BY \w+ SORT BY RAND\(\)", "ORDER BY random()", s)
    return s


def load(raw):
    return [
        "CREATE SCHEMA IF NOT EXISTS fashion_demo",
        f"""CREATE OR REPLACE TABLE fashion_demo.products AS SELECT CAST(id AS INT) AS product_id,
        productDisplayName AS product_display_name, masterCategory AS master_category, subCategory AS sub_category,
        articleType AS article_type, baseColour AS base_color, gender, season, CAST(year AS INT) AS year, usage,
        CAST(price AS DOUBLE) AS price, CONCAT('/Volumes/main/fashion_demo/raw_data/images/', id, '.jpg') AS image_path
        FROM read_csv('{raw}/styles.csv', header = true, all_varchar = true)""",
        f"""CREATE OR REPLACE TABLE fashion_demo.products_ground_truth AS SELECT CAST(id AS INT) AS product_id,
        material, pattern, formality, collar_type, sleeve_length, fit_type,
        string_split(style_keywords, '|') AS style_keywords, string_split(visual_details, '|') AS visual_details,
        CASE WHEN substr(md5(CAST(id AS VARCHAR)), 1, 1) IN ('d', 'e', 'f') THEN 'test' ELSE 'train' END AS split
        FROM read_csv('{raw}/ground_truth.csv', header = true, all_varchar = true)""",
    ]


def phase2():
    out = []
    for s in statements("sql/02_join_enriched_attributes.sql"):
        upper = s.upper()
        if upper.startswith("ALTER"):
            continue
        m = re.match(r"OPTIMIZE (\S+) ZORDER BY \(([^)]*)\)", s, re.I)
        if m:
            name = m.group(1).replace("main.fashion_demo.", "fashion_demo.")
            out.append(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {name} ORDER BY {m.group(2)}")
            continue
        out.append(duck(s))
    return out


if __name__ == "__main__":
    import duckdb

    raw, db, step = sys.argv[1], sys.argv[2], sys.argv[3]
    todo = {
        "load": lambda: load(raw),
        "extract": lambda: [duck(s) for s in statements("sql/demo/attributes_from_ground_truth.sql")],
        "phase2": phase2,
    }[step]()
    started = time.time()
    con = duckdb.connect(db)
    for s in todo:
        t = time.time()
        con.execute(s).fetchall()
        print(f"{time.time() - t:8.3f} s  {' '.join(s.split())[:70]}")
    con.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"duckdb {duckdb.__version__} {step}: {time.time() - started:.3f} s of statements, peak {peak:.0f} MiB")
