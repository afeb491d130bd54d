#!/usr/bin/env bash
# e2e: core
# One open Checkout Session per user (schema step 12), so that nobody pays twice: POST /subscribe/pro hands out
# the user's stored session while it is open (again, from two tabs, from 10 requests at once: one session at the
# fake Stripe, tests/fakes/stripe.js's GET /__sessions), made with an explicit expires_at (now + 1 h); a session
# expired or about to (less than 10 minutes left), closed by checkout.session.expired or completed (then 409 once
# pro), or never stored (Stripe failed, the claim's lease ran out) gives a new one; a claim left by a request that
# died is taken over when its lease ends; the customer of an earlier subscription is reused (and left out once
# Stripe says it is gone). PostgreSQL down: 503 with Retry-After. The fake refuses an expires_at outside 30 min to
# 24 h, as Stripe does.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

secret=${STRIPE_WEBHOOK_SECRET:-whsec_test_fake}
fake=$FAKE_STRIPE_URL
price=${STRIPE_PRICE_ID:-price_test_pro}
fake_control() { curl -s -X POST "$fake/__control" -H "Content-Type: application/json" -d "$1" >/dev/null; }
fake_control '{"fail_next":null,"delay_ms":0,"prices":["'"$price"'"]}'

# sessions_of UID: how many Checkout Sessions the fake created for the user.
sessions_of() { curl -s "$fake/__sessions" | jq --arg uid "$1" '[.[] | select(.client_reference_id == $uid)] | length'; }
# fake_session SID FILTER: a field of the session at the fake.
fake_session() { curl -s "$fake/__sessions" | jq -r --arg id "$1" ".[] | select(.id == \$id) | $2"; }
# last_form UID KEY: a form field of the last Checkout Session request for the user ("null" when absent).
last_form() {
    curl -s "$fake/__requests" | jq -r --arg uid "$1" --arg k "$2" \
        '[.[] | select(.path == "/v1/checkout/sessions" and .form.client_reference_id == $uid)] | last | .form[$k]'
}
fake_event() { curl -s -X POST "$fake/__checkout/$1/$2" -H "Content-Type: application/json" -d "${3:-{\}}" | jq -c .; }
sign() {
    local t sig
    t=$(date +%s)
    sig=$(printf '%s' "$t.$1" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= *//')
    printf 't=%s,v1=%s' "$t" "$sig"
}
webhook() { req POST /webhook/stripe "$1" -H "Stripe-Signature: $(sign "$1")"; }
row() { psql_q "SELECT coalesce(session_id, '-') || ' ' || (closed_at IS NOT NULL) || ' ' || coalesce(claim_token, '-')
                FROM checkout_sessions WHERE user_id = $1"; } # UID: "session closed claim"
subscribe() { auth_req "$1" POST /subscribe/pro "{}"; } # TOKEN

check_eq "$(psql_q "SELECT count(*) FROM schema_version WHERE version IN (12, 13)")" 2 "schema steps 12 and 13 are recorded"

# ---------------------------------------------------------------------------------------------------------
# The fake checks expires_at as Stripe does: 30 min to 24 h ahead.
fake_create() { # EXPIRES_AT: the status of a direct create at the fake
    curl -s -o /dev/null -w '%{http_code}' -X POST "$fake/v1/checkout/sessions" \
        -H "Authorization: Bearer ${STRIPE_SECRET_KEY:-sk_test_fake}" --data-urlencode mode=subscription \
        --data-urlencode "line_items[0][price]=$price" --data-urlencode "line_items[0][quantity]=1" \
        --data-urlencode "success_url=$BASE_URL/payment/success" --data-urlencode "cancel_url=$BASE_URL/payment/cancel" \
        --data-urlencode "client_reference_id=0" --data-urlencode "expires_at=$1"
}
now=$(date +%s)
check_eq "$(fake_create $((now + 600)))" 400 "fake: expires_at 10 minutes ahead is refused (400)"
check_eq "$(fake_create $((now + 90000)))" 400 "fake: expires_at 25 hours ahead is refused (400)"
check_eq "$(fake_create soon)" 400 "fake: a non-integer expires_at is refused (400)"
check_eq "$(fake_create $((now + 3600)))" 200 "fake: expires_at 1 hour ahead is taken"
check_eq "$(curl -s "$fake/__sessions" | jq 'last | .expires_at')" "$((now + 3600))" "fake: ... and is the session's"

# ---------------------------------------------------------------------------------------------------------
# Two POSTs (two tabs, a double click, a retry without a key): one session.
signup_and_login
A_TOKEN=$TOKEN A_ID=$USER_ID
now=$(date +%s)
subscribe "$A_TOKEN"
check_status 200 "the first POST /subscribe/pro: 200"
sid=$(jget .session_id) url=$(jget .checkout_url)
exp=$(last_form "$A_ID" expires_at)
check "the session is made with an explicit expires_at about an hour ahead ($exp)" \
    test "$exp" -ge $((now + 3590)) -a "$exp" -le $((now + 3610))
check_eq "$(fake_session "$sid" .expires_at)" "$exp" "... which the fake's session carries"
check_eq "$(last_form "$A_ID" customer)" null "a user who never subscribed: no customer is sent"
check_eq "$(psql_q "SELECT extract(epoch FROM expires_at)::bigint FROM checkout_sessions WHERE session_id = '$sid'")" \
    "$exp" "the session is stored with Stripe's expires_at"
subscribe "$A_TOKEN"
check_eq "$STATUS $(jget .session_id) $(jget .checkout_url)" "200 $sid $url" "a second POST answers the same session"
auth_req "$A_TOKEN" POST /subscribe/pro "{}" -H "Idempotency-Key: tab-2-$(openssl rand -hex 4)"
check_eq "$STATUS $(jget .session_id)" "200 $sid" "... so does one with another Idempotency-Key"
check_eq "$(sessions_of "$A_ID")" 1 "two tabs, one session at Stripe"

# 10 at once, with Stripe slow (each would have made its own): one session, every answer is it.
signup_and_login
B_TOKEN=$TOKEN B_ID=$USER_ID
par=$STACK_DIR/checkout.$$
mkdir -p "$par"
fake_control '{"delay_ms":400}'
for i in $(seq 1 10); do
    curl -s -o "$par/$i.body" -w '%{http_code}\n' --max-time 30 -X POST "$BASE_URL/subscribe/pro" \
        -H "Authorization: Bearer $B_TOKEN" -H 'Content-Type: application/json' -d '{}' >"$par/$i.status" &
done
wait
fake_control '{"delay_ms":0}'
check_eq "$(cat "$par"/*.status | sort | uniq -c | sed 's/^ *//')" "10 200" "10 concurrent POSTs: every one 200"
check_eq "$(cat "$par"/*.body | jq -r .session_id | sort -u | wc -l)" 1 "... all with the same session"
check_eq "$(sessions_of "$B_ID")" 1 "... and one session at Stripe"
b_sid=$(jq -r .session_id "$par/1.body")
check_eq "$(row "$B_ID")" "$b_sid false -" "... stored, open, the claim ended"
rm -rf "$par"

# ---------------------------------------------------------------------------------------------------------
# A session past its end, or too close to it, is not handed out: a new one is made.
psql_q "UPDATE checkout_sessions SET expires_at = now() - interval '1 minute' WHERE user_id = $A_ID" >/dev/null
subscribe "$A_TOKEN"
sid2=$(jget .session_id)
check "an expired session: a new one ($sid2)" test "$STATUS" = 200 -a "$sid2" != "$sid" -a -n "$sid2"
check_eq "$(sessions_of "$A_ID")" 2 "... the second session at Stripe"
subscribe "$A_TOKEN"
check_eq "$(jget .session_id)" "$sid2" "... and the new one is handed out again"
psql_q "UPDATE checkout_sessions SET expires_at = now() + interval '5 minutes' WHERE user_id = $A_ID" >/dev/null
subscribe "$A_TOKEN"
sid3=$(jget .session_id)
check "a session with 5 minutes left: a new one" test "$STATUS" = 200 -a "$sid3" != "$sid2"
check_eq "$(sessions_of "$A_ID")" 3 "... the third session at Stripe"

# checkout.session.expired (the fake makes it from our session): closed, a new one next time.
ev=$(fake_event "$sid3" expire)
check_eq "$(jq -r '.type + " " + .data.object.id' <<<"$ev")" "checkout.session.expired $sid3" \
    "the fake expires our session"
webhook "$ev"
check_status 200 "checkout.session.expired: 200"
check_eq "$(row "$A_ID")" "$sid3 true -" "... the stored session is closed"
check_eq "$(psql_q "SELECT tier FROM users WHERE id = $A_ID")/$(psql_q "SELECT count(*) FROM subscriptions WHERE user_id = $A_ID")" \
    "basic/0" "... and nothing else changes"
subscribe "$A_TOKEN"
sid4=$(jget .session_id)
check "after checkout.session.expired: a new session" test "$STATUS" = 200 -a "$sid4" != "$sid3"
check_eq "$(sessions_of "$A_ID")" 4 "... the fourth session at Stripe"

# checkout.session.completed: closed, and the user, pro now, gets 409 (no session made).
ev=$(fake_event "$sid4" complete '{"payment":"paid"}')
cus=$(jq -r .data.object.customer <<<"$ev") sub=$(jq -r .data.object.subscription <<<"$ev")
webhook "$ev"
check_status 200 "checkout.session.completed: 200"
check_eq "$(row "$A_ID")" "$sid4 true -" "... the stored session is closed"
subscribe "$A_TOKEN"
check_eq "$STATUS $(jget .error.code)" "409 conflict" "... the user is pro: 409"
check_eq "$(sessions_of "$A_ID")" 4 "... and no session is made"

# Back to basic: a new session, for the customer of the earlier subscription (never with customer_email).
body=$(printf '{"id":"evt_test_%s","object":"event","created":%s,"type":"customer.subscription.deleted","data":{"object":{"id":"%s","object":"subscription","customer":"%s","status":"canceled","metadata":{"user_id":"%s"}}}}' \
    "$(openssl rand -hex 12)" "$(($(date +%s) + 5))" "$sub" "$cus" "$A_ID")
webhook "$body"
check_eq "$(psql_q "SELECT tier FROM users WHERE id = $A_ID")" basic "the subscription deleted: basic again"
subscribe "$A_TOKEN"
sid5=$(jget .session_id)
check "a new session after the cancellation" test "$STATUS" = 200 -a "$sid5" != "$sid4"
check_eq "$(last_form "$A_ID" customer)" "$cus" "... made for the customer of the earlier subscription"
check_eq "$(last_form "$A_ID" customer_email)" null "... without customer_email"
check_eq "$(fake_session "$sid5" .customer)" "$cus" "... the fake's session has that customer"

# That customer deleted at Stripe (the Dashboard): the next session is made without it, not a 502 for ever.
webhook "$(fake_event "$sid5" expire)"
check_status 200 "checkout.session.expired of that session: 200"
check_eq "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$fake/v1/customers/$cus" \
    -H "Authorization: Bearer ${STRIPE_SECRET_KEY:-sk_test_fake}")" 200 "the customer is deleted at the fake"
subscribe "$A_TOKEN"
sid6=$(jget .session_id)
check "a customer Stripe no longer knows: still a new session (200)" test "$STATUS" = 200 -a "$sid6" != "$sid5"
check_eq "$(curl -s "$fake/__requests" | jq -r --arg uid "$A_ID" '[.[] | select(.path == "/v1/checkout/sessions"
    and .form.client_reference_id == $uid)] | .[-2:] | map("\(.status) \(.form.customer // "none")") | join(", ")')" \
    "400 $cus, 200 none" "... Stripe refused the customer, then made it without one"
check_eq "$(row "$A_ID")" "$sid6 false -" "... and it is stored"

# ---------------------------------------------------------------------------------------------------------
# Stripe failing: 502, nothing stored; the next POST makes the session.
signup_and_login
C_TOKEN=$TOKEN C_ID=$USER_ID
fake_control '{"fail_next":{"status":500,"count":2}}'
subscribe "$C_TOKEN"
check_status 502 "Stripe failing: 502"
check_eq "$(row "$C_ID")" "- false -" "... nothing stored, the claim given back"
subscribe "$C_TOKEN"
c_sid=$(jget .session_id)
check_eq "$STATUS/$(sessions_of "$C_ID")" 200/1 "... the next POST makes the session"
check_eq "$(row "$C_ID")" "$c_sid false -" "... and stores it"

# A claim left by a request that died (its lease still runs for 2 s): the next request waits, then takes it.
psql_q "UPDATE checkout_sessions SET session_id = NULL, url = NULL, expires_at = NULL, claim_token = 'dead',
        claim_until = now() + interval '2 seconds' WHERE user_id = $C_ID" >/dev/null
t0=$(date +%s%N)
subscribe "$C_TOKEN"
waited_ms=$((($(date +%s%N) - t0) / 1000000))
c_sid2=$(jget .session_id)
check "a dead request's claim: 200 once its lease ended (${waited_ms} ms)" \
    test "$STATUS" = 200 -a "$waited_ms" -ge 1500 -a "$c_sid2" != "$c_sid"
check_eq "$(sessions_of "$C_ID")" 2 "... with one new session"

# The claim's lease ran out while Stripe answered, and another request took it: the session is not handed out
# (the other request's will be), 503 with Retry-After.
psql_q "UPDATE checkout_sessions SET closed_at = now() WHERE user_id = $C_ID" >/dev/null
fake_control '{"delay_ms":1500}'
(
    subscribe "$C_TOKEN"
    echo "$STATUS $(jget .error.code) $(header Retry-After)" >"$STACK_DIR/lost.$$"
) &
sub_pid=$!
for _ in $(seq 1 50); do
    [[ $(psql_q "SELECT count(*) FROM checkout_sessions WHERE user_id = $C_ID AND claim_token IS NOT NULL") == 1 ]] && break
    sleep 0.05
done
psql_q "UPDATE checkout_sessions SET claim_token = 'thief', claim_until = now() + interval '1 second'
        WHERE user_id = $C_ID" >/dev/null
wait "$sub_pid" || true
fake_control '{"delay_ms":0}'
check_eq "$(cat "$STACK_DIR/lost.$$")" "503 unavailable 1" "a lost claim: 503 with Retry-After: 1"
rm -f "$STACK_DIR/lost.$$"
check_eq "$(row "$C_ID")" "- false thief" "... the session Stripe made is not stored"
sleep 1.1
subscribe "$C_TOKEN"
check "... the next request, once the other's lease ended, makes and stores its own" \
    test "$STATUS" = 200 -a "$(row "$C_ID")" = "$(jget .session_id) false -"

# PostgreSQL down: 503 with Retry-After: 1, Stripe not called.
n=$(sessions_of "$C_ID")
psql_q "UPDATE checkout_sessions SET closed_at = now() WHERE user_id = $C_ID" >/dev/null
stack_pg_stop
subscribe "$C_TOKEN"
check_eq "$STATUS/$(jget .error.code)/$(header Retry-After)" "503/unavailable/1" "PostgreSQL down: 503 with Retry-After: 1"
stack_pg_start
check_eq "$(sessions_of "$C_ID")" "$n" "... and no session was made"
subscribe "$C_TOKEN"
check_eq "$STATUS/$(sessions_of "$C_ID")" "200/$((n + 1))" "PostgreSQL back: a new session"
