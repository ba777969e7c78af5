-- Phase 3 (plan step 7, Option B): CLIP embeddings of every product photo, of the baseline and
-- enriched descriptions of the products whose extraction succeeded with high or medium
-- confidence, and the 50/50 image-text hybrids the vector indexes of phase 4 serve.
--
-- The model is `--model clip=PATH_OR_HUB_ID` or SET vitrine.model.clip (default
-- openai/clip-vit-base-patch32); the id and revision it resolved to are recorded in each table's
-- properties (vitrine.model.clip, vitrine.model.clip.revision). A photo that cannot be read
-- becomes a NULL embedding, counted in the statement's warning; SET vitrine.udf.on_error =
-- 'fail' stops instead.

-- Image embeddings for every product.
CREATE OR REPLACE TABLE main.fashion_demo.product_image_embeddings
COMMENT 'CLIP image embedding (L2-normalised) of each product photo'
AS SELECT
  product_id,
  image_path,
  clip_image_embed(image_path) AS image_embedding
FROM main.fashion_demo.products;

-- Text embeddings (baseline and enriched) and hybrids for the well-extracted products.
CREATE OR REPLACE TABLE main.fashion_demo.product_embeddings_multimodal_v2
COMMENT 'Baseline and enriched CLIP text embeddings, image embeddings and 50/50 hybrids (plan step 7, Option B)'
AS
WITH products_filtered AS (
  SELECT *
  FROM main.fashion_demo.products_with_visual_attributes
  WHERE extraction_success = true
    AND confidence_material IN ('high', 'medium')
),
with_text_embeddings AS (
  SELECT
    product_id, product_display_name, master_category, sub_category, article_type, base_color,
    gender, season, year, usage, price, image_path,
    material, pattern, formality_level, style_keywords, collar_type, sleeve_length, fit_type,
    baseline_description,
    rich_text_description,
    clip_text_embed(rich_text_description) AS text_embedding_enriched,
    clip_text_embed(baseline_description)  AS text_embedding_baseline
  FROM products_filtered
)
SELECT
  t.*,
  i.image_embedding,
  hybrid_embed(i.image_embedding, t.text_embedding_enriched, 0.5) AS hybrid_embedding_enriched,
  hybrid_embed(i.image_embedding, t.text_embedding_baseline, 0.5) AS hybrid_embedding_baseline
FROM with_text_embeddings t
JOIN main.fashion_demo.product_image_embeddings i
  ON t.product_id = i.product_id
WHERE i.image_embedding IS NOT NULL;

-- Vector Search delta-sync reads the change feed.
ALTER TABLE main.fashion_demo.product_embeddings_multimodal_v2
  SET TBLPROPERTIES (delta.enableChangeDataFeed = true);

-- Coverage: every product has an image embedding unless its photo failed; the filtered products
-- have both text embeddings.
SELECT
  (SELECT COUNT(*) FROM main.fashion_demo.products)                         AS products,
  (SELECT COUNT(image_embedding) FROM main.fashion_demo.product_image_embeddings) AS image_embeddings,
  COUNT(*)                                                                   AS multimodal_rows,
  SUM(CASE WHEN text_embedding_enriched IS NOT NULL THEN 1 ELSE 0 END)       AS enriched_text_embeddings,
  MIN(SIZE(hybrid_embedding_enriched))                                       AS dimension
FROM main.fashion_demo.product_embeddings_multimodal_v2;

-- Do enriched descriptions sit closer to their photos than baseline ones? (With a real CLIP
-- the enriched similarity should be the higher.)
SELECT
  ROUND(AVG(cosine_similarity(image_embedding, text_embedding_baseline)), 4) AS image_text_similarity_baseline,
  ROUND(AVG(cosine_similarity(image_embedding, text_embedding_enriched)), 4) AS image_text_similarity_enriched,
  ROUND(AVG(cosine_similarity(text_embedding_baseline, text_embedding_enriched)), 4) AS baseline_vs_enriched
FROM main.fashion_demo.product_embeddings_multimodal_v2;

SHOW TBLPROPERTIES main.fashion_demo.product_embeddings_multimodal_v2;
