-- Phase 0: load the raw catalog files into tables.
--
-- Reads the Kaggle-style styles.csv (written by `vitrine demo-data`, or uploaded from Kaggle) and
-- the generated ground truth from the raw_data volume. Runs unchanged on Databricks.

CREATE SCHEMA IF NOT EXISTS main.fashion_demo;

CREATE OR REPLACE TABLE main.fashion_demo.products
COMMENT 'Fashion catalog: Kaggle styles plus price and image path'
AS SELECT
  CAST(id AS INT)               AS product_id,
  productDisplayName            AS product_display_name,
  masterCategory                AS master_category,
  subCategory                   AS sub_category,
  articleType                   AS article_type,
  baseColour                    AS base_color,
  gender,
  season,
  CAST(year AS INT)             AS year,
  usage,
  CAST(price AS DOUBLE)         AS price,
  CONCAT('/Volumes/main/fashion_demo/raw_data/images/', CAST(id AS STRING), '.jpg') AS image_path
FROM read_files('/Volumes/main/fashion_demo/raw_data/styles.csv', format => 'csv', header => true);

-- What each demo photo really shows, for measuring extraction quality later.
CREATE OR REPLACE TABLE main.fashion_demo.products_ground_truth
COMMENT 'Visual attributes drawn into each demo photo'
AS SELECT
  CAST(id AS INT)                     AS product_id,
  material,
  pattern,
  formality,
  collar_type,
  sleeve_length,
  fit_type,
  split(style_keywords, '[|]')        AS style_keywords,
  split(visual_details, '[|]')        AS visual_details,
  -- A fixed hash of the id holds out 3 products in 16 for evaluation: models trained by
  -- CREATE MODEL learn from 'train' and are measured on 'test'.
  CASE WHEN substr(md5(CAST(id AS STRING)), 1, 1) IN ('d', 'e', 'f') THEN 'test' ELSE 'train' END
                                      AS split
FROM read_files('/Volumes/main/fashion_demo/raw_data/ground_truth.csv', format => 'csv', header => true);

SELECT master_category, COUNT(*) AS products, ROUND(100.0 * COUNT(*) / SUM(COUNT(*)) OVER (), 1) AS pct
FROM main.fashion_demo.products
GROUP BY master_category
ORDER BY products DESC;
