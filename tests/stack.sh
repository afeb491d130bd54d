# shellcheck shell=bash
# tests/stack.sh: start and stop a private gemini-backend stack (PostgreSQL, Redis, fakes, lighttpd with the
# FastCGI programs, the worker) in one directory. Sourced by tests/run.sh, scripts/run.sh and tests/lib.sh.
#
# Inputs (environment; exported so that e2e scripts sourcing this file drive the same stack):
#   STACK_DIR   absolute directory holding everything: data, sockets, pid files, *.log      (required)
#   STACK_MODE  "test": throwaway (fsync off, Redis without persistence, fakes, test config)
#   STACK_PG_DURABLE  1: PostgreSQL with fsync and synchronous_commit on in test mode too (make bench)
#               "run":  `make run` (durable PostgreSQL, Redis saved to STACK_DIR/redis, no fakes,
#                       the caller's environment honoured; app logs go to the terminal)
#   BUILD_DIR   build directory holding cgi-bin/ and worker/ (build or build-asan; relative to the repo root
#               or absolute)
#   STACK_WEB   web server flavour for stack_web_start/stop: web_<flavour>_start/stop (default lighttpd)
#   DEPLOYMENT  name used for the web server's log file, STACK_DIR/<DEPLOYMENT>.log (default: STACK_WEB)
#   PORT        HTTP port in run mode (default 8080); tests pick a free one
#   STACK_WEB_CONF_EXTRA  lines in the web server's own syntax added to its committed configuration (a copy in
#               STACK_DIR/web; lighttpd and Apache: at the end, nginx: at the top of the server block); tests
#               only: the README's snippets (tests/e2e/18_proxy_address.sh)
#
# Functions (each returns 0, or 1 after printing the reason and the tail of the relevant log):
#   stack_start                       everything: stack_services_start, stack_web_start, stack_worker_start
#   stack_stop                        everything that has a pid file, also when half started
#   stack_services_start              PostgreSQL (+ database, schema), Redis, fakes, app environment
#   stack_pg_start / stack_pg_stop    the cluster on the same data and socket (stop = fast shutdown)
#   stack_schema_apply                apply schema.sql (idempotent)
#   stack_redis_start / stack_redis_stop
#   stack_fakes_start / stack_fakes_stop   (start exports FAKE_*_URL and, in test mode, the app's base URLs)
#   stack_web_start / stack_web_stop  exports BASE_URL
#   stack_worker_start / stack_worker_stop [SIGNAL]   (no-op when BUILD_DIR has no worker)
#
# Layout of STACK_DIR: pgdata/ (cluster), pg/ (its socket), redis.sock, redis/ (run mode data), web/ (FastCGI
# sockets, empty document root), NAME.pid, NAME.port (fakes), *.log.
#
# Every server runs in the foreground (no daemonizing) in a session of its own, with its pid in a pid file;
# stopping works from any process (an e2e script may stop and restart PostgreSQL, Redis or the worker).

[[ -n ${_GB_STACK_SH_LOADED:-} ]] && return 0
_GB_STACK_SH_LOADED=1

# The repository this file belongs to (never inherited: a stack always runs its own checkout's code).
GB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export GB_ROOT

# PostgreSQL server binaries are not on PATH on Debian.
if [[ -z ${PG_BINDIR:-} ]]; then
    PG_BINDIR=/usr/lib/postgresql/15/bin
    if [[ ! -x $PG_BINDIR/postgres ]]; then
        for _d in /usr/lib/postgresql/*/bin; do
            [[ -x $_d/postgres ]] && PG_BINDIR=$_d
        done
        unset _d
    fi
fi
export PG_BINDIR

STACK_PG_PORT=5432 # only names the socket file (.s.PGSQL.5432) in STACK_DIR/pg: no TCP
STACK_APP_BINARIES=(auth chatroom subscribe webhook stream)
STACK_START_TIMEOUT=${STACK_START_TIMEOUT:-60} # seconds to wait for a server to answer
STACK_STOP_TIMEOUT=${STACK_STOP_TIMEOUT:-20}   # seconds after the polite signal, then SIGKILL

# ---- small helpers -------------------------------------------------------------------------------------------

_stack_say() { printf 'stack: %s\n' "$*" >&2; }

# _stack_fail MESSAGE [LOGFILE]: print the message and the log's tail; returns 1.
_stack_fail() {
    _stack_say "ERROR: $1"
    if [[ -n ${2:-} && -s $2 ]]; then
        printf -- '---- last lines of %s ----\n' "$2" >&2
        tail -n 40 "$2" >&2
        printf -- '---- end of %s ----\n' "$2" >&2
    fi
    return 1
}

_stack_need_dir() {
    if [[ -z ${STACK_DIR:-} ]]; then
        _stack_say "ERROR: STACK_DIR is not set"
        return 1
    fi
    case $STACK_DIR in
    /*) ;;
    *) STACK_DIR=$(cd "$STACK_DIR" && pwd) || return 1 ;;
    esac
    mkdir -p "$STACK_DIR" || return 1
    # Others may pass through (the postgres and web server accounts reach sockets in it), never list or write:
    # made under make run's umask 027, or by mktemp, it would be closed to them.
    chmod o-rw,o+x "$STACK_DIR" 2>/dev/null || true
    export STACK_DIR STACK_MODE=${STACK_MODE:-test}
}

_stack_abs() {
    case $1 in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s\n' "$GB_ROOT/$1" ;;
    esac
}

_stack_random_hex() { # BYTES
    if command -v openssl >/dev/null 2>&1; then
        openssl rand -hex "$1"
    else
        od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'
        echo
    fi
}

# Percent-encode for a URI component (paths in DATABASE_URL's host parameter).
_stack_urlenc() {
    local s=$1 out='' c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
        [A-Za-z0-9/._~-]) out+=$c ;;
        *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s\n' "$out"
}

# stack_program_pids PROG: the processes of program PROG (auth, chatroom, ...) of the running deployment, one
# pid a line: lighttpd's children, the spawn-fcgi'd ones of STACK_DIR/web/*.pids, or (plain CGI) the children
# of fcgiwrap.
stack_program_pids() {
    local prog=$1 p bin parents=() cands=()
    bin=$(cat "$STACK_DIR/web.bin" 2>/dev/null) || return 0
    parents=("$(cat "$STACK_DIR/web.pid" 2>/dev/null)")
    if compgen -G "$STACK_DIR/web/*.pids" >/dev/null; then
        mapfile -t -O 1 parents < <(awk 1 "$STACK_DIR"/web/*.pids) # awk: each file's last line has no newline
    fi
    cands=("${parents[@]}")
    for p in "${parents[@]}"; do
        [[ $p =~ ^[0-9]+$ ]] && mapfile -t -O "${#cands[@]}" cands < <(pgrep -P "$p" 2>/dev/null)
    done
    for p in "${cands[@]}"; do
        [[ $p =~ ^[0-9]+$ && $(readlink "/proc/$p/exe" 2>/dev/null) == "$bin/$prog" ]] && echo "$p"
    done | sort -u
    return 0
}

# stack_respawn_program PROG: after its processes were killed, bring PROG's FastCGI pool back as its service
# manager would. lighttpd respawns its programs itself and fcgiwrap runs a new process per request; spawn-fcgi
# (nginx, Apache) does not: the program is spawned anew on its socket.
stack_respawn_program() {
    local prog=$1 alive=() p
    [[ -f $STACK_DIR/web/$prog.pids ]] || return 0
    while read -r p; do
        # alive, and not a zombie that nobody has reaped yet (spawn-fcgi's children have no parent waiting)
        [[ $p =~ ^[0-9]+$ && $(ps -o stat= -p "$p" 2>/dev/null) == [^Z]* ]] && alive+=("$p")
    done < <(awk 1 "$STACK_DIR/web/$prog.pids")
    ((${#alive[@]} >= WEB_FCGI_PROCS)) && return 0
    _web_common_env || return 1
    ((${#alive[@]} == 0)) || _stack_kill_pids TERM 10 "${alive[@]}"
    _web_spawn "$prog" "$WEB_FCGI_PROCS" "$WEB_BIN/$prog"
}

_stack_pid() { # NAME: print the pid from STACK_DIR/NAME.pid if that process is alive
    local f=$STACK_DIR/$1.pid pid
    [[ -s $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    printf '%s\n' "$pid"
}

_stack_alive() { _stack_pid "$1" >/dev/null; }

# _stack_wait_gone TIMEOUT PID...: wait until every PID has exited; 1 if some are still there.
_stack_wait_gone() {
    local timeout=$1 deadline pid left
    shift
    deadline=$((SECONDS + timeout))
    while :; do
        left=0
        for pid in "$@"; do
            if kill -0 "$pid" 2>/dev/null; then
                # Reap it if it is our own child (a zombie would look alive to kill -0).
                if [[ $(ps -o stat= -p "$pid" 2>/dev/null) == Z* ]]; then
                    wait "$pid" 2>/dev/null || true
                else
                    left=1
                fi
            fi
        done
        ((left)) || return 0
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# _stack_kill_pids SIGNAL TIMEOUT PID...: signal, wait, then SIGKILL what is left and wait again.
_stack_kill_pids() {
    local sig=$1 timeout=$2 pid
    shift 2
    (($# > 0)) || return 0
    kill "-$sig" "$@" 2>/dev/null || true
    if ! _stack_wait_gone "$timeout" "$@"; then
        _stack_say "still running after SIG$sig and ${timeout}s, sending SIGKILL: $*"
        kill -KILL "$@" 2>/dev/null || true
        _stack_wait_gone 5 "$@" || true
    fi
    for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

# _stack_stop_pidfile NAME [SIGNAL]: stop the process of STACK_DIR/NAME.pid (default SIGTERM).
_stack_stop_pidfile() {
    local name=$1 sig=${2:-TERM} pid
    if pid=$(_stack_pid "$name"); then
        _stack_kill_pids "$sig" "$STACK_STOP_TIMEOUT" "$pid"
    fi
    rm -f "$STACK_DIR/$name.pid"
}

# _stack_wait_until TIMEOUT PIDNAME LOG COMMAND...: poll COMMAND until it succeeds; fail when the process of
# PIDNAME dies or the time is up.
_stack_wait_until() {
    local timeout=$1 name=$2 log=$3 deadline
    shift 3
    deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ! _stack_alive "$name"; then
            _stack_fail "$name exited during start-up" "$log"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            _stack_fail "$name did not become ready within ${timeout}s" "$log"
            return 1
        fi
        sleep 0.1
    done
}

# _stack_bg COMMAND...: start COMMAND in the background ($! is its pid), in a session of its own: signals aimed
# at the caller's process group (Ctrl-C on `make run`, `timeout` killing an e2e script that restarted a server)
# do not reach the servers, which are stopped by pid, in order (worker, web server and its FastCGI programs,
# Redis, PostgreSQL), by whoever owns the stack (scripts/run.sh, tests/run.sh).
_stack_bg() {
    if command -v setsid >/dev/null 2>&1; then
        setsid "$@" &
    else
        "$@" &
    fi
    disown "$!"
}

# A free TCP port on 127.0.0.1: nothing answers a connect there. Needs no python3 or ss.
_stack_free_port() {
    local p i lo=32768 hi
    # Below the kernel's ephemeral range: a port from inside it can be taken by any outgoing connection between
    # this probe and the server's bind (make run builds first: seconds), and a run failed so once.
    read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    ((lo > 16000)) || lo=61000
    for ((i = 0; i < 200; i++)); do
        p=$((15000 + (RANDOM * 32768 + RANDOM) % (lo - 15000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            printf '%s\n' "$p"
            return 0
        fi
    done
    return 1
}

# ---- PostgreSQL ----------------------------------------------------------------------------------------------
# initdb and postgres refuse to run as root: then they run as the "postgres" account (setpriv execs, so the pid
# we keep is the postmaster's own), and the data and socket directories belong to it.

# The command prefix that runs a program as the PostgreSQL account when we are root.
_stack_pg_prefix() {
    _STACK_PG_PREFIX=()
    if ((EUID == 0)); then
        if command -v setpriv >/dev/null 2>&1; then
            _STACK_PG_PREFIX=(setpriv --reuid=postgres --regid=postgres --init-groups --)
        else
            _STACK_PG_PREFIX=(runuser -u postgres --)
        fi
    fi
}

_stack_as_pg() {
    _stack_pg_prefix
    "${_STACK_PG_PREFIX[@]}" "$@"
}

_stack_pg_user() {
    if ((EUID == 0)); then echo postgres; else id -un; fi
}

_stack_pg_init() {
    local data=$STACK_DIR/pgdata sock=$STACK_DIR/pg log=$STACK_DIR/postgres.log
    mkdir -p "$data" "$sock" || return 1
    chmod 700 "$data" "$sock" || return 1
    if ((EUID == 0)); then
        if ! getent passwd postgres >/dev/null; then
            _stack_fail "running as root needs the 'postgres' account (package postgresql-common)"
            return 1
        fi
        # mktemp directories are 0700: the postgres account must be able to pass through STACK_DIR.
        chmod 711 "$STACK_DIR" || return 1
        chown postgres: "$data" "$sock" || return 1
        if ! _stack_as_pg test -w "$data" -a -w "$sock"; then
            _stack_fail "user postgres cannot reach $STACK_DIR (a parent directory is not traversable: chmod o+x it)"
            return 1
        fi
    fi
    [[ -f $data/PG_VERSION ]] && return 0
    _stack_say "initdb $data"
    if ! _stack_as_pg "$PG_BINDIR/initdb" -D "$data" -U "$(_stack_pg_user)" -A trust -E UTF8 \
        --locale=C.UTF-8 </dev/null >>"$log" 2>&1; then
        _stack_fail "initdb failed" "$log"
        return 1
    fi
}

_stack_pg_ready() {
    "$PG_BINDIR/pg_isready" -q -h "$STACK_DIR/pg" -p "$STACK_PG_PORT" -d postgres -U "$(_stack_pg_user)"
}

stack_pg_start() {
    _stack_need_dir || return 1
    local log=$STACK_DIR/postgres.log
    _stack_alive postgres && return 0
    _stack_pg_init || return 1
    local opts=(-D "$STACK_DIR/pgdata" -k "$STACK_DIR/pg" -p "$STACK_PG_PORT" -c listen_addresses=)
    if [[ $STACK_MODE == test && ${STACK_PG_DURABLE:-0} != 1 ]]; then
        # Throwaway cluster: durability buys nothing. Never in run mode (nor with STACK_PG_DURABLE=1: make bench).
        opts+=(-c fsync=off -c synchronous_commit=off -c full_page_writes=off)
    else
        # Group commit: a committing backend waits commit_delay us when at least commit_siblings other
        # transactions are open, so concurrent posts (one FastCGI process each) share one WAL flush instead of
        # paying an fsync each. It only acts under concurrency: a lone commit is not delayed.
        opts+=(-c commit_delay=200 -c commit_siblings=2)
    fi
    _stack_pg_prefix
    _stack_bg "${_STACK_PG_PREFIX[@]}" "$PG_BINDIR/postgres" "${opts[@]}" </dev/null >>"$log" 2>&1
    echo $! >"$STACK_DIR/postgres.pid"
    _stack_wait_until "$STACK_START_TIMEOUT" postgres "$log" _stack_pg_ready
}

# Fast shutdown (SIGINT: abort transactions, disconnect clients, checkpoint), then immediate, then SIGKILL.
stack_pg_stop() {
    _stack_need_dir || return 1
    local pid pm=''
    pid=$(_stack_pid postgres) || {
        rm -f "$STACK_DIR/postgres.pid"
        return 0
    }
    # The postmaster is the process to signal (same as pid unless runuser sits in between).
    if [[ -r $STACK_DIR/pgdata/postmaster.pid ]]; then
        pm=$(head -n 1 "$STACK_DIR/pgdata/postmaster.pid" 2>/dev/null || true)
    fi
    [[ $pm =~ ^[0-9]+$ ]] || pm=$pid
    kill -INT "$pm" 2>/dev/null || true
    if ! _stack_wait_gone "$STACK_STOP_TIMEOUT" "$pid" "$pm"; then
        kill -QUIT "$pm" 2>/dev/null || true
        _stack_wait_gone 5 "$pid" "$pm" || true
    fi
    _stack_kill_pids KILL 5 "$pid" "$pm"
    rm -f "$STACK_DIR/postgres.pid"
}

# Connection string of the private cluster (socket directory in the host parameter).
_stack_pg_url() { # DBNAME
    printf 'postgresql:///%s?host=%s&user=%s\n' "$1" "$(_stack_urlenc "$STACK_DIR/pg")" "$(_stack_pg_user)"
}

_stack_pg_createdb() {
    local url log=$STACK_DIR/schema.log
    url=$(_stack_pg_url postgres)
    if [[ -z $(psql -X -A -t -q -d "$url" -c "SELECT 1 FROM pg_database WHERE datname = 'gemini'" 2>>"$log") ]]; then
        psql -X -q -v ON_ERROR_STOP=1 -d "$url" -c 'CREATE DATABASE gemini' >>"$log" 2>&1 ||
            {
                _stack_fail "CREATE DATABASE gemini failed" "$log"
                return 1
            }
    fi
}

# Apply schema.sql to DATABASE_URL in one transaction. Idempotent by construction of the file.
stack_schema_apply() {
    _stack_need_dir || return 1
    local log=$STACK_DIR/schema.log
    if ! PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 -1 \
        -f "$GB_ROOT/schema.sql" -d "$DATABASE_URL" >>"$log" 2>&1; then
        _stack_fail "applying schema.sql failed" "$log"
        return 1
    fi
}

# ---- Redis ---------------------------------------------------------------------------------------------------

stack_redis_start() {
    _stack_need_dir || return 1
    local log=$STACK_DIR/redis.log sock=$STACK_DIR/redis.sock
    _stack_alive redis && return 0
    local args=(--port 0 --unixsocket "$sock" --unixsocketperm 700 --daemonize no --logfile '')
    if [[ $STACK_MODE == run ]]; then
        mkdir -p "$STACK_DIR/redis" || return 1
        args+=(--save '60 1' --appendonly no --dir "$STACK_DIR/redis")
    else
        # Test Redis keeps nothing: a restart (stack_redis_stop/start) loses every key.
        args+=(--save '' --appendonly no --dir "$STACK_DIR")
    fi
    _stack_bg redis-server "${args[@]}" </dev/null >>"$log" 2>&1
    echo $! >"$STACK_DIR/redis.pid"
    _stack_wait_until "$STACK_START_TIMEOUT" redis "$log" _stack_redis_ping
}

_stack_redis_ping() { [[ $(redis-cli -s "$STACK_DIR/redis.sock" ping 2>/dev/null) == PONG ]]; }

# SIGTERM: Redis saves first when it has save points (run mode), then exits.
stack_redis_stop() {
    _stack_need_dir || return 1
    _stack_stop_pidfile redis TERM
}

# ---- fakes (tests only) --------------------------------------------------------------------------------------
# Every tests/fakes/NAME.js runs as `node NAME.js --port-file STACK_DIR/NAME.port`, listens on 127.0.0.1 port 0
# and writes its port there; FAKE_<NAME>_URL=http://127.0.0.1:PORT is exported.

stack_fakes_start() {
    _stack_need_dir || return 1
    local f name var port log portfile
    for f in "$GB_ROOT"/tests/fakes/*.js; do
        [[ -f $f ]] || continue
        name=$(basename "$f" .js)
        var=FAKE_$(printf '%s' "$name" | tr '[:lower:]' '[:upper:]' | tr -c 'A-Z0-9' '_')_URL
        log=$STACK_DIR/fake-$name.log
        portfile=$STACK_DIR/$name.port
        if ! _stack_alive "fake-$name"; then
            rm -f "$portfile"
            _stack_bg node "$f" --port-file "$portfile" </dev/null >>"$log" 2>&1
            echo $! >"$STACK_DIR/fake-$name.pid"
            _stack_wait_until 20 "fake-$name" "$log" _stack_port_file "$portfile" || return 1
        fi
        port=$(<"$portfile")
        export "$var=http://127.0.0.1:${port//[^0-9]/}"
    done
    _stack_env_fakes
}

_stack_port_file() { [[ -s $1 && $(<"$1") =~ ^[0-9]+[[:space:]]*$ ]]; }

stack_fakes_stop() {
    _stack_need_dir || return 1
    local f name
    for f in "$STACK_DIR"/fake-*.pid; do
        [[ -f $f ]] || continue
        name=$(basename "$f" .pid)
        _stack_stop_pidfile "$name" TERM
    done
}

# ---- application environment ---------------------------------------------------------------------------------

# Test mode: a fixed, complete configuration (the harness contract in the common brief); whatever the calling
# shell had is replaced, so a developer's own keys never reach the tests and the tests never reach the internet
# (without a fake, the upstream base URLs point at a closed local port).
_stack_env_test() {
    local v
    for v in ENV_FILE JWT_TTL_SECONDS BASIC_DAILY_LIMIT GEMINI_MODEL OPENAI_MODEL AI_SYSTEM_PROMPT \
        AI_HISTORY_MESSAGES AI_TIMEOUT_MS AI_MAX_ATTEMPTS WORKER_CONCURRENCY WORKER_RECOVER_SECONDS; do
        unset "$v"
    done
    # The abuse limits keep their defaults (tests/e2e/17_abuse.sh relies on them).
    for v in LOGIN_MAX_FAILURES LOGIN_ADDR_MAX_FAILURES LOGIN_BACKOFF_SECONDS LOGIN_BACKOFF_MAX_SECONDS \
        PASSWORD_HASH_CONCURRENCY SIGNUP_ADDR_MAX_PER_HOUR OTP_VERIFY_MAX_FAILURES OTP_VERIFY_ADDR_MAX_FAILURES \
        CHATROOM_MAX_PER_USER; do
        unset "$v"
    done
    export DATABASE_URL REDIS_URL JWT_SECRET
    DATABASE_URL=$(_stack_pg_url gemini)
    REDIS_URL=unix://$STACK_DIR/redis.sock
    JWT_SECRET=$(_stack_random_hex 48)
    export APP_ENV=production LOG_LEVEL=${TEST_LOG_LEVEL:-info} OTP_IN_RESPONSE=1
    export AI_PROVIDER=gemini GEMINI_API_KEY=test-gemini-key OPENAI_API_KEY=test-openai-key
    export STRIPE_SECRET_KEY=sk_test_fake STRIPE_WEBHOOK_SECRET=whsec_test_fake STRIPE_PRICE_ID=price_test_pro
    # Two origins a browser client may call from (tests/e2e/05_web.sh checks CORS against them).
    export CORS_ALLOWED_ORIGINS='https://app.example.test, http://localhost:5173'
    export METRICS_DIR=$STACK_DIR/metrics
    _stack_env_fakes
}

# The upstream base URLs of the app in test mode: the fakes (again after every stack_fakes_start, since their
# ports change), or a closed local port when a fake does not exist.
_stack_env_fakes() {
    [[ $STACK_MODE == test ]] || return 0
    local closed=http://127.0.0.1:9
    export GEMINI_API_BASE=${FAKE_AI_URL:-$closed} OPENAI_API_BASE=${FAKE_AI_URL:-$closed}/v1
    export STRIPE_API_BASE=${FAKE_STRIPE_URL:-$closed}
}

# Run mode: the caller's settings win; only missing ones get development defaults. A DATABASE_URL or
# REDIS_URL given by the caller means "use that server": the private one is then not started.
_stack_env_run() {
    export PORT=${PORT:-8080}
    export APP_ENV=${APP_ENV:-development}
    export LOG_LEVEL=${LOG_LEVEL:-info}
    export PUBLIC_URL=${PUBLIC_URL:-http://127.0.0.1:$PORT}
    if [[ -z ${JWT_SECRET:-} ]]; then
        local f=$STACK_DIR/secrets.env
        # (The file may exist without it: `make run FAKES=1` with a JWT_SECRET given adds only its webhook secret.)
        if ! grep -q '^JWT_SECRET=' "$f" 2>/dev/null; then
            (
                umask 077
                printf '# generated by scripts/run.sh; delete to rotate (signs every token out)\n' >>"$f"
                printf 'JWT_SECRET=%s\n' "$(_stack_random_hex 48)" >>"$f"
            ) || return 1
        fi
        chmod 600 "$f"
        JWT_SECRET=$(sed -n 's/^JWT_SECRET=//p' "$f" | tail -n 1)
        [[ -n $JWT_SECRET ]] || {
            _stack_fail "$f has no JWT_SECRET line"
            return 1
        }
    fi
    export JWT_SECRET
}

# ---- services: PostgreSQL + database + schema, Redis, fakes, environment -------------------------------------

stack_services_start() {
    _stack_need_dir || return 1
    if [[ $STACK_MODE == run ]]; then
        _stack_env_run || return 1
        if [[ -z ${DATABASE_URL:-} ]]; then
            stack_pg_start || return 1
            _stack_pg_createdb || return 1
            DATABASE_URL=$(_stack_pg_url gemini)
        else
            _stack_say "using the DATABASE_URL from the environment (no private PostgreSQL)"
        fi
        export DATABASE_URL
        stack_schema_apply || return 1
        if [[ -z ${REDIS_URL:-} ]]; then
            stack_redis_start || return 1
            REDIS_URL=unix://$STACK_DIR/redis.sock
        else
            _stack_say "using the REDIS_URL from the environment (no private Redis)"
        fi
        export REDIS_URL
    else
        stack_pg_start || return 1
        _stack_pg_createdb || return 1
        stack_redis_start || return 1
        stack_fakes_start || return 1
        _stack_env_test || return 1
        stack_schema_apply || return 1
    fi
}

# ---- web server ----------------------------------------------------------------------------------------------
# stack_web_start/stop dispatch to web_<STACK_WEB>_start/stop so that other servers (nginx + spawn-fcgi, Apache)
# can be added beside lighttpd. A web_*_start exports BASE_URL and keeps its pid in STACK_DIR/web.pid.

stack_web_start() {
    _stack_need_dir || return 1
    local web=${STACK_WEB:-lighttpd}
    declare -F "web_${web}_start" >/dev/null || {
        _stack_fail "unknown STACK_WEB=$web"
        return 1
    }
    "web_${web}_start"
}

stack_web_stop() {
    _stack_need_dir || return 1
    local web=${STACK_WEB:-lighttpd}
    if declare -F "web_${web}_stop" >/dev/null; then
        "web_${web}_stop"
    else
        web_lighttpd_stop
    fi
}

_stack_web_log() {
    printf '%s/%s.log\n' "$STACK_DIR" "${DEPLOYMENT:-${STACK_WEB:-lighttpd}}"
}

# The app binaries of BUILD_DIR must all exist: lighttpd would fail on a missing bin-path anyway.
_stack_check_binaries() {
    local bin=$1 name missing=()
    for name in "${STACK_APP_BINARIES[@]}"; do
        [[ -x $bin/$name ]] || missing+=("$bin/$name")
    done
    if ((${#missing[@]})); then
        _stack_fail "missing FastCGI programs (run make${BUILD_DIR:+ for $BUILD_DIR}): ${missing[*]}"
        return 1
    fi
}

_stack_web_ready() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$BASE_URL/healthz" 2>/dev/null) || true
    [[ -n $code && $code != 000 ]]
}

# _stack_web_conf NAME DIR: the configuration file (lighttpd.conf, apache.conf) to start with: the committed one,
# or with STACK_WEB_CONF_EXTRA a copy in DIR with those lines at the end.
_stack_web_conf() {
    if [[ -z ${STACK_WEB_CONF_EXTRA:-} ]]; then
        printf '%s\n' "$GB_ROOT/$1"
        return 0
    fi
    printf '%s\n# STACK_WEB_CONF_EXTRA\n%s\n' "$(<"$GB_ROOT/$1")" "$STACK_WEB_CONF_EXTRA" >"$2/$1" || return 1
    printf '%s\n' "$2/$1"
}

web_lighttpd_start() {
    local bin state log port conf
    _stack_alive web && return 0
    bin=$(_stack_abs "${BUILD_DIR:-build}/cgi-bin")
    _stack_check_binaries "$bin" || return 1
    state=$STACK_DIR/web
    mkdir -p "$state/htdocs" || return 1
    chmod 711 "$state" || return 1
    rm -f "$state"/*.sock-* 2>/dev/null || true
    conf=$(_stack_web_conf lighttpd.conf "$state") || return 1
    log=$(_stack_web_log)
    for _ in 1 2 3; do
        if [[ $STACK_MODE == run ]]; then
            port=${PORT:-8080}
        else
            port=$(_stack_free_port) || {
                _stack_fail "no free TCP port found"
                return 1
            }
        fi
        export GB_PORT=$port GB_BIN_DIR=$bin GB_WWW_DIR=$(_stack_abs "${BUILD_DIR:-build}/www") GB_STATE_DIR=$state GB_ERRORLOG=''
        export BASE_URL=http://127.0.0.1:$port PORT=$port
        [[ $STACK_MODE == run ]] || export PUBLIC_URL=$BASE_URL
        if [[ $STACK_MODE == run ]]; then
            # Foreground development server: lighttpd's and the app's lines go to the terminal.
            _stack_bg lighttpd -D -f "$conf" </dev/null
        else
            printf -- '---- %s: lighttpd on %s with %s ----\n' "${DEPLOYMENT:-lighttpd}" "$BASE_URL" "$bin" >>"$log"
            _stack_bg lighttpd -D -f "$conf" </dev/null >>"$log" 2>&1
        fi
        echo $! >"$STACK_DIR/web.pid"
        printf '%s\n' "$bin" >"$STACK_DIR/web.bin"
        if _stack_wait_until "$STACK_START_TIMEOUT" web "$log" _stack_web_ready 2>/dev/null; then
            return 0
        fi
        # A port taken between our probe and lighttpd's bind: try another one (tests only).
        if [[ $STACK_MODE != run ]] && ! _stack_alive web && tail -n 5 "$log" | grep -q 'Address already in use'; then
            continue
        fi
        break
    done
    if _stack_alive web; then
        _stack_fail "lighttpd on port $port: no answer on /healthz within ${STACK_START_TIMEOUT}s" "$log"
    else
        _stack_fail "lighttpd failed to start on port $port" "$log"
    fi
    web_lighttpd_stop
    return 1
}

# The FastCGI programs of this stack: lighttpd's children, plus any orphan (after a lighttpd crash) running a
# binary of the same bin directory with our GB_STATE_DIR in its environment.
_stack_web_programs() {
    local lpid=${1:-} bin p exe
    if [[ -n $lpid ]] && command -v pgrep >/dev/null 2>&1; then
        pgrep -P "$lpid" || true
    fi
    bin=$(cat "$STACK_DIR/web.bin" 2>/dev/null) || return 0
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        exe=$(readlink "/proc/$p/exe" 2>/dev/null) || continue
        [[ $exe == "$bin"/* ]] || continue
        if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qxF "GB_STATE_DIR=$STACK_DIR/web"; then
            printf '%s\n' "$p"
        fi
    done
}

web_lighttpd_stop() {
    _stack_need_dir || return 1
    local lpid='' kids=()
    lpid=$(_stack_pid web) || lpid=''
    mapfile -t kids < <(_stack_web_programs "$lpid" | sort -u)
    if [[ -n $lpid ]]; then
        # lighttpd stops its FastCGI programs with SIGTERM on the way out.
        _stack_kill_pids TERM "$STACK_STOP_TIMEOUT" "$lpid"
    fi
    rm -f "$STACK_DIR/web.pid"
    # Wait for the programs to finish (sanitizer builds write their leak reports at exit), then insist.
    local alive=() p
    for p in "${kids[@]}"; do
        kill -0 "$p" 2>/dev/null && alive+=("$p")
    done
    if ((${#alive[@]})); then
        if ! _stack_wait_gone "$STACK_STOP_TIMEOUT" "${alive[@]}"; then
            _stack_kill_pids TERM 5 "${alive[@]}"
        fi
    fi
    rm -f "$STACK_DIR"/web/*.sock-* "$STACK_DIR/web.bin" 2>/dev/null || true
}

# Apache and nginx: web_apache_*, web_nginx_*, web_nginxcgi_*.
# shellcheck source=web.sh
source "$GB_ROOT/tests/web.sh"

# ---- worker --------------------------------------------------------------------------------------------------

# Start BUILD_DIR/worker/worker (its daemon mode: no arguments, or WORKER_ARGS) with the current environment.
stack_worker_start() {
    _stack_need_dir || return 1
    local bin log=$STACK_DIR/worker.log
    bin=$(_stack_abs "${BUILD_DIR:-build}/worker/worker")
    if [[ ! -x $bin ]]; then
        _stack_say "no worker at $bin: not started"
        return 0
    fi
    _stack_alive worker && return 0
    local args=()
    if [[ -n ${WORKER_ARGS:-} ]]; then
        read -r -a args <<<"$WORKER_ARGS"
    fi
    if [[ $STACK_MODE == run ]]; then
        _stack_bg "$bin" "${args[@]}" </dev/null
    else
        printf -- '---- %s: worker %s ----\n' "${DEPLOYMENT:-}" "$bin" >>"$log"
        _stack_bg "$bin" "${args[@]}" </dev/null >>"$log" 2>&1
    fi
    echo $! >"$STACK_DIR/worker.pid"
    # A worker that refuses its configuration exits at once: report it here rather than later.
    sleep 0.3
    _stack_alive worker || {
        _stack_fail "the worker exited at start-up" "$log"
        return 1
    }
}

# stack_worker_stop [SIGNAL]: SIGTERM by default (graceful); SIGKILL simulates a crash.
stack_worker_stop() {
    _stack_need_dir || return 1
    _stack_stop_pidfile worker "${1:-TERM}"
}

# ---- everything ----------------------------------------------------------------------------------------------

stack_start() {
    stack_services_start && stack_web_start && stack_worker_start
}

# Stop all, in dependency order, whatever was started; never fails.
stack_stop() {
    _stack_need_dir || return 0
    stack_worker_stop TERM || true
    stack_web_stop || true
    stack_fakes_stop || true
    stack_redis_stop || true
    stack_pg_stop || true
    local f
    for f in "$STACK_DIR"/*.pid; do # anything a later addition started
        [[ -f $f ]] || continue
        _stack_stop_pidfile "$(basename "$f" .pid)" TERM || true
    done
}
