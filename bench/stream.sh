#!/usr/bin/env bash
# bench/stream.sh: N clients streaming replies at once through the web server (STACK_WEB: lighttpd by default,
# with the committed lighttpd.conf; nginx with nginx.conf) from the event-driven stream program: the memory of
# the stream program(s) with all of them open, the time from a piece published to a reply's event stream (as the
# worker does it) to the client, and the cached GET /chatroom rate without and with the streams open (wrk -t2
# -c32 -d5s).
#
#   bench/stream.sh            N=1000 BUILD_DIR=build      (fails if a stream cannot be opened, or memory >= 64 MB)
#
# Needs a build (make) and Node.js. Everything it starts is stopped at exit. The worker is not started: the
# replies stay pending, so every stream stays open.
set -euo pipefail

N=${N:-1000}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export GB_ROOT=$ROOT BUILD_DIR=${BUILD_DIR:-build}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
((N + 100 <= $(ulimit -n))) || {
    echo "bench/stream.sh: open files limit $(ulimit -n) is too low for N=$N" >&2
    exit 2
}

STACK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gb-bench-stream.XXXXXX")
chmod 755 "$STACK_DIR"
export STACK_DIR STACK_MODE=test
# shellcheck source=../tests/stack.sh
source "$ROOT/tests/stack.sh"
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
cleanup() {
    if [[ -n ${client_pid:-} ]]; then
        kill "$client_pid" 2>/dev/null || true
    fi
    bench_stack_remove
}
trap cleanup EXIT

stack_services_start >/dev/null
stack_web_start >/dev/null

token=$(bench_signup)
room=$(curl -sf -XPOST "$BASE_URL/chatroom" -H "Authorization: Bearer $token" -d '{"title":"bench"}' | jq -r .id)
curl -sf "$BASE_URL/chatroom" -H "Authorization: Bearer $token" >/dev/null
psql_q "INSERT INTO messages (chatroom_id, user_id, role, content, status)
        SELECT $room, user_id, 'user', 'q', 'completed' FROM chatrooms WHERE id = $room" >/dev/null
psql_q "INSERT INTO messages (chatroom_id, user_id, role, content, status)
        SELECT $room, user_id, 'model', '', 'pending' FROM chatrooms, generate_series(1, $N) WHERE id = $room
        RETURNING id" >"$STACK_DIR/ids"

rate() {
    wrk -t2 -c32 -d5s -H "Authorization: Bearer $token" "$BASE_URL/chatroom" | awk '/Requests\/sec/ {printf "%.0f", $2}'
}
before=$(rate)

# The stream program(s) of this stack: the processes running its build's cgi-bin/stream (lighttpd's children, or
# spawn-fcgi's under nginx).
stream_exe=$(realpath "$BUILD_DIR/cgi-bin/stream")
stream_mem() { # total RSS, PSS, private KiB over the processes, and how many there are
    local pid total_r=0 total_p=0 total_v=0 count=0 r p v
    for pid in $(bench_pids "$stream_exe"); do
        read -r r p v < <(bench_proc_mem "$pid")
        total_r=$((total_r + r)) total_p=$((total_p + p)) total_v=$((total_v + v)) count=$((count + 1))
    done
    echo "$total_r $total_p $total_v $count"
}
read -r r0 _ v0 _ < <(stream_mem)

coproc CLIENT { node "$ROOT/bench/stream_clients.js" "$BASE_URL" "$token" "$room" "$STACK_DIR/ids" "$STACK_DIR/redis.sock" 100; }
# shellcheck disable=SC2153 # CLIENT_PID is set by coproc
client_pid=$CLIENT_PID
read -r -t 120 line <&"${CLIENT[0]}" || { echo "FAIL: the streams did not open within 120 s"; exit 1; }
[[ $line == open* ]] || { echo "FAIL: $line"; exit 1; }
echo "stream: $line"
sleep 1
read -r r1 p1 v1 nproc < <(stream_mem)
during=$(rate)
echo go >&"${CLIENT[1]}"
read -r -t 60 lat <&"${CLIENT[0]}" || lat="latency: no answer"
echo "stream: $N open streams: stream program RSS $r1 KiB, PSS $p1 KiB, private $v1 KiB (idle before: RSS $r0, private $v0 KiB)"
echo "stream: publish-to-client $lat"
echo "stream: cached GET /chatroom: $before req/s without the streams, $during req/s with $N streams open"
wait "$client_pid" 2>/dev/null || true
client_pid=''
# Several processes (spawn-fcgi's under nginx) share their libraries: the sum of their RSS counts those once per
# process, their PSS once in all. One process: RSS, the stricter of the two.
total=$r1 what=RSS
if ((nproc > 1)); then
    total=$p1 what=PSS
fi
if ((total >= 64 * 1024)); then
    echo "FAIL: the stream program(s) use $total KiB ($what) with $N streams open (target < 64 MB)"
    exit 1
fi
echo "ok: $N streams in $((total / 1024)) MB $what"
