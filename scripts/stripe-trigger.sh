#!/usr/bin/env bash
# scripts/stripe-trigger.sh: send a signed Stripe test event to the webhook, like `stripe trigger`, to try Pro
# without a Stripe account (pair it with `make run FAKES=1`, or any stack whose STRIPE_WEBHOOK_SECRET you know).
#
#   scripts/stripe-trigger.sh EVENT USER_ID
#
# EVENT:   checkout.session.completed          the user becomes pro (paid checkout)
#          checkout.session.async_payment_succeeded / async_payment_failed
#          customer.subscription.updated:STATUS  e.g. customer.subscription.updated:past_due, :canceled
#          customer.subscription.deleted       the user goes back to basic
#          invoice.payment_failed              the subscription becomes past_due
# USER_ID: the user's id (GET /user/me). The subscription and customer ids are derived from it
#          (sub_local_<id>, cus_local_<id>), so a later event finds the subscription of an earlier one.
# Environment: BASE_URL (default http://127.0.0.1:$PORT, PORT 8080), STRIPE_WEBHOOK_SECRET (default: the one in
# ./var/secrets.env, written by `make run`). Prints the response; exits non-zero unless it is 200.
set -euo pipefail

usage() {
    sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
(($# == 2)) || usage
event=$1 uid=$2
[[ $uid =~ ^[1-9][0-9]{0,18}$ ]] || {
    echo "stripe-trigger: USER_ID must be a positive integer (got '$uid')" >&2
    exit 2
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z ${STRIPE_WEBHOOK_SECRET:-} && -f $ROOT/var/secrets.env ]]; then
    STRIPE_WEBHOOK_SECRET=$(sed -n 's/^STRIPE_WEBHOOK_SECRET=//p' "$ROOT/var/secrets.env" | tail -n 1)
fi
[[ -n ${STRIPE_WEBHOOK_SECRET:-} ]] || {
    echo "stripe-trigger: set STRIPE_WEBHOOK_SECRET (the stack's webhook signing secret)" >&2
    exit 2
}
BASE_URL=${BASE_URL:-http://127.0.0.1:${PORT:-8080}}

now=$(date +%s)
id=evt_local_$(openssl rand -hex 12)
sub=sub_local_$uid cus=cus_local_$uid
period_end=$((now + 30 * 86400))
head='{"id":"'$id'","object":"event","api_version":"2026-10-28.endive","created":'$now',"livemode":false,'

checkout() { # TYPE PAYMENT_STATUS
    printf '%s"type":"%s","data":{"object":{"id":"cs_local_%s","object":"checkout.session",' "$head" "$1" \
        "$(openssl rand -hex 8)"
    printf '"client_reference_id":"%s","customer":"%s","subscription":"%s","mode":"subscription",' "$uid" "$cus" "$sub"
    printf '"status":"complete","payment_status":"%s","metadata":{"user_id":"%s"}}}}' "$2" "$uid"
}
subscription() { # TYPE STATUS
    printf '%s"type":"%s","data":{"object":{"id":"%s","object":"subscription","customer":"%s",' "$head" "$1" "$sub" "$cus"
    printf '"status":"%s","cancel_at_period_end":false,"metadata":{"user_id":"%s"},' "$2" "$uid"
    printf '"items":{"object":"list","data":[{"id":"si_local_%s","price":{"id":"price_local"},' "$uid"
    printf '"current_period_end":%s}]}}}}' "$period_end"
}

case $event in
checkout.session.completed) body=$(checkout "$event" paid) ;;
checkout.session.async_payment_succeeded) body=$(checkout "$event" paid) ;;
checkout.session.async_payment_failed) body=$(checkout "$event" unpaid) ;;
customer.subscription.updated:*) body=$(subscription customer.subscription.updated "${event#*:}") ;;
customer.subscription.deleted) body=$(subscription "$event" canceled) ;;
invoice.payment_failed)
    body=$head'"type":"invoice.payment_failed","data":{"object":{"id":"in_local_'$(openssl rand -hex 6)'",'
    body+='"object":"invoice","customer":"'$cus'","status":"open","attempt_count":1,"billing_reason":"subscription_cycle",'
    body+='"parent":{"type":"subscription_details","subscription_details":{"subscription":"'$sub'"}}}}}'
    ;;
*)
    echo "stripe-trigger: unknown event '$event'" >&2
    usage
    ;;
esac

sig=$(printf '%s' "$now.$body" | openssl dgst -sha256 -hmac "$STRIPE_WEBHOOK_SECRET" | sed 's/^.*= *//')
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=$(curl -sS -o "$out" -w '%{http_code}' -X POST "$BASE_URL/webhook/stripe" \
    -H 'Content-Type: application/json' -H "Stripe-Signature: t=$now,v1=$sig" --data-binary "$body")
printf '%s %s: %s %s\n' "$event" "$id" "$status" "$(cat "$out")"
[[ $status == 200 ]]
