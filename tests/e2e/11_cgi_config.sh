#!/usr/bin/env bash
# The programs as plain CGI (auth, and chatroom for /healthz), and start-up refusal on a bad configuration.
source "$(dirname "$0")/../lib.sh"

bin="$BUILD_DIR/cgi-bin/auth" hbin="$BUILD_DIR/cgi-bin/chatroom"
out=$(REQUEST_METHOD=GET REQUEST_URI=/healthz "$hbin" </dev/null 2>/dev/null)
check "CGI: GET /healthz answers Status: 200" grep -q '^Status: 200' <<<"$out"
check "CGI: the body is the health JSON" grep -q '"postgres":"ok"' <<<"$out"
len=$(REQUEST_METHOD=GET REQUEST_URI=/healthz "$hbin" </dev/null 2>/dev/null | tr -d '\r' | sed -n 's/^Content-Length: //p')
head_out=$(REQUEST_METHOD=HEAD REQUEST_URI=/healthz "$hbin" </dev/null 2>/dev/null | tr -d '\r')
check "CGI: HEAD /healthz answers Status: 200" grep -q '^Status: 200' <<<"$head_out"
check "CGI: HEAD carries the GET's Content-Length ($len)" grep -qx "Content-Length: $len" <<<"$head_out"
check_eq "$(sed -n '/^$/,$p' <<<"$head_out" | tr -d '\n')" "" "CGI: HEAD writes no body after the headers"

M=$(rand_mobile)
body="{\"mobile\":\"$M\"}"
out=$(printf '%s' "$body" | REQUEST_METHOD=POST REQUEST_URI=/auth/signup CONTENT_LENGTH=${#body} \
      CONTENT_TYPE=application/json "$bin" 2>/dev/null)
check "CGI: POST /auth/signup reads the body and answers 201" grep -q '^Status: 201' <<<"$out"
check_eq "$(psql_q "SELECT count(*) FROM users WHERE mobile='$M'")" 1 "CGI: the user was stored"
out=$(REQUEST_METHOD=GET SCRIPT_NAME=/user PATH_INFO=/me "$bin" </dev/null 2>/dev/null)
check "CGI: SCRIPT_NAME+PATH_INFO route without REQUEST_URI" grep -q '^Status: 401' <<<"$out"

err=$(env -u ENV_FILE APP_ENV=production JWT_SECRET=short REQUEST_METHOD=GET REQUEST_URI=/healthz "$bin" 2>&1 </dev/null)
rc=$?
check "a weak JWT_SECRET stops start-up (exit $rc)" test "$rc" -ne 0
check "the message names JWT_SECRET" grep -q JWT_SECRET <<<"$err"
err=$(env -u JWT_SECRET -u ENV_FILE APP_ENV=production REQUEST_METHOD=GET REQUEST_URI=/healthz "$bin" 2>&1 </dev/null)
rc=$?
check "a missing JWT_SECRET stops start-up in production (exit $rc)" test "$rc" -ne 0
err=$(env BASIC_DAILY_LIMIT=lots REQUEST_METHOD=GET REQUEST_URI=/healthz "$bin" 2>&1 </dev/null)
check "a bad number names its variable" grep -q BASIC_DAILY_LIMIT <<<"$err"

# ---- every binary: --help, --version, --check (none starts serving) ----
version=$(sed -n 's/^#define GB_VERSION "\(.*\)"$/\1/p' "$BUILD_DIR/version.h")
check "the build recorded a version ($version)" grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+' <<<"$version"
for name in cgi-bin/auth cgi-bin/chatroom cgi-bin/subscribe cgi-bin/webhook worker/worker; do
    prog="$BUILD_DIR/$name"
    short=${name##*/}
    rc=0
    out=$(timeout 10 "$prog" --version </dev/null 2>&1) || rc=$?
    check_eq "$rc/$out" "0/$short (gemini-backend) $version" "$short --version"
    rc=0
    out=$(timeout 10 "$prog" --help </dev/null 2>&1) || rc=$?
    check_eq "$rc" 0 "$short --help exits 0"
    check "$short --help names --check" grep -q -- '--check' <<<"$out"
    check "$short --help points at the settings" grep -q 'DATABASE_URL' <<<"$out"
    rc=0
    out=$(timeout 20 "$prog" --check </dev/null 2>&1) || rc=$?
    check_eq "$rc" 0 "$short --check passes on the test stack"
    check "$short --check reports PostgreSQL, its schema and Redis" \
        grep -q 'ok    PostgreSQL (DATABASE_URL), schema version [0-9]' <<<"$out"
    check "$short --check says all passed" grep -q 'all checks passed' <<<"$out"
done
bin_w="$BUILD_DIR/worker/worker"

# --check finds the common mistakes, names the variable and exits 1
check_fails() { # DESC WANT ENV...
    local desc=$1 want=$2 rc=0 out
    shift 2
    out=$(env "$@" timeout 20 "$bin" --check </dev/null 2>&1) || rc=$?
    check_eq "$rc" 1 "--check: $desc exits 1"
    check "--check: $desc is named ($want)" grep -q -- "$want" <<<"$out"
}
check_fails "an unreachable DATABASE_URL" 'FAIL  PostgreSQL (DATABASE_URL): cannot connect' \
    DATABASE_URL=postgresql://gemini@127.0.0.1:9/gemini
check_fails "a database without the schema" 'schema.sql was not applied' \
    DATABASE_URL="${DATABASE_URL/gemini?/postgres?}"
check_fails "an unreachable REDIS_URL" 'FAIL  Redis (REDIS_URL)' REDIS_URL=unix:///nonexistent/redis.sock
check_fails "a bad REDIS_URL" 'REDIS_URL is not a' REDIS_URL=http://example
check_fails "a missing secret" 'JWT_SECRET is required' -u JWT_SECRET
check_fails "a bad number" 'BASIC_DAILY_LIMIT must be an integer' BASIC_DAILY_LIMIT=lots
# A Redis password holding '@' and ':' (redis://:p@ss:w@rd@host:port/0): the last '@' ends it
if command -v redis-server >/dev/null; then
    rport=$(_stack_free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --requirepass 'p@ss:w@rd' --save '' --appendonly no \
        --daemonize no --logfile '' >/dev/null 2>&1 &
    rpid=$!
    for _ in $(seq 1 50); do redis-cli -p "$rport" -a 'p@ss:w@rd' --no-auth-warning PING >/dev/null 2>&1 && break; sleep 0.1; done
    rc=0
    out=$(env REDIS_URL="redis://:p@ss:w@rd@127.0.0.1:$rport/0" timeout 20 "$bin" --check </dev/null 2>&1) || rc=$?
    check "--check: a Redis password with '@' and ':' is read whole ($(grep -F 'Redis' <<<"$out" | tr -s ' ' | cut -c1-80))" \
        grep -q '^  ok    Redis (REDIS_URL)' <<<"$out"
    kill "$rpid" 2>/dev/null || true
    wait "$rpid" 2>/dev/null || true
fi

# several mistakes: one run names them all, a FAIL line each, and counts them
rc=0
out=$(env -u JWT_SECRET BASIC_DAILY_LIMIT=lots LOG_LEVEL=loud timeout 20 "$bin" --check </dev/null 2>&1) || rc=$?
check_eq "$rc/$(grep -c '^  FAIL  configuration: ' <<<"$out")" "1/3" "--check: three mistakes are three FAIL lines"
check "--check: ... naming each" grep -q 'LOG_LEVEL must.*BASIC_DAILY_LIMIT must.*JWT_SECRET is required' \
    <<<"$(tr '\n' ' ' <<<"$out")"
check "--check: ... and counting them" grep -q '3 problems found' <<<"$out"
rc=0
out=$(env -u JWT_SECRET BASIC_DAILY_LIMIT=lots timeout 20 "$bin" </dev/null 2>&1) || rc=$?
check_eq "$rc/$(grep -c '^auth: configuration error: ' <<<"$out")" "2/2" "a program started with two mistakes names both, exit 2"
# the settings file holds the secrets: open to every account is a finding, shut (0640) passes
envf=$(mktemp)
echo '# settings' >"$envf"
chmod 0644 "$envf"
check_fails "a settings file every account can read" "FAIL  ENV_FILE $envf is readable by every account" \
    ENV_FILE="$envf"
chmod 0640 "$envf"
rc=0
out=$(ENV_FILE="$envf" timeout 20 "$bin" --check </dev/null 2>&1) || rc=$?
check_eq "$rc" 0 "--check: a settings file shut to other accounts passes"
rm -f "$envf"
rc=0
out=$(env -u OPENAI_MODEL AI_PROVIDER=openai timeout 20 "$bin_w" --check </dev/null 2>&1) || rc=$?
check_eq "$rc" 1 "worker --check: AI_PROVIDER=openai without OPENAI_MODEL exits 1"
check "worker --check names OPENAI_MODEL" grep -q OPENAI_MODEL <<<"$out"
out=$(env AI_PROVIDER=openai OPENAI_MODEL=m OPENAI_API_BASE=https://proxyuser:s3cretpw@example.invalid/v1 \
    timeout 20 "$bin_w" --check </dev/null 2>&1) || true
check "worker --check shows the AI base URL with its password masked" \
    grep -qF 'AI provider openai at https://proxyuser:***@example.invalid/v1/chat/completions' <<<"$out"
check "... and never the password" sh -c '! grep -q s3cretpw' <<<"$out"
# production with Stripe: a loopback PUBLIC_URL (its default, http://127.0.0.1:$PORT) would send paying users there
out=$(env PUBLIC_URL=http://127.0.0.1:8080 timeout 20 "$bin" --check </dev/null 2>&1) || true
check "--check: production with Stripe notes a loopback PUBLIC_URL" \
    grep -q '^  note  PUBLIC_URL is http://127.0.0.1:8080, this machine.s loopback' <<<"$out"
out=$(env PUBLIC_URL=http://LocalHost:8080/app timeout 20 "$bin" --check </dev/null 2>&1) || true
check "--check: ... localhost too" grep -q '^  note  PUBLIC_URL is http://LocalHost:8080/app, this machine.s loopback' <<<"$out"
for url in https://api.example.com https://localhost.example.com; do
    out=$(env PUBLIC_URL=$url timeout 20 "$bin" --check </dev/null 2>&1) || true
    check "--check: ... and not a public one ($url)" sh -c '! grep -q "note  PUBLIC_URL"' <<<"$out"
done
out=$(GATEWAY_INTERFACE=CGI/1.1 REQUEST_METHOD=GET REQUEST_URI=/healthz "$hbin" --check </dev/null 2>/dev/null)
check "under CGI (GATEWAY_INTERFACE) argv is ignored: a request is answered" grep -q '^Status: 200' <<<"$out"

# ---- production (APP_ENV=production): required settings stop every program at start, naming the variable ----
for var in DATABASE_URL REDIS_URL JWT_SECRET; do
    for name in cgi-bin/auth cgi-bin/chatroom cgi-bin/subscribe cgi-bin/webhook worker/worker; do
        rc=0
        out=$(env -u "$var" -u ENV_FILE APP_ENV=production REQUEST_METHOD=GET REQUEST_URI=/healthz \
            timeout 10 "$BUILD_DIR/$name" </dev/null 2>&1) || rc=$?
        check "production without $var: ${name##*/} exits non-zero (exit $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
        check "production without $var: ${name##*/} names it" grep -q "$var is required" <<<"$out"
    done
done
rc=0
out=$(env -u AI_PROVIDER -u GEMINI_API_KEY -u OPENAI_API_KEY APP_ENV=production timeout 10 "$bin_w" </dev/null 2>&1) ||
    rc=$?
check "production with no AI key and no AI_PROVIDER: the worker refuses (exit $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
check "... naming AI_PROVIDER" grep -q 'AI_PROVIDER is not set' <<<"$out"
rc=0
out=$(env -u GEMINI_API_KEY -u OPENAI_API_KEY APP_ENV=production AI_PROVIDER=offline timeout 10 "$bin_w" --check \
    </dev/null 2>&1) || rc=$?
check_eq "$rc" 0 "production with AI_PROVIDER=offline set explicitly is accepted"

# OTP_IN_RESPONSE defaults to 0 in production: the code is not in the body
M=$(rand_mobile)
body="{\"mobile\":\"$M\"}"
printf '%s' "$body" | REQUEST_METHOD=POST REQUEST_URI=/auth/signup CONTENT_LENGTH=${#body} \
    CONTENT_TYPE=application/json "$bin" >/dev/null 2>&1
out=$(printf '%s' "$body" | env -u OTP_IN_RESPONSE APP_ENV=production REQUEST_METHOD=POST REQUEST_URI=/auth/send-otp \
    CONTENT_LENGTH=${#body} CONTENT_TYPE=application/json "$bin" 2>/dev/null)
check "production, OTP_IN_RESPONSE unset: send-otp is 200" grep -q '^Status: 200' <<<"$out"
check "production, OTP_IN_RESPONSE unset: no otp in the body" test -z "$(sed -n '/^\r*$/,$p' <<<"$out" | jq -r '.otp // empty')"

# The worker started with an unreachable database says so at once, naming DATABASE_URL (and keeps retrying)
log="$STACK_DIR/worker-nodb.log"
DATABASE_URL=postgresql://gemini@127.0.0.1:9/gemini "$bin_w" </dev/null >"$log" 2>&1 &
wpid=$!
for _ in 1 2 3 4 5 6 7 8 9 10; do
    grep -q DATABASE_URL "$log" && break
    sleep 0.3
done
kill -TERM "$wpid" 2>/dev/null || true
wait "$wpid" 2>/dev/null || true
check "worker with an unreachable DATABASE_URL: a start-up line names it" grep -q 'cannot connect (DATABASE_URL)' "$log"
