-- The demo SmolVLM of sql/demo/train_smolvlm.sql, taught the three-question set of three.sql
-- instead of the single default prompt: each question is answered with its group of attributes
-- (the garment question for apparel only), so that both models extract the same fields and the
-- token cost of asking three questions can be measured against asking one.
CREATE MODEL IF NOT EXISTS main.fashion_demo.demo_smolvlm_questions
OPTIONS (model_type = 'smolvlm', image_size = 96, patch_size = 12,
         epochs = 2, batch_size = 32, learning_rate = 5e-3, lr_schedule = 'cosine',
         warmup_fraction = 0.05)
AS WITH train AS (
  SELECT p.image_path, p.master_category, g.*
  FROM main.fashion_demo.products p
  JOIN main.fashion_demo.products_ground_truth g ON p.product_id = g.product_id
  WHERE g.split = 'train'
  ORDER BY md5(CAST(p.product_id AS STRING))
  LIMIT 5000)
SELECT image_path AS image,
       'Answer in JSON with "material" and "pattern" and "confidence".' AS prompt,
       to_json(named_struct('material', material, 'pattern', pattern,
                            'confidence', 'high')) AS target
FROM train
UNION ALL
SELECT image_path, 'Answer in JSON with "formality".',
       to_json(named_struct('formality', formality))
FROM train
UNION ALL
SELECT image_path, 'Answer in JSON with "collar" and "sleeves" of the garment.',
       to_json(named_struct('collar', collar_type, 'sleeves', sleeve_length))
FROM train
WHERE master_category = 'Apparel';
