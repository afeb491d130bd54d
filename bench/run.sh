#!/usr/bin/env bash
# make bench: in one run, behind the same web server, for each server of BENCH_SERVERS (lighttpd, nginx):
#   do-nothing      a do-nothing FastCGI handler (bench/noop.c) in place of the chatroom program: the ceiling;
#                   it ends each request as the app does (bench/fcgi_finish.h)
#   noop-linger     the same handler with libfcgi's own lingering close, for comparison
#   floor           the do-nothing handler plus one Redis GET per request (bench/noop_redis.c): what any read
#                   that checks shared state (a revocation, a cached copy) in Redis pays at the least
#   list            cached GET /chatroom (X-Cache: HIT), one user (no wrk script: as light a client as do-nothing's)
#   me              GET /user/me (a cached, versioned copy: lib/account.h)
#   post            POST /chatroom/{id}/message as pro users, durable (fsync and synchronous_commit on, as
#                   `make run` serves it: STACK_PG_DURABLE=1), BENCH_USERS users spread over the connections
#   post-key        the same, each post with an Idempotency-Key of its own (as the web client sends)
#   mixed           80 % cached GET /chatroom, 20 % posts, same users
# each as requests/s, its ratio to the do-nothing rate, p50/p99 and the non-2xx count (wrk's "Non-2xx or 3xx"):
# the median of BENCH_ROUNDS rounds (each round runs every endpoint once), with the lowest and highest rate;
# the memory of the chatroom FastCGI processes (max RSS, PSS, private over the processes, KiB) after a short
# warm-up and after all the runs, and of the auth processes after 40 password logins (Argon2id, 19 MiB each);
# the worker's replies/s at 500 ms upstream latency with the default WORKER_CONCURRENCY (bench/worker.sh), and
# the memory of one worker daemon over 1,920 replies of every kind (bench/worker_mem.sh).
# Appended to bench/results.txt; bench/chart.sh draws bench/results.svg from the last run. Then, each in a stack
# of its own: 1000 open reply streams (bench/stream.sh, per server), the memory of one chatroom process over a
# million requests of every kind and of one stream process over 300,000 (bench/soak.sh).
# Knobs: BENCH_SECONDS (10), BENCH_ROUNDS (3), BENCH_CONNECTIONS (32), BENCH_USERS (32),
# BENCH_SERVERS ("lighttpd nginx"), BENCH_FCGI_PROCS (8: spawn-fcgi processes per program under nginx;
# lighttpd.conf says its own).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-32}
NUSERS=${BENCH_USERS:-32}
ROUNDS=${BENCH_ROUNDS:-3}
SERVERS=${BENCH_SERVERS:-lighttpd nginx}
OUT=${BENCH_OUT:-$ROOT/bench/results.txt}

command -v wrk >/dev/null || { echo "bench: wrk is missing (make deps)" >&2; exit 1; }
STACK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gb-bench.XXXXXX")
chmod 755 "$STACK_DIR"
# The app logs a line per request, as `make run` and the production defaults do (LOG_LEVEL info).
export STACK_DIR STACK_MODE=test STACK_PG_DURABLE=1 BUILD_DIR=build TEST_LOG_LEVEL=${TEST_LOG_LEVEL:-info}
export WEB_FCGI_PROCS=${BENCH_FCGI_PROCS:-8}
# shellcheck source=../tests/stack.sh
source tests/stack.sh
# shellcheck source=lib.sh
source bench/lib.sh
trap bench_stack_remove EXIT INT TERM

# Build directories where "chatroom" is a baseline handler and the other programs (and the static web root the
# configs serve, with lighttpd's script beside it) are the real ones.
baseline_dir() { # NAME BINARY
    local d=$STACK_DIR/$1-build
    mkdir -p "$d/cgi-bin"
    for p in auth subscribe webhook stream; do cp "build/cgi-bin/$p" "$d/cgi-bin/"; done
    cp -R build/www build/lighttpd "$d/"
    cp "$2" "$d/cgi-bin/chatroom"
    echo "$d"
}
# Start the web server on baseline build dir $1: the baseline answers /healthz with its fixed body, not the app's.
baseline_start() { BUILD_DIR=$1 STACK_READY_MATCH='"chatrooms"' stack_web_start >/dev/null; }
NOOP_BUILD=$(baseline_dir noop build/bench/noop)
LINGER_BUILD=$(baseline_dir noop-linger build/bench/noop_linger)
FLOOR_BUILD=$(baseline_dir floor build/bench/noop_redis)

stack_services_start >/dev/null

# wrk_run NAME URL [wrk args...]: prints "rps p50_ms p99_ms non2xx".
wrk_run() {
    local url=$1 out
    shift
    out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --latency "$@" "$url")
    awk 'function ms(v,  f) { f = 1; if (v ~ /us$/) f = 0.001; else if (v ~ /ms$/) f = 1; else if (v ~ /s$/) f = 1000
                             sub(/[a-z]+$/, "", v); return v * f }
        /Requests\/sec/ {r = $2} /^ +50%/ {p50 = ms($2)} /^ +99%/ {p99 = ms($2)} /Non-2xx/ {n = $NF}
        END {printf "%.0f %.2f %.2f %d\n", r, p50, p99, n}' <<<"$out"
}
# Memory of the running FastCGI processes of program $2 (default chatroom) of bin dir $1: max RSS, PSS, private
# (KiB) over them.
fcgi_mem_kb() {
    local pid rss pss priv mr=0 mp=0 mv=0
    for pid in $(bench_pids "$(realpath "$1/cgi-bin/${2:-chatroom}")"); do
        read -r rss pss priv < <(bench_proc_mem "$pid")
        ((rss > mr)) && mr=$rss
        ((pss > mp)) && mp=$pss
        ((priv > mv)) && mv=$priv
    done
    echo "$mr $mp $mv"
}

# 40 password logins of one user (Argon2id, 19 MiB each), spread over the auth processes; fails on a non-200.
password_logins() {
    local m=+1998$(date +%s%N | tail -c 9) i code
    curl -sf -XPOST "$BASE_URL/auth/signup" -d "{\"mobile\":\"$m\",\"password\":\"bench password\"}" >/dev/null ||
        { echo "bench: signup with a password failed" >&2; return 1; }
    for ((i = 0; i < 40; i++)); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -XPOST "$BASE_URL/auth/login" \
            -d "{\"mobile\":\"$m\",\"password\":\"bench password\"}")
        [[ $code == 200 ]] || { echo "bench: password login answered $code" >&2; return 1; }
    done
}

# BENCH_USERS pro users, each with 5 chatrooms, their lists cached: "token room" lines in $STACK_DIR/users.
make_users() {
    local i token room ids=()
    : >"$STACK_DIR/users"
    for ((i = 0; i < NUSERS; i++)); do
        token=$(bench_signup)
        for r in 1 2 3 4 5; do
            room=$(curl -sf -XPOST "$BASE_URL/chatroom" -H "Authorization: Bearer $token" -d "{\"title\":\"Room $r\"}" |
                jq -r .id)
        done
        ids+=("$(curl -sf "$BASE_URL/user/me" -H "Authorization: Bearer $token" | jq -r .id)")
        echo "$token $room" >>"$STACK_DIR/users"
    done
    psql -X -q -d "$DATABASE_URL" -c "UPDATE users SET tier = 'pro' WHERE id IN ($(IFS=,; echo "${ids[*]}"))"
    # Tier changed behind the app's back: let the next reads fill the caches afresh.
    redis-cli -s "$STACK_DIR/redis.sock" FLUSHALL >/dev/null
    while read -r token room; do
        curl -sf "$BASE_URL/chatroom" -H "Authorization: Bearer $token" >/dev/null
        curl -sf "$BASE_URL/user/me" -H "Authorization: Bearer $token" >/dev/null
    done <"$STACK_DIR/users"
    local hit
    hit=$(curl -sfi "$BASE_URL/chatroom" -H "Authorization: Bearer $(head -1 "$STACK_DIR/users" | cut -d' ' -f1)" |
        tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache" {print $2}')
    [[ $hit == HIT ]] || { echo "bench: the list is not served from the cache (X-Cache: $hit)" >&2; return 1; }
}

# A wrk script: POST_SHARE percent of the requests post a message, the rest read the cached list; each request
# takes the next user (round robin from a random start, per thread). KEYED 1: each post sends an
# Idempotency-Key never sent before (thread, counter, random).
make_lua() { # POST_SHARE FILE [KEYED]
    local token room
    {
        echo "local users = {"
        while read -r token room; do echo "  {\"$token\", \"$room\"},"; done <"$STACK_DIR/users"
        echo "}"
        cat <<LUA
local share = $1
local keyed = ${3:-0}
local i = 0
local threads = 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
function init(args) math.randomseed(os.time() * 100 + (tid or 0)); i = math.random(#users) end
function request()
  i = i + 1
  local u = users[(i % #users) + 1]
  local h = {["Authorization"] = "Bearer " .. u[1], ["Content-Type"] = "application/json"}
  if share > 0 and (share >= 100 or math.random(100) <= share) then
    if keyed == 1 then h["Idempotency-Key"] = "b" .. (tid or 0) .. "-" .. i .. "-" .. math.random(1000000000) end
    return wrk.format("POST", "/chatroom/" .. u[2] .. "/message", h, '{"content":"bench"}')
  end
  return wrk.format("GET", "/chatroom", h)
end
LUA
    } >"$2"
}

declare -A res=()
# add_run KEY RESULT: one more "rps p50 p99 non2xx" line for KEY.
add_run() { res[$1]+="$2"$'\n'; }
# median_run LINES: the line of the median rate (the lower middle for an even count) and the lowest and highest
# rate: "rps p50 p99 non2xx min max".
median_run() {
    sort -n <<<"${1%$'\n'}" | awk '{l[NR] = $0; r[NR] = $1} END {print l[int((NR + 1) / 2)], r[1], r[NR]}'
}
mem=''
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for server in $SERVERS; do
    export STACK_WEB=$server DEPLOYMENT=bench-$server
    # ROUNDS rounds, each measuring every endpoint once, the do-nothing handler first: a slow spell of the
    # machine (on a shared VM they come and go within minutes) then touches the endpoints of a round alike,
    # and each figure is the median of its rounds.
    for ((round = 1; round <= ROUNDS; round++)); do
        baseline_start "$NOOP_BUILD"
        add_run "$server.noop" "$(wrk_run "$BASE_URL/chatroom")"
        stack_web_stop >/dev/null
        baseline_start "$LINGER_BUILD"
        add_run "$server.noop-linger" "$(wrk_run "$BASE_URL/chatroom")"
        stack_web_stop >/dev/null
        baseline_start "$FLOOR_BUILD"
        add_run "$server.floor" "$(wrk_run "$BASE_URL/chatroom")"
        stack_web_stop >/dev/null

        BUILD_DIR=build stack_web_start >/dev/null
        if [[ ! -s $STACK_DIR/users ]]; then
            make_users
            make_lua 0 "$STACK_DIR/list.lua"
            make_lua 100 "$STACK_DIR/post.lua"
            make_lua 100 "$STACK_DIR/post-key.lua" 1
            make_lua 20 "$STACK_DIR/mixed.lua"
        fi
        token=$(head -1 "$STACK_DIR/users" | cut -d' ' -f1)
        wrk -t2 -c"$CONNS" -d1s -s "$STACK_DIR/list.lua" "$BASE_URL" >/dev/null # warm-up: every process, every path
        bin=$(cat "$STACK_DIR/web.bin")
        ((round == 1)) && read -r rss0 pss0 priv0 < <(fcgi_mem_kb "${bin%/cgi-bin}")
        # no Lua: as light a client as do-nothing's
        add_run "$server.list" "$(wrk_run "$BASE_URL/chatroom" -H "Authorization: Bearer $token")"
        me=$(curl -s -w ' %{http_code}' "$BASE_URL/user/me" -H "Authorization: Bearer $token")
        [[ $me == *' 200' ]] || echo "bench: GET /user/me answers: $me" >&2
        add_run "$server.me" "$(wrk_run "$BASE_URL/user/me" -H "Authorization: Bearer $token")"
        # Warm-up of the write path, not measured: the first posts meet a pool still growing (lighttpd adds
        # processes as requests queue) and tables still being extended.
        wrk -t2 -c"$CONNS" -d2s -s "$STACK_DIR/post.lua" "$BASE_URL" >/dev/null
        add_run "$server.post" "$(wrk_run "$BASE_URL" -s "$STACK_DIR/post.lua")"
        add_run "$server.post-key" "$(wrk_run "$BASE_URL" -s "$STACK_DIR/post-key.lua")"
        add_run "$server.mixed" "$(wrk_run "$BASE_URL" -s "$STACK_DIR/mixed.lua")"
        read -r rss1 pss1 priv1 < <(fcgi_mem_kb "${bin%/cgi-bin}")
        if ((round == 1)); then
            password_logins
            read -r arss apss apriv < <(fcgi_mem_kb "${bin%/cgi-bin}" auth)
        fi
        stack_web_stop >/dev/null
    done
    baseline_start "$NOOP_BUILD"
    curl -sf "$BASE_URL/chatroom" >/dev/null
    read -r nrss npss npriv < <(fcgi_mem_kb "$NOOP_BUILD")
    stack_web_stop >/dev/null
    mem+="$server chatroom process: RSS $rss0 KiB, PSS $pss0 KiB, private $priv0 KiB after a 1 s warm-up; after all runs RSS $rss1, PSS $pss1, private $priv1 KiB (do-nothing: RSS $nrss, PSS $npss, private $npriv)"$'\n'
    mem+="$server auth process after 40 password logins: RSS $arss KiB, PSS $apss KiB, private $apriv KiB"$'\n'
done
stack_stop >/dev/null 2>&1 || true

worker_line=''
if [[ -x bench/worker.sh ]]; then
    conc=$(awk -F'"' '/"WORKER_CONCURRENCY"/ {print $4}' lib/config.c)
    for durable in 1 0; do
        w=$(STACK_PG_DURABLE=$durable CONCURRENCY=$conc bench/worker.sh 2>&1 | grep -E '^worker:' ||
            echo "worker: bench/worker.sh failed")
        worker_line+="$w (500 ms upstream, WORKER_CONCURRENCY=$conc, the default; PostgreSQL $( ((durable)) && echo durable || echo 'fsync off'))"$'\n'
    done
fi
if [[ -x bench/worker_mem.sh ]]; then
    worker_line+="$(bench/worker_mem.sh 2>&1 | grep -E '^(worker-mem: one|ok:|FAIL)' ||
        echo "worker-mem: bench/worker_mem.sh failed")"$'\n'
fi

{
    echo "# make bench, $stamp, $(nproc) cores, wrk -t2 -c$CONNS -d${SECS}s, median of $ROUNDS rounds, $NUSERS users, durable PostgreSQL (fsync on, commit_delay 200 us), app LOG_LEVEL $TEST_LOG_LEVEL, FastCGI processes: lighttpd.conf's, $WEB_FCGI_PROCS per program under nginx"
    printf '%-9s %-11s %9s %7s %8s %8s %7s %13s\n' server endpoint "req/s" ratio p50ms p99ms non2xx "req/s-range"
    for server in $SERVERS; do
        read -r nr _ < <(median_run "${res[$server.noop]}")
        for k in noop noop-linger floor list me post post-key mixed; do
            read -r r p50 p99 n lo hi < <(median_run "${res[$server.$k]}")
            printf '%-9s %-11s %9s %7s %8s %8s %7s %13s\n' "$server" "$k" "$r" \
                "$(awk -v a="$r" -v b="$nr" 'BEGIN {printf "%.2f", b ? a / b : 0}')" "$p50" "$p99" "$n" "$lo-$hi"
        done
    done
    printf '%s' "$mem"
    printf '%s' "$worker_line"
} | tee -a "$OUT"
bench/chart.sh "$OUT" "${BENCH_SVG:-bench/results.svg}" || echo "bench: no chart" >&2
if [[ -x bench/stream.sh ]]; then
    for server in $SERVERS; do
        echo "# streams, $server" | tee -a "$OUT"
        STACK_WEB=$server DEPLOYMENT=bench-$server bench/stream.sh 2>&1 | grep -E '^(stream:|ok:|FAIL)' | tee -a "$OUT"
    done
fi
if [[ -x bench/soak.sh ]]; then
    echo "# soak: one chatroom process (nginx, spawn-fcgi), a million requests of every kind it serves" | tee -a "$OUT"
    bench/soak.sh 2>&1 | grep -E '^(soak: one|ok:|FAIL)' | tee -a "$OUT"
    echo "# soak: one stream process (nginx, spawn-fcgi), 300,000 requests of every kind it serves" | tee -a "$OUT"
    PROGRAM=stream TOTAL=300000 WARM=60000 bench/soak.sh 2>&1 | grep -E '^(soak: one|ok:|FAIL)' | tee -a "$OUT"
fi
