#!/usr/bin/env bash
# Phases 2 and 3 (the test CLIP, tiny-a) and a phase-1 sample (the random-weight test SmolVLM)
# on one process and on 1, 2 and 4 `vitrine worker` processes of this machine, over a warehouse
# that holds the demo catalog with photos and a phase-1 table (demo.sh's).
#
#   bash benches/cluster/phases.sh VITRINE_BIN WAREHOUSE [PHOTOS_FOR_PHASE_1]
#
# Prints one line per run: workers, phase, seconds. It REWRITES the phase 1-3 tables of
# WAREHOUSE with the test models (RESTORE them afterwards, or give it a scratch warehouse: a
# copied folder does not do, its catalog names the original's table locations).
set -euo pipefail
BIN=$(realpath "$1")
SOURCE=$(realpath "$2")  # rewritten in place
PHOTOS=${3:-64}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
CLIP=$REPO/tests/fixtures/clip/tiny-a
SMOLVLM=$REPO/tests/fixtures/smolvlm/tiny
WH=$SOURCE
LOGS=$(mktemp -d /tmp/vitrine-cluster-XXXX)
trap 'pkill -f "vitrine-cluster-bench-worker" || true; "$BIN" --warehouse "$WH" run -e "DROP TABLE IF EXISTS main.fashion_demo.phase1_full" >/dev/null 2>&1; rm -rf "$LOGS"' EXIT

# Starts N workers on ports 50100.. and prints their URLs, comma-separated.
start_workers() {
  local n=$1 urls=()
  for i in $(seq 1 "$n"); do
    local port=$((50100 + i))
    # The extra argument names the processes for pkill.
    bash -c "exec -a vitrine-cluster-bench-worker \"$BIN\" --warehouse \"$WH\" --model clip=$CLIP worker --addr 127.0.0.1:$port" \
      >/dev/null 2>"$LOGS/worker-$n-$i.log" &
    urls+=("http://127.0.0.1:$port")
  done
  for i in $(seq 1 "$n"); do
    until grep -q "worker listening" "$LOGS/worker-$n-$i.log" 2>/dev/null; do sleep 0.2; done
  done
  (IFS=,; echo "${urls[*]}")
}

# Runs `vitrine run ARGS…` with or without workers and prints its seconds.
timed() {
  local workers=$1; shift
  local start end
  start=$(date +%s.%N)
  local args=(--warehouse "$WH" --model clip="$CLIP" --model smolvlm="$SMOLVLM")
  if [ -n "$workers" ]; then args+=(--workers "$workers"); fi
  if ! "$BIN" "${args[@]}" run "$@" >/dev/null 2>>"$LOGS/runs.log"; then
    tail -20 "$LOGS/runs.log" >&2
    return 1
  fi
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}

phase1=(-e "CREATE TEMPORARY VIEW phase1_products AS SELECT product_id FROM main.fashion_demo.products ORDER BY product_id LIMIT $PHOTOS"
        -e "CREATE OR REPLACE TABLE main.fashion_demo.product_extracted_attributes AS SELECT * FROM main.fashion_demo.product_extracted_attributes WHERE false"
        -e "SET vitrine.smolvlm.longest_edge = 64"
        "$REPO/sql/01_extract_attributes.sql")
# Keeps the source's phase-1 table for phases 2 and 3: the sample runs on a scratch copy of it.
"$BIN" --warehouse "$WH" run -e "CREATE TABLE main.fashion_demo.phase1_full AS SELECT * FROM main.fashion_demo.product_extracted_attributes" >/dev/null 2>&1

echo "workers,phase,seconds"
for n in 0 1 2 4; do
  urls=""
  if [ "$n" -gt 0 ]; then urls=$(start_workers "$n"); fi
  echo "$n,2,$(timed "$urls" "$REPO/sql/02_join_enriched_attributes.sql")"
  echo "$n,3,$(timed "$urls" "$REPO/sql/03_generate_embeddings.sql")"
  echo "$n,1 ($PHOTOS photos),$(timed "$urls" "${phase1[@]}")"
  "$BIN" --warehouse "$WH" run -e "CREATE OR REPLACE TABLE main.fashion_demo.product_extracted_attributes AS SELECT * FROM main.fashion_demo.phase1_full" >/dev/null 2>&1
  pkill -f "vitrine-cluster-bench-worker" || true
  sleep 1
done
