/* billing_checkout: billing_checkout (billing.h), the one part of billing that calls Stripe, and so libcurl
 * (lib/stripe_client.c). Apart from billing.c so that the webhook program, which only applies events, does
 * not load libcurl and the eight libraries it needs (README "Benchmarks", Memory). */
#include "billing.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "util.h"

int billing_checkout(long long user_id, stripe_checkout_session_t *session, stripe_call_result_t *call)
{
    char token[33], idem[80], missing[128];
    billing_status_t st;
    billing_claim_t claim;
    int rc;

    memset(session, 0, sizeof *session);
    memset(call, 0, sizeof *call);
    if (billing_stripe_missing(missing, sizeof missing) != 0)
        return BILLING_NOT_CONFIGURED;
    if ((rc = billing_status_get(user_id, &st)) != 0) /* BILLING_DB_FAILED or BILLING_NOT_FOUND */
        return rc;
    if (st.pro)
        return BILLING_ALREADY_PRO;
    if (random_hex(token, 16) != 0) {
        log_error("billing: no random bytes for a checkout claim");
        return BILLING_DB_FAILED;
    }

    /* The user's usable session, or the claim to create one. While another request of the user holds the
     * claim (it is calling Stripe), ask again until it has stored its session, given the claim back, or let
     * its lease run out (it died: the claim is then ours). */
    double deadline = now_ms() + BILLING_CHECKOUT_WAIT_MS;
    for (int attempt = 0;; attempt++) {
        if ((rc = billing_checkout_claim(user_id, token, &claim)) != 0)
            return rc;
        if (claim.outcome != BILLING_CLAIM_BUSY)
            break;
        long pause = billing_checkout_pause_ms(attempt, deadline - now_ms());
        if (pause <= 0) {
            log_warn("checkout for user %lld: another request's claim outlived the %d ms wait", user_id,
                     BILLING_CHECKOUT_WAIT_MS);
            return BILLING_BUSY;
        }
        sleep_ms(pause);
    }
    if (claim.outcome == BILLING_CLAIM_AWAITING) {
        log_info("checkout for user %lld refused: its session %s is being paid by a delayed method", user_id,
                 claim.session.id);
        return BILLING_PAYMENT_PENDING;
    }
    if (claim.outcome == BILLING_CLAIM_OPEN) {
        *session = claim.session;
        log_info("checkout session %s of user %lld handed out again", session->id, user_id);
        return 0;
    }

    /* Claimed: no transaction is open while Stripe answers (the lease keeps other requests waiting). */
    snprintf(idem, sizeof idem, "gb-checkout-%lld-%s", user_id, token);
    long long expires_at = (long long)time(NULL) + BILLING_CHECKOUT_TTL_S;
    stripe_checkout_req_t sreq = {
        .api_base = g_config.stripe_api_base,
        .secret_key = g_config.stripe_secret_key,
        .price_id = g_config.stripe_price_id,
        .public_url = g_config.public_url,
        .user_id = user_id,
        .customer = claim.customer[0] ? claim.customer : NULL,
        .expires_at = expires_at,
        .idempotency_key = idem,
    };
    double started = now_ms();
    int failed = stripe_create_checkout_session(&sreq, session, call);
    if (failed && sreq.customer && strcmp(call->error_code, "resource_missing") == 0 &&
        strcmp(call->error_param, "customer") == 0) {
        /* The earlier subscription's customer is gone (deleted in the Dashboard): once more without it, in what
         * is left of the call's budget (the claim's lease covers one budget), under a key of its own (Stripe
         * refuses a key reused with other parameters). */
        long left = STRIPE_CHECKOUT_BUDGET_MS - (long)(now_ms() - started);
        log_warn("checkout for user %lld: Stripe no longer knows customer %s; a session without it", user_id,
                 sreq.customer);
        if (left >= 1000) {
            snprintf(idem, sizeof idem, "gb-checkout-%lld-%s-new", user_id, token);
            sreq.customer = NULL;
            sreq.timeout_ms = left;
            failed = stripe_create_checkout_session(&sreq, session, call);
        }
    }
    if (failed) {
        billing_checkout_release(user_id, token);
        return BILLING_STRIPE_FAILED;
    }
    if (session->expires_at > 0) /* Stripe's word, else what we asked for */
        expires_at = session->expires_at;
    if ((rc = billing_checkout_store(user_id, token, session, expires_at)) != 0) {
        /* Not handed out: a session nobody sees cannot be paid, and it expires within the hour. */
        if (rc == BILLING_BUSY)
            log_warn("checkout session %s for user %lld dropped: the claim's lease ran out before it was stored",
                     session->id, user_id);
        else { /* the database failed: free the claim if it can be reached (a stored session has none) */
            log_error("checkout session %s for user %lld dropped: it could not be stored", session->id, user_id);
            billing_checkout_release(user_id, token);
        }
        memset(session, 0, sizeof *session);
        return rc;
    }
    session->expires_at = expires_at;
    log_info("checkout session %s created for user %lld%s", session->id, user_id,
             sreq.customer ? " (customer reused)" : "");
    return 0;
}
