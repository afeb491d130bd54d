#!/usr/bin/env bash
# The web client at / and the API reference at /docs in a real headless Chromium (tests/browser/journey.mjs,
# puppeteer-core from tests/package.json, Debian's chromium): signup to a streamed reply, a wrong code, a phone-
# sized screen, /docs rendering openapi.yaml, chats switched while replies are pending. Each "ok"/"not ok" line of
# the journey is one check. Runs on the first deployment of DEPLOYMENTS only (WEB_CLIENT_DEPLOYMENT overrides); the
# static files themselves are checked with curl on every deployment.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# The static files, on every deployment.
req GET /
check_status 200 "GET / serves the web client"
check "GET / is HTML" grep -qi '^content-type: text/html' <<<"$HEADERS"
check "GET / is the web client page" grep -q 'id="login"' <<<"$BODY"
req GET /static/app.js
check_status 200 "GET /static/app.js"
req GET /docs
check_status 200 "GET /docs serves the API reference page"
check "GET /docs loads Swagger UI" grep -q 'swagger-ui-bundle.js' <<<"$BODY"
# The static files' Content-Security-Policy runs no inline script: Swagger UI is started from /docs/init.js.
check_eq "$(grep -c '<script' <<<"$BODY")/$(grep -c '<script src="/docs/' <<<"$BODY")" 2/2 \
    "GET /docs has only scripts from files (no inline <script>)"
req GET /docs/init.js
check_status 200 "GET /docs/init.js"
req GET /docs/
check_status 200 "GET /docs/ serves the API reference page"
req GET /docs/swagger-ui-bundle.js
check_status 200 "GET /docs/swagger-ui-bundle.js"
req GET /openapi.yaml
check_status 200 "GET /openapi.yaml"
check "GET /openapi.yaml is the repository's" diff -q <(printf '%s\n' "$BODY") "$root/openapi.yaml"
req GET /static/nope.js
check_status 404 "a missing static file is 404"

read -r -a first <<<"${DEPLOYMENTS:-lighttpd}"
[[ $DEPLOYMENT == "${WEB_CLIENT_DEPLOYMENT:-${first[0]:-lighttpd}}" ]] || exit 0

if [[ ! -d $root/tests/node_modules/puppeteer-core ]]; then
    _lib_fail "puppeteer-core is installed (tests/node_modules)" "run scripts/deps.sh"
    exit 0
fi
chromium=${CHROMIUM:-$(command -v chromium || true)}
if [[ -z $chromium ]]; then
    _lib_fail "chromium is installed" "run scripts/deps.sh"
    exit 0
fi

out=$(mktemp "${TMPDIR:-/tmp}/gb-browser.XXXXXX")
trap 'rm -f "$out"' EXIT
rc=0
CHROMIUM=$chromium timeout 180 node "$root/tests/browser/journey.mjs" "$BASE_URL" >"$out" 2>&1 || rc=$?
n=0
while IFS= read -r line; do
    case $line in
    "ok - "*) _lib_pass "browser: ${line#ok - }"; n=$((n + 1)) ;;
    "not ok - "*) _lib_fail "browser: ${line#not ok - }" "journey output below"; n=$((n + 1)) ;;
    esac
done <"$out"
if ((rc != 0)) || grep -q '^not ok' "$out"; then
    sed 's/^/# journey: /' "$out" | tail -n 40
fi
if ((n == 0 || rc != 0)); then
    _lib_fail "the browser journey ran" "exit status $rc: $(tail -n 5 "$out")"
fi
