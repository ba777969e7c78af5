#!/usr/bin/env bash
# Text searches whose every query is a model call, at the real ViT-B/32 text shape (12 layers,
# 512 wide, 8 heads, 77 positions), against the same model's batch-32 rate from
# `vitrine bench clip`: the issue's "throughput ≥ 0.8× the model's batch-32 embedding rate".
#
#   benches/serve/fresh_text.sh WAREHOUSE [SECONDS] [CONNECTIONS]
#
# WAREHOUSE is one where the main job ran (demo.sh). The script WRITES into it: a model
# `main.fashion_demo.vit_text` (kept when it exists; near-random weights: one epoch on 256 products, the text
# tower at the ViT-B/32 shape, a tiny image tower), a table `vit_shape_vectors` holding every
# product of the catalog (44,424 in the demo's) with its enriched hybrid vector, or its image
# embedding where phase 3 made none, repeated 8 times (512 wide, the same cosines), and its IVF
# index `vs_vit_shape`, which a service config names for both variants. Then it times
# `vitrine bench clip` on that model over the catalog's product names, and runs
# `benches/serve/load.sh WAREHOUSE fresh-text` (20,000 distinct product names) with it.
# SEARCH_OPTIONS adds lines to the service config's `[search]` table (e.g. `embed_calls = 1`),
# EVENTS_OPTIONS to its `[events]` table (e.g. `commit_interval_ms = 60000`);
# BENCH_BATCHES sets the batch sizes `bench clip` times (default 1,8,32; the bar needs 32).
set -euo pipefail
cd "$(dirname "$0")/../.."
warehouse="${1:?usage: fresh_text.sh WAREHOUSE [SECONDS] [CONNECTIONS]}"
seconds="${2:-15}"
connections="${3:-32}"
vitrine="${VITRINE:-${CARGO_TARGET_DIR:-$HOME/.cache/vitrine-target}/release/vitrine}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$vitrine" --warehouse "$warehouse" run -e "
CREATE MODEL IF NOT EXISTS main.fashion_demo.vit_text
OPTIONS (model_type = 'clip', projection_dim = 512, hidden_size = 512, layers = 12, heads = 8,
         max_text_length = 77, image_size = 32, patch_size = 32, vocab_size = 8000,
         epochs = 1, batch_size = 8, eval_fraction = 0)
AS SELECT image_path AS image, product_display_name AS text
FROM main.fashion_demo.products ORDER BY product_id LIMIT 256;

CREATE OR REPLACE TABLE main.fashion_demo.vit_shape_vectors AS
SELECT p.product_id, p.product_display_name, p.article_type, p.master_category, p.base_color,
       p.gender, p.price, p.image_path, e.material, e.pattern, e.rich_text_description,
       arrow_cast(flatten(array_repeat(COALESCE(e.hybrid_embedding_enriched, i.image_embedding), 8)),
                  'FixedSizeList(512, Float32)') AS v
FROM main.fashion_demo.products p
JOIN main.fashion_demo.product_image_embeddings i ON i.product_id = p.product_id
LEFT JOIN main.fashion_demo.product_embeddings_multimodal_v2 e ON e.product_id = p.product_id;

CREATE OR REPLACE VECTOR INDEX main.fashion_demo.vs_vit_shape
ON main.fashion_demo.vit_shape_vectors (v)
WITH (primary_key = 'product_id', metric = 'cosine', embedding_model = 'clip',
      text_column = 'rich_text_description',
      columns = (product_display_name, article_type, master_category, base_color, gender, price,
                 image_path, material, pattern, rich_text_description))"

# The model's batch-1/8/32 rates over the product names the load sends.
location=$("$vitrine" --warehouse "$warehouse" run --format csv -e \
  "DESCRIBE MODEL main.fashion_demo.vit_text" | sed -n 's/^location,//p')
mkdir -p "$work/bench"
ln -s "$location" "$work/bench/model"
"$vitrine" --warehouse "$warehouse" run --format csv -e \
  "SELECT product_display_name FROM main.fashion_demo.products GROUP BY product_display_name
   ORDER BY MIN(product_id) LIMIT 1024" | tail -n +2 >"$work/bench/texts.txt"
"$vitrine" --warehouse "$warehouse" run --format csv -e \
  "SELECT image_path FROM main.fashion_demo.products ORDER BY product_id LIMIT 64" \
  | tail -n +2 >"$work/bench/images.txt"
echo "== vitrine bench clip (the same model, the same texts)"
"$vitrine" bench clip "$work/bench" --repeat 2 --batch-sizes "${BENCH_BATCHES:-1,8,32}"

printf '[search]\nbaseline_index = "main.fashion_demo.vs_vit_shape"\nenriched_index = "main.fashion_demo.vs_vit_shape"\n%s\n' \
  "${SEARCH_OPTIONS:-}" >"$work/vit.toml"
[ -z "${EVENTS_OPTIONS:-}" ] || printf '[events]\n%s\n' "$EVENTS_OPTIONS" >>"$work/vit.toml"
VITRINE="$vitrine" VITRINE_CLIP_MODEL=main.fashion_demo.vit_text SERVE_CONFIG="$work/vit.toml" \
  bash benches/serve/load.sh "$warehouse" fresh-text "$seconds" "$connections"
