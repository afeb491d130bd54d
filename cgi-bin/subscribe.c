/* subscribe: POST /subscribe/pro (Stripe Checkout), GET /subscription/status, and the two pages Stripe
 * Checkout sends the browser back to, GET /payment/success and GET /payment/cancel. A route table and thin
 * handlers over lib/billing.c; the tier itself only changes through the signed webhook (cgi-bin/webhook.c). */
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "auth.h"
#include "billing.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "stripe_client.h"

static void init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* BILLING_NOT_FOUND for the caller: the token's user was deleted after the token was checked. */
static void user_gone(http_req_t *req)
{
    http_set_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
    http_error(req, 401, "unauthorized", "The token's user no longer exists.");
}

static void h_subscribe_pro(http_req_t *req)
{
    stripe_checkout_session_t session;
    stripe_call_result_t call;
    char missing[128], msg[256];

    /* An Idempotency-Key is checked like anywhere else, but needs nothing more: every POST of the user gets
     * their open session (billing_checkout). */
    const char *idem;
    if (auth_require(req) != 0 || http_idem_key(req, &idem) != 0 || http_json_body_optional(req) != 0)
        return;
    if (billing_stripe_missing(missing, sizeof missing) != 0) {
        snprintf(msg, sizeof msg, "Subscriptions are not available: the server is missing %s.", missing);
        http_error(req, 503, "unavailable", msg);
        return;
    }
    switch (billing_checkout(req->user_id, &session, &call)) {
    case 0: break;
    case BILLING_BUSY:
        http_set_header(req, "Retry-After", "1");
        http_error(req, 503, "unavailable",
                   "Another request is starting a checkout for your account; try again shortly.");
        return;
    case BILLING_NOT_FOUND: user_gone(req); return;
    case BILLING_ALREADY_PRO: http_error(req, 409, "conflict", "You already have a Pro subscription."); return;
    case BILLING_PAYMENT_PENDING:
        http_error(req, 409, "conflict",
                   "Your payment for Pro is still being confirmed by your bank; you are Pro as soon as it is.");
        return;
    case BILLING_STRIPE_FAILED:
        /* The detail (hosts, ports, Stripe's own message) is for our log only; the client gets the class. */
        log_warn("request %s: checkout session for user %lld failed (%s; Stripe HTTP %d, %d attempt%s): %s",
                 req->request_id, req->user_id, stripe_failure_sentence(call.failure), call.http_status, call.attempts,
                 call.attempts == 1 ? "" : "s", call.detail);
        snprintf(msg, sizeof msg, "Could not start a checkout: %s", stripe_failure_sentence(call.failure));
        http_error(req, 502, "upstream_error", msg);
        return;
    case BILLING_NOT_CONFIGURED: http_unavailable(req); return;
    default: http_db_failed(req); return;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "checkout_url", json_object_new_string(session.url));
    json_object_object_add(o, "session_id", json_object_new_string(session.id));
    http_json(req, 200, o);
}

static void h_status(http_req_t *req)
{
    billing_status_t st;

    if (auth_require(req) != 0)
        return;
    switch (billing_status_get(req->user_id, &st)) {
    case 0: http_json(req, 200, billing_status_json(&st, g_config.basic_daily_limit)); return;
    case BILLING_NOT_FOUND: user_gone(req); return;
    default: http_db_failed(req); return;
    }
}

/* Whether the client asked for a page rather than JSON: a browser back from Stripe Checkout sends
 * "text/html,...", an API client "application/json", "*" "/" "*" or nothing. Listing text/html before any
 * application/json is asking for a page. */
static int wants_html(http_req_t *req)
{
    const char *a = http_header(req, "Accept");
    const char *html = a ? strcasestr(a, "text/html") : NULL, *json = a ? strcasestr(a, "application/json") : NULL;
    return html && (!json || html < json);
}

/* The two pages Stripe sends the browser back to: the JSON (status, message, and for the success its
 * session_id: sid, NULL for cancel), or for a browser a short fixed page (nothing of the request in it) with a
 * link to the web client. */
static void payment_page(http_req_t *req, const char *status, const char *message, json_object *sid, const char *title,
                         const char *text)
{
    http_set_header(req, "Vary", "Accept");
    if (wants_html(req)) {
        json_object_put(sid);
        buf_t page = {0};
        buf_printf(&page,
                   "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                   "<title>%s</title>\n</head>\n<body>\n<h1>%s</h1>\n<p>%s</p>\n"
                   "<p><a href=\"/\">Back to the chat</a></p>\n</body>\n</html>\n",
                   title, title, text);
        http_set_header(req, "Content-Security-Policy", "default-src 'none'; base-uri 'none'; frame-ancestors 'none'");
        http_set_header(req, "X-Content-Type-Options", "nosniff");
        http_raw(req, 200, "text/html; charset=utf-8", page.data, page.len);
        buf_free(&page);
        return;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "status", json_object_new_string(status));
    json_object_object_add(o, "message", json_object_new_string(message));
    if (strcmp(status, "processing") == 0)
        json_object_object_add(o, "session_id", sid);
    http_json(req, 200, o);
}

static void h_payment_success(http_req_t *req)
{
    const char *sid = http_query(req, "session_id");
    payment_page(req, "processing",
                 "Thank you! Your payment is being confirmed; Pro is enabled as soon as Stripe confirms it. Check "
                 "GET /subscription/status.",
                 billing_session_id_valid(sid) ? json_object_new_string(sid) : NULL, "Thank you!",
                 "Your payment is being confirmed: Pro is enabled as soon as Stripe confirms it, usually within a "
                 "few seconds.");
}

static void h_payment_cancel(http_req_t *req)
{
    payment_page(req, "canceled",
                 "Checkout was canceled; you have not been charged. You can subscribe again at any time.", NULL,
                 "Checkout canceled", "You have not been charged. You can subscribe again at any time.");
}

static const http_route_t routes[] = {
    {"POST", "/subscribe/pro", h_subscribe_pro},
    {"GET", "/subscription/status", h_status},
    {"GET", "/payment/success", h_payment_success},
    {"GET", "/payment/cancel", h_payment_cancel},
};

int main(void)
{
    int rc = http_serve("subscribe", routes, sizeof routes / sizeof routes[0], init);
    stripe_cleanup();
    curl_global_cleanup();
    return rc;
}
