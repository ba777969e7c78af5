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

if [ ! -f "$warehouse/Volumes/main/fashion_demo/raw_data/styles.csv" ]; then
  "$vitrine" --warehouse "$warehouse" demo-data --products "${PRODUCTS:-44424}" --seed 42
fi
# The CLIP model for phase 3: $VITRINE_CLIP_MODEL, else openai/clip-vit-base-patch32 from the
# Hugging Face cache or the hub. Offline and without it, the small random-weight test model
# stands in, so that the pipeline still runs end to end (its embeddings mean nothing).
clip="${VITRINE_CLIP_MODEL:-openai/clip-vit-base-patch32}"
if ! "$vitrine" --warehouse "$warehouse" --model "clip=$clip" run -e "SELECT clip_text_embed('probe') IS NOT NULL" >/dev/null 2>&1; then
  echo "demo.sh: CLIP model '$clip' is not available here (offline?); using the random-weight" >&2
  echo "demo.sh: test model tests/fixtures/clip/tiny-b instead. Set VITRINE_CLIP_MODEL=/path/to/clip." >&2
  clip="tests/fixtures/clip/tiny-b"
fi
# The SmolVLM model for phase 1: $VITRINE_SMOLVLM_MODEL, else HuggingFaceTB/SmolVLM-256M-Instruct
# from the Hugging Face cache or the hub. Offline and without it, phase 1 runs with the scripted
# test model tests/fixtures/smolvlm/scripted (every reply the same JSON), and the ground-truth
# stand-in sql/demo/attributes_from_ground_truth.sql then gives phases 2-4 realistic attributes.
smolvlm="${VITRINE_SMOLVLM_MODEL:-HuggingFaceTB/SmolVLM-256M-Instruct}"
stand_in=()
if ! "$vitrine" --warehouse "$warehouse" --model "smolvlm=$smolvlm" run -e "SELECT smolvlm_extract(CAST(NULL AS STRING)) IS NULL" >/dev/null 2>&1; then
  echo "demo.sh: SmolVLM model '$smolvlm' is not available here (offline?); phase 1 runs with the" >&2
  echo "demo.sh: scripted test model tests/fixtures/smolvlm/scripted, then the demo ground truth stands in." >&2
  echo "demo.sh: Set VITRINE_SMOLVLM_MODEL=/path/to/smolvlm." >&2
  smolvlm="tests/fixtures/smolvlm/scripted"
  stand_in=(sql/demo/attributes_from_ground_truth.sql)
fi
"$vitrine" --warehouse "$warehouse" --model "clip=$clip" --model "smolvlm=$smolvlm" run \
  sql/00_load_products.sql sql/01_extract_attributes.sql sql/01_quality_report.sql "${stand_in[@]}" \
  sql/02_*.sql sql/03_*.sql sql/04_*.sql
# Did enrichment help? Baseline against enriched text search on queries drawn from the catalog's
# ground truth (report in ./quality-report, run recorded in main.fashion_demo.embedding_benchmark_runs).
# With the random-weight test model the figures mean nothing.
"$vitrine" --warehouse "$warehouse" --model "clip=$clip" bench quality \
  --baseline main.fashion_demo.vs_text_search --candidate main.fashion_demo.vs_text_search_enriched \
  --out "${VITRINE_QUALITY_REPORT:-./quality-report}" >/dev/null
