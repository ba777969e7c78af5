"""Phase 2 on Apache Spark (local mode) and DuckDB, on the same generated catalog files.

The peers of `benches/phase2.rs`: they run the join and validation statements of
`sql/02_join_enriched_attributes.sql` (not ALTER/OPTIMIZE/COMMENT, which need Delta) over tables
built from the same `styles.csv` and `ground_truth.csv` as `sql/00_load_products.sql` and
`sql/demo/attributes_from_ground_truth.sql` build them. Only the phase-2 statements are timed.

Dialect adaptations, done textually: Spark's default catalog has two-level names and no
`CREATE OR REPLACE TABLE … AS` for Parquet tables (so `main.fashion_demo.` becomes `fashion_demo.`
and the statement becomes DROP + CREATE … USING parquet); DuckDB spells `ARRAY_JOIN`
`array_to_string`, `SIZE` `len`, and has no `DISTRIBUTE BY`/`SORT BY`.

    pip install pyspark duckdb
    vitrine --warehouse /tmp/wh demo-data --products 44424 --seed 42 --no-images
    python3 benches/peers/phase2_peers.py /tmp/wh [repeats]
"""

import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def statements(path):
    text = open(path).read()
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def phase2_statements():
    keep = []
    for s in statements(os.path.join(ROOT, "sql", "02_join_enriched_attributes.sql")):
        if not s.upper().startswith(("ALTER", "OPTIMIZE", "COMMENT")):
            keep.append(s)
    return keep


def load_sql(raw):
    """Phase 0 and the phase-1 stand-in, as views over the CSV files."""
    extracted = statements(os.path.join(ROOT, "sql", "demo", "attributes_from_ground_truth.sql"))[0]
    extracted = extracted.split(" AS\n", 1)[1]  # the query of the CREATE TABLE … AS
    return extracted


def run_spark(raw, repeats):
    from pyspark.sql import SparkSession

    started = time.time()
    spark = (
        SparkSession.builder.master("local[*]")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.warehouse.dir", "/tmp/spark-warehouse-phase2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    startup = time.time() - started
    spark.sql("CREATE DATABASE IF NOT EXISTS fashion_demo")
    spark.read.csv(f"{raw}/styles.csv", header=True).createOrReplaceTempView("styles")
    spark.read.csv(f"{raw}/ground_truth.csv", header=True).createOrReplaceTempView("truth")
    spark.sql("DROP TABLE IF EXISTS fashion_demo.products")
    spark.sql(
        """CREATE TABLE fashion_demo.products USING parquet AS SELECT CAST(id AS INT) AS product_id,
        productDisplayName AS product_display_name, masterCategory AS master_category, subCategory AS sub_category,
        articleType AS article_type, baseColour AS base_color, gender, season, CAST(year AS INT) AS year, usage,
        CAST(price AS DOUBLE) AS price, CONCAT('/Volumes/main/fashion_demo/raw_data/images/', id, '.jpg') AS image_path
        FROM styles"""
    )
    spark.sql("DROP TABLE IF EXISTS fashion_demo.products_ground_truth")
    spark.sql(
        """CREATE TABLE fashion_demo.products_ground_truth USING parquet AS SELECT CAST(id AS INT) AS product_id,
        material, pattern, formality, collar_type, sleeve_length, fit_type,
        split(style_keywords, '[|]') AS style_keywords, split(visual_details, '[|]') AS visual_details FROM truth"""
    )
    spark.sql("DROP TABLE IF EXISTS fashion_demo.product_extracted_attributes")
    spark.sql(
        "CREATE TABLE fashion_demo.product_extracted_attributes USING parquet AS "
        + load_sql(raw).replace("main.fashion_demo.", "fashion_demo.")
    )
    timings = []
    for _ in range(repeats):
        t = time.time()
        for s in phase2_statements():
            s = s.replace("main.fashion_demo.", "fashion_demo.")
            if s.upper().startswith("CREATE OR REPLACE TABLE"):
                name = s.split()[4]
                spark.sql(f"DROP TABLE IF EXISTS {name}")
                s = re.sub(r"CREATE OR REPLACE TABLE (\S+) AS", r"CREATE TABLE \1 USING parquet AS", s, count=1)
                spark.sql(s)
            else:
                spark.sql(s).collect()
        timings.append(time.time() - t)
    spark.stop()
    return startup, timings


def run_duckdb(raw, repeats):
    import duckdb

    con = duckdb.connect()
    con.execute("CREATE SCHEMA fashion_demo")
    con.execute(
        f"""CREATE TABLE fashion_demo.products AS SELECT CAST(id AS INT) AS product_id,
        productDisplayName AS product_display_name, masterCategory AS master_category, subCategory AS sub_category,
        articleType AS article_type, baseColour AS base_color, gender, season, CAST(year AS INT) AS year, usage,
        CAST(price AS DOUBLE) AS price, CONCAT('/Volumes/main/fashion_demo/raw_data/images/', id, '.jpg') AS image_path
        FROM read_csv('{raw}/styles.csv', header = true, all_varchar = true)"""
    )
    con.execute(
        f"""CREATE TABLE fashion_demo.products_ground_truth AS SELECT CAST(id AS INT) AS product_id,
        material, pattern, formality, collar_type, sleeve_length, fit_type,
        string_split(style_keywords, '|') AS style_keywords, string_split(visual_details, '|') AS visual_details
        FROM read_csv('{raw}/ground_truth.csv', header = true, all_varchar = true)"""
    )
    extracted = (
        load_sql(raw).replace("main.fashion_demo.", "fashion_demo.").replace("pmod(", "mod(").replace("CURRENT_TIMESTAMP()", "current_timestamp")
    )
    con.execute("CREATE TABLE fashion_demo.product_extracted_attributes AS " + extracted)

    def duck(s):
        s = s.replace("main.fashion_demo.", "fashion_demo.").replace("ARRAY_JOIN(", "array_to_string(").replace("SIZE(", "len(")
        s = re.sub(r"DISTRIBUTE BY \w+ SORT BY RAND\(\)", "ORDER BY random()", s)
        return s

    timings = []
    for _ in range(repeats):
        t = time.time()
        for s in phase2_statements():
            s = duck(s)
            if s.upper().startswith("CREATE OR REPLACE TABLE"):
                con.execute(s)
            else:
                con.execute(s).fetchall()
        timings.append(time.time() - t)
    return timings


if __name__ == "__main__":
    warehouse = sys.argv[1]
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    raw = os.path.join(warehouse, "Volumes/main/fashion_demo/raw_data")
    duck = run_duckdb(raw, repeats)
    print(f"duckdb phase2: min {min(duck):.3f} s, median {sorted(duck)[len(duck) // 2]:.3f} s over {repeats} runs")
    startup, spark = run_spark(raw, repeats)
    print(f"spark startup: {startup:.2f} s")
    print(f"spark phase2: first {spark[0]:.2f} s, min {min(spark):.2f} s, median {sorted(spark)[len(spark) // 2]:.2f} s over {repeats} runs")
