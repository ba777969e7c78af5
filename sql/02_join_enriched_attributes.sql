-- Phase 2 (plan steps 5 and 6): join the extracted visual attributes onto the catalog, build the
-- baseline and enriched descriptions, prepare the table for vector-index sync, and validate.

CREATE OR REPLACE TABLE main.fashion_demo.products_with_visual_attributes AS
SELECT
  -- Original product fields
  p.product_id,
  p.product_display_name,
  p.master_category,
  p.sub_category,
  p.article_type,
  p.base_color,
  p.gender,
  p.season,
  p.year,
  p.usage,
  p.price,
  p.image_path,

  -- Extracted visual attributes (material only when the model was confident)
  CASE WHEN a.extraction_success AND a.confidence_material IN ('high', 'medium')
       THEN a.material END                                   AS material,
  a.pattern,
  a.formality                                                AS formality_level,
  a.style_keywords,
  a.visual_details,
  a.collar_type,
  a.sleeve_length,
  a.fit_type,

  -- Quality metadata
  a.extraction_success,
  a.confidence_material,
  a.extraction_timestamp,

  -- Descriptions for embedding
  CONCAT_WS(' ', p.product_display_name, p.article_type, p.base_color, p.gender, p.season, p.usage)
                                                             AS baseline_description,
  CONCAT_WS(' ',
    p.product_display_name, p.article_type, p.base_color, p.gender,
    CASE WHEN a.extraction_success AND a.confidence_material IN ('high', 'medium')
         THEN a.material END,
    a.pattern,
    a.formality,
    ARRAY_JOIN(a.style_keywords, ' '),
    ARRAY_JOIN(a.visual_details, ' '),
    CASE WHEN a.collar_type <> 'not applicable' THEN a.collar_type END,
    CASE WHEN a.sleeve_length <> 'not applicable' THEN a.sleeve_length END,
    CASE WHEN a.fit_type <> 'cannot determine' THEN a.fit_type END,
    p.season, p.usage)                                       AS rich_text_description
FROM main.fashion_demo.products p
LEFT JOIN main.fashion_demo.product_extracted_attributes a
  ON p.product_id = a.product_id;

-- Vector Search delta-sync reads the change feed.
ALTER TABLE main.fashion_demo.products_with_visual_attributes
  SET TBLPROPERTIES (delta.enableChangeDataFeed = true);

OPTIMIZE main.fashion_demo.products_with_visual_attributes ZORDER BY (article_type, master_category);

COMMENT ON TABLE main.fashion_demo.products_with_visual_attributes IS
  'Products with SmolVLM visual attributes and baseline/enriched text descriptions for CLIP embeddings';

-- Step 6: check enrichment coverage (expected: 80-90% for material)
SELECT
  COUNT(*) as total,
  SUM(CASE WHEN material IS NOT NULL THEN 1 ELSE 0 END) as has_material,
  ROUND(100.0 * SUM(CASE WHEN material IS NOT NULL THEN 1 ELSE 0 END) / COUNT(*), 1) as coverage_pct
FROM main.fashion_demo.products_with_visual_attributes;

-- Attribute coverage and description length
SELECT
  SUM(CASE WHEN pattern IS NOT NULL THEN 1 ELSE 0 END) / COUNT(*)             AS pattern_coverage,
  SUM(CASE WHEN SIZE(style_keywords) > 0 THEN 1 ELSE 0 END) / COUNT(*)        AS style_coverage,
  ROUND(AVG(LENGTH(baseline_description)), 1)                                 AS avg_baseline_chars,
  ROUND(AVG(LENGTH(rich_text_description)), 1)                                AS avg_rich_chars
FROM main.fashion_demo.products_with_visual_attributes;

-- Consistency checks: Watches should be metal, T-shirts knit fabric
SELECT
  check_name,
  products,
  matching,
  ROUND(100.0 * matching / products, 1) AS pct,
  CASE WHEN 100.0 * matching / products >= threshold_pct THEN 'PASS' ELSE 'FAIL' END AS status
FROM (
  SELECT 'Watches -> metal' AS check_name, 90 AS threshold_pct,
         COUNT(*) AS products,
         SUM(CASE WHEN material = 'metal' THEN 1 ELSE 0 END) AS matching
  FROM main.fashion_demo.products_with_visual_attributes
  WHERE article_type = 'Watches' AND material IS NOT NULL
  UNION ALL
  SELECT 'Tshirts -> knit fabric', 85,
         COUNT(*),
         SUM(CASE WHEN material = 'knit fabric' THEN 1 ELSE 0 END)
  FROM main.fashion_demo.products_with_visual_attributes
  WHERE article_type = 'Tshirts' AND material IS NOT NULL
)
ORDER BY check_name;

-- Five enriched descriptions, drawn at random
SELECT product_id, article_type, rich_text_description
FROM main.fashion_demo.products_with_visual_attributes
DISTRIBUTE BY article_type SORT BY RAND()
LIMIT 5;
