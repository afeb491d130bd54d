#!/usr/bin/env bash
# Smoke test: the stack answers, /healthz sees PostgreSQL and Redis, unknown paths are 404.
# Also the template for e2e scripts: strict mode, source lib.sh, then checks (see tests/lib.sh).
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

req GET /healthz
check_status 200 "GET /healthz is 200"
check_eq "$(jget '{status, postgres, redis} | tojson')" '{"status":"ok","postgres":"ok","redis":"ok"}' \
    "GET /healthz reports postgres and redis ok"
check "GET /healthz carries X-Request-Id" test -n "$(header X-Request-Id)"

req GET /healthz "" -H 'X-Request-Id: smoke-test-0001'
check_eq "$(header x-request-id)" "smoke-test-0001" "a sane client X-Request-Id is echoed"
# Its access line: method, path, status and the request id, written once the answer is out (lib/http.c).
for _ in $(seq 50); do
    grep -qs 'GET /healthz 200 [0-9.]*ms rid=smoke-test-0001' "$STACK_DIR"/*.log && break
    sleep 0.1
done
check "the request's access line carries method, path, status and request id" \
    grep -qs 'GET /healthz 200 [0-9.]*ms rid=smoke-test-0001' "$STACK_DIR"/*.log

# lighttpd answers these itself: no FastCGI program owns the path.
req GET /nope
check_status 404 "GET /nope is 404"
req GET /authors
check_status 404 "GET /authors is 404 (prefix /auth does not leak)"
