#!/usr/bin/env bash
# bench/worker_mem.sh: the memory of ONE worker daemon over ROUNDS rounds of N replies of every kind the model
# gives.
#
# Starts a private stack (PostgreSQL, Redis, the fake AI; tests/stack.sh) and the worker as a daemon (no --once)
# with WORKER_CONCURRENCY=CONCURRENCY, then, in each round, inserts N pending replies straight into PostgreSQL (one
# room each, one question before it) and queues them in Redis like the API does. The questions carry the fake
# model's directives (tests/fakes/ai.js) in turn: a plain answer, answers of 200 KB and 1 MB, one streamed in 20
# pieces, failures that a retry fixes (503, 429) and one it cannot (400), a body that is not JSON, one over the
# worker's 2 MiB ceiling, a safety stop, a stream cut short, a connection reset. After each round (every reply
# finished) it prints the worker's RSS, PSS and private memory (/proc/PID/smaps_rollup; private without the code
# pages of the files it maps, its libraries' included, see mem_kb). Fails (exit 1) if a reply is left pending, the worker
# exited, its private memory after the last round is over MAX_PRIVATE_KB, or it grew by more than MAX_GROWTH_KB
# from the end of round WARM_ROUNDS to the last. CONCURRENCY is 16, not the default 256: libcurl keeps up to
# WORKER_CONCURRENCY idle connections to the model for the next calls (the fake serves HTTP/1.1: one connection
# per call in flight, about 16 KiB each), memory that follows the calls in flight, not what the replies leave.
#
#   bench/worker_mem.sh   ROUNDS=8 N=240 CONCURRENCY=16 WARM_ROUNDS=2 MAX_PRIVATE_KB=2560 MAX_GROWTH_KB=256
#                         BUILD_DIR=build
#
# Needs a build (make). Everything it starts is stopped at exit.
set -euo pipefail

ROUNDS=${ROUNDS:-8}
N=${N:-240}
CONCURRENCY=${CONCURRENCY:-16}
WARM_ROUNDS=${WARM_ROUNDS:-2}
MAX_PRIVATE_KB=${MAX_PRIVATE_KB:-2560}
MAX_GROWTH_KB=${MAX_GROWTH_KB:-256}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export GB_ROOT=$ROOT BUILD_DIR=${BUILD_DIR:-build}

STACK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gb-bench-worker-mem.XXXXXX")
chmod 755 "$STACK_DIR"
export STACK_DIR STACK_MODE=test TEST_LOG_LEVEL=${TEST_LOG_LEVEL:-warn}
# shellcheck source=../tests/stack.sh
source "$ROOT/tests/stack.sh"
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
trap bench_stack_remove EXIT

stack_services_start >/dev/null
export WORKER_CONCURRENCY=$CONCURRENCY
stack_worker_start >/dev/null
pid=$(<"$STACK_DIR/worker.pid")

# The fake model's directives, one per question in turn (tests/fakes/ai.js).
kinds=('' '[[pad:200000]]' '[[pad:1000000]]' '[[chunks:20]]' '[[fail:503]]' '[[fail:429]]' '[[fail:400]]'
    '[[garbage]]' '[[huge]]' '[[safety]]' '[[cut:1]]' '[[rst]]')
values=$(printf "('%s'),\n" "${kinds[@]}")
mobile="+1556$(od -An -N4 -tu4 /dev/urandom | tr -d ' \n' | tail -c 8)"
uid=$(psql_q "INSERT INTO users (mobile, tier) VALUES ('$mobile', 'pro') RETURNING id")

# PID -> "RSS PSS private code" (KiB): code, the private clean pages of every file the worker maps (its own code
# and its libraries', libcurl's among them: when no subscribe process runs beside it, nothing shares those, and
# they read as 1.5 MB of private memory that the worker never wrote).
mem_kb() { bench_proc_mem_code "$1"; }

first='' total=0
for ((round = 1; round <= ROUNDS; round++)); do
    # two statements: the questions must get the smaller ids (a reply's history is what precedes it)
    psql_q "WITH k AS (SELECT d, row_number() OVER () - 1 AS i FROM (VALUES ${values%,}) v(d)),
            rooms AS (INSERT INTO chatrooms (user_id, title, message_count)
                      SELECT $uid, 'round $round ' || g, 2 FROM generate_series(1, $N) g RETURNING id)
            INSERT INTO messages (chatroom_id, user_id, role, content, status)
            SELECT r.id, $uid, 'user', 'question ' || r.id || ' ' || k.d, 'completed'
            FROM rooms r JOIN k ON k.i = r.id % ${#kinds[@]}" >/dev/null
    ids=$(psql_q "INSERT INTO messages (chatroom_id, user_id, role, content, status)
            SELECT id, $uid, 'model', '', 'pending' FROM chatrooms WHERE title LIKE 'round $round %' ORDER BY id
            RETURNING id")
    awk '{ printf "XADD gb:replies MAXLEN ~ 100000 * reply_id %s\n", $1 }' <<<"$ids" |
        redis-cli -s "$STACK_DIR/redis.sock" >/dev/null
    total=$((total + N))
    deadline=$((SECONDS + 120))
    while (($(psql_q "SELECT count(*) FROM messages WHERE status = 'pending'") > 0)); do
        ((SECONDS < deadline)) || {
            echo "FAIL: replies still pending 120 s after round $round was queued"
            exit 1
        }
        kill -0 "$pid" 2>/dev/null || {
            echo "FAIL: the worker exited; its log:"
            tail -n 20 "$STACK_DIR/worker.log"
            exit 1
        }
        sleep 0.5
    done
    sleep 1 # the last replies' acknowledgements and the worker's own upkeep after them
    read -r rss pss priv code < <(mem_kb "$pid")
    priv=$((priv - code))
    ((round < WARM_ROUNDS)) || [[ -n $first ]] || first=$priv first_round=$round
    echo "worker-mem: $total replies: RSS $rss KiB, PSS $pss KiB, private $priv KiB (+ $code KiB of code)"
done
[[ -n $first ]] || first=$priv first_round=$ROUNDS
growth=$((priv - first))
read -r completed failed < <(psql_q "SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed')
    FROM messages WHERE role = 'model'" | tr '|' ' ')
echo "worker-mem: one worker, $total replies ($completed completed, $failed failed): private $priv KiB" \
    "(+ $code KiB of code; RSS $rss, PSS $pss), $first KiB after round $first_round: grew $growth KiB"
((priv <= MAX_PRIVATE_KB)) || {
    echo "FAIL: private memory $priv KiB after $total replies (limit $MAX_PRIVATE_KB KiB)"
    exit 1
}
((growth <= MAX_GROWTH_KB)) || {
    echo "FAIL: private memory grew by $growth KiB from round $first_round to $ROUNDS (limit $MAX_GROWTH_KB KiB)"
    exit 1
}
echo "ok: flat after $total replies"
