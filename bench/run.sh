#!/usr/bin/env bash
# make bench: throughput and memory of the cached GET /chatroom against two baselines behind the same lighttpd
# configuration (a do-nothing FastCGI handler, and the same plus one Redis GET per request), the memory of the
# chatroom FastCGI processes (RSS, PSS and private, before and after 100k requests), and the worker benchmark
# (bench/worker.sh). Numbers go to stdout and to bench/results.txt.
# Knobs: BENCH_SECONDS (10), BENCH_CONNECTIONS (32), BENCH_RSS_REQUESTS (100000), BENCH_ROUNDS (3: each rate
# is the median of that many alternating runs, since a 2-core machine is noisy).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-32}
RSS_REQS=${BENCH_RSS_REQUESTS:-100000}
ROUNDS=${BENCH_ROUNDS:-3}
OUT=$ROOT/bench/results.txt

command -v wrk >/dev/null || { echo "bench: wrk is missing (make deps)" >&2; exit 1; }
STACK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gb-bench.XXXXXX")
chmod 755 "$STACK_DIR"
export STACK_DIR STACK_MODE=test BUILD_DIR=build LOG_LEVEL=${LOG_LEVEL:-info}
# shellcheck source=../tests/stack.sh
source tests/stack.sh
cleanup() { stack_stop >/dev/null 2>&1 || true; rm -rf "$STACK_DIR"; }
trap cleanup EXIT INT TERM

# Bin directories where "chatroom" is a baseline handler and the other programs are the real ones.
baseline_dir() { # NAME BINARY
    local d=$STACK_DIR/$1-build
    mkdir -p "$d/cgi-bin"
    for p in auth subscribe webhook stream; do cp "build/cgi-bin/$p" "$d/cgi-bin/"; done
    cp "$2" "$d/cgi-bin/chatroom"
    echo "$d"
}
NOOP_BUILD=$(baseline_dir noop build/bench/noop)
NOOP_REDIS_BUILD=$(baseline_dir noop-redis build/bench/noop_redis)

stack_services_start >/dev/null

wrk_rate() { # URL [header]: prints "requests/s p99-in-ms"
    local out
    out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --latency ${2:+-H "$2"} "$1")
    awk '/Requests\/sec/ {r=$2}
        /^ +99%/ {p=$2; f=1; if (p ~ /us$/) f=0.001; else if (p ~ /ms$/) f=1; else if (p ~ /s$/) f=1000
                  sub(/[a-z]+$/, "", p); p*=f}
        END {printf "%.0f %.2f\n", r, p}' <<<"$out"
}
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
# Memory of the running chatroom FastCGI processes: max RSS, PSS and private (Private_Clean+Private_Dirty),
# KiB, over the processes.
fcgi_mem_kb() {
    local pid rss pss priv mr=0 mp=0 mv=0
    for pid in $(pgrep -f "$1/cgi-bin/chatroom" || true); do
        read -r rss pss priv < <(awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} /^Private_(Clean|Dirty):/ {v+=$2}
            END {print r+0, p+0, v+0}' "/proc/$pid/smaps_rollup")
        ((rss > mr)) && mr=$rss
        ((pss > mp)) && mp=$pss
        ((priv > mv)) && mv=$priv
    done
    echo "$mr $mp $mv"
}

# A user with 5 chatrooms whose list is cached (the web server must be up). Prints the token.
make_user() {
    local m otp token hit i
    m=+1999$(date +%s%N | tail -c 9)
    curl -sf -XPOST "$BASE_URL/auth/signup" -d "{\"mobile\":\"$m\"}" >/dev/null
    otp=$(curl -sf -XPOST "$BASE_URL/auth/send-otp" -d "{\"mobile\":\"$m\"}" | jq -r .otp)
    token=$(curl -sf -XPOST "$BASE_URL/auth/verify-otp" -d "{\"mobile\":\"$m\",\"otp\":\"$otp\"}" | jq -r .access_token)
    for i in 1 2 3 4 5; do
        curl -sf -XPOST "$BASE_URL/chatroom" -H "Authorization: Bearer $token" -d "{\"title\":\"Room $i\"}" >/dev/null
    done
    curl -sf "$BASE_URL/chatroom" -H "Authorization: Bearer $token" >/dev/null
    hit=$(curl -sfi "$BASE_URL/chatroom" -H "Authorization: Bearer $token" | tr -d '\r' |
        awk -F': ' 'tolower($1)=="x-cache" {print $2}')
    [[ $hit == HIT ]] || { echo "bench: the list is not served from the cache (X-Cache: $hit)" >&2; return 1; }
    echo "$token"
}

# 1. The three handlers in alternating rounds (noise on a small machine hits all of them alike).
declare -A rates=() p99s=()
token=''
for ((round = 1; round <= ROUNDS; round++)); do
    for kind in noop noop_redis app; do
        case $kind in
        noop) bd=$NOOP_BUILD ;;
        noop_redis) bd=$NOOP_REDIS_BUILD ;;
        app) bd=build ;;
        esac
        BUILD_DIR=$bd stack_web_start >/dev/null
        if [[ $kind == app ]]; then
            [[ -n $token ]] || token=$(make_user)
            read -r r p < <(wrk_rate "$BASE_URL/chatroom" "Authorization: Bearer $token")
        else
            read -r r p < <(wrk_rate "$BASE_URL/chatroom")
        fi
        rates[$kind]+="$r "
        p99s[$kind]+="$p "
        stack_web_stop >/dev/null
    done
done
rate_of() { tr ' ' '\n' <<<"${rates[$1]}" | grep . | median; }
p99_of() { tr ' ' '\n' <<<"${p99s[$1]}" | grep . | median; }
noop_rate=$(rate_of noop) noop_redis_rate=$(rate_of noop_redis) app_rate=$(rate_of app)

# 2. Memory: the real program after a short warm-up (every code path of the cached read has run in each
# process), then after at least RSS_REQS more cached requests.
BUILD_DIR=build stack_web_start >/dev/null
wrk -t2 -c"$CONNS" -d1s -H "Authorization: Bearer $token" "$BASE_URL/chatroom" >/dev/null
bin=$(cat "$STACK_DIR/web.bin")
read -r rss0 pss0 priv0 < <(fcgi_mem_kb "${bin%/cgi-bin}")
served=0
while ((served < RSS_REQS)); do
    read -r r _ < <(wrk_rate "$BASE_URL/chatroom" "Authorization: Bearer $token")
    served=$((served + r * SECS))
done
read -r rss1 pss1 priv1 < <(fcgi_mem_kb "${bin%/cgi-bin}")
stack_web_stop >/dev/null
# The same for the do-nothing handler: what libfcgi and libc alone cost.
BUILD_DIR=$NOOP_BUILD stack_web_start >/dev/null
curl -sf "$BASE_URL/chatroom" >/dev/null
read -r nrss npss npriv < <(fcgi_mem_kb "$NOOP_BUILD")
stack_web_stop >/dev/null

pct() { awk -v a="$1" -v n="$2" 'BEGIN {printf "%.0f", n ? 100 * a / n : 0}'; }
{
    echo "# make bench, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, wrk -t2 -c$CONNS -d${SECS}s (median of $ROUNDS), lighttpd ($(lighttpd -v 2>&1 | head -1 | awk '{print $1}')), 2 FastCGI processes per program"
    echo "do-nothing FastCGI handler:     $noop_rate req/s  p99 $(p99_of noop)ms"
    echo "do-nothing + one Redis GET:     $noop_redis_rate req/s  p99 $(p99_of noop_redis)ms  ($(pct "$noop_redis_rate" "$noop_rate")% of the do-nothing rate)"
    echo "cached GET /chatroom:           $app_rate req/s  p99 $(p99_of app)ms  ($(pct "$app_rate" "$noop_rate")% of the do-nothing rate, $(pct "$app_rate" "$noop_redis_rate")% of do-nothing + Redis GET)"
    echo "chatroom FastCGI process:       RSS $rss0 KiB, PSS $pss0 KiB, private $priv0 KiB after a 1 s warm-up; after ~$served more requests RSS $rss1, PSS $pss1, private $priv1 KiB"
    echo "do-nothing FastCGI process:     RSS $nrss KiB, PSS $npss KiB, private $npriv KiB"
} | tee "$OUT"
stack_stop >/dev/null 2>&1 || true

if [[ -x bench/worker.sh ]]; then
    echo "# worker" | tee -a "$OUT"
    bench/worker.sh 2>&1 | grep -E '^(worker:| +\(|ok:|FAIL)' | tee -a "$OUT"
fi

if [[ -x bench/stream.sh ]]; then
    echo "# streams" | tee -a "$OUT"
    bench/stream.sh 2>&1 | grep -E '^(stream:|ok:|FAIL)' | tee -a "$OUT"
fi
