#!/usr/bin/env bash
# bench/worker.sh: throughput of ONE worker process against a slow upstream.
#
# Starts a private stack (PostgreSQL, Redis, the fake AI; tests/stack.sh) in a temporary directory, inserts
# N pending replies (a user, N chatrooms, each with a user message and its pending reply) straight into
# PostgreSQL, queues them in Redis like the API does, makes the fake answer every call after LATENCY_MS, then
# runs `worker --once` with WORKER_CONCURRENCY and prints the wall time and replies per second. Fails (exit 1)
# if a reply is left unfinished or the run takes MAX_SECONDS or more.
#
#   bench/worker.sh              N=1000 LATENCY_MS=500 CONCURRENCY=256 MAX_SECONDS=10 BUILD_DIR=build
#
# Needs a build (make). Everything it starts is stopped at exit.
set -euo pipefail

N=${N:-1000}
LATENCY_MS=${LATENCY_MS:-500}
CONCURRENCY=${CONCURRENCY:-256}
MAX_SECONDS=${MAX_SECONDS:-10}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export GB_ROOT=$ROOT BUILD_DIR=${BUILD_DIR:-build}

bin=$ROOT/$BUILD_DIR/worker/worker
[[ $BUILD_DIR == /* ]] && bin=$BUILD_DIR/worker/worker
[[ -x $bin ]] || {
    echo "bench/worker.sh: no worker at $bin (run make first)" >&2
    exit 2
}

STACK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gb-bench-worker.XXXXXX")
export STACK_DIR STACK_MODE=test
# shellcheck source=../tests/stack.sh
source "$ROOT/tests/stack.sh"

# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
cleanup() {
    if [[ -n ${KEEP_STACK:-} ]]; then
        stack_stop >/dev/null 2>&1 || true
        echo "stack kept in $STACK_DIR"
    else
        bench_stack_remove
    fi
}
trap cleanup EXIT

echo "starting PostgreSQL, Redis and the fake AI in $STACK_DIR ..."
stack_services_start >/dev/null

mobile="+1555$(od -An -N4 -tu4 /dev/urandom | tr -d ' \n' | tail -c 8)"
# two statements: the user messages must get the smaller ids (a reply's history is what precedes it)
psql_q "
    WITH u AS (INSERT INTO users (mobile, tier) VALUES ('$mobile', 'pro') RETURNING id),
    rooms AS (INSERT INTO chatrooms (user_id, title, message_count)
              SELECT u.id, 'bench ' || g, 2 FROM u, generate_series(1, $N) g RETURNING id, user_id)
    INSERT INTO messages (chatroom_id, user_id, role, content, status)
    SELECT id, user_id, 'user', 'benchmark question for room ' || id, 'completed' FROM rooms" >/dev/null
ids=$(psql_q "
    INSERT INTO messages (chatroom_id, user_id, role, content, status)
    SELECT c.id, c.user_id, 'model', '', 'pending' FROM chatrooms c JOIN users u ON u.id = c.user_id
    WHERE u.mobile = '$mobile' ORDER BY c.id RETURNING id")
count=$(wc -l <<<"$ids")
echo "inserted $count pending replies"

awk '{ printf "XADD gb:replies MAXLEN ~ 100000 * reply_id %s\n", $1 }' <<<"$ids" |
    redis-cli -s "$STACK_DIR/redis.sock" >/dev/null
echo "queued $(redis-cli -s "$STACK_DIR/redis.sock" XLEN gb:replies) stream entries"

curl -s -XPOST "$FAKE_AI_URL/__control" -d "{\"latency_ms\":$LATENCY_MS}" >/dev/null
echo "fake AI answers after $LATENCY_MS ms; one worker, WORKER_CONCURRENCY=$CONCURRENCY, --once"

t0=$(date +%s%N)
WORKER_CONCURRENCY=$CONCURRENCY LOG_LEVEL=warn "$bin" --once </dev/null 2>"$STACK_DIR/worker-bench.log" || {
    echo "worker --once failed:" >&2
    tail -n 20 "$STACK_DIR/worker-bench.log" >&2
    exit 1
}
t1=$(date +%s%N)

ms=$(((t1 - t0) / 1000000))
done_n=$(psql_q "SELECT count(*) FROM messages WHERE role = 'model' AND status = 'completed' AND content LIKE 'fake-gemini: benchmark question for room %'")
left=$(psql_q "SELECT count(*) FROM messages WHERE status = 'pending'")
calls=$(curl -s "$FAKE_AI_URL/__requests" | jq '[.[] | select(.status == 200)] | length')
rate=$(awk -v n="$done_n" -v ms="$ms" 'BEGIN { printf "%.0f", (ms > 0) ? (n * 1000 / ms) : 0 }')
ideal=$(awk -v n="$N" -v c="$CONCURRENCY" -v l="$LATENCY_MS" 'BEGIN { printf "%.1f", int((n + c - 1) / c) * l / 1000 }')

echo
printf 'worker: %d replies completed in %d.%03d s = %s replies/s\n' "$done_n" $((ms / 1000)) $((ms % 1000)) "$rate"
printf '        (%d upstream calls answered; %d left pending; ideal at this latency and concurrency: %s s)\n' \
    "$calls" "$left" "$ideal"

if ((done_n != N || left != 0)); then
    echo "FAIL: $((N - done_n)) replies not completed" >&2
    exit 1
fi
if ((ms >= MAX_SECONDS * 1000)); then
    echo "FAIL: took ${ms} ms, expected under ${MAX_SECONDS} s" >&2
    exit 1
fi
echo "ok: under ${MAX_SECONDS} s"
