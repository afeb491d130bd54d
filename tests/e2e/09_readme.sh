#!/usr/bin/env bash
# README.md's examples run literally against the stack: "Try it with curl" (only B, the server, and M, the
# mobile, are replaced: a fresh number per run) signs up, logs in with the OTP taken from the response, sends a
# message and reads health; "Try Pro offline" makes that user pro and basic again with scripts/stripe-trigger.sh;
# the re-send within 30 s that the README warns about is 429 with Retry-After. The README links the API
# contract inside the repository and lists every route of the programs' route tables.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

read -r -a first <<<"${DEPLOYMENTS:-lighttpd}"
[[ $DEPLOYMENT == "${first[0]:-lighttpd}" ]] || exit 0
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readme=$root/README.md

# block HEADING: the first ```sh block after the line "### HEADING".
block() {
    awk -v h="### $1" '$0 == h { f = 1; next } f && /^```sh$/ { p = 1; next } p && /^```$/ { exit } p { print }' "$readme"
}

curl_block=$(block 'Try it with curl (against `make run`)')
check "README has the curl example" grep -q '^B=http://127.0.0.1:8080$' <<<"$curl_block"
check "... with the mobile in M" grep -q '^M=+15551234567 ' <<<"$curl_block"
M=$(rand_mobile)
script=$(sed -e "s|^B=http://127.0.0.1:8080\$|B=$BASE_URL|" -e "s|^M=+15551234567 .*|M=$M|" <<<"$curl_block")
out=$(cd "$root" && bash -c "$script"$'\n''printf "\nRESULT OTP=%s TOKEN=%s ROOM=%s\n" "$OTP" "$TOKEN" "$ROOM"' 2>&1) || true
result=$(sed -n 's/^RESULT //p' <<<"$out")
check "the example's OTP is the 6 digits from the response (${result%% *})" grep -Eq 'OTP=[0-9]{6} ' <<<"$result"
check "the example gets a token" grep -Eq 'TOKEN=eyJ[^ ]+ ' <<<"$result"
check "the example creates a chatroom" grep -Eq 'ROOM=[0-9]+$' <<<"$result"
check "GET /user/me shows the user" grep -qF "\"mobile\":\"$M\"" <<<"$out"
check "the message is accepted (its pending reply is shown)" grep -q '"reply":{' <<<"$out"
check "healthz says ok" grep -q '"status":"ok"' <<<"$out"
check_eq "$(psql_q "SELECT count(*) FROM messages m JOIN chatrooms c ON c.id = m.chatroom_id JOIN users u ON u.id = c.user_id
    WHERE u.mobile = '$M' AND m.content = 'Hello!'")" 1 "the example's message is stored"

# The 30 s re-send limit the README warns about (the example just sent a code for M).
req POST /auth/send-otp "{\"mobile\":\"$M\"}"
check_status 429 "a second send-otp within 30 s is 429, as the README says"
check "... with Retry-After" test -n "$(header Retry-After)"

# "Try Pro offline": the stripe-trigger lines, with the variables of the curl example.
pro_block=$(block 'Try Pro offline: `make run FAKES=1`')
check "README has the stripe-trigger example" grep -q 'scripts/stripe-trigger.sh checkout.session.completed \$ID' <<<"$pro_block"
TOKEN=$(sed -n 's/.*TOKEN=\([^ ]*\) .*/\1/p' <<<"$result")
out=$(cd "$root" && env B="$BASE_URL" TOKEN="$TOKEN" BASE_URL="$BASE_URL" STRIPE_WEBHOOK_SECRET="$STRIPE_WEBHOOK_SECRET" bash -c "$pro_block" 2>&1) || true
check "the triggered checkout is accepted" grep -q 'checkout.session.completed evt_local_[0-9a-f]*: 200' <<<"$out"
check "the status shows pro/active" grep -q '"tier":"pro","status":"active"' <<<"$out"
check "the triggered deletion is accepted" grep -q 'customer.subscription.deleted evt_local_[0-9a-f]*: 200' <<<"$out"
auth_req "$TOKEN" GET /user/me
check_eq "$(jget .tier)" basic "after the example the user is basic again"

# The API is documented inside the repository and the README lists every route.
check "README links docs/API.md" grep -q '](docs/API.md)' "$readme"
check "README links nothing outside the repository" test -z "$(grep -nE '\]\(\.\./' "$readme" || true)"
check "docs/API.md is the contract" grep -q '^# HTTP API contract' "$root/docs/API.md"
missing=''
# (placeholders compared by position only: /chatroom/{id}/messages/{mid} is /chatroom/{id}/messages/{message_id})
readme_norm=$(sed 's/{[a-z_]*}/{}/g' "$readme")
while read -r method path; do
    p=$(sed 's/{[a-z_]*}/{}/g' <<<"$path")
    grep -qF -e "$method $p\`" -e "$method $p?" <<<"$readme_norm" || missing+=" $method $path"
done < <(sed -n 's/^ *{"\([A-Z]*\)", "\([^"]*\)", .*/\1 \2/p' "$root"/cgi-bin/*.c)
check "README's API table lists every route of cgi-bin/ (missing:${missing:- none})" test -z "$missing"
