#!/usr/bin/env bash
# openapi.yaml is a valid OpenAPI document: @redocly/cli lint (offline; recommended-strict rules, tests/redocly.yaml).
# It does not need the stack: it runs once, on the same deployment as 90_postman.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

read -r -a first <<<"${DEPLOYMENTS:-lighttpd}"
[[ $DEPLOYMENT == "${POSTMAN_DEPLOYMENT:-${first[0]:-lighttpd}}" ]] || exit 0

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
redocly=$root/tests/node_modules/.bin/redocly
if [[ ! -x $redocly ]]; then
    _lib_fail "openapi.yaml lints clean" "@redocly/cli is not installed: run scripts/deps.sh --test (npm install in tests/)"
    exit 0
fi
rc=0
out=$(cd "$root/tests" && REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_COLOR=1 \
    "$redocly" lint --config redocly.yaml "$root/openapi.yaml" 2>&1) || rc=$?
# recommended-strict (tests/redocly.yaml): every finding is an error, so the exit status says it all.
if ((rc == 0)); then
    _lib_pass "openapi.yaml lints clean (@redocly/cli, recommended-strict)"
else
    _lib_fail "openapi.yaml lints clean (@redocly/cli, recommended-strict)" "exit $rc: $(grep -v '^ *[║╔╚]' <<<"$out" | tail -n 40)"
fi
# Its server is the one it is served from: "Try it out" in /docs must call this server, not a fixed address.
check_eq "$(sed -n '/^servers:/,/^[a-z]/p' "$root/openapi.yaml" | sed -n 's/^- url: //p')" "/" \
    "openapi.yaml's server is relative (/), so /docs calls the server that serves it, whatever its address"
