/* webhook: POST /webhook/stripe (API.md "Subscriptions"). A route table and a thin handler: authenticity
 * comes only from the Stripe-Signature header over the raw body (lib/stripe_sig.c); the event is parsed by
 * lib/stripe_event.c and applied by lib/billing.c (the model, ordering and locking are described in
 * lib/billing.h). */
#include <stdio.h>
#include <time.h>

#include "billing.h"
#include "config.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "stripe_event.h"
#include "stripe_sig.h"

static void h_stripe(http_req_t *req)
{
    stripe_event_t ev;
    char err[160], msg[160];

    if (!g_config.stripe_webhook_secret || !g_config.stripe_webhook_secret[0]) {
        http_error(req, 503, "unavailable",
                   "Stripe webhooks are not available: the server is missing STRIPE_WEBHOOK_SECRET.");
        return;
    }
    int sig = stripe_signature_verify(http_header(req, "Stripe-Signature"), g_config.stripe_webhook_secret, req->body,
                                      req->body_len, (long long)time(NULL), STRIPE_SIG_TOLERANCE, NULL);
    if (sig != STRIPE_SIG_OK) {
        log_warn("request %s: stripe webhook refused: %s", req->request_id, stripe_sig_strerror(sig));
        snprintf(msg, sizeof msg, "The Stripe-Signature check failed: %s", stripe_sig_strerror(sig));
        http_error(req, 400, "validation_error", msg);
        return;
    }
    if (stripe_event_parse(req->body, req->body_len, &ev, err, sizeof err) != 0) {
        http_error(req, 400, "invalid_json", err);
        return;
    }
    if (billing_apply_event(&ev) != 0) {
        http_db_failed(req);
        return;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "received", json_object_new_boolean(1));
    http_json(req, 200, o);
}

static const http_route_t routes[] = {
    {"POST", "/webhook/stripe", h_stripe},
};

int main(void)
{
    http_set_max_body(HTTP_MAX_BODY_WEBHOOK); /* Stripe events can be large; the JSON endpoints keep 128 KiB */
    return http_serve("webhook", routes, sizeof routes / sizeof routes[0], NULL);
}
