-- Phase 1 quality report (plan step 4): the plan's success criteria as one PASS/FAIL table, then
-- the distributions to look at before going on to phase 2. Reads
-- main.fashion_demo.product_extracted_attributes, whichever way it was filled.

CREATE OR REPLACE TEMPORARY VIEW phase1_extractions AS
SELECT * FROM main.fashion_demo.product_extracted_attributes;

-- Success criteria. Rates other than the success rate are over successful extractions; a
-- criterion with nothing to measure (no Watches in the sample, say) says NO DATA.
WITH measured AS (
  SELECT
    COUNT(*)                                                                   AS products,
    100.0 * SUM(CASE WHEN extraction_success THEN 1 ELSE 0 END) / COUNT(*)     AS success_pct,
    100.0 * SUM(CASE WHEN extraction_success AND material = 'unknown' THEN 1 ELSE 0 END)
      / NULLIF(SUM(CASE WHEN extraction_success THEN 1 ELSE 0 END), 0)         AS unknown_pct,
    100.0 * SUM(CASE WHEN extraction_success AND confidence_material IN ('high', 'medium') THEN 1 ELSE 0 END)
      / NULLIF(SUM(CASE WHEN extraction_success THEN 1 ELSE 0 END), 0)         AS confident_pct,
    100.0 * SUM(CASE WHEN extraction_success AND article_type = 'Watches' AND material = 'metal' THEN 1 ELSE 0 END)
      / NULLIF(SUM(CASE WHEN extraction_success AND article_type = 'Watches' THEN 1 ELSE 0 END), 0)
                                                                               AS watches_metal_pct,
    100.0 * SUM(CASE WHEN extraction_success AND article_type = 'Tshirts' AND material = 'knit fabric' THEN 1 ELSE 0 END)
      / NULLIF(SUM(CASE WHEN extraction_success AND article_type = 'Tshirts' THEN 1 ELSE 0 END), 0)
                                                                               AS tshirts_knit_pct
  FROM phase1_extractions
),
criteria AS (
  SELECT 1 AS n, 'extraction success rate' AS criterion, '> 85%' AS target, success_pct AS value, success_pct > 85 AS pass FROM measured
  UNION ALL SELECT 2, 'material "unknown"', '< 15%', unknown_pct, unknown_pct < 15 FROM measured
  UNION ALL SELECT 3, 'confidence high + medium', '> 75%', confident_pct, confident_pct > 75 FROM measured
  UNION ALL SELECT 4, 'Watches -> metal', '>= 90%', watches_metal_pct, watches_metal_pct >= 90 FROM measured
  UNION ALL SELECT 5, 'Tshirts -> knit fabric', '>= 85%', tshirts_knit_pct, tshirts_knit_pct >= 85 FROM measured
)
SELECT
  criterion,
  target,
  ROUND(value, 1)                                                  AS measured_pct,
  CASE WHEN value IS NULL THEN 'NO DATA' WHEN pass THEN 'PASS' ELSE 'FAIL' END AS result
FROM criteria
ORDER BY n;

-- Answers outside the prompt's vocabularies (kept in the table, counted here), per column.
SELECT column_name, outside_vocabulary, answered
FROM (
  SELECT 1 AS n, 'material' AS column_name,
         SUM(CASE WHEN NOT array_has(smolvlm_vocabulary('material'), material) THEN 1 ELSE 0 END) AS outside_vocabulary,
         COUNT(material) AS answered
  FROM phase1_extractions WHERE extraction_success
  UNION ALL
  SELECT 2, 'pattern',
         SUM(CASE WHEN NOT array_has(smolvlm_vocabulary('pattern'), pattern) THEN 1 ELSE 0 END), COUNT(pattern)
  FROM phase1_extractions WHERE extraction_success
  UNION ALL
  SELECT 3, 'formality',
         SUM(CASE WHEN NOT array_has(smolvlm_vocabulary('formality'), formality) THEN 1 ELSE 0 END), COUNT(formality)
  FROM phase1_extractions WHERE extraction_success
  UNION ALL
  SELECT 4, 'style_keywords',
         SUM(CASE WHEN SIZE(array_except(style_keywords, smolvlm_vocabulary('style_keywords'))) > 0 THEN 1 ELSE 0 END),
         COUNT(style_keywords)
  FROM phase1_extractions WHERE extraction_success
  UNION ALL
  SELECT 5, 'visual_details',
         SUM(CASE WHEN SIZE(array_except(visual_details, smolvlm_vocabulary('visual_details'))) > 0 THEN 1 ELSE 0 END),
         COUNT(visual_details)
  FROM phase1_extractions WHERE extraction_success
  UNION ALL
  SELECT 6, 'collar_type',
         SUM(CASE WHEN NOT array_has(smolvlm_vocabulary('collar_type'), collar_type) THEN 1 ELSE 0 END), COUNT(collar_type)
  FROM phase1_extractions WHERE extraction_success
  UNION ALL
  SELECT 7, 'sleeve_length',
         SUM(CASE WHEN NOT array_has(smolvlm_vocabulary('sleeve_length'), sleeve_length) THEN 1 ELSE 0 END), COUNT(sleeve_length)
  FROM phase1_extractions WHERE extraction_success
  UNION ALL
  SELECT 8, 'fit_type',
         SUM(CASE WHEN NOT array_has(smolvlm_vocabulary('fit_type'), fit_type) THEN 1 ELSE 0 END), COUNT(fit_type)
  FROM phase1_extractions WHERE extraction_success
  UNION ALL
  SELECT 9, 'confidence_material',
         SUM(CASE WHEN NOT array_has(smolvlm_vocabulary('confidence_material'), confidence_material) THEN 1 ELSE 0 END),
         COUNT(confidence_material)
  FROM phase1_extractions WHERE extraction_success
) AS v
ORDER BY n;

-- Distributions.
SELECT material, COUNT(*) AS products, ROUND(100.0 * COUNT(*) / SUM(COUNT(*)) OVER (), 1) AS pct
FROM phase1_extractions WHERE extraction_success
GROUP BY material ORDER BY products DESC, material;

SELECT pattern, COUNT(*) AS products, ROUND(100.0 * COUNT(*) / SUM(COUNT(*)) OVER (), 1) AS pct
FROM phase1_extractions WHERE extraction_success
GROUP BY pattern ORDER BY products DESC, pattern;

SELECT formality, COUNT(*) AS products, ROUND(100.0 * COUNT(*) / SUM(COUNT(*)) OVER (), 1) AS pct
FROM phase1_extractions WHERE extraction_success
GROUP BY formality ORDER BY products DESC, formality;

SELECT confidence_material, COUNT(*) AS products, ROUND(100.0 * COUNT(*) / SUM(COUNT(*)) OVER (), 1) AS pct
FROM phase1_extractions WHERE extraction_success
GROUP BY confidence_material ORDER BY products DESC, confidence_material;

-- Materials of the ten most frequent article types.
WITH top_types AS (
  SELECT article_type FROM phase1_extractions GROUP BY article_type ORDER BY COUNT(*) DESC, article_type LIMIT 10
)
SELECT e.article_type, e.material, COUNT(*) AS products
FROM phase1_extractions e JOIN top_types t ON t.article_type = e.article_type
WHERE e.extraction_success
GROUP BY e.article_type, e.material
ORDER BY e.article_type, products DESC, e.material;

-- Why extractions failed (the first 80 characters of the errors).
SELECT COALESCE(SUBSTR(NULLIF(array_join(extraction_errors, '; '), ''), 1, 80), '(no error recorded)')
         AS failure,
       COUNT(*) AS products
FROM phase1_extractions WHERE NOT extraction_success
GROUP BY 1
ORDER BY products DESC, failure;
