#!/usr/bin/env bash
# Fine-tunes the tiny fixture SmolVLM on 64 labelled demo photos with CREATE MODEL, every weight
# and then LoRA adapters, and prints for each: wall time, peak memory (GNU time's maximum
# resident set), and the share of photos whose answer is the true material, before and after.
#   bash benches/training/smolvlm_tiny.sh [VITRINE_BINARY]
# Results go to benches/RESULTS.md by hand.
set -euo pipefail
cd "$(dirname "$0")/../.."
vitrine="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/vitrine-target}/release/vitrine}"
warehouse="$(mktemp -d)"
trap 'rm -rf "$warehouse"' EXIT
tiny="$PWD/tests/fixtures/smolvlm/tiny"
"$vitrine" --warehouse "$warehouse" demo-data --products 64 --seed 8 >/dev/null
"$vitrine" --warehouse "$warehouse" run sql/00_load_products.sql >/dev/null

accuracy() {
  "$vitrine" --warehouse "$warehouse" --model "smolvlm=$1" run --format csv \
    -e "SET vitrine.smolvlm.longest_edge = 32" \
    -e "SELECT ROUND(AVG(CASE WHEN trim(replace(smolvlm_generate(p.image_path, 'Material?'), '</w>', ' ')) = g.material THEN 1.0 ELSE 0.0 END), 3) AS accuracy FROM main.fashion_demo.products p JOIN main.fashion_demo.products_ground_truth g ON p.product_id = g.product_id" \
    | tail -1
}

echo "before: material accuracy $(accuracy "$tiny")"
for run in "vlm|learning_rate = 3e-3" \
           "vlm_lora|learning_rate = 1e-2, lora_rank = 8, lora_targets = 'q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj'"; do
  name="${run%%|*}"
  options="${run#*|}"
  /usr/bin/time -f "$name: %e s wall, %M KiB peak resident" \
    "$vitrine" --warehouse "$warehouse" run -e "SET vitrine.smolvlm.longest_edge = 32" \
    -e "CREATE MODEL main.fashion_demo.$name OPTIONS (model_type = 'smolvlm', base = '$tiny', epochs = 6, batch_size = 8, $options, eval_fraction = 0) AS SELECT p.image_path AS image, 'Material?' AS prompt, g.material AS target FROM main.fashion_demo.products p JOIN main.fashion_demo.products_ground_truth g ON p.product_id = g.product_id" \
    2>&1 | grep -E "created model|peak resident"
  echo "$name: material accuracy $(accuracy "main.fashion_demo.$name")"
done
