-- Stand-in for phase 1 on the demo catalog where SmolVLM's weights are not at hand (demo.sh runs
-- it offline, after sql/01_extract_attributes.sql has run with a test model).
--
-- Replaces main.fashion_demo.product_extracted_attributes, in phase 1's shape, by
-- attributes from the demo catalog's ground truth, with the kind of imperfection a model shows: about 7% of
-- extractions fail, confidence varies, and low-confidence materials are often 'unknown'.
-- The noise is a deterministic function of product_id, so every run gives the same table.

CREATE OR REPLACE TABLE main.fashion_demo.product_extracted_attributes AS
WITH scored AS (
  SELECT p.*, g.material AS true_material, g.pattern AS true_pattern, g.formality AS true_formality,
         g.style_keywords AS true_keywords, g.visual_details AS true_details,
         g.collar_type AS true_collar, g.sleeve_length AS true_sleeve, g.fit_type AS true_fit,
         pmod(CAST(p.product_id AS BIGINT) * 7919, 100)   AS failure_draw,
         pmod(CAST(p.product_id AS BIGINT) * 104729, 100) AS confidence_draw
  FROM main.fashion_demo.products_ground_truth g
  JOIN main.fashion_demo.products p ON p.product_id = g.product_id
)
SELECT
  product_id, product_display_name, master_category, sub_category, article_type, base_color,
  price, gender, season, usage, year, image_path,
  CASE WHEN failure_draw < 7 THEN NULL
       WHEN confidence_draw >= 92 THEN 'unknown'
       ELSE true_material END                                    AS material,
  CASE WHEN failure_draw < 7 THEN NULL ELSE true_pattern END     AS pattern,
  CASE WHEN failure_draw < 7 THEN NULL
       WHEN confidence_draw < 60 THEN 'high'
       WHEN confidence_draw < 85 THEN 'medium'
       ELSE 'low' END                                            AS confidence_material,
  CASE WHEN failure_draw < 7 THEN NULL ELSE true_formality END   AS formality,
  CASE WHEN failure_draw < 7 THEN NULL ELSE true_keywords END    AS style_keywords,
  CASE WHEN failure_draw < 7 THEN NULL ELSE true_details END     AS visual_details,
  CASE WHEN failure_draw < 7 THEN NULL ELSE true_collar END      AS collar_type,
  CASE WHEN failure_draw < 7 THEN NULL ELSE true_sleeve END      AS sleeve_length,
  CASE WHEN failure_draw < 7 THEN NULL ELSE true_fit END         AS fit_type,
  failure_draw >= 7                                              AS extraction_success,
  CASE WHEN failure_draw < 7 THEN array('stand-in: a failed extraction')
       ELSE CAST(array() AS ARRAY<STRING>) END                   AS extraction_errors,
  CURRENT_TIMESTAMP()                                            AS extraction_timestamp,
  'ground truth (demo stand-in)'                                 AS model_id,
  CAST(NULL AS STRING)                                           AS model_revision,
  CAST(NULL AS STRING)                                           AS raw_response
FROM scored;

SELECT
  COUNT(*) AS extracted,
  SUM(CASE WHEN extraction_success THEN 1 ELSE 0 END) * 100.0 / COUNT(*) AS success_rate_pct
FROM main.fashion_demo.product_extracted_attributes;
