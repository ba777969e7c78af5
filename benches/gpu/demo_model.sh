#!/usr/bin/env bash
# Here, on the CPU machine: the demo's own SmolVLM and held-out demo photos, for run_agreement.sh
# on the GPU machine (carry.sh copies them into .gpu/agreement):
#   bash benches/gpu/demo_model.sh VITRINE DIR [PHOTOS]
# VITRINE is a release `vitrine` binary. Generates the demo catalog (16,000 products, seed 42: the
# 12,000 products of the training split that sql/demo/train_smolvlm.sql learns from, and
# held-out ones) in DIR/warehouse, trains the demo SmolVLM with that script, as demo.sh does
# offline (about 5 minutes on 2 cores), copies the model's folder to DIR/model and lists the
# first PHOTOS (default 512) held-out photos (split = 'test', by product id; their paths in the
# table are the warehouse's) in DIR/images.txt.
set -euo pipefail
vitrine=$(realpath "${1:?usage: demo_model.sh VITRINE DIR [PHOTOS]}")
dir=$(realpath -m "${2:?usage: demo_model.sh VITRINE DIR [PHOTOS]}")
repo=$(cd "$(dirname "$0")/../.." && pwd)
warehouse="$dir/warehouse"
mkdir -p "$dir"
if [ ! -f "$warehouse/Volumes/main/fashion_demo/raw_data/styles.csv" ]; then
  "$vitrine" --warehouse "$warehouse" demo-data --products 16000 --seed 42
fi
cd "$repo"
"$vitrine" --warehouse "$warehouse" run sql/00_load_products.sql >/dev/null
"$vitrine" --warehouse "$warehouse" run sql/demo/train_smolvlm.sql
# The model's figures, and its folder (the revision the model object names).
"$vitrine" --warehouse "$warehouse" run --format csv -e "DESCRIBE MODEL main.fashion_demo.demo_smolvlm" \
  > "$dir/describe.csv"
revision=$(awk -F, '$1 == "location" { print $2 }' "$dir/describe.csv")
rm -rf "$dir/model" && cp -r "$revision" "$dir/model"
"$vitrine" --warehouse "$warehouse" run --format csv -e "SELECT p.image_path FROM main.fashion_demo.products p \
  JOIN main.fashion_demo.products_ground_truth g ON p.product_id = g.product_id WHERE g.split = 'test' \
  ORDER BY p.product_id LIMIT ${3:-512}" | tail -n +2 | sed "s|^|$warehouse|" > "$dir/images.txt"
echo "model: $dir/model ($(du -sh "$dir/model" | cut -f1)); $(wc -l < "$dir/images.txt") photos in $dir/images.txt"
