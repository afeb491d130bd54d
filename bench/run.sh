#!/usr/bin/env bash
# make bench: throughput and memory of the cached GET /chatroom against a do-nothing FastCGI handler behind
# the same lighttpd configuration, RSS of the FastCGI processes before and after 100k requests, and the worker
# benchmark (bench/worker.sh) when present. Numbers go to stdout and to bench/results.txt.
# Knobs: BENCH_SECONDS (10), BENCH_CONNECTIONS (32), BENCH_RSS_REQUESTS (100000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-32}
RSS_REQS=${BENCH_RSS_REQUESTS:-100000}
OUT=$ROOT/bench/results.txt

command -v wrk >/dev/null || { echo "bench: wrk is missing (make deps)" >&2; exit 1; }
STACK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gb-bench.XXXXXX")
chmod 755 "$STACK_DIR"
export STACK_DIR STACK_MODE=test BUILD_DIR=build LOG_LEVEL=${LOG_LEVEL:-info}
# shellcheck source=../tests/stack.sh
source tests/stack.sh
cleanup() { stack_stop >/dev/null 2>&1 || true; rm -rf "$STACK_DIR"; }
trap cleanup EXIT INT TERM

# A bin directory where "chatroom" is the do-nothing handler, the other programs the real ones.
NOOP_BUILD=$STACK_DIR/noop-build
mkdir -p "$NOOP_BUILD/cgi-bin"
for p in auth subscribe webhook; do cp "build/cgi-bin/$p" "$NOOP_BUILD/cgi-bin/"; done
cp build/bench/noop "$NOOP_BUILD/cgi-bin/chatroom"

stack_services_start >/dev/null

wrk_rate() { # URL [header]: prints "requests/s p99"
    local out
    out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --latency ${2:+-H "$2"} "$1")
    awk '/Requests\/sec/ {r=$2} /^ +99%/ {p=$2} END {printf "%.0f %s\n", r, p}' <<<"$out"
}
fcgi_rss_kb() { # total and max RSS (KiB) of the running chatroom FastCGI processes
    local pids
    pids=$(pgrep -f "$1/cgi-bin/chatroom" || true)
    [[ -n $pids ]] || { echo "0 0"; return; }
    ps -o rss= -p "$(tr '\n' ',' <<<"$pids" | sed 's/,$//')" | awk '{t+=$1; if ($1>m) m=$1} END {print t, m}'
}

# 1. Baseline: the do-nothing handler on /chatroom.
BUILD_DIR=$NOOP_BUILD stack_web_start >/dev/null
read -r noop_rate noop_p99 < <(wrk_rate "$BASE_URL/chatroom")
stack_web_stop >/dev/null

# 2. The real program: a user with 5 chatrooms, list cached.
BUILD_DIR=build stack_web_start >/dev/null
m=+1999$(date +%s%N | tail -c 9)
curl -sf -XPOST "$BASE_URL/auth/signup" -d "{\"mobile\":\"$m\"}" >/dev/null
otp=$(curl -sf -XPOST "$BASE_URL/auth/send-otp" -d "{\"mobile\":\"$m\"}" | jq -r .otp)
token=$(curl -sf -XPOST "$BASE_URL/auth/verify-otp" -d "{\"mobile\":\"$m\",\"otp\":\"$otp\"}" | jq -r .access_token)
for i in 1 2 3 4 5; do
    curl -sf -XPOST "$BASE_URL/chatroom" -H "Authorization: Bearer $token" -d "{\"title\":\"Room $i\"}" >/dev/null
done
curl -sf "$BASE_URL/chatroom" -H "Authorization: Bearer $token" >/dev/null
hit=$(curl -sfi "$BASE_URL/chatroom" -H "Authorization: Bearer $token" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache" {print $2}')
[[ $hit == HIT ]] || { echo "bench: the list is not served from the cache (X-Cache: $hit)" >&2; exit 1; }
bin=$(cat "$STACK_DIR/web.bin")
read -r rss0_total rss0_max < <(fcgi_rss_kb "${bin%/cgi-bin}")
read -r app_rate app_p99 < <(wrk_rate "$BASE_URL/chatroom" "Authorization: Bearer $token")
# 3. Memory: RSS after at least RSS_REQS more cached requests (wrk above already sent many).
served=$((app_rate * SECS))
while ((served < RSS_REQS)); do
    read -r r _ < <(wrk_rate "$BASE_URL/chatroom" "Authorization: Bearer $token")
    served=$((served + r * SECS))
done
read -r rss1_total rss1_max < <(fcgi_rss_kb "${bin%/cgi-bin}")
stack_web_stop >/dev/null

ratio=$(awk -v a="$app_rate" -v n="$noop_rate" 'BEGIN {printf "%.0f", n ? 100 * a / n : 0}')
{
    echo "# make bench, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, wrk -t2 -c$CONNS -d${SECS}s, lighttpd ($(lighttpd -v 2>&1 | head -1 | awk '{print $1}')), 2 FastCGI processes per program"
    echo "do-nothing FastCGI handler:   $noop_rate req/s  p99 $noop_p99"
    echo "cached GET /chatroom:         $app_rate req/s  p99 $app_p99  ($ratio% of the do-nothing rate)"
    echo "chatroom FastCGI RSS:         max $rss0_max KiB per process before, $rss1_max KiB after ~$served requests"
} | tee "$OUT"
stack_stop >/dev/null 2>&1 || true

if [[ -x bench/worker.sh ]]; then
    echo "# worker" | tee -a "$OUT"
    bench/worker.sh 2>&1 | tee -a "$OUT"
fi
