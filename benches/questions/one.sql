-- The single default prompt (the question demo_smolvlm was trained on) over 200 held-out photos.
CREATE SCHEMA IF NOT EXISTS main.scratch;
CREATE OR REPLACE TABLE main.scratch.questions_one AS
SELECT p.product_id, p.master_category, smolvlm_extract(p.image_path) AS e
FROM main.fashion_demo.products p
JOIN main.fashion_demo.products_ground_truth g ON p.product_id = g.product_id
WHERE g.split = 'test' ORDER BY p.product_id LIMIT 200;
