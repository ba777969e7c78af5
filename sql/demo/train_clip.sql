-- Not a phase: the demo's own CLIP, trained from scratch on the demo catalog's training split
-- (products_ground_truth.split = 'train'), so that phases 3-4 and the quality benchmark run
-- offline with a model that sees the photos. demo.sh runs it when no real CLIP checkpoint is at
-- hand, then the phases with --model clip=main.fashion_demo.demo_clip.
--
-- It learns from 16,000 products of the training split (the first in md5 order of the id), in
-- three rows each, seen twice (2 epochs). Many phrases matter more than many epochs: one phrase
-- per product seen 8 times left the attribute words unbound (benches/RESULTS.md, 2026-12-02).
-- IF NOT EXISTS: a second run of demo.sh keeps the model it trained (DROP MODEL, or
-- CREATE OR REPLACE, trains again).

-- A CLIP of two towers of 2 layers, 64 wide, reading 64-pixel photos in 16-pixel patches.
CREATE MODEL IF NOT EXISTS main.fashion_demo.demo_clip
OPTIONS (model_type = 'clip', image_size = 64, patch_size = 16,
         epochs = 2, batch_size = 64, learning_rate = 3e-3, lr_schedule = 'cosine',
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
  LIMIT 16000
),
-- Two shoppers per product (0 and 1), each naming the article type with some of colour,
-- pattern, material, sleeves, collar and gender, every facet drawn on its own: the first hex
-- digit of the md5 of the product, the shopper and the facet is a draw from 1 to 16.
shoppers AS (
  SELECT l.*, s.shopper
  FROM labelled l CROSS JOIN (VALUES (0), (1)) AS s(shopper)
),
draws AS (
  SELECT *,
    instr('0123456789abcdef', substr(md5(concat(CAST(product_id AS STRING), '/', CAST(shopper AS STRING), '/colour')), 1, 1))   AS colour_draw,
    instr('0123456789abcdef', substr(md5(concat(CAST(product_id AS STRING), '/', CAST(shopper AS STRING), '/pattern')), 1, 1))  AS pattern_draw,
    instr('0123456789abcdef', substr(md5(concat(CAST(product_id AS STRING), '/', CAST(shopper AS STRING), '/material')), 1, 1)) AS material_draw,
    instr('0123456789abcdef', substr(md5(concat(CAST(product_id AS STRING), '/', CAST(shopper AS STRING), '/sleeve')), 1, 1))   AS sleeve_draw,
    instr('0123456789abcdef', substr(md5(concat(CAST(product_id AS STRING), '/', CAST(shopper AS STRING), '/collar')), 1, 1))   AS collar_draw,
    instr('0123456789abcdef', substr(md5(concat(CAST(product_id AS STRING), '/', CAST(shopper AS STRING), '/gender')), 1, 1))   AS gender_draw
  FROM shoppers
),
asked AS (
  SELECT *,
    concat_ws(' ',
      CASE WHEN colour_draw <= 8   THEN base_color END,     -- one shopper in two
      CASE WHEN pattern_draw <= 5  THEN pattern END,        -- about one in three
      CASE WHEN material_draw <= 5 THEN material END,
      CASE WHEN sleeve_draw <= 4   THEN sleeve_length END,  -- one in four
      CASE WHEN collar_draw <= 4   THEN collar_type END,
      article_type,
      CASE WHEN gender_draw <= 4   THEN concat('for ', gender) END)     AS phrase
  FROM draws
)
-- Twice per product: the photo with a description worded as phase 2's rich descriptions are
-- (text), and a shopper's phrase with that description (query): text search, what the quality
-- benchmark measures, learns from the second pair.
SELECT
  image_path AS image,
  concat_ws(' ', product_display_name, article_type, base_color, gender, material, pattern,
            formality, collar_type, sleeve_length, season, usage)           AS text,
  phrase                                                                    AS query
FROM asked
UNION ALL
-- Once per product: the photo with its look in a few words (colour, article type, and the
-- pattern or material about one time in three): text-to-image search learns from these pairs.
SELECT
  image_path AS image,
  concat_ws(' ', base_color,
            CASE instr('0123456789abcdef', substr(md5(concat(CAST(product_id AS STRING), '/look')), 1, 1)) % 6
              WHEN 0 THEN pattern WHEN 1 THEN material END,
            article_type)                                                   AS text,
  CAST(NULL AS STRING)                                                      AS query
FROM labelled;
