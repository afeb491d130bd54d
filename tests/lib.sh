# shellcheck shell=bash
# tests/lib.sh: helpers for the end-to-end scripts tests/e2e/NN_name.sh. Start every script with
#     #!/usr/bin/env bash
#     set -euo pipefail
#     source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# tests/run.sh runs them against a running stack and provides BASE_URL, STACK_DIR, BUILD_DIR, DEPLOYMENT,
# DATABASE_URL, REDIS_URL, FAKE_*_URL, the app configuration and RESULTS_FILE (where checks are counted).
#
#   req METHOD PATH [JSON_BODY] [curl args...]   sets STATUS, BODY, HEADERS. A non-empty JSON_BODY is sent with
#                                                Content-Type: application/json; JSON_BODY "-" means the body
#                                                comes from the curl args (e.g. --data-binary @file), still
#                                                as JSON unless those args set their own Content-Type.
#                                                JSON_BODY may be left out before curl options (-H ...).
#                                                POST/PUT/PATCH without a body send Content-Length: 0.
#   auth_req TOKEN METHOD PATH [JSON_BODY] [curl args...]   the same with Authorization: Bearer TOKEN
#   jget EXPR            jq -r EXPR over BODY
#   header NAME          the value of response header NAME (case-insensitive, first occurrence)
#   check DESC CMD...    passes if CMD succeeds        check_status CODE DESC        check_eq ACTUAL EXPECTED DESC
#   rand_mobile          a fresh random mobile number (+1555 and 8 digits)
#   rand_loopback        a random loopback address 127.x.y.z other than 127.0.0.1 (curl --interface)
#   signup_and_login     a fresh user through signup, send-otp, verify-otp: sets TOKEN, USER_ID, MOBILE
#   psql_q SQL           runs SQL on the test database, prints unaligned tuples-only output
#   scratch_db NAME      a new, empty database NAME on the same cluster: prints its URL (scratch_db_drop NAME)
#   outbox_count [UID]   rows of the cache invalidation outbox (of user UID, or all)
#   wait_outbox_empty SECS [UID]   until the worker has drained them: 0, or 1 after SECS seconds
#   redis_cli ARGS...    redis-cli on the stack's socket
#   pause PID... / pause_pg / resume_all   SIGSTOP processes (pause_pg: PostgreSQL), SIGCONT them all again
#   stack_*              from tests/stack.sh (stack_pg_stop/start, stack_redis_stop/start, stack_worker_*)
# Each check prints "ok - DESC" or "not ok - DESC" (with the status and a body excerpt) and appends "pass" or
# "fail" to RESULTS_FILE.

[[ -n ${_GB_LIB_SH_LOADED:-} ]] && return 0
_GB_LIB_SH_LOADED=1

# shellcheck source=stack.sh
source "$(dirname "${BASH_SOURCE[0]}")/stack.sh"

RESULTS_FILE=${RESULTS_FILE:-/dev/null}

# Debian's psql on PATH is a Perl wrapper (pg_wrapper) that picks a version: half of a short query's time. The
# scripts call the client of the server the stack runs directly.
if [[ -x ${PG_BINDIR:-}/psql ]]; then
    psql() { "$PG_BINDIR/psql" "$@"; }
fi

STATUS='' BODY='' HEADERS=''
REQ_TIMEOUT=${REQ_TIMEOUT:-10}

# ---- HTTP ----------------------------------------------------------------------------------------------------

req() {
    if (($# < 2)); then
        echo "usage: req METHOD PATH [JSON_BODY] [curl args...]" >&2
        return 2
    fi
    local method=$1 path=$2 body=''
    shift 2
    # The body may be left out before curl options: "req GET /x -H 'A: b'" (a JSON body never starts with
    # "-" and a letter; "-" alone stands for a body given in the curl args).
    if (($# > 0)) && ! [[ $1 =~ ^-[A-Za-z-] ]]; then
        body=$1
        shift
    fi
    local tmp rc=0
    # Under tests/run.sh (GB_REQ_DIR) each shell reuses its own scratch directory: no mktemp, cat or rm per
    # request (forks are most of a request's cost here). Elsewhere a fresh one per request, removed after.
    if [[ -n ${GB_REQ_DIR:-} ]]; then
        tmp=$GB_REQ_DIR/$BASHPID
        [[ -d $tmp ]] || mkdir -p "$tmp" || return 1
        : >"$tmp/body"
        : >"$tmp/headers"
    else
        tmp=$(mktemp -d "${TMPDIR:-/tmp}/gbreq.XXXXXX") || return 1
    fi
    local args=(-s -S --max-time "$REQ_TIMEOUT" -D "$tmp/headers" -o "$tmp/body" -w '%{http_code}'
        -H 'Expect:')
    if [[ $method == HEAD ]]; then
        args+=(--head)
    else
        args+=(-X "$method")
    fi
    if [[ -z $body && $method =~ ^(POST|PUT|PATCH)$ ]] && ! _lib_has_data_arg "$@"; then
        # An explicit empty body: lighttpd answers 411 to a POST without Content-Length.
        args+=(-H 'Content-Length: 0')
    fi
    if [[ -n $body ]]; then
        local a own_type=0
        for a in "$@"; do
            [[ ${a,,} == content-type:* ]] && own_type=1
        done
        ((own_type)) || args+=(-H 'Content-Type: application/json')
        if [[ $body != - ]]; then
            printf '%s' "$body" >"$tmp/request"
            args+=(--data-binary "@$tmp/request")
        fi
    fi
    curl "${args[@]}" "$@" "${BASE_URL:?BASE_URL is not set}$path" >"$tmp/status" 2>"$tmp/error" || rc=$?
    _lib_slurp STATUS "$tmp/status"
    [[ -n $STATUS ]] || STATUS=000
    _lib_slurp BODY "$tmp/body"
    _lib_slurp HEADERS "$tmp/headers"
    if ((rc != 0)); then
        local err
        _lib_slurp err "$tmp/error"
        printf 'req %s %s: curl failed (%s): %s\n' "$method" "$path" "$rc" "$err" >&2
    fi
    [[ -n ${GB_REQ_DIR:-} ]] || rm -rf "$tmp"
    return 0
}

# _lib_slurp VAR FILE: VAR = FILE's content without its trailing newlines (what VAR=$(cat FILE) gives), empty
# when FILE is missing; with no fork.
_lib_slurp() {
    local -n _lib_into=$1
    _lib_into=''
    [[ -r $2 ]] || return 0
    IFS= read -r -d '' _lib_into <"$2" || true
    while [[ $_lib_into == *$'\n' ]]; do _lib_into=${_lib_into%$'\n'}; done
}

# True when the curl args already carry a body or set Content-Length themselves.
_lib_has_data_arg() {
    local a
    for a in "$@"; do
        case $a in
        -d | -d?* | --data* | --json | -F | --form* | -T | --upload-file) return 0 ;;
        esac
        case ${a,,} in
        content-length:* | -hcontent-length:*) return 0 ;;
        esac
    done
    return 1
}

auth_req() {
    if (($# < 3)); then
        echo "usage: auth_req TOKEN METHOD PATH [JSON_BODY] [curl args...]" >&2
        return 2
    fi
    local token=$1 method=$2 path=$3 body=''
    shift 3
    if (($# > 0)) && ! [[ $1 =~ ^-[A-Za-z-] ]]; then
        body=$1
        shift
    fi
    req "$method" "$path" "$body" -H "Authorization: Bearer $token" "$@"
}

jget() {
    if [[ -z $BODY ]]; then
        jq -r "$1" </dev/null
    else
        jq -r "$1" <<<"$BODY"
    fi
}

header() {
    local want=${1,,} line name v
    while IFS= read -r line; do
        line=${line//$'\r'/}
        name=${line%%:*}
        [[ $line == *:* && -n $name && ${name,,} == "$want" ]] || continue
        v=${line#*:}
        v=${v#"${v%%[!$' \t']*}"}
        v=${v%"${v##*[!$' \t']}"}
        printf '%s\n' "$v"
        return 0
    done <<<"$HEADERS"
    return 0
}

# ---- checks --------------------------------------------------------------------------------------------------

_lib_excerpt() {
    local b=${BODY//$'\n'/ }
    ((${#b} > 300)) && b="${b:0:300}..."
    printf '%s' "$b"
}

_lib_pass() {
    printf 'ok - %s\n' "$1"
    echo pass >>"$RESULTS_FILE"
}

_lib_fail() { # DESC DETAILS
    printf 'not ok - %s [%s]\n' "$1" "$2"
    echo fail >>"$RESULTS_FILE"
    return 0
}

# check DESC COMMAND...: the command's own output is shown only when it fails.
check() {
    local desc=$1 out rc=0
    shift
    out=$("$@" 2>&1) || rc=$?
    if ((rc == 0)); then
        _lib_pass "$desc"
    else
        _lib_fail "$desc" "command failed ($rc): $*${out:+: ${out:0:300}}; last status $STATUS, body: $(_lib_excerpt)"
    fi
}

check_status() {
    local want=$1 desc=$2
    if [[ $STATUS == "$want" ]]; then
        _lib_pass "$desc"
    else
        _lib_fail "$desc" "status $STATUS, expected $want; body: $(_lib_excerpt)"
    fi
}

check_eq() {
    local actual=$1 expected=$2 desc=$3
    if [[ $actual == "$expected" ]]; then
        _lib_pass "$desc"
    else
        _lib_fail "$desc" "got '${actual:0:300}', expected '${expected:0:300}'; last status $STATUS"
    fi
}

# ---- data ----------------------------------------------------------------------------------------------------

rand_mobile() {
    local n
    n=$(od -An -N4 -tu4 /dev/urandom | tr -d ' \n')
    printf '+1555%08d\n' $((n % 100000000))
}

# A random loopback address other than 127.0.0.1, to send from with curl --interface (REMOTE_ADDR).
rand_loopback() { printf '127.%d.%d.%d\n' $((RANDOM % 250 + 1)) $((RANDOM % 250 + 1)) $((RANDOM % 250 + 2)); }

# A fresh user, logged in with an OTP. Fails (non-zero, with the reason on stderr) if any step does.
signup_and_login() {
    local otp
    MOBILE=$(rand_mobile)
    TOKEN='' USER_ID=''
    req POST /auth/signup "{\"mobile\":\"$MOBILE\"}"
    if [[ $STATUS != 201 ]]; then
        echo "signup_and_login: POST /auth/signup -> $STATUS $(_lib_excerpt)" >&2
        return 1
    fi
    req POST /auth/send-otp "{\"mobile\":\"$MOBILE\"}"
    otp=$(jget '.otp // empty' 2>/dev/null || true)
    if [[ $STATUS != 200 || -z $otp ]]; then
        echo "signup_and_login: POST /auth/send-otp -> $STATUS $(_lib_excerpt)" >&2
        return 1
    fi
    req POST /auth/verify-otp "{\"mobile\":\"$MOBILE\",\"otp\":\"$otp\"}"
    TOKEN=$(jget '.access_token // empty' 2>/dev/null || true)
    USER_ID=$(jget '.user.id // empty' 2>/dev/null || true)
    if [[ $STATUS != 200 || -z $TOKEN || -z $USER_ID ]]; then
        echo "signup_and_login: POST /auth/verify-otp -> $STATUS $(_lib_excerpt)" >&2
        return 1
    fi
    export TOKEN USER_ID MOBILE
}

psql_q() {
    psql -X -A -t -q -v ON_ERROR_STOP=1 -d "${DATABASE_URL:?DATABASE_URL is not set}" -c "$1"
}

# scratch_db NAME: a new, empty database NAME on the test database's cluster (one left over is dropped first);
# prints its URL. For a DATABASE_URL of the stack's local cluster (postgresql:///gemini?...): callers check.
# scratch_db_drop NAME drops it.
scratch_db() {
    scratch_db_drop "$1" &&
        psql -X -q -d "${DATABASE_URL/\/\/\/gemini\?/\/\/\/postgres\?}" -c "CREATE DATABASE $1" >/dev/null 2>&1 &&
        echo "${DATABASE_URL/\/\/\/gemini\?/\/\/\/$1\?}"
}
scratch_db_drop() {
    psql -X -q -d "${DATABASE_URL/\/\/\/gemini\?/\/\/\/postgres\?}" -c "DROP DATABASE IF EXISTS $1" >/dev/null 2>&1
}

# hold_lock DESC SQL: another session runs SQL in a transaction and keeps the locks it took (it sleeps) until
# release_lock; a check named DESC that it holds them.
hold_lock() {
    local held=no
    PGAPPNAME=gb-lock-holder psql -X -q -d "${DATABASE_URL:?DATABASE_URL is not set}" -c "BEGIN" -c "$2" \
        -c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
    _LIB_LOCK_HOLDER=$!
    for _ in $(seq 1 100); do
        [[ $(psql_q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gb-lock-holder'
                     AND wait_event = 'PgSleep'") == 1 ]] && held=yes && break
        sleep 0.05
    done
    check_eq "$held" yes "$1"
}

# release_lock: end hold_lock's session (its backend sleeps and would not notice its client go) and wait for it.
release_lock() {
    psql_q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gb-lock-holder'" \
        >/dev/null
    wait "${_LIB_LOCK_HOLDER:-}" 2>/dev/null || true
}

outbox_count() {
    psql_q "SELECT count(*) FROM cache_invalidations${1:+ WHERE user_id = $1}"
}

wait_outbox_empty() { # SECS [USER_ID]
    local deadline=$((SECONDS + $1))
    while ((SECONDS < deadline)); do
        [[ $(outbox_count "${2:-}") == 0 ]] && return 0
        sleep 0.1
    done
    return 1
}

redis_cli() {
    redis-cli -s "${STACK_DIR:?STACK_DIR is not set}/redis.sock" "$@"
}

# pause PID...: SIGSTOP them, remembered for resume_all. pause_pg: the postmaster and every backend (a server
# that hangs without closing anything). resume_all: SIGCONT all of them; a script that pauses sets
# `trap resume_all EXIT`, so that nothing paused outlives it.
_LIB_PAUSED=()
pause() {
    local p
    for p in "$@"; do kill -STOP "$p" && _LIB_PAUSED+=("$p"); done
}
pause_pg() {
    local pm
    pm=$(head -n 1 "${STACK_DIR:?STACK_DIR is not set}/pgdata/postmaster.pid")
    # shellcheck disable=SC2046 # one pid per word
    pause "$pm" $(pgrep -P "$pm" || true)
}
resume_all() {
    local p
    for p in "${_LIB_PAUSED[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
    _LIB_PAUSED=()
}
