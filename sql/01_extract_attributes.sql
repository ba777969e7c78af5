-- Phase 1 (plan steps 3 and 4): SmolVLM reads each product photo and answers the extraction
-- contract's JSON (material, pattern, formality, style keywords, visual details, collar, sleeves,
-- fit, confidence); smolvlm_extract() parses it. The model is `vitrine.model.smolvlm` (default
-- HuggingFaceTB/SmolVLM-256M-Instruct; `--model smolvlm=/folder` on the command line).
--
-- Which products: the session's temporary view phase1_products when it has one (demo.sh makes it
-- the demo catalog's held-out split), else the plan's 100-product test sample (the first 100 by
-- product_id). For the whole catalog, remove the LIMIT, or first run
-- CREATE OR REPLACE TEMPORARY VIEW phase1_products AS SELECT product_id FROM main.fashion_demo.products
-- (a session keeps the view it made on its first run).
CREATE TEMPORARY VIEW IF NOT EXISTS phase1_products AS
SELECT product_id FROM main.fashion_demo.products ORDER BY product_id LIMIT 100;

-- Resumable: products already in the table are skipped, and rows are committed every 64, so a run
-- stopped half-way (Ctrl-C, a lost machine) keeps what it extracted and a re-run does the rest,
-- with no product twice. Rows reach the model `vitrine.udf.batch_size` at a time
-- (`auto`: 32 on the CPU, as many as fit on a GPU).
SET vitrine.write.commit_rows = 64;

-- The notebook's shape: the product's own columns, then the attributes, then how the extraction
-- went (extraction_errors lists what failed, empty when nothing did); Vitrine adds the model that
-- answered and its raw reply.
CREATE TABLE IF NOT EXISTS main.fashion_demo.product_extracted_attributes (
  product_id           INT,
  product_display_name STRING,
  master_category      STRING,
  sub_category         STRING,
  article_type         STRING,
  base_color           STRING,
  price                DOUBLE,
  gender               STRING,
  season               STRING,
  usage                STRING,
  year                 INT,
  image_path           STRING,
  material             STRING,
  pattern              STRING,
  confidence_material  STRING,
  formality            STRING,
  style_keywords       ARRAY<STRING>,
  visual_details       ARRAY<STRING>,
  collar_type          STRING,
  sleeve_length        STRING,
  fit_type             STRING,
  extraction_success   BOOLEAN,
  extraction_errors    ARRAY<STRING>,
  extraction_timestamp TIMESTAMP,
  model_id             STRING,
  model_revision       STRING,
  raw_response         STRING
);

INSERT INTO main.fashion_demo.product_extracted_attributes
WITH todo AS (
  SELECT p.*
  FROM main.fashion_demo.products p
  WHERE p.product_id IN (SELECT product_id FROM phase1_products)
    AND p.product_id NOT IN (SELECT product_id FROM main.fashion_demo.product_extracted_attributes)
),
extracted AS (
  SELECT *, smolvlm_extract(image_path) AS e FROM todo
)
SELECT
  product_id, product_display_name, master_category, sub_category, article_type, base_color,
  price, gender, season, usage, year, image_path,
  e.material,
  e.pattern,
  e.confidence_material,
  e.formality,
  e.style_keywords,
  e.visual_details,
  e.collar_type,
  e.sleeve_length,
  e.fit_type,
  e.extraction_success,
  e.errors,
  CURRENT_TIMESTAMP(),
  e.model_id,
  e.model_revision,
  e.raw_response
FROM extracted;

RESET vitrine.write.commit_rows;

-- The plan's progress checks.
SELECT COUNT(*) AS extracted FROM main.fashion_demo.product_extracted_attributes;

SELECT
  SUM(CASE WHEN extraction_success THEN 1 ELSE 0 END) * 100.0 / COUNT(*) AS success_rate_pct
FROM main.fashion_demo.product_extracted_attributes;

-- The products with a usable extraction and their rich description (what phase 3 embeds): the
-- extraction's columns, then rich_description.
CREATE OR REPLACE TABLE main.fashion_demo.products_enriched_descriptions AS
SELECT
  a.*,
  CONCAT_WS(' ',
    a.product_display_name, a.article_type, a.base_color, a.gender,
    CASE WHEN a.confidence_material IN ('high', 'medium') THEN a.material END,
    a.pattern,
    a.formality,
    ARRAY_JOIN(a.style_keywords, ' '),
    ARRAY_JOIN(a.visual_details, ' '),
    CASE WHEN a.collar_type <> 'not applicable' THEN a.collar_type END,
    CASE WHEN a.sleeve_length <> 'not applicable' THEN a.sleeve_length END,
    CASE WHEN a.fit_type <> 'cannot determine' THEN a.fit_type END,
    a.season, a.usage)                                     AS rich_description
FROM main.fashion_demo.product_extracted_attributes a
WHERE a.extraction_success;
