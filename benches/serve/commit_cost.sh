#!/usr/bin/env bash
# What one event commit of `vitrine serve` costs as search_events grows, with and without the
# B-tree index on event_id the service keeps: a table of ROWS searches (the Step 10 columns),
# then REPEAT upserts of 100 searches keyed on event_id (half new, half already there), as the
# service's commit writes them; the statements' own durations come from system.query.history.
#
#   benches/serve/commit_cost.sh [ROWS] [REPEAT]
#
# Needs a release build of vitrine ($VITRINE, default the cargo target's).
set -euo pipefail
cd "$(dirname "$0")/../.."
rows="${1:-1000000}"
repeat="${2:-10}"
vitrine="${VITRINE:-${CARGO_TARGET_DIR:-$HOME/.cache/vitrine-target}/release/vitrine}"
warehouse="$(mktemp -d)"
trap 'rm -rf "$warehouse"' EXIT

# A search row per id: what the service's commit writes.
search_rows() {
  echo "SELECT concat('search-', CAST(value AS STRING)) AS event_id,
          CAST(TIMESTAMP '2026-12-01 00:00:00' AS TIMESTAMP) AS timestamp,
          concat('user-', CAST(value % 500 AS STRING)) AS user_id, 'red dress' AS query,
          CASE WHEN value % 2 = 0 THEN 'enriched' ELSE 'baseline' END AS variant,
          array(1, 2, 3, 4, 5, 6, 7, 8, 9, 10) AS results_shown, array(3) AS clicked_product_ids,
          CAST(array() AS ARRAY<INT>) AS added_to_cart, CAST(array() AS ARRAY<INT>) AS purchased,
          CAST(1.5 AS FLOAT) AS time_to_first_click
   FROM range($1, $2)"
}

upserts() {
  local label="$1" i first
  for i in $(seq "$repeat"); do
    # 50 searches already in the table (clicks arrived on the last commit's) and 50 new ones.
    first=$((rows - 50 + (i - 1) * 50))
    echo "MERGE INTO main.bench.search_events AS t USING ($(search_rows "$first" "$((first + 100))")) AS s
          ON t.event_id = s.event_id WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT * /* $label */;"
  done
}

for label in without_index with_index; do
  {
    echo "CREATE SCHEMA IF NOT EXISTS main.bench;"
    echo "CREATE OR REPLACE TABLE main.bench.search_events AS $(search_rows 0 "$rows");"
    if [ "$label" = with_index ]; then
      echo "CREATE INDEX search_events_event_id ON main.bench.search_events (event_id) USING BTREE;"
    fi
    upserts "$label"
  } >"$warehouse/$label.sql"
  "$vitrine" --warehouse "$warehouse" run "$warehouse/$label.sql" >/dev/null
done

"$vitrine" --warehouse "$warehouse" run -e "
SELECT CASE WHEN statement_text LIKE '%with_index%' THEN 'with index' ELSE 'without index' END AS events_table,
       COUNT(*) AS commits,
       ROUND(percentile_cont(0.5) WITHIN GROUP (ORDER BY total_duration_ms), 1) AS p50_ms,
       ROUND(MAX(total_duration_ms), 1) AS max_ms
FROM system.query.history
WHERE statement_type = 'MERGE' AND execution_status = 'FINISHED'
GROUP BY 1 ORDER BY 1 DESC"
