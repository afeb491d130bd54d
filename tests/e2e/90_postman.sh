#!/usr/bin/env bash
# The Postman collection (postman/gemini-backend.postman_collection.json) run with newman against one
# deployment: every assertion of its test scripts is one check here (request errors too). It runs on the
# deployment named by POSTMAN_DEPLOYMENT, by default the first one of DEPLOYMENTS (lighttpd by default), and is
# skipped silently on the others.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

read -r -a first <<<"${DEPLOYMENTS:-lighttpd}"
[[ $DEPLOYMENT == "${POSTMAN_DEPLOYMENT:-${first[0]:-lighttpd}}" ]] || exit 0

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
newman=$root/tests/node_modules/.bin/newman
if [[ ! -x $newman ]]; then
    _lib_fail "newman is installed (tests/node_modules)" "run scripts/deps.sh --test (npm install in tests/)"
    exit 0
fi

out=$(mktemp -d "${TMPDIR:-/tmp}/gb-newman.XXXXXX")
trap 'rm -rf "$out"' EXIT
rc=0
# The fake Stripe (tests/fakes/stripe.js) answers the Checkout; the webhook is signed with the stack's secret.
"$newman" run "$root/postman/gemini-backend.postman_collection.json" \
    --env-var "base_url=$BASE_URL" --env-var "webhook_secret=${STRIPE_WEBHOOK_SECRET:-whsec_test_fake}" \
    --reporters cli,json --reporter-json-export "$out/run.json" \
    --timeout-request 20000 --color off --disable-unicode >"$out/cli.txt" 2>&1 || rc=$?

if [[ ! -s $out/run.json ]]; then
    _lib_fail "newman ran the collection" "exit status $rc, no report: $(tail -n 20 "$out/cli.txt")"
    exit 0
fi

# One line per assertion ("ok"/"not ok" TAB request TAB assertion TAB error), and one failure per request
# that got no response.
jq -r '
    .run.executions[] as $e
    | ($e.item.name) as $r
    | (if $e.requestError then ["not ok", $r, "request", ($e.requestError.message // "request failed")] else empty end),
      (($e.assertions // [])[] | [(if .error then "not ok" else "ok" end), $r, .assertion,
                                  (.error.message // "")])
    | @tsv' "$out/run.json" >"$out/lines.tsv"

n=0
while IFS=$'\t' read -r verdict request assertion error; do
    n=$((n + 1))
    if [[ $verdict == ok ]]; then
        _lib_pass "newman: $request: $assertion"
    else
        _lib_fail "newman: $request: $assertion" "$error"
    fi
done <"$out/lines.tsv"

if ((n == 0)); then
    _lib_fail "newman ran assertions" "none found in the report; exit status $rc"
elif ((rc != 0)) && ! grep -q '^not ok' "$out/lines.tsv"; then
    _lib_fail "newman exited cleanly" "exit status $rc: $(tail -n 20 "$out/cli.txt")"
fi
