-- Stand-in for phase 1 on the demo catalog where SmolVLM's weights are not at hand (demo.sh runs
-- it offline, after sql/01_extract_attributes.sql has run with a test model).
--
-- Replaces main.fashion_demo.product_extracted_attributes, with the columns phase 2 reads, by
-- attributes from the demo catalog's ground truth, with the kind of imperfection a model shows: about 7% of
-- extractions fail, confidence varies, and low-confidence materials are often 'unknown'.
-- The noise is a deterministic function of product_id, so every run gives the same table.

CREATE OR REPLACE TABLE main.fashion_demo.product_extracted_attributes AS
WITH scored AS (
  SELECT g.*,
         pmod(CAST(product_id AS BIGINT) * 7919, 100)   AS failure_draw,
         pmod(CAST(product_id AS BIGINT) * 104729, 100) AS confidence_draw
  FROM main.fashion_demo.products_ground_truth g
)
SELECT
  product_id,
  CASE WHEN failure_draw < 7 THEN NULL
       WHEN confidence_draw >= 92 THEN 'unknown'
       ELSE material END                                         AS material,
  CASE WHEN failure_draw < 7 THEN NULL ELSE pattern END          AS pattern,
  CASE WHEN failure_draw < 7 THEN NULL ELSE formality END        AS formality,
  CASE WHEN failure_draw < 7 THEN NULL ELSE style_keywords END   AS style_keywords,
  CASE WHEN failure_draw < 7 THEN NULL ELSE visual_details END   AS visual_details,
  CASE WHEN failure_draw < 7 THEN NULL ELSE collar_type END      AS collar_type,
  CASE WHEN failure_draw < 7 THEN NULL ELSE sleeve_length END    AS sleeve_length,
  CASE WHEN failure_draw < 7 THEN NULL ELSE fit_type END         AS fit_type,
  failure_draw >= 7                                              AS extraction_success,
  CASE WHEN failure_draw < 7 THEN NULL
       WHEN confidence_draw < 60 THEN 'high'
       WHEN confidence_draw < 85 THEN 'medium'
       ELSE 'low' END                                            AS confidence_material,
  CASE WHEN failure_draw < 7 THEN 'stand-in: a failed extraction' END AS extraction_error,
  CAST(NULL AS STRING)                                           AS raw_response,
  'ground truth (demo stand-in)'                                 AS model_id,
  CAST(NULL AS STRING)                                           AS model_revision,
  CURRENT_TIMESTAMP()                                            AS extraction_timestamp
FROM scored;

SELECT
  COUNT(*) AS extracted,
  SUM(CASE WHEN extraction_success THEN 1 ELSE 0 END) * 100.0 / COUNT(*) AS success_rate_pct
FROM main.fashion_demo.product_extracted_attributes;
