#!/usr/bin/env bash
# The search service under load on loopback: `vitrine serve` on a warehouse where the main job
# ran (demo.sh), and wrk posting vector searches (query vectors given: 200 of the enriched hybrid
# index's own vectors, cycled), text searches (the catalog's 200 commonest colour + article type
# phrases, cached after their first use) or fresh-text searches (20,000 distinct product names,
# so that nearly every query is a model call).
#
#   benches/serve/load.sh WAREHOUSE [vector|text|fresh-text] [SECONDS] [CONNECTIONS]
#
# VITRINE_CLIP_MODEL picks the CLIP that embeds query texts (default: the demo's), SERVE_CONFIG a
# config file for the service (e.g. other indexes). Prints wrk's report and the events the
# service logged against the searches wrk counted. Needs wrk (Debian: apt-get install wrk) and a
# release build of vitrine.
set -euo pipefail
cd "$(dirname "$0")/../.."
warehouse="${1:?usage: load.sh WAREHOUSE [vector|text|fresh-text] [SECONDS] [CONNECTIONS]}"
kind="${2:-vector}"
seconds="${3:-20}"
connections="${4:-16}"
vitrine="${VITRINE:-${CARGO_TARGET_DIR:-$HOME/.cache/vitrine-target}/release/vitrine}"
models=(--warehouse "$warehouse" --model "clip=${VITRINE_CLIP_MODEL:-main.fashion_demo.demo_clip}")
work="$(mktemp -d)"
trap 'kill "${serve_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

# The request bodies, one JSON document per line, into a Lua table wrk cycles through.
if [ "$kind" = vector ]; then
  "$vitrine" --warehouse "$warehouse" run --format jsonl -e \
    "SELECT to_json(named_struct('vector', hybrid_embedding_enriched, 'user_id', concat('user-', CAST(product_id % 500 AS STRING)), 'limit', 10)) AS body
     FROM main.fashion_demo.product_embeddings_multimodal_v2
     WHERE hybrid_embedding_enriched IS NOT NULL ORDER BY product_id LIMIT 200" >"$work/bodies.jsonl"
  route=/api/v1/search/vector
elif [ "$kind" = fresh-text ]; then
  "$vitrine" --warehouse "$warehouse" run --format jsonl -e \
    "SELECT to_json(named_struct('query', product_display_name, 'user_id', concat('user-', CAST(MIN(product_id) % 500 AS STRING)), 'limit', 10)) AS body
     FROM main.fashion_demo.products GROUP BY product_display_name ORDER BY MIN(product_id) LIMIT 20000" >"$work/bodies.jsonl"
  route=/api/v1/search/text
else
  "$vitrine" --warehouse "$warehouse" run --format jsonl -e \
    "SELECT to_json(named_struct('query', concat(base_color, ' ', article_type), 'user_id', concat('user-', CAST(MIN(product_id) % 500 AS STRING)), 'limit', 10)) AS body
     FROM main.fashion_demo.products GROUP BY base_color, article_type ORDER BY COUNT(*) DESC LIMIT 200" >"$work/bodies.jsonl"
  route=/api/v1/search/text
fi
python3 - "$work/bodies.jsonl" "$work/bodies.lua" "$route" <<'PY'
import json, sys
bodies = [json.loads(line)["body"] for line in open(sys.argv[1]) if line.strip()]
with open(sys.argv[2], "w") as out:
    out.write("local bodies = {\n")
    for body in bodies:
        out.write("  [==[" + body + "]==],\n")
    out.write("}\nlocal i = 0\nwrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/json'\n")
    out.write("request = function()\n  i = i % #bodies + 1\n  return wrk.format(nil, 'ROUTE', nil, bodies[i])\nend\n".replace("ROUTE", sys.argv[3]))
    out.write("done = function(summary, latency, requests)\n")
    out.write("  io.write(string.format('searches %d, errors %d (status %d, timeout %d)\\n', summary.requests, summary.errors.status + summary.errors.timeout + summary.errors.connect + summary.errors.read + summary.errors.write, summary.errors.status, summary.errors.timeout))\nend\n")
PY

"$vitrine" "${models[@]}" serve --addr 127.0.0.1:0 ${SERVE_CONFIG:+--config "$SERVE_CONFIG"} 2>"$work/serve.log" &
serve_pid=$!
url=""
for _ in $(seq 600); do
  url=$(sed -n 's/^listening on //p' "$work/serve.log" | head -1)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { cat "$work/serve.log" >&2; exit 1; }
before=$("$vitrine" --warehouse "$warehouse" run --format csv -e "SELECT COUNT(*) FROM main.fashion_demo.search_events" | tail -1)
# Warm-up, then the measured run.
answered() { sed -n 's/^searches \([0-9]*\), errors 0 .*/\1/p'; }
warm=$(wrk -t 2 -c "$connections" -d 3s -s "$work/bodies.lua" "$url" | answered)
# The query embedder's model calls (texts, seconds) as the service counts them.
embedding() {
  curl -s "$url/metrics" | sed -n 's/^vitrine_serve_query_embedding_\(batch_size\|call_duration_seconds\)_\(sum\|count\) //p' | tr '\n' ' '
}
calls_before=$(embedding)
echo "== $kind searches, $connections connections, ${seconds}s, $(nproc) cores"
wrk -t 2 -c "$connections" -d "${seconds}s" --latency -s "$work/bodies.lua" "$url" | tee "$work/run.txt"
run=$(answered <"$work/run.txt")
calls_after=$(embedding)
python3 - "$seconds" $calls_before $calls_after <<'PY'
import sys
seconds = float(sys.argv[1])
values = [float(v) for v in sys.argv[2:]]
if len(values) == 8:
    texts, calls, busy, _ = (a - b for a, b in zip(values[4:], values[:4]))
    if calls:
        print(f"model calls in the run: {calls:.0f}, {texts / calls:.1f} texts each, "
              f"{busy / calls * 1000:.0f} ms each, {busy / seconds:.2f} calls running on average")
PY
kill -TERM "$serve_pid"
wait "$serve_pid" || true
after=$("$vitrine" --warehouse "$warehouse" run --format csv -e "SELECT COUNT(*) FROM main.fashion_demo.search_events" | tail -1)
echo "searches answered without error (warm-up + run): $((${warm:-0} + ${run:-0})); rows added to search_events: $((after - before))"
grep -E "metrics|committed" "$work/serve.log" || true
