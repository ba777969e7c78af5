-- The three-question set (the garment question for apparel only) over the same 200 photos.
CREATE SCHEMA IF NOT EXISTS main.scratch;
CREATE OR REPLACE TABLE main.scratch.questions_three AS
SELECT p.product_id, p.master_category, smolvlm_extract(p.image_path, array(
    'Answer in JSON with "material" and "pattern" and "confidence".',
    'Answer in JSON with "formality".',
    CASE WHEN p.master_category = 'Apparel'
         THEN 'Answer in JSON with "collar" and "sleeves" of the garment.' END)) AS e
FROM main.fashion_demo.products p
JOIN main.fashion_demo.products_ground_truth g ON p.product_id = g.product_id
WHERE g.split = 'test' ORDER BY p.product_id LIMIT 200;
