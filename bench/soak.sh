#!/usr/bin/env bash
# Bounded soak (`make soak`): mixed reads, writes (through the demo's policy plugins and its
# scorer), reports and score reads against `rapport serve --demo` on loopback, for MINUTES
# one-minute slices (default 10), then it stops by itself. After each slice it records the
# server's resident memory, open file descriptors and database size beside wrk's throughput,
# p50/p99 and error counts, and at the end says whether memory stayed flat and p99 stable.
# Exit status 1 when a slice saw an error (non-2xx, socket error) or memory kept growing.
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${MINUTES:-10}
SLICE=${SLICE:-60}
CONNECTIONS=${CONNECTIONS:-16}
CUSTOMERS=${CUSTOMERS:-20000}
RAPPORT=target/release/rapport
PLUGINS=target/demo-plugins

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
[ -x "$RAPPORT" ] || { echo "$RAPPORT is missing: run \`make soak\`, which builds it" >&2; exit 2; }
[ -d "$PLUGINS" ] || { echo "$PLUGINS is missing: run \`make soak\`, which builds them" >&2; exit 2; }

DATA=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT

export RAPPORT_ADMIN_TOKEN=soak-admin
export RAPPORT_LOG=warn
"$RAPPORT" serve --data "$DATA/db" --listen 127.0.0.1:0 --demo true --demo-customers "$CUSTOMERS" \
    --demo-plugins "$PLUGINS" >"$DATA/out" 2>"$DATA/err" &
PID=$!
until grep -q "shown once" "$DATA/out" 2>/dev/null; do
    kill -0 "$PID" 2>/dev/null || { cat "$DATA/err" >&2; exit 1; }
    sleep 0.2
done
URL=$(sed -n 's/^rapport listening on //p' "$DATA/out")
export TOKEN=$(sed -n 's/.*shown once: \(.*\))$/\1/p' "$DATA/out")
export CUSTOMERS

# The mix, per request: 35% profile, 15% filtered list, 10% scores, 15% new customer (policies),
# 10% replacement of a customer's record (policies), 13% purchase (policies, then the scorer
# rescoring the buyer), 2% a report run (a reporter plugin over the whole organization).
cat >"$DATA/mix.lua" <<'LUA'
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.headers["Content-Type"] = "application/json"
local n = tonumber(os.getenv("CUSTOMERS"))
local i = 0
local threads = {}
setup = function(thread)
  thread:set("tag", tostring(math.random(1, 1e9)))
  table.insert(threads, thread)
end
-- Failed answers by status, with one body of each, printed at the end of the slice.
failed, sample = {}, {}
response = function(status, headers, body)
  if status >= 300 then
    failed[status] = (failed[status] or 0) + 1
    if sample[status] == nil then sample[status] = string.sub(body, 1, 200) end
  end
end
done = function(summary, latency, requests)
  for _, t in ipairs(threads) do
    local f, s = t:get("failed") or {}, t:get("sample") or {}
    for status, count in pairs(f) do
      io.write(string.format("FAILED %d x%d %s\n", status, count, s[status]))
    end
  end
end
request = function()
  i = i + 1
  local r = math.random(1, 100)
  local id = math.random(1, n)
  if r <= 35 then
    return wrk.format("GET", "/v1/orgs/demo/customers/" .. id)
  elseif r <= 50 then
    return wrk.format("GET", "/v1/orgs/demo/customers?limit=20&filter=" .. "branch%20%3D%20%22bkk-01%22")
  elseif r <= 60 then
    return wrk.format("GET", "/v1/orgs/demo/customers/" .. id .. "/scores")
  elseif r <= 75 then
    local body = string.format('{"name": "Soak %d", "email": "soak-%s-%d@example.com"}', i, tag, i)
    return wrk.format("POST", "/v1/orgs/demo/customers", nil, body)
  elseif r <= 85 then
    local body = string.format('{"name": "Soak %d", "email": "upd-%s-%d@example.com", "attributes": {"soak": %d}}', i, tag, i, i)
    return wrk.format("PUT", "/v1/orgs/demo/customers/" .. id, nil, body)
  elseif r <= 98 then
    local body = string.format('{"customer": %d, "kind": "purchase", "channel": "web", "occurred_at": 1763000000000, ' ..
      '"amount": {"amount_minor": %d, "currency": "THB"}}', id, 100 + i % 5000)
    return wrk.format("POST", "/v1/orgs/demo/interactions", nil, body)
  else
    return wrk.format("POST", "/v1/orgs/demo/reports/customers-by-branch/run", nil, "{}")
  end
end
LUA

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$PID/status"; }
fds() { ls "/proc/$PID/fd" | wc -l; }
db_mib() { du -sm "$DATA/db" | cut -f1; }
# SQLite's own allocations (page caches up to cache_size per pooled connection) from /metrics.
sqlite_mib() { curl -s "$URL/metrics" | awk '/^rapport_sqlite_memory_bytes / {printf "%d", $2 / 1048576}'; }

echo "soak: ${MINUTES} × ${SLICE}s slices, ${CONNECTIONS} connections, ${CUSTOMERS} demo customers, $URL"
printf '%-6s %10s %9s %9s %8s %9s %11s %11s %6s %7s\n' slice "req/s" "p50 ms" "p99 ms" errors "RSS MiB" "SQLite MiB" "other MiB" fds "db MiB"
: >"$DATA/slices"
for s in $(seq 1 "$MINUTES"); do
    wrk -t2 -c"$CONNECTIONS" -d"${SLICE}s" --timeout 10s --latency -s "$DATA/mix.lua" "$URL" >"$DATA/wrk.txt" 2>&1
    kill -0 "$PID" 2>/dev/null || { echo "the server died:" >&2; tail -20 "$DATA/err" >&2; exit 1; }
    line=$(python3 bench/wrk_summary.py "$DATA/wrk.txt") || { echo "cannot read wrk's output:" >&2; cat "$DATA/wrk.txt" >&2; exit 1; }
    read -r rps p50 p99 errors <<<"$line"
    rss=$(( $(rss_kib) / 1024 ))
    sqlite=$(sqlite_mib)
    other=$(( rss - sqlite ))
    printf '%-6s %10s %9s %9s %8s %9s %11s %11s %6s %7s\n' "$s" "$rps" "$p50" "$p99" "$errors" "$rss" "$sqlite" "$other" "$(fds)" "$(db_mib)"
    grep '^FAILED' "$DATA/wrk.txt" | sed 's/^/       /' || true
    echo "$s $rps $p50 $p99 $errors $rss $sqlite $other" >>"$DATA/slices"
done

# The verdict. SQLite's page caches fill as the database grows (up to cache_size per pooled
# connection: a bound, not a leak), so growth is judged on the rest of the process's memory (RSS
# minus SQLite's allocations). The first slice warms the instance pool and compiled code, so
# memory is compared from the second slice on: flat means no later slice is more than 10% (or
# 16 MiB) above the second.
python3 - "$DATA/slices" <<'PY'
import sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
errors = sum(r[4] for r in rows)
rss = [r[5] for r in rows]
sqlite = [r[6] for r in rows]
other = [r[7] for r in rows]
p99 = [r[3] for r in rows]
base = other[1] if len(other) > 1 else other[0]
allowance = max(16, base * 0.10)
flat = all(m <= base + allowance for m in other[1:])
steady = p99[1:] or p99
print(f"requests: {sum(r[1] for r in rows) / len(rows):.0f}/s on average; errors: {errors:.0f}")
print(f"RSS: {rss[0]:.0f} MiB after slice 1, {rss[-1]:.0f} at the end, of which SQLite's caches "
      f"{sqlite[0]:.0f} → {sqlite[-1]:.0f} MiB")
print(f"memory besides SQLite's: {other[0]:.0f} MiB after slice 1, {base:.0f} after slice 2, {other[-1]:.0f} at the end, "
      f"max {max(other[1:] or other):.0f} (allowance {allowance:.0f} MiB): {'flat' if flat else 'GROWING'}")
print(f"p99 after warm-up: min {min(steady):.1f} ms, median {sorted(steady)[len(steady)//2]:.1f} ms, max {max(steady):.1f} ms "
      f"(max/median {max(steady)/sorted(steady)[len(steady)//2]:.2f}×)")
sys.exit(0 if flat and errors == 0 else 1)
PY
