#!/usr/bin/env bash
# The auth binary as plain CGI, and start-up refusal on a bad configuration.
source "$(dirname "$0")/../lib.sh"

bin="$BUILD_DIR/cgi-bin/auth"
out=$(REQUEST_METHOD=GET REQUEST_URI=/healthz "$bin" </dev/null 2>/dev/null)
check "CGI: GET /healthz answers Status: 200" grep -q '^Status: 200' <<<"$out"
check "CGI: the body is the health JSON" grep -q '"postgres":"ok"' <<<"$out"
len=$(REQUEST_METHOD=GET REQUEST_URI=/healthz "$bin" </dev/null 2>/dev/null | tr -d '\r' | sed -n 's/^Content-Length: //p')
head_out=$(REQUEST_METHOD=HEAD REQUEST_URI=/healthz "$bin" </dev/null 2>/dev/null | tr -d '\r')
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
