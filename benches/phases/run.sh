#!/usr/bin/env bash
# Phase SQL at scale: phases 0, the phase-1 stand-in and 2 on a generated catalog of N products
# (no photos), one script per `vitrine run` process, each timed whole with its peak memory, its
# statements timed from system.query.history; then the same steps on DuckDB
# (`duckdb_phases.py`, a durable database file), one process per step.
#
#   benches/phases/run.sh N [WORKDIR]      e.g. 44424, 1000000, 10000000
#
# The catalog is generated once into WORKDIR (default /tmp/phases-N) and kept: a later run
# replaces the tables (CREATE OR REPLACE), as a user re-running the scripts does.
# VITRINE names the binary (default: the release build); MEMORY_LIMIT (e.g. 2G) runs every
# vitrine script after `SET datafusion.runtime.memory_limit`. Needs GNU time and
# `pip install duckdb`.
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:?usage: run.sh N [WORKDIR]}"
work="${2:-/tmp/phases-$n}"
vitrine="${VITRINE:-${CARGO_TARGET_DIR:-$HOME/.cache/vitrine-target}/release/vitrine}"
limit=()
[ -z "${MEMORY_LIMIT:-}" ] || limit=(-e "SET datafusion.runtime.memory_limit = '$MEMORY_LIMIT'")
mkdir -p "$work"
wh="$work/warehouse"

measure() { # label, command…: wall seconds and peak resident MiB of the whole process
  local label=$1
  shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/$label.out" 2>"$work/$label.err" ||
    { cat "$work/$label.err" >&2; exit 1; }
  read -r wall kib <"$work/time"
  printf '| %s | %s s | %d MiB |\n' "$label" "$wall" $((kib / 1024))
}

raw="$wh/Volumes/main/fashion_demo/raw_data"
[ -f "$raw/ground_truth.csv" ] ||
  "$vitrine" --warehouse "$wh" demo-data --products "$n" --seed 42 --no-images >/dev/null
echo "== $n products, $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
echo "| step | wall | peak memory |"
echo "|---|---:|---:|"
measure "vitrine phase 0" "$vitrine" --warehouse "$wh" run "${limit[@]}" sql/00_load_products.sql
measure "vitrine phase 1 stand-in" "$vitrine" --warehouse "$wh" run "${limit[@]}" sql/demo/attributes_from_ground_truth.sql
measure "vitrine phase 2" "$vitrine" --warehouse "$wh" run "${limit[@]}" sql/02_join_enriched_attributes.sql
db="$work/duck.db"
measure "duckdb phase 0" python3 benches/phases/duckdb_phases.py "$raw" "$db" load
measure "duckdb phase 1 stand-in" python3 benches/phases/duckdb_phases.py "$raw" "$db" extract
measure "duckdb phase 2" python3 benches/phases/duckdb_phases.py "$raw" "$db" phase2

echo
echo "Vitrine's statements (system.query.history, ms):"
"$vitrine" --warehouse "$wh" run --format csv -e \
  "SELECT script_file, script_line, total_duration_ms, substr(regexp_replace(statement_text, '\\\\s+', ' '), 1, 60) AS statement
   FROM system.query.history WHERE script_file IS NOT NULL AND start_time >= TIMESTAMP '$started'
   ORDER BY start_time" | column -s, -t
echo
echo "DuckDB's statements:"
cat "$work/duckdb phase 0.out" "$work/duckdb phase 1 stand-in.out" "$work/duckdb phase 2.out"
