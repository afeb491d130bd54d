/* billing_checkout: billing_checkout (billing.h), the one part of billing that calls Stripe, and so libcurl
 * (lib/stripe_client.c). Apart from billing.c so that the webhook program, which only applies events, does
 * not load libcurl and the eight libraries it needs (README "Benchmarks", Memory). */
#include "billing.h"

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "log.h"

int billing_checkout(long long user_id, const char *client_key, stripe_checkout_session_t *session,
                     stripe_call_result_t *call)
{
    static db_stmt_t tier_q = DB_STMT("billing_user_tier", "SELECT tier FROM users WHERE id = $1", 1);
    char uid[24], idem[160], missing[128];
    PGresult *res = NULL;
    int rc = BILLING_DB_FAILED;

    memset(session, 0, sizeof *session);
    memset(call, 0, sizeof *call);
    if (billing_stripe_missing(missing, sizeof missing) != 0) {
        rc = BILLING_NOT_CONFIGURED;
        goto out;
    }
    snprintf(uid, sizeof uid, "%lld", user_id);
    const char *p[] = {uid};
    if (!(res = db_query(&tier_q, p)))
        goto out;
    if (PQntuples(res) != 1) {
        rc = BILLING_NOT_FOUND;
        goto out;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "pro") == 0) {
        rc = BILLING_ALREADY_PRO;
        goto out;
    }
    billing_checkout_idem_key(user_id, client_key, idem, sizeof idem);
    stripe_checkout_req_t sreq = {
        .api_base = g_config.stripe_api_base,
        .secret_key = g_config.stripe_secret_key,
        .price_id = g_config.stripe_price_id,
        .public_url = g_config.public_url,
        .user_id = user_id,
        .idempotency_key = idem[0] ? idem : NULL,
    };
    if (stripe_create_checkout_session(&sreq, session, call) != 0) {
        rc = BILLING_STRIPE_FAILED;
        goto out;
    }
    log_info("checkout session %s created for user %s", session->id, uid);
    rc = 0;
out:
    PQclear(res);
    return rc;
}
