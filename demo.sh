#!/usr/bin/env bash
# Sets up a fresh machine and runs the main job on the embedded default: a local warehouse in
# ./warehouse with the generated 44,424-product demo catalog, then every phase script in sql/.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v protoc >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq protobuf-compiler
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vitrine-target}"
# VITRINE_PROFILE=dev trades run time for a shorter first build.
profile="${VITRINE_PROFILE:-release}"
cargo build --profile "$profile" --locked --bin vitrine
vitrine="$CARGO_TARGET_DIR/$([ "$profile" = dev ] && echo debug || echo "$profile")/vitrine"
warehouse="${VITRINE_WAREHOUSE:-./warehouse}"

# Runs a step and says how long it took.
step() {
  local name="$1" started=$SECONDS
  shift
  "$@"
  echo "demo.sh: $name took $((SECONDS - started)) s" >&2
}

if [ ! -f "$warehouse/Volumes/main/fashion_demo/raw_data/styles.csv" ]; then
  step "the demo catalog" "$vitrine" --warehouse "$warehouse" demo-data --products "${PRODUCTS:-44424}" --seed 42
fi
step "loading" "$vitrine" --warehouse "$warehouse" run sql/00_load_products.sql >/dev/null

# The models. A real checkpoint when there is one: $VITRINE_CLIP_MODEL, else
# openai/clip-vit-base-patch32 from the Hugging Face cache or the hub; $VITRINE_SMOLVLM_MODEL, else
# HuggingFaceTB/SmolVLM-256M-Instruct, for the plan's 100-product sample of phase 1. Without one
# (offline), the demo trains its own small model from scratch on the catalog's training split
# (sql/demo/train_*.sql, kept for the next run); phase 1 then reads every held-out photo
# (split = 'test', or the first $PHASE1_PRODUCTS of them by id) and the quality benchmark is
# measured on those products alone.
trainings=()
clip="${VITRINE_CLIP_MODEL:-openai/clip-vit-base-patch32}"
if ! "$vitrine" --warehouse "$warehouse" --model "clip=$clip" run -e "SELECT clip_text_embed('probe') IS NOT NULL" >/dev/null 2>&1; then
  echo "demo.sh: CLIP model '$clip' is not available here (offline?); training the demo's own" >&2
  echo "demo.sh: CLIP on the training split (sql/demo/train_clip.sql). Set VITRINE_CLIP_MODEL=/path/to/clip." >&2
  trainings+=(sql/demo/train_clip.sql)
  clip="main.fashion_demo.demo_clip"
fi
smolvlm="${VITRINE_SMOLVLM_MODEL:-HuggingFaceTB/SmolVLM-256M-Instruct}"
phase1=()
held_out=()
if ! "$vitrine" --warehouse "$warehouse" --model "smolvlm=$smolvlm" run -e "SELECT smolvlm_extract(CAST(NULL AS STRING)) IS NULL" >/dev/null 2>&1; then
  echo "demo.sh: SmolVLM model '$smolvlm' is not available here (offline?); training the demo's own" >&2
  echo "demo.sh: SmolVLM on the training split (sql/demo/train_smolvlm.sql). Set VITRINE_SMOLVLM_MODEL=/path/to/smolvlm." >&2
  trainings+=(sql/demo/train_smolvlm.sql)
  smolvlm="main.fashion_demo.demo_smolvlm"
  phase1=(-e "CREATE TEMPORARY VIEW phase1_products AS SELECT product_id FROM main.fashion_demo.products_ground_truth WHERE split = 'test' ORDER BY product_id ${PHASE1_PRODUCTS:+LIMIT $PHASE1_PRODUCTS}")
  held_out=(--where "g.split = 'test'")
fi
# The demo models are small: a second core speeds the training of either by 5-7 %
# (benches/RESULTS.md, 2026-12-02), so they train at once, the cores shared out between them.
if [ ${#trainings[@]} -gt 0 ]; then
  started=$SECONDS
  threads=$(( $(nproc) / ${#trainings[@]} ))
  [ "$threads" -ge 1 ] || threads=1
  pids=()
  for script in "${trainings[@]}"; do
    step "training $script" env RAYON_NUM_THREADS="$threads" "$vitrine" --warehouse "$warehouse" run "$script" &
    pids+=($!)
  done
  failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  [ "$failed" = 0 ] || { echo "demo.sh: training a demo model failed" >&2; exit 1; }
  echo "demo.sh: training the demo models took $((SECONDS - started)) s" >&2
fi
models=(--warehouse "$warehouse" --model "clip=$clip" --model "smolvlm=$smolvlm")
step "phase 1" "$vitrine" "${models[@]}" run "${phase1[@]}" sql/01_extract_attributes.sql sql/01_quality_report.sql
step "phase 2" "$vitrine" "${models[@]}" run sql/02_join_enriched_attributes.sql
step "phase 3" "$vitrine" "${models[@]}" run sql/03_generate_embeddings.sql
step "phase 4" "$vitrine" "${models[@]}" run sql/04_vector_indexes.sql sql/demo/text_to_image_search.sql
# Did enrichment help? Baseline against enriched text search on queries drawn from the catalog's
# ground truth (report in ./quality-report, run recorded in main.fashion_demo.embedding_benchmark_runs);
# with the demo's own models, on the held-out products only.
step "the quality benchmark" "$vitrine" "${models[@]}" bench quality "${held_out[@]}" \
  --baseline main.fashion_demo.vs_text_search --candidate main.fashion_demo.vs_text_search_enriched \
  --out "${VITRINE_QUALITY_REPORT:-./quality-report}"

# Phase 5: the A/B-tested search service on a free loopback port, simulated shoppers searching
# and clicking through its HTTP API, then the analysis of what they did (sql/05_ab_analysis.sql).
serve_log="$warehouse/_serve/serve.log"
mkdir -p "$(dirname "$serve_log")"
"$vitrine" "${models[@]}" serve --addr 127.0.0.1:0 2>"$serve_log" &
serve_pid=$!
trap 'kill "$serve_pid" 2>/dev/null || true' EXIT
url=""
for _ in $(seq 600); do
  url=$(sed -n 's/^listening on //p' "$serve_log" | head -1)
  [ -n "$url" ] && break
  kill -0 "$serve_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$url" ]; then
  echo "demo.sh: vitrine serve did not start:" >&2
  cat "$serve_log" >&2
  exit 1
fi
step "phase 5: simulated shoppers" "$vitrine" --warehouse "$warehouse" simulate-traffic --url "$url" \
  --searches "${SEARCHES:-2000}"
kill -TERM "$serve_pid"
wait "$serve_pid" || true
step "phase 5: the A/B analysis" "$vitrine" --warehouse "$warehouse" run sql/05_ab_analysis.sql
