#!/usr/bin/env bash
# e2e: core
# The worker's housekeeping: idempotency keys older than 24 h, OTP send records older than a day and Stripe
# event ids older than 30 days are removed; fresh ones stay.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../worker_lib.sh"

signup_and_login
u=$USER_ID
psql_q "INSERT INTO idempotency_keys (user_id, key, status, body, created_at) VALUES
          ($u, 'hk-old', 202, '{}', now() - interval '25 hours'), ($u, 'hk-new', 202, '{}', now());
        INSERT INTO otp_sends (user_id, purpose, sent_at) VALUES
          ($u, 'login', now() - interval '2 days'), ($u, 'login', now() - interval '1 minute');
        INSERT INTO stripe_events (id, type, created, received_at) VALUES
          ('evt_hk_old_$u', 'x', 1, now() - interval '31 days'), ('evt_hk_new_$u', 'x', 1, now())" >/dev/null

# A fresh worker process does its housekeeping on its first turn.
bin=$(_stack_abs "$BUILD_DIR/worker/worker")
env AI_PROVIDER=offline timeout 60 "$bin" --once </dev/null >>"$STACK_DIR/worker-once.log" 2>&1
check_eq "$?" 0 "worker --once exits 0"
check_eq "$(psql_q "SELECT string_agg(key, ',' ORDER BY key) FROM idempotency_keys WHERE user_id = $u")" \
    "hk-new" "idempotency keys past 24 h are removed, fresh ones stay"
check_eq "$(psql_q "SELECT count(*) FROM otp_sends WHERE user_id = $u AND sent_at < now() - interval '1 day'")" \
    0 "OTP send records older than a day are removed"
check "recent OTP send records stay" test "$(psql_q "SELECT count(*) FROM otp_sends WHERE user_id = $u")" -ge 1
check_eq "$(psql_q "SELECT string_agg(id, ',') FROM stripe_events WHERE id LIKE 'evt_hk_%_$u'")" \
    "evt_hk_new_$u" "Stripe event ids past 30 days are removed, recent ones stay"
