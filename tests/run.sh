#!/usr/bin/env bash
# tests/run.sh: every test of the project (what `make test` runs after building build/ and build-asan/).
#   1. unit tests: every test_* binary of build/tests and build-asan/tests (UNIT_BUILDS), cmocka summaries
#      counted per test case; a binary that crashes or fails without a summary counts as one failure.
#   2. one private PostgreSQL + Redis + fakes for the whole run (tests/stack.sh, in a mktemp -d STACK_DIR),
#      schema.sql applied twice (idempotence);
#   2b. the fuzz corpora: each libFuzzer target of FUZZ_BUILD (build-fuzz, built by make test) once over its
#      committed corpus fuzz/corpus/<target>/ (scripts/fuzz.sh once), one result per target; skipped when nothing
#      is built there;
#   3. for each deployment of DEPLOYMENTS (default "lighttpd lighttpd-asan apache nginx nginx-cgi"): restart the
#      fakes (fresh state), start its web server and the worker of the same build, run every tests/e2e/*.sh
#      (each one a separate bash process with a time limit;
#      a script that exits non-zero or times out is one more failure), stop them; sanitizer reports written
#      by the asan build are failures too. A script marked "# e2e: core" in its first lines tests the stack
#      behind the web server (worker, caches, limits, PostgreSQL/Redis faults, billing logic), which no web
#      server configuration changes: it runs only under E2E_CORE_DEPLOYMENTS (default "lighttpd
#      lighttpd-asan": the native build and its sanitizer twin); E2E_CORE=1 tells a script it runs under one.
#      What each web server must pass through (routes, headers, bodies, CGI, streaming) is in the others.
#   0. a format check: every tracked C file as clang-format writes it (with the unit tests);
# The last line printed is "N passed, M failed"; the exit status is non-zero when M > 0.
#
# Knobs: DEPLOYMENTS="lighttpd"  E2E_FILTER=regex (on the script's file name)  SKIP_UNIT=1  SKIP_E2E=1
#        SKIP_FUZZ=1 (no fuzz corpora; SKIP_UNIT=1 skips them too)  FUZZ_BUILD=build-fuzz
#        E2E_CORE_DEPLOYMENTS="lighttpd lighttpd-asan" (all five: every script everywhere)
#        UNIT_BUILDS="build"  E2E_TIMEOUT=300 (seconds per script)  KEEP_STACK=1 (keep STACK_DIR)
#        BUILD=build BUILD_ASAN=build-asan (directories, relative to the repo root or absolute)
#        TEST_LOG_LEVEL=debug (the app's LOG_LEVEL in tests; default info)
#
# Adding a deployment NAME: define deploy_NAME_start and deploy_NAME_stop below ("-" in NAME becomes "_");
# start must export BASE_URL and start the worker; a web server flavour goes into tests/stack.sh as
# web_FLAVOUR_start/stop (see web_lighttpd_*).
# Functions below are called from traps and by computed names (deploy_${name}_start):
# shellcheck disable=SC2317
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=lib.sh
source "$ROOT/tests/lib.sh"

BUILD=${BUILD:-build}
BUILD_ASAN=${BUILD_ASAN:-build-asan}
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
E2E_TIMEOUT=${E2E_TIMEOUT:-300}
UNIT_TIMEOUT=${UNIT_TIMEOUT:-300}

RESULTS_FILE=$(mktemp "${TMPDIR:-/tmp}/gb-results.XXXXXX")
# Scratch space of tests/lib.sh's req (one directory per shell that sends requests), removed at the end.
GB_REQ_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gb-req.XXXXXX")
export RESULTS_FILE GB_REQ_DIR
STACK_DIR=''
CHILD_PID='' # the e2e script or unit binary running now (killed on INT/TERM)

say() { printf '# %s\n' "$*"; }

summary() {
    local passed failed
    passed=$(grep -c '^pass$' "$RESULTS_FILE" || true)
    failed=$(grep -c '^fail$' "$RESULTS_FILE" || true)
    printf '%s passed, %s failed\n' "$passed" "$failed"
    ((failed == 0))
}

record() { # pass|fail DESC [DETAILS]
    if [[ $1 == pass ]]; then
        printf 'ok - %s\n' "$2"
    else
        printf 'not ok - %s%s\n' "$2" "${3:+ [$3]}"
    fi
    echo "$1" >>"$RESULTS_FILE"
}

# Run a command in the background and wait for it, so that INT/TERM traps run at once (a foreground child
# would delay them until it ends). Its exit status is returned.
run_child() {
    local rc=0
    "$@" &
    CHILD_PID=$!
    wait "$CHILD_PID" 2>/dev/null || rc=$?
    CHILD_PID=''
    return "$rc"
}

# Stop everything and remove the stack (its logs stay when something failed). Idempotent.
teardown() {
    if [[ -n $CHILD_PID ]]; then
        kill -TERM "$CHILD_PID" 2>/dev/null || true
        wait "$CHILD_PID" 2>/dev/null || true
        CHILD_PID=''
    fi
    if [[ -n $STACK_DIR && -d $STACK_DIR ]]; then
        stack_stop || true
        if [[ -n ${KEEP_STACK:-} ]]; then
            say "stack kept in $STACK_DIR"
        elif grep -q '^fail$' "$RESULTS_FILE" 2>/dev/null || ((INTERRUPTED)); then
            rm -rf "$STACK_DIR/pgdata" "$STACK_DIR/pg" "$STACK_DIR/web"
            say "logs kept in $STACK_DIR"
        else
            rm -rf "$STACK_DIR"
        fi
        STACK_DIR=''
    fi
}

# On any exit: tear down, then the summary as the very last line; exit status 0 only if nothing failed.
finish() {
    local rc=$?
    trap - EXIT INT TERM
    teardown
    if ! summary; then
        rc=1
    elif ((INTERRUPTED)); then
        rc=130
    fi
    rm -f "$RESULTS_FILE"
    rm -rf "$GB_REQ_DIR"
    exit "$rc"
}

INTERRUPTED=0
on_signal() {
    INTERRUPTED=1
    echo "# interrupted" >&2
    exit 130
}

trap finish EXIT
trap on_signal INT TERM

# ---- unit tests ----------------------------------------------------------------------------------------------

# Count one binary: cmocka prints "[  PASSED  ] N test(s)." and "[  FAILED  ] N test(s), listed below:"
# (one pair per group); every test counts. A crash, a timeout or a failing exit without a summary is one
# failure.
run_unit_binary() {
    local bin=$1 label=$2 out rc=0 passed failed n
    out=$(mktemp)
    run_child timeout -k 10 "$UNIT_TIMEOUT" "$bin" >"$out" 2>&1 || rc=$?
    passed=0 failed=0
    while read -r n; do passed=$((passed + n)); done < <(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test(s)\..*$/\1/p' "$out")
    while read -r n; do failed=$((failed + n)); done < <(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test(s).*$/\1/p' "$out")
    if ((rc != 0 || failed > 0)); then
        cat "$out"
    fi
    for ((n = 0; n < passed; n++)); do echo pass >>"$RESULTS_FILE"; done
    for ((n = 0; n < failed; n++)); do echo fail >>"$RESULTS_FILE"; done
    if ((rc == 0 && failed == 0)); then
        printf 'ok - %s: %d test(s)\n' "$label" "$passed"
    elif ((failed > 0)); then
        printf 'not ok - %s: %d passed, %d failed\n' "$label" "$passed" "$failed"
    else
        local why="exit status $rc"
        ((rc == 124)) && why="timed out after ${UNIT_TIMEOUT}s"
        ((rc > 128 && rc != 124)) && why="killed by signal $((rc - 128))"
        record fail "$label: $why"
    fi
    rm -f "$out"
}

run_unit_tests() {
    local b bin found=0 dir
    for b in ${UNIT_BUILDS:-$BUILD $BUILD_ASAN}; do
        dir=$(_stack_abs "$b")/tests
        for bin in "$dir"/test_*; do
            [[ -f $bin && -x $bin ]] || continue
            found=1
            if [[ $b == "$BUILD_ASAN" ]]; then
                ASAN_OPTIONS=abort_on_error=0:halt_on_error=1:detect_leaks=1 \
                    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
                    run_unit_binary "$bin" "unit $b/tests/$(basename "$bin")"
            else
                run_unit_binary "$bin" "unit $b/tests/$(basename "$bin")"
            fi
        done
    done
    ((found)) || say "no unit test binaries found"
}

# ---- fuzz corpora ---------------------------------------------------------------------------------------------

# scripts/fuzz.sh prints one "ok - fuzz corpus T" / "not ok - fuzz corpus T" line per target (the log of a failing
# one after it, as comments); each line counts once. A non-zero exit without any "not ok" line is one failure.
run_fuzz_corpora() {
    local out line rc=0 bad=0
    if [[ ! -d $(_stack_abs "$FUZZ_BUILD")/fuzz ]]; then
        say "no fuzz targets in $FUZZ_BUILD (make fuzz-build): fuzz corpora not run"
        return 0
    fi
    out=$(mktemp)
    FUZZ_BUILD=$(_stack_abs "$FUZZ_BUILD") run_child timeout -k 10 "$UNIT_TIMEOUT" "$ROOT/scripts/fuzz.sh" once \
        >"$out" 2>&1 || rc=$?
    while IFS= read -r line; do
        printf '%s\n' "$line"
        case $line in
        'ok - fuzz corpus '*) echo pass >>"$RESULTS_FILE" ;;
        'not ok - fuzz corpus '*)
            echo fail >>"$RESULTS_FILE"
            bad=1
            ;;
        esac
    done <"$out"
    rm -f "$out"
    if ((rc != 0 && !bad)); then
        record fail "fuzz corpora: scripts/fuzz.sh exit status $rc"
    fi
}

# ---- deployments ---------------------------------------------------------------------------------------------

# Use build directory $1; "asan" as $2 turns on the sanitizer options for everything started afterwards.
use_build() {
    export BUILD_DIR=$1
    if [[ ${2:-} == asan ]]; then
        mkdir -p "$STACK_DIR/sanitizer"
        export ASAN_OPTIONS="abort_on_error=0:halt_on_error=1:detect_leaks=1:log_path=$STACK_DIR/sanitizer/asan"
        export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$STACK_DIR/sanitizer/ubsan"
    else
        unset ASAN_OPTIONS UBSAN_OPTIONS
    fi
}

deploy_lighttpd_start() {
    use_build "$BUILD"
    STACK_WEB=lighttpd stack_web_start && stack_worker_start
}
deploy_lighttpd_stop() {
    stack_worker_stop TERM
    STACK_WEB=lighttpd stack_web_stop
}

deploy_lighttpd_asan_start() {
    use_build "$BUILD_ASAN" asan
    STACK_WEB=lighttpd stack_web_start && stack_worker_start
}
deploy_lighttpd_asan_stop() {
    stack_worker_stop TERM
    STACK_WEB=lighttpd stack_web_stop
}

# Apache, nginx (FastCGI) and nginx + fcgiwrap (plain CGI) with build/: tests/web.sh. STACK_WEB stays exported so
# that the teardown's stack_stop stops the right flavour.
deploy_apache_start() {
    use_build "$BUILD"
    export STACK_WEB=apache
    stack_web_start && stack_worker_start
}
deploy_nginx_start() {
    use_build "$BUILD"
    export STACK_WEB=nginx
    stack_web_start && stack_worker_start
}
deploy_nginx_cgi_start() {
    use_build "$BUILD"
    export STACK_WEB=nginxcgi
    stack_web_start && stack_worker_start
}
deploy_apache_stop() {
    stack_worker_stop TERM
    STACK_WEB=apache stack_web_stop
}
deploy_nginx_stop() {
    stack_worker_stop TERM
    STACK_WEB=nginx stack_web_stop
}
deploy_nginx_cgi_stop() {
    stack_worker_stop TERM
    STACK_WEB=nginxcgi stack_web_stop
}

# Each sanitizer report (one file per reporting process) is a failure; reported files move aside.
scan_sanitizer_reports() { # WHERE
    local f dir=$STACK_DIR/sanitizer
    [[ -d $dir ]] || return 0
    for f in "$dir"/asan.* "$dir"/ubsan.*; do
        [[ -f $f ]] || continue
        record fail "$DEPLOYMENT: sanitizer report $(basename "$f") ($1)"
        sed 's/^/#   /' "$f" | head -n 60
        mkdir -p "$dir/reported"
        mv "$f" "$dir/reported/"
    done
}

# Between scripts: whatever a script stopped (PostgreSQL, Redis, the worker) and did not restart, or what died,
# comes back, so that one failing script does not fail all the following ones.
restore_stack() {
    local what
    for what in postgres redis worker web; do
        if [[ $what == worker && ! -x $(_stack_abs "$BUILD_DIR/worker/worker") ]]; then
            continue
        fi
        if ! _stack_alive "$what"; then
            say "$what is not running after the previous script: restarting it"
            case $what in
            postgres) stack_pg_start ;;
            redis) stack_redis_start ;;
            worker) stack_worker_start ;;
            web) "deploy_${DEPLOYMENT//-/_}_stop" && "deploy_${DEPLOYMENT//-/_}_start" ;;
            esac
        fi
    done
}

run_e2e_script() {
    local script=$1 name rc=0 t0=$SECONDS
    name=$(basename "$script")
    say "$DEPLOYMENT: $name"
    run_child timeout -k 10 "$E2E_TIMEOUT" bash "$script" || rc=$?
    say "$DEPLOYMENT: $name finished in $((SECONDS - t0))s"
    if ((rc == 124)); then
        record fail "$DEPLOYMENT: $name timed out after ${E2E_TIMEOUT}s"
    elif ((rc != 0)); then
        record fail "$DEPLOYMENT: $name exited with status $rc"
    fi
    scan_sanitizer_reports "during $name"
    restore_stack || record fail "$DEPLOYMENT: could not restore the stack after $name"
}

# 0 when deployment $1 runs the "# e2e: core" scripts.
core_deployment() {
    [[ " ${E2E_CORE_DEPLOYMENTS:-lighttpd lighttpd-asan} " == *" $1 "* ]]
}

run_deployment() {
    local dep=$1 fn script scripts=() skipped=()
    fn=deploy_${dep//-/_}
    if ! declare -F "${fn}_start" >/dev/null || ! declare -F "${fn}_stop" >/dev/null; then
        record fail "deployment $dep: no ${fn}_start/${fn}_stop"
        return 0
    fi
    for script in "$ROOT"/tests/e2e/*.sh; do
        [[ -f $script ]] || continue
        if [[ -n ${E2E_FILTER:-} ]] && ! [[ $(basename "$script") =~ $E2E_FILTER ]]; then
            continue
        fi
        if ! core_deployment "$dep" && head -n 15 "$script" | grep -qx '# e2e: core'; then
            skipped+=("$(basename "$script")")
            continue
        fi
        scripts+=("$script")
    done
    export DEPLOYMENT=$dep E2E_CORE=0
    core_deployment "$dep" && E2E_CORE=1
    say "deployment $dep"
    ((${#skipped[@]} == 0)) || say "$dep: core scripts run under ${E2E_CORE_DEPLOYMENTS:-lighttpd lighttpd-asan} only: ${skipped[*]}"
    # Fresh fakes for every deployment: nothing recorded or configured by the previous one's scripts leaks in
    # (the app's base URLs follow the new ports: the web server and worker start afterwards).
    stack_fakes_stop
    if ! stack_fakes_start; then
        record fail "$dep: the fakes did not start"
        return 0
    fi
    if ! "${fn}_start"; then
        record fail "$dep: the stack did not start"
        "${fn}_stop" || true
        return 0
    fi
    say "$dep: $BASE_URL (BUILD_DIR=$BUILD_DIR, logs in $STACK_DIR)"
    for script in "${scripts[@]}"; do
        run_e2e_script "$script"
    done
    "${fn}_stop" || record fail "$dep: stopping the stack failed"
    scan_sanitizer_reports "at shutdown"
}

run_e2e() {
    local dep
    STACK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gb-stack.XXXXXX")
    export STACK_DIR STACK_MODE=test
    say "stack in $STACK_DIR"
    if ! stack_services_start; then
        record fail "PostgreSQL, Redis and the fakes start"
        return 0
    fi
    # The services started: schema.sql went in once; a second application must change nothing and succeed.
    if stack_schema_apply; then
        record pass "schema.sql applies twice (idempotent)"
    else
        record fail "schema.sql applies twice (idempotent)"
    fi
    for dep in ${DEPLOYMENTS-lighttpd lighttpd-asan apache nginx nginx-cgi}; do
        run_deployment "$dep"
    done
}

# Link check: the FastCGI programs do not load libcurl and the eight libraries it needs (about 144 KiB of
# private memory a process: README "Benchmarks", Memory). Only subscribe (Stripe Checkout) and the worker need
# it.
run_link_check() {
    local prog needed
    for prog in chatroom auth stream webhook; do
        if ! needed=$(readelf -d "$(_stack_abs "$BUILD")/cgi-bin/$prog" 2>&1); then
            record fail "link: cgi-bin/$prog can be read" "$needed"
        elif grep -q 'NEEDED.*libcurl' <<<"$needed"; then
            record fail "link: cgi-bin/$prog does not load libcurl" "$(grep -o 'lib[a-z0-9_.-]*curl[^]]*' <<<"$needed")"
        else
            record pass "link: cgi-bin/$prog does not load libcurl"
        fi
    done
    # chatroom, stream and webhook call no OpenSSL function but CRYPTO_memcmp (their HMAC, SHA-256 and random
    # bytes are nettle's and the kernel's): OpenSSL 3's first EVP, HMAC or RAND call loads its provider and name
    # tables, about 230 KiB of heap a process keeps for life (lib/token.c).
    for prog in chatroom stream webhook; do
        if ! needed=$(nm -D --undefined-only "$(_stack_abs "$BUILD")/cgi-bin/$prog" 2>&1); then
            record fail "link: cgi-bin/$prog symbols can be read" "$needed"
            continue
        fi
        needed=$(awk '$2 ~ /@OPENSSL_/ && $2 !~ /^CRYPTO_memcmp@/ {sub(/@.*/, "", $2); print $2}' <<<"$needed" | xargs)
        if [[ -n $needed ]]; then
            record fail "link: cgi-bin/$prog calls no OpenSSL function but CRYPTO_memcmp" "it calls: $needed"
        else
            record pass "link: cgi-bin/$prog calls no OpenSSL function but CRYPTO_memcmp"
        fi
    done
}

# Static checks: every C file as clang-format (.clang-format) writes it (`make format` fixes them).
run_format_check() {
    local files out
    if ! command -v clang-format >/dev/null 2>&1; then
        record fail "format: clang-format is installed" "run scripts/deps.sh --test"
        return 0
    fi
    mapfile -t files < <(git ls-files -- '*.c' '*.h')
    if out=$(clang-format --dry-run -Werror "${files[@]}" 2>&1); then
        record pass "format: ${#files[@]} C files are clang-formatted"
    else
        record fail "format: C files are clang-formatted (make format)" \
            "$(grep -o '^[^:]*\.[ch]' <<<"$out" | sort -u | tr '\n' ' ')"
    fi
}

[[ -n ${SKIP_UNIT:-} ]] || run_format_check
[[ -n ${SKIP_UNIT:-} ]] || run_link_check
[[ -n ${SKIP_UNIT:-} ]] || run_unit_tests
[[ -n ${SKIP_UNIT:-} || -n ${SKIP_FUZZ:-} ]] || run_fuzz_corpora
[[ -n ${SKIP_E2E:-} ]] || run_e2e
exit 0 # finish (the EXIT trap) prints the summary and sets the status
