#!/usr/bin/env bash
# `make run` with a DATABASE_URL or REDIS_URL that does not answer stops at once with a message naming the
# variable (its password masked) and the reason, instead of a failed schema step or a stack silently running
# without Redis; nothing is left listening. (A bad or busy PORT: 06_make_run.sh; a missing or weak JWT_SECRET
# and the other production settings: 11_cgi_config.sh.) Runs once, on the first deployment.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

read -r -a first <<<"${DEPLOYMENTS:-lighttpd}"
[[ $DEPLOYMENT == "${first[0]:-lighttpd}" ]] || exit 0
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

try_run() { # VAR=VALUE...: make run with these settings on a free port; RC, OUT, RUN_PORT
    RUN_PORT=$(_stack_free_port)
    RC=0
    OUT=$(cd "$root" && env "$@" PORT="$RUN_PORT" timeout 120 make run 2>&1 </dev/null) || RC=$?
}
not_serving() {
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$RUN_PORT/healthz" || true) == 000 ]]
}

try_run DATABASE_URL=postgresql://gemini:s3cret@127.0.0.1:9/gemini
check "an unreachable DATABASE_URL stops make run (exit $RC)" test "$RC" -ne 0 -a "$RC" -ne 124
check "... naming DATABASE_URL and the reason" \
    grep -q 'run: DATABASE_URL: cannot connect to postgresql://gemini:\*\*\*@127.0.0.1:9/gemini: .*refused' <<<"$OUT"
check "... without printing its password" test -z "$(grep s3cret <<<"$OUT" || true)"
check "... before the schema step" test -z "$(grep 'applying schema.sql' <<<"$OUT" || true)"
check "... and nothing serves on PORT" not_serving

try_run REDIS_URL=redis://:s3cret@127.0.0.1:9/0
check "an unreachable REDIS_URL stops make run (exit $RC)" test "$RC" -ne 0 -a "$RC" -ne 124
check "... naming REDIS_URL and the reason" \
    grep -q 'run: REDIS_URL: cannot connect to redis://:\*\*\*@127.0.0.1:9/0: .*refused' <<<"$OUT"
check "... without printing its password" test -z "$(grep s3cret <<<"$OUT" || true)"
check "... and nothing serves on PORT" not_serving

try_run REDIS_URL=unix:///nonexistent/redis.sock
check "a REDIS_URL socket that does not exist stops make run (exit $RC)" test "$RC" -ne 0 -a "$RC" -ne 124
check "... naming REDIS_URL and the socket" grep -q 'run: REDIS_URL: cannot connect to unix:///nonexistent/redis.sock' <<<"$OUT"

# The test stack's own servers pass the same check (the run then starts; stopped at once).
log=$STACK_DIR/make-run-errors.log
RUN_PORT=$(_stack_free_port)
(cd "$root" && PORT=$RUN_PORT exec setsid make run) >"$log" 2>&1 &
pid=$!
started=0
for _ in $(seq 1 120); do
    grep -q 'Ctrl-C stops everything' "$log" && started=1 && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
done
kill -INT -- "-$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
check_eq "$started" 1 "reachable DATABASE_URL and REDIS_URL pass the check and make run starts"
check "... with no cannot-connect message" test -z "$(grep 'cannot connect' "$log" || true)"
