-- Not a phase: the demo's own CLIP, trained from scratch on the demo catalog's training split
-- (products_ground_truth.split = 'train'), so that phases 3-4 and the quality benchmark run
-- offline with a model that sees the photos. demo.sh runs it when no real CLIP checkpoint is at
-- hand, then the phases with --model clip=main.fashion_demo.demo_clip.
--
-- It learns from 8,000 products of the training split (the first in md5 order of the id), seen
-- 8 times; with the SmolVLM, the two demo models train in about seven and a half minutes on
-- 2 cores.
-- IF NOT EXISTS: a second run of demo.sh keeps the model it trained (DROP MODEL, or
-- CREATE OR REPLACE, trains again).

-- A CLIP (two towers of 2 layers, 64 wide, 64-pixel photos in 16-pixel patches) that pairs each
-- photo with the short phrase a shopper types for it (text), and that phrase with a description
-- carrying the product's labelled attributes, worded as phase 2's rich descriptions are (query):
-- text-to-image search learns from the first pairs, text search (a shopper's words against
-- descriptions, what the quality benchmark measures) from the second.
CREATE MODEL IF NOT EXISTS main.fashion_demo.demo_clip
OPTIONS (model_type = 'clip', image_size = 64, patch_size = 16,
         epochs = 8, batch_size = 64, learning_rate = 3e-3, lr_schedule = 'cosine',
         warmup_fraction = 0.1)
AS
WITH labelled AS (
  SELECT
    p.product_id, p.image_path, p.product_display_name, p.article_type, p.base_color, p.gender,
    p.season, p.usage, g.material, g.pattern, g.formality,
    CASE WHEN g.collar_type <> 'not applicable' THEN g.collar_type END     AS collar_type,
    CASE WHEN g.sleeve_length <> 'not applicable' THEN g.sleeve_length END AS sleeve_length
  FROM main.fashion_demo.products p
  JOIN main.fashion_demo.products_ground_truth g ON p.product_id = g.product_id
  WHERE g.split = 'train'
  ORDER BY md5(CAST(p.product_id AS STRING))
  LIMIT 8000
),
phrased AS (
  SELECT
    image_path, product_id,
    -- What a shopper types: the article type, with some of colour, pattern, material, sleeves,
    -- collar and gender, drawn from the product id.
    concat_ws(' ',
              CASE WHEN pmod(product_id * 7, 2) = 0 THEN base_color END,
              CASE WHEN pmod(product_id * 7919, 3) = 0 THEN pattern END,
              CASE WHEN pmod(product_id * 104729, 3) = 0 THEN material END,
              CASE WHEN pmod(product_id * 1299709, 4) = 0 THEN sleeve_length END,
              CASE WHEN pmod(product_id * 15485863, 4) = 0 THEN collar_type END,
              article_type,
              CASE WHEN pmod(product_id * 611953, 4) = 0 THEN concat('for ', gender) END)
                                                                              AS phrase,
    -- A description worded as phase 2's rich descriptions are.
    concat_ws(' ', product_display_name, article_type, base_color, gender, material, pattern,
              formality, collar_type, sleeve_length, season, usage)           AS description
  FROM labelled
)
SELECT
  image_path AS image,
  phrase      AS text,
  description AS query
FROM phrased;
