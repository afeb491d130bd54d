#!/usr/bin/env bash
# `make run` (scripts/run.sh): a bad or busy PORT is reported at once, before anything is installed, built or
# started; the banner prints DATABASE_URL / REDIS_URL and psql / redis-cli commands that work; a requested stop
# (SIGTERM to run.sh, Ctrl-C to the whole process group) exits cleanly without make's "Error 143".
# Runs once, on the first deployment. The stack's own PostgreSQL and Redis are used (DATABASE_URL and REDIS_URL
# are in the environment, which run.sh honours), so only lighttpd and a worker are started on a free port.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

read -r -a first <<<"${DEPLOYMENTS:-lighttpd}"
[[ $DEPLOYMENT == "${first[0]:-lighttpd}" ]] || exit 0
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# ---- preflight: before any build ----
ms() { echo $(($(date +%s%N) / 1000000)); }
t0=$(ms)
rc=0
out=$(cd "$root" && PORT=abc timeout 30 make run 2>&1) || rc=$?
t=$(($(ms) - t0))
check "PORT=abc make run fails (exit $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
check "PORT=abc make run names PORT" grep -q "PORT must be a number" <<<"$out"
check "PORT=abc make run stops before installing or building (${t} ms)" test "$t" -lt 3000
check "... nothing was compiled or installed" test -z "$(grep -E '^(cc |deps:)' <<<"$out" || true)"
rc=0
out=$(PORT=70000 "$root/scripts/run.sh" --preflight 2>&1) || rc=$?
check_eq "$rc" 2 "PORT=70000 is refused"
busy=${BASE_URL##*:}
rc=0
out=$(PORT=$busy "$root/scripts/run.sh" --preflight 2>&1) || rc=$?
check_eq "$rc" 1 "a port in use is refused"
check "the message says the port is in use" grep -q "already listens on 127.0.0.1:$busy" <<<"$out"
rc=0
out=$(PORT=$busy timeout 30 bash -c "cd '$root' && make run" 2>&1) || rc=$?
check "make run on a port in use fails at once (exit $rc)" test "$rc" -ne 0 -a "$rc" -ne 124

# ---- a real run: banner, then a requested stop ----
# start_run LOG: make run in its own process group (like a terminal job) on a free port; MAKE_PID, RUN_PORT.
start_run() {
    RUN_PORT=$(_stack_free_port)
    (cd "$root" && PORT=$RUN_PORT exec setsid make run) >"$1" 2>&1 &
    MAKE_PID=$!
    local i
    for i in $(seq 1 120); do
        grep -q 'Ctrl-C stops everything' "$1" && return 0
        kill -0 "$MAKE_PID" 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}
stop_run() { # SIGNAL TARGET: wait for make; RUN_RC
    kill "-$1" "$2" 2>/dev/null || true
    RUN_RC=0
    local i
    for i in $(seq 1 60); do
        kill -0 "$MAKE_PID" 2>/dev/null || break
        sleep 0.5
    done
    wait "$MAKE_PID" 2>/dev/null || RUN_RC=$?
}
MAKE_PID=''
cleanup() { [[ -n $MAKE_PID ]] && kill -TERM -- "-$MAKE_PID" 2>/dev/null || true; }
trap cleanup EXIT
RUN_PORT=''

log1=$STACK_DIR/make-run-1.log
started=0
start_run "$log1" && started=1
check_eq "$started" 1 "make run starts and prints its banner"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$RUN_PORT/healthz" || true)
check_eq "$code" 200 "make run serves /healthz on PORT=$RUN_PORT"
check "the banner prints DATABASE_URL" grep -q '^    DATABASE_URL=' "$log1"
# ./var holds logs, sockets, metrics and secrets: nothing in it is readable or writable by other accounts (its
# directories may only be passed through, for the postgres and web server accounts).
exposed=$(find "$root/var" -xdev \( ! -type d ! -type l -perm /o=rwx \) -o \( -type d -perm /o=rw \) 2>/dev/null | head -n 5)
check_eq "$exposed" "" "nothing under ./var is open to other accounts while make run runs"
check "the banner prints REDIS_URL" grep -q '^    REDIS_URL=' "$log1"
pg_cmd=$(sed -n "s/^    psql: *//p" "$log1")
redis_cmd=$(sed -n "s/^    redis: *//p" "$log1")
check_eq "$(eval "$pg_cmd -X -A -t -c 'SELECT 41 + 1'" 2>&1)" 42 "the banner's psql command works ($pg_cmd)"
check_eq "$(eval "$redis_cmd ping" 2>&1)" PONG "the banner's redis-cli command works ($redis_cmd)"
run_pid=$(pgrep -P "$MAKE_PID" -f 'scripts/run.sh' | head -n 1 || true)
check "run.sh is running under make" test -n "$run_pid"
stop_run TERM "$run_pid"
check_eq "$RUN_RC" 0 "SIGTERM to run.sh: make run exits 0"
check "SIGTERM: make reports no error" test -z "$(grep -E 'make: \*\*\*|Error [0-9]+' "$log1" || true)"
check "SIGTERM: run.sh stopped what it started" grep -q 'run: stopped' "$log1"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$RUN_PORT/healthz" || true)
check_eq "$code" 000 "after the stop nothing listens on PORT"

log2=$STACK_DIR/make-run-2.log
started=0
start_run "$log2" && started=1
check_eq "$started" 1 "make run starts again"
stop_run INT "-$MAKE_PID" # Ctrl-C: the terminal signals the whole foreground process group
MAKE_PID=''
check "Ctrl-C: run.sh stopped what it started" grep -q 'run: stopped' "$log2"
check "Ctrl-C: no \"Error 130\" from make" test -z "$(grep -E 'Error [0-9]+' "$log2" || true)"

# WEB=nginx, stopped with SIGTERM to the whole process group (make forwards a second one to run.sh). nginx's
# workers run as another account (as root) and spool request bodies past 128 KiB under ./var/web/nginx-tmp,
# which make run's umask 027 once closed to them: a 600 KB webhook body got nginx's 500.
if command -v nginx >/dev/null && command -v spawn-fcgi >/dev/null; then
    log3=$STACK_DIR/make-run-3.log
    started=0
    # A directory of its own, as on a fresh clone (an older ./var/web/nginx-tmp keeps the mode it was made with).
    WEB=nginx RUN_VAR_DIR=$STACK_DIR/make-run-nginx start_run "$log3" && started=1
    check_eq "$started" 1 "make run WEB=nginx starts"
    code=$(head -c 600000 /dev/zero | tr '\0' ' ' | curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST \
        -H 'Content-Type: application/json' --data-binary @- "http://127.0.0.1:$RUN_PORT/webhook/stripe" || true)
    check_eq "$code" 400 "make run WEB=nginx: a 600 KB webhook body reaches the app (400: no signature), not nginx's 500"
    stop_run TERM "-$MAKE_PID"
    MAKE_PID=''
    check "SIGTERM to the process group: run.sh stopped what it started" grep -q 'run: stopped' "$log3"
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$RUN_PORT/healthz" || true)
    check_eq "$code" 000 "... and nothing listens on PORT"
fi
