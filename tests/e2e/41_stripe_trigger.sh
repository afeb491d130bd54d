#!/usr/bin/env bash
# scripts/stripe-trigger.sh (the `stripe trigger` stand-in of the README): its signed events are accepted by the
# webhook and move the user to pro and back; bad arguments are refused before anything is sent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
trigger() { BASE_URL=$BASE_URL STRIPE_WEBHOOK_SECRET=$STRIPE_WEBHOOK_SECRET "$root/scripts/stripe-trigger.sh" "$@"; }

signup_and_login
check "checkout.session.completed is accepted" trigger checkout.session.completed "$USER_ID"
auth_req "$TOKEN" GET /subscription/status
check_eq "$(jget .tier)/$(jget .status)" "pro/active" "the user is pro after the triggered checkout"
check "invoice.payment_failed is accepted" trigger invoice.payment_failed "$USER_ID"
auth_req "$TOKEN" GET /subscription/status
check_eq "$(jget .tier)/$(jget .status)" "pro/past_due" "a failed invoice leaves the user pro, past_due"
check "customer.subscription.deleted is accepted" trigger customer.subscription.deleted "$USER_ID"
auth_req "$TOKEN" GET /subscription/status
check_eq "$(jget .tier)" "basic" "the user is basic after the triggered deletion"

rc=0
trigger no.such.event "$USER_ID" >/dev/null 2>&1 || rc=$?
check_eq "$rc" 2 "an unknown event is refused (exit 2)"
rc=0
trigger checkout.session.completed abc >/dev/null 2>&1 || rc=$?
check_eq "$rc" 2 "a non-numeric user id is refused (exit 2)"
rc=0
BASE_URL=$BASE_URL STRIPE_WEBHOOK_SECRET=whsec_wrong "$root/scripts/stripe-trigger.sh" checkout.session.completed \
    "$USER_ID" >/dev/null 2>&1 || rc=$?
check "a wrong secret makes the script fail (the webhook answers 400)" test "$rc" -ne 0
