#!/usr/bin/env bash
# `make run` supervises what it started (scripts/run.sh): the worker, Redis or PostgreSQL killed with SIGKILL is
# restarted with a log line and a backoff (1 s, then 2 s for a process that dies again soon), the others keep
# running and the service answers again; SIGTERM still stops everything and exits 0.
# Runs once, on the first deployment, with its own PostgreSQL and Redis in a temporary RUN_VAR_DIR.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

read -r -a first <<<"${DEPLOYMENTS:-lighttpd}"
[[ $DEPLOYMENT == "${first[0]:-lighttpd}" ]] || exit 0
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

var=$(mktemp -d "${TMPDIR:-/tmp}/gb-run-var.XXXXXX")
port=$(_stack_free_port)
log=$var/run.log
(cd "$root" && exec env -u DATABASE_URL -u REDIS_URL RUN_VAR_DIR="$var" PORT="$port" setsid scripts/run.sh) \
    >"$log" 2>&1 &
RUN_PID=$!
cleanup() {
    kill -TERM "$RUN_PID" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$RUN_PID" 2>/dev/null || true
    rm -rf "$var"
}
trap cleanup EXIT

wait_log() { # SECONDS REGEX
    local d=$((SECONDS + $1))
    until grep -qE "$2" "$log"; do
        ((SECONDS < d)) || return 1
        sleep 0.2
    done
}
healthy() { # SECONDS: /healthz 200 with postgres and redis ok
    local d=$((SECONDS + $1)) b
    while ((SECONDS < d)); do
        b=$(curl -s --max-time 2 "http://127.0.0.1:$port/healthz" || true)
        [[ $(jq -r '.postgres + "/" + .redis' <<<"$b" 2>/dev/null) == ok/ok ]] && return 0
        sleep 0.3
    done
    return 1
}
pidof_svc() { # NAME: the pid run.sh started (PostgreSQL: the postmaster)
    if [[ $1 == postgres ]]; then head -n 1 "$var/pgdata/postmaster.pid"; else cat "$var/$1.pid"; fi
}

check "run.sh starts its own PostgreSQL and Redis and prints its banner" wait_log 180 'Ctrl-C stops everything'
check "the stack is healthy" healthy 20

for svc in worker redis postgres; do
    old=$(pidof_svc "$svc")
    kill -KILL "$old"
    check "$svc killed: run.sh says so and schedules a restart" \
        wait_log 15 "run: $svc exited unexpectedly; restarting it in 1s \\(restart 1\\)"
    check "$svc is restarted with a log line" wait_log 60 "run: $svc restarted \\(pid [0-9]+\\)"
    new=$(pidof_svc "$svc")
    check "$svc runs again under a new pid ($old -> $new)" test "$new" != "$old" -a -n "$new"
    check "$svc is running" kill -0 "$new"
    check "after the $svc restart the stack is healthy again" healthy 30
    check "run.sh itself is still running" kill -0 "$RUN_PID"
done

m=$(rand_mobile)
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST -H 'Content-Type: application/json' \
    --data "{\"mobile\":\"$m\"}" "http://127.0.0.1:$port/auth/signup")
check_eq "$code" 201 "a signup works after the restarts"

# A worker that dies again soon after its restart waits longer: the backoff doubles.
kill -KILL "$(pidof_svc worker)"
check "the worker dying again within 30 s is restarted after 2 s" \
    wait_log 15 'run: worker exited unexpectedly; restarting it in 2s \(restart 2\)'
restarted_twice() {
    local d=$((SECONDS + 30))
    until (($(grep -c 'run: worker restarted' "$log") >= 2)); do
        ((SECONDS < d)) || return 1
        sleep 0.2
    done
}
check "... and restarted" restarted_twice

pids=()
for svc in worker redis postgres web; do pids+=("$(pidof_svc "$svc")"); done
kill -TERM "$RUN_PID"
rc=0
for _ in $(seq 1 90); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.5; done
wait "$RUN_PID" || rc=$?
check_eq "$rc" 0 "SIGTERM: run.sh exits 0"
left=''
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left+=" $p"; done
check_eq "$left" '' "SIGTERM: every process it started is gone"
check "no restart after the requested stop" bash -c '! sed -n "/run: terminated/,\$p" "$1" | grep -q "restarting it in"' _ "$log"
