#!/usr/bin/env bash
# What several questions per photo cost: trains the demo SmolVLM on the single default prompt
# (sql/demo/train_smolvlm.sql) and on the three-question set (train_questions.sql), runs each on
# the same 200 held-out photos, and counts generated tokens, time and agreement with the labels.
#   bash benches/questions/run.sh [VITRINE_BIN] [WAREHOUSE]
# A warehouse that already holds the demo catalog and the models is reused.
set -euo pipefail
cd "$(dirname "$0")/../.."
V=${1:-target/release/vitrine}
WH=${2:-/tmp/vitrine-questions}
if [ ! -d "$WH/main/fashion_demo" ]; then
  "$V" --warehouse "$WH" demo-data --products 44424 --seed 42 >/dev/null
  "$V" --warehouse "$WH" run sql/00_load_products.sql >/dev/null
fi
s=$SECONDS; "$V" --warehouse "$WH" run sql/demo/train_smolvlm.sql >/dev/null
echo "train on the default prompt: $((SECONDS - s)) s"
s=$SECONDS; "$V" --warehouse "$WH" run benches/questions/train_questions.sql >/dev/null
echo "train on three questions: $((SECONDS - s)) s"
for run in one:demo_smolvlm three:demo_smolvlm_questions; do
  s=$SECONDS
  "$V" --warehouse "$WH" --model "smolvlm=main.fashion_demo.${run#*:}" \
    run "benches/questions/${run%%:*}.sql" >/dev/null
  echo "${run%%:*} question(s), 200 photos: $((SECONDS - s)) s"
done
python3 benches/questions/tokens.py "$V" "$WH"
