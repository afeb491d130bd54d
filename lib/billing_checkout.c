/* billing_checkout: billing_checkout (billing.h), the one part of billing that calls Stripe, and so libcurl
 * (lib/stripe_client.c). Apart from billing.c so that the webhook program, which only applies events, does
 * not load libcurl and the eight libraries it needs (README "Benchmarks", Memory). */
#include "billing.h"

#include <string.h>

#include "config.h"
#include "log.h"

int billing_checkout(long long user_id, const char *client_key, stripe_checkout_session_t *session,
                     stripe_call_result_t *call)
{
    char idem[160], missing[128];
    billing_status_t st;
    int rc;

    memset(session, 0, sizeof *session);
    memset(call, 0, sizeof *call);
    if (billing_stripe_missing(missing, sizeof missing) != 0)
        return BILLING_NOT_CONFIGURED;
    if ((rc = billing_status_get(user_id, &st)) != 0) /* BILLING_DB_FAILED or BILLING_NOT_FOUND */
        return rc;
    if (st.pro)
        return BILLING_ALREADY_PRO;
    billing_checkout_idem_key(user_id, client_key, idem, sizeof idem);
    stripe_checkout_req_t sreq = {
        .api_base = g_config.stripe_api_base,
        .secret_key = g_config.stripe_secret_key,
        .price_id = g_config.stripe_price_id,
        .public_url = g_config.public_url,
        .user_id = user_id,
        .idempotency_key = idem[0] ? idem : NULL,
    };
    if (stripe_create_checkout_session(&sreq, session, call) != 0)
        return BILLING_STRIPE_FAILED;
    log_info("checkout session %s created for user %lld", session->id, user_id);
    return 0;
}
