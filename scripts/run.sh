#!/usr/bin/env bash
# scripts/run.sh: what `make run` executes after installing and building. Runs the whole stack in the
# foreground from ./var (kept across runs): PostgreSQL (./var/pgdata, socket in ./var/pg), Redis (./var/redis.sock,
# data in ./var/redis), lighttpd with the FastCGI programs of build/ on 127.0.0.1:$PORT (WEB=apache, nginx or
# nginxcgi serves through that server's committed config instead), and the worker when it is built. Ctrl-C or
# SIGTERM stops every process it started and exits 0 (a requested stop is a success). It supervises what it
# started: when the worker, Redis, PostgreSQL or the web server dies, a line says so and it is started again
# after a backoff (1 s, doubling up to 30 s while restarts keep failing or the process keeps dying within 30 s),
# while the others keep running.
#
#   scripts/run.sh --preflight   only the checks that need no build (PORT a number and free, WEB known, no other
#                                `make run` on ./var): `make run` runs it before installing and building.
#
# FAKES=1 (`make run FAKES=1`): also starts the bundled Stripe and Gemini fakes (tests/fakes/*.js, node with no
# npm package) and points the app at them: STRIPE_API_BASE, STRIPE_SECRET_KEY, STRIPE_PRICE_ID, a
# STRIPE_WEBHOOK_SECRET generated once into ./var/secrets.env (where scripts/stripe-trigger.sh finds it),
# AI_PROVIDER=gemini, GEMINI_API_KEY and GEMINI_API_BASE (these replace the caller's), so Pro and AI replies
# can be tried offline: POST /subscribe/pro answers a (fake) Checkout URL, scripts/stripe-trigger.sh
# checkout.session.completed USER_ID makes the user pro, replies are "fake-gemini: <your text>".
#
# Every variable of the configuration (README) set in the environment is honoured; only the missing ones get
# development defaults: PORT 8080, APP_ENV development, PUBLIC_URL http://127.0.0.1:$PORT, JWT_SECRET generated
# once into ./var/secrets.env. A DATABASE_URL or REDIS_URL from the environment is used instead of the private
# server (schema.sql is applied to that database too). RUN_VAR_DIR (default ./var) moves the data and pid files
# elsewhere (the tests use it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=../tests/stack.sh
source "$ROOT/tests/stack.sh"

say() { printf 'run: %s\n' "$*" >&2; }

WEB=${WEB:-lighttpd}
case $WEB in
lighttpd | apache | nginx | nginxcgi) ;;
*)
    say "WEB must be lighttpd, apache, nginx or nginxcgi (got $WEB)"
    exit 2
    ;;
esac
FAKES=${FAKES:-0}
case $FAKES in
0 | 1) ;;
*)
    say "FAKES must be 0 or 1 (got $FAKES)"
    exit 2
    ;;
esac
export STACK_DIR="${RUN_VAR_DIR:-$ROOT/var}" STACK_MODE=run BUILD_DIR=${BUILD:-build} DEPLOYMENT=$WEB STACK_WEB=$WEB
# ./var holds data, logs, sockets and secrets: nothing in it is for other accounts. Files and directories made
# from here on get no permissions for others (the directories that other service accounts must pass through,
# ./var and its web/, get o+x only: tests/stack.sh, tests/web.sh); what an older run left is tightened too.
umask 027
if [[ -d $STACK_DIR ]]; then
    find "$STACK_DIR" -xdev ! -type d ! -type l -perm /o=rwx -exec chmod o-rwx {} + 2>/dev/null || true
    find "$STACK_DIR" -xdev -type d -perm /o=rw -exec chmod o-rw {} + 2>/dev/null || true
fi

# The mistakes that need no build, reported before anything is installed, built or started.
preflight() {
    local port=${PORT:-8080} name pid
    if ! [[ $port =~ ^[0-9]{1,5}$ ]] || ((10#$port < 1 || 10#$port > 65535)); then
        say "PORT must be a number from 1 to 65535 (got '$port')"
        return 2
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$((10#$port))") 2>/dev/null; then
        say "something already listens on 127.0.0.1:$port: stop it or choose another port (PORT=8081 make run)"
        return 1
    fi
    # A second copy on the same ./var would take the first one's servers away.
    for name in postgres redis web worker; do
        if pid=$(_stack_pid "$name"); then
            say "a previous 'make run' is still running here ($name, pid $pid): stop it first"
            return 1
        fi
    done
}

if [[ ${1:-} == --preflight ]]; then
    preflight
    exit
elif [[ -n ${1:-} ]]; then
    say "usage: scripts/run.sh [--preflight]"
    exit 2
fi
preflight || exit
export PORT=$((10#${PORT:-8080}))
mkdir -p "$STACK_DIR"
for name in postgres redis web worker; do rm -f "$STACK_DIR/$name.pid"; done
LOGS="$STACK_DIR/postgres.log, $STACK_DIR/redis.log"
# Under lighttpd the programs' request log is this terminal; the other servers' programs write it to a file.
[[ $WEB == lighttpd ]] || LOGS+=", $STACK_DIR/$WEB.log (the programs' request log)"

STOPPING=0
stop_all() {
    ((STOPPING)) && return 0
    STOPPING=1
    say "stopping"
    stack_worker_stop TERM || true
    stack_web_stop || true
    stack_fakes_stop || true
    stack_redis_stop || true
    stack_pg_stop || true
    say "stopped"
}

on_exit() {
    local rc=$?
    # Ignore further signals while stopping (make forwards SIGTERM to us as well as the process group's own
    # SIGTERM arriving): the stop is bounded by the per-process timeouts of tests/stack.sh.
    trap '' INT TERM
    trap - EXIT
    stop_all
    exit "$rc"
}
trap on_exit EXIT
# A requested stop (Ctrl-C, SIGTERM) is a clean exit: status 0, so `make run` prints no "Error 130/143". Further
# signals are ignored from the first moment: a second SIGTERM (make forwards one besides the process group's)
# landing before on_exit ignores them would end the shell inside its own exit, with nothing stopped.
trap 'trap "" INT TERM; say "interrupted"; exit 0' INT
trap 'trap "" INT TERM; say "terminated"; exit 0' TERM

# FAKES=1: the bundled fakes, and the settings that point the app at them (after stack_services_start, which
# creates ./var/secrets.env).
fakes_start() {
    local f=$STACK_DIR/secrets.env
    if ! command -v node >/dev/null 2>&1; then
        say "FAKES=1 needs node (scripts/deps.sh installs it)"
        return 1
    fi
    stack_fakes_start || return 1
    if ! grep -q '^STRIPE_WEBHOOK_SECRET=' "$f" 2>/dev/null; then
        printf 'STRIPE_WEBHOOK_SECRET=whsec_%s\n' "$(_stack_random_hex 24)" >>"$f" || return 1
    fi
    STRIPE_WEBHOOK_SECRET=$(sed -n 's/^STRIPE_WEBHOOK_SECRET=//p' "$f" | tail -n 1)
    export STRIPE_WEBHOOK_SECRET STRIPE_API_BASE=$FAKE_STRIPE_URL STRIPE_SECRET_KEY=sk_test_fake
    export STRIPE_PRICE_ID=price_test_pro
    export AI_PROVIDER=gemini GEMINI_API_KEY=test-gemini-key GEMINI_API_BASE=$FAKE_AI_URL
    LOGS+=", $STACK_DIR/fake-stripe.log, $STACK_DIR/fake-ai.log"
}

# A DATABASE_URL or REDIS_URL given by the caller must answer: say so by name at once (rather than a failed schema
# step, or a stack that silently runs without Redis).
servers_reachable() {
    local err
    if [[ -n ${DATABASE_URL:-} ]]; then
        if ! err=$(PGCONNECT_TIMEOUT=5 psql -X -q -A -t -d "$DATABASE_URL" -c 'SELECT 1' 2>&1 >/dev/null); then
            say "DATABASE_URL: cannot connect to $(mask "$DATABASE_URL"): $(head -n 1 <<<"$err" | sed 's/^psql: error: //')"
            say "(unset DATABASE_URL to use the private PostgreSQL under ./var)"
            return 1
        fi
    fi
    if [[ -n ${REDIS_URL:-} ]]; then
        local cli=(redis-cli) url=$REDIS_URL out
        case $url in
        unix://*)
            url=${url#unix://}
            cli+=(-s "${url%%\?*}")
            [[ $REDIS_URL == *\?db=* ]] && cli+=(-n "${REDIS_URL##*\?db=}")
            ;;
        redis://*) cli+=(-u "$url") ;;
        esac
        out=$(timeout 5 "${cli[@]}" ping 2>&1 </dev/null | grep -v '^Warning: Using a password' | head -n 1) || true
        if [[ $out != PONG ]]; then
            say "REDIS_URL: cannot connect to $(mask "$REDIS_URL"): ${out:-no answer within 5 s}"
            say "(unset REDIS_URL to use the private Redis under ./var)"
            return 1
        fi
    fi
}

# Client commands for the two stores. A password in a URL the caller gave is not printed.
mask() { sed -E 's#^([a-z]+://[^/:@]*):[^/@]*@#\1:***@#' <<<"$1"; }
servers_reachable || exit 1
stack_services_start || exit 1
if ((FAKES)); then fakes_start || exit 1; fi
stack_web_start || exit 1
stack_worker_start || exit 1

case $REDIS_URL in
unix://*)
    redis_path=${REDIS_URL#unix://}
    redis_cmd="redis-cli -s ${redis_path%%\?*}"
    [[ $REDIS_URL == *\?db=* ]] && redis_cmd+=" -n ${REDIS_URL##*\?db=}"
    ;;
*) redis_cmd="redis-cli -u '$(mask "$REDIS_URL")'" ;;
esac

fakes_banner=''
if ((FAKES)); then
    fakes_banner=$(printf '    fakes:    Stripe %s, Gemini %s (FAKES=1: replies are "fake-gemini: ...")\n' \
        "$FAKE_STRIPE_URL" "$FAKE_AI_URL")$'\n'
    fakes_banner+=$(printf '    pro:      PORT=%s scripts/stripe-trigger.sh checkout.session.completed USER_ID' "$PORT")$'\n'
fi
cat >&2 <<EOF

  gemini-backend is running on $BASE_URL   (APP_ENV=$APP_ENV)
    health:   curl -s $BASE_URL/healthz
    examples: README.md, "Try it with curl"
    DATABASE_URL=$(mask "$DATABASE_URL")
    REDIS_URL=$(mask "$REDIS_URL")
    psql:     psql '$(mask "$DATABASE_URL")'
    redis:    $redis_cmd
    data:     $STACK_DIR (PostgreSQL, Redis, secrets.env); logs: $LOGS
    worker:   $(if _stack_alive worker; then echo running; else echo "not built (no $BUILD_DIR/worker/worker)"; fi)
${fakes_banner}  Ctrl-C stops everything.

EOF

# Supervise the servers; `sleep & wait` keeps the traps immediate.
watched=(web)
_stack_alive postgres && watched+=(postgres)
_stack_alive redis && watched+=(redis)
_stack_alive worker && watched+=(worker)
declare -A fails=() up_since=() next_try=()
for name in "${watched[@]}"; do fails[$name]=0 up_since[$name]=$SECONDS next_try[$name]=0; done

restart_service() { # NAME: start it again (its pid file names a dead process)
    rm -f "$STACK_DIR/$1.pid"
    case $1 in
    postgres) stack_pg_start ;;
    redis) stack_redis_start ;;
    worker) stack_worker_start ;;
    web) # its programs may outlive it: stop them first, then start it all anew
        stack_web_stop >/dev/null 2>&1 || true
        stack_web_start
        ;;
    esac
}

schedule_restart() { # NAME WHAT: count a failure and pick the next try, 1 s doubling up to 30 s
    local n=$((fails[$1] + 1)) delay
    fails[$1]=$n
    delay=$((1 << (n - 1 < 5 ? n - 1 : 5)))
    ((delay > 30)) && delay=30
    next_try[$1]=$((SECONDS + delay))
    say "$1 $2; restarting it in ${delay}s (restart $n)"
}

while :; do
    for name in "${watched[@]}"; do
        if _stack_alive "$name"; then
            # up for 30 s: the next death starts the backoff from 1 s again
            ((fails[$name] > 0 && next_try[$name] == 0 && SECONDS - up_since[$name] >= 30)) && fails[$name]=0
            continue
        fi
        if ((next_try[$name] == 0)); then
            schedule_restart "$name" "exited unexpectedly"
            case $name in
            postgres) tail -n 5 "$STACK_DIR/postgres.log" >&2 || true ;;
            redis) tail -n 5 "$STACK_DIR/redis.log" >&2 || true ;;
            esac
        elif ((SECONDS >= next_try[$name])); then
            if restart_service "$name"; then
                next_try[$name]=0 up_since[$name]=$SECONDS
                say "$name restarted (pid $(_stack_pid "$name" || echo '?'))"
            else
                schedule_restart "$name" "did not start"
            fi
        fi
    done
    sleep 1 &
    wait $! || true
done
