#!/usr/bin/env bash
# HTTP load benchmark (`make bench-http`): profile reads and customer writes per second, with
# p50/p99 latency, from wrk on loopback, against
#   - bare:       a bare axum + rusqlite server doing the same SQL (host/examples/bare_http.rs),
#   - rapport-0:  `rapport serve` with no policy plugins,
#   - rapport-3:  `rapport serve` with three policy plugins enabled,
# all on the same database file, one after the other in one run, and prints the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-32}
CUSTOMERS=${CUSTOMERS:-20000}
RAPPORT=target/release/rapport
BARE=target/release/examples/bare_http
POLICY=target/plugins/wasm32-wasip2/release/require_contact.wasm

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
for f in "$RAPPORT" "$BARE" "$POLICY"; do
    [ -f "$f" ] || { echo "$f is missing: run \`make bench-http\`, which builds it" >&2; exit 2; }
done

DATA=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT

export RAPPORT_ADMIN_TOKEN=bench-admin
export RAPPORT_LOG=warn
"$RAPPORT" serve --data "$DATA" --listen 127.0.0.1:0 --demo true --demo-customers "$CUSTOMERS" >"$DATA/out" 2>"$DATA/err" &
PIDS+=($!)
until grep -q "shown once" "$DATA/out" 2>/dev/null; do sleep 0.2; done
URL=$(sed -n 's/^rapport listening on //p' "$DATA/out")
export TOKEN=$(sed -n 's/.*shown once: \(.*\))$/\1/p' "$DATA/out")
export CUSTOMERS

cat >"$DATA/read.lua" <<'LUA'
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
local n = tonumber(os.getenv("CUSTOMERS"))
request = function()
  return wrk.format("GET", "/v1/orgs/demo/customers/" .. math.random(1, n))
end
LUA
cat >"$DATA/write.lua" <<'LUA'
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.headers["Content-Type"] = "application/json"
local i = 0
setup = function(thread) thread:set("tag", tostring(math.random(1, 1e9))) end
request = function()
  i = i + 1
  local body = string.format('{"name": "Load %d", "email": "load-%s-%d@example.com", "branch": "BKK"}', i, tag, i)
  return wrk.format("POST", "/v1/orgs/demo/customers", nil, body)
end
LUA

# One wrk run: prints "requests/s p50 p99 errors" (non-2xx and socket errors).
load() {
    local url=$1 script=$2
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$script" "$url" >"$DATA/wrk.txt" 2>&1
    python3 bench/wrk_summary.py "$DATA/wrk.txt"
}

declare -A R
run_all() {
    local name=$1 base=$2
    R[$name-read]=$(load "$base" "$DATA/read.lua")
    R[$name-write]=$(load "$base" "$DATA/write.lua")
}

# The bare server on the same file (SQLite in WAL mode allows both processes).
"$BARE" "$DATA/rapport.db" 127.0.0.1:0 >"$DATA/bare" 2>&1 &
PIDS+=($!)
until grep -q "listening" "$DATA/bare" 2>/dev/null; do sleep 0.1; done
BARE_URL=$(sed -n 's/^listening on //p' "$DATA/bare")
run_all bare "$BARE_URL"

run_all rapport-0 "$URL"

for p in policy-a policy-b policy-c; do
    curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/wasm" \
        --data-binary @"$POLICY" "$URL/v1/orgs/demo/plugins?name=$p"
    # Judging only: no welcome tag, so a create is one write (the default config adds a tag,
    # a follow-up write that all three policies judge again).
    curl -sf -o /dev/null -X PUT -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
        -d '{"welcome_tag": ""}' "$URL/v1/orgs/demo/plugins/$p/config"
    curl -sf -o /dev/null -X POST -H "Authorization: Bearer $TOKEN" "$URL/v1/orgs/demo/plugins/$p/enable"
done
run_all rapport-3 "$URL"

echo
echo "HTTP load: wrk -t2 -c$CONNECTIONS -d$DURATION on loopback, $CUSTOMERS demo customers, $(nproc) cores"
echo
echo "| server | route | requests/s | p50 ms | p99 ms | errors |"
echo "|---|---|---:|---:|---:|---:|"
for name in bare rapport-0 rapport-3; do
    for route in read write; do
        read -r rps p50 p99 bad <<<"${R[$name-$route]}"
        label=$([ "$route" = read ] && echo "GET profile" || echo "POST customer")
        echo "| $name | $label | $rps | $p50 | $p99 | $bad |"
    done
done
echo
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
for route in read write; do
    read -r bare _ <<<"${R[bare-$route]}"
    read -r r0 _ <<<"${R[rapport-0-$route]}"
    read -r r3 _ <<<"${R[rapport-3-$route]}"
    echo "$route: rapport-0 / bare = $(ratio "$r0" "$bare"), rapport-3 / bare = $(ratio "$r3" "$bare"), rapport-3 / rapport-0 = $(ratio "$r3" "$r0")"
done
