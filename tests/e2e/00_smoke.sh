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

# lighttpd answers these itself: no FastCGI program owns the path.
req GET /nope
check_status 404 "GET /nope is 404"
req GET /authors
check_status 404 "GET /authors is 404 (prefix /auth does not leak)"
