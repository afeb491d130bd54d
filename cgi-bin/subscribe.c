/* subscribe: POST /subscribe/pro (Stripe Checkout), GET /subscription/status, and the two pages Stripe
 * Checkout sends the browser back to, GET /payment/success and GET /payment/cancel. The tier itself only
 * changes through the signed webhook (cgi-bin/webhook.c). */
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "auth.h"
#include "config.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "stripe.h"

static void init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* 0 when every Stripe setting is present, else -1 after answering 503 naming the missing ones. */
static int require_stripe_config(http_req_t *req)
{
    const struct {
        const char *name, *value;
    } vars[] = {
        {"STRIPE_SECRET_KEY", g_config.stripe_secret_key},
        {"STRIPE_PRICE_ID", g_config.stripe_price_id},
        {"STRIPE_WEBHOOK_SECRET", g_config.stripe_webhook_secret},
    };
    char missing[128] = "", msg[256];
    size_t off = 0;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        if (vars[i].value && vars[i].value[0])
            continue;
        int n = snprintf(missing + off, sizeof missing - off, "%s%s", off ? ", " : "", vars[i].name);
        if (n > 0 && (size_t)n < sizeof missing - off)
            off += (size_t)n;
    }
    if (!off)
        return 0;
    snprintf(msg, sizeof msg, "Subscriptions are not available: the server is missing %s.", missing);
    http_error(req, 503, "unavailable", msg);
    return -1;
}

/* A client Idempotency-Key we can forward (namespaced by user): 1..100 of [A-Za-z0-9._:-]. */
static int sane_key(const char *s)
{
    size_t n = 0;
    if (!s)
        return 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= 100 || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                          c == '_' || c == ':' || c == '-'))
            return 0;
    }
    return n > 0;
}

/* ---- POST /subscribe/pro ---- */

static void subscribe_pro(http_req_t *req)
{
    static db_stmt_t tier_q = DB_STMT("sub_user_tier", "SELECT tier FROM users WHERE id = $1", 1);
    char uid[24], msg[160], idem[160];
    stripe_checkout_session_t session;
    stripe_call_result_t call;
    PGresult *res = NULL;

    if (auth_require(req) != 0)
        return;
    /* No body is needed; one that is sent must still be a JSON object (API.md conventions). */
    if (req->body_len > 0) {
        json_object *body = http_json_body(req);
        if (!body)
            return;
        json_object_put(body);
    }
    if (require_stripe_config(req) != 0)
        return;
    snprintf(uid, sizeof uid, "%lld", req->user_id);
    const char *p[] = {uid};
    if (!(res = db_query(&tier_q, p))) {
        http_db_failed(req);
        goto out;
    }
    if (PQntuples(res) != 1) {
        http_not_found(req);
        goto out;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "pro") == 0) {
        http_error(req, 409, "conflict", "You already have a Pro subscription.");
        goto out;
    }

    const char *client_key = http_header(req, "Idempotency-Key");
    idem[0] = '\0';
    if (sane_key(client_key))
        snprintf(idem, sizeof idem, "gb-checkout-%s-%s", uid, client_key);
    stripe_checkout_req_t sreq = {
        .api_base = g_config.stripe_api_base,
        .secret_key = g_config.stripe_secret_key,
        .price_id = g_config.stripe_price_id,
        .public_url = g_config.public_url,
        .user_id = req->user_id,
        .idempotency_key = idem[0] ? idem : NULL,
    };
    if (stripe_create_checkout_session(&sreq, &session, &call) != 0) {
        /* The detail (hosts, ports, Stripe's own message) is for our log only; the client gets the class. */
        log_warn("request %s: checkout session for user %s failed (%s; Stripe HTTP %d, %d attempt%s): %s",
                 req->request_id, uid, stripe_failure_sentence(call.failure), call.http_status, call.attempts,
                 call.attempts == 1 ? "" : "s", call.detail);
        snprintf(msg, sizeof msg, "Could not start a checkout: %s", stripe_failure_sentence(call.failure));
        http_error(req, 502, "upstream_error", msg);
        goto out;
    }
    log_info("checkout session %s created for user %s", session.id, uid);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "checkout_url", json_object_new_string(session.url));
    json_object_object_add(o, "session_id", json_object_new_string(session.id));
    http_json(req, 200, o);
out:
    PQclear(res);
}

/* ---- GET /subscription/status ---- */

static void subscription_status(http_req_t *req)
{
    /* Of several subscriptions: the one granting access that runs longest, else the latest changed. */
    static db_stmt_t q =
        DB_STMT("sub_status",
                "SELECT u.tier, s.status, "
                "to_char(s.current_period_end AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                "FROM users u LEFT JOIN LATERAL (SELECT status, current_period_end FROM subscriptions "
                "WHERE user_id = u.id ORDER BY status IN (" STRIPE_GRANTING_SQL ") DESC, "
                "CASE WHEN status IN (" STRIPE_GRANTING_SQL ") THEN current_period_end END DESC NULLS LAST, "
                "updated_at DESC, id DESC LIMIT 1) s ON true WHERE u.id = $1",
                1);
    char uid[24];
    PGresult *res = NULL;

    if (auth_require(req) != 0)
        return;
    snprintf(uid, sizeof uid, "%lld", req->user_id);
    const char *p[] = {uid};
    if (!(res = db_query(&q, p))) {
        http_db_failed(req);
        goto out;
    }
    if (PQntuples(res) != 1) {
        http_not_found(req);
        goto out;
    }
    const char *tier = PQgetvalue(res, 0, 0);
    int pro = strcmp(tier, "pro") == 0;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "tier", json_object_new_string(pro ? "pro" : "basic"));
    json_object_object_add(o, "status",
                           json_object_new_string(PQgetisnull(res, 0, 1) ? "none" : PQgetvalue(res, 0, 1)));
    json_object_object_add(o, "current_period_end",
                           PQgetisnull(res, 0, 2) ? NULL : json_object_new_string(PQgetvalue(res, 0, 2)));
    json_object_object_add(o, "daily_limit", pro ? NULL : json_object_new_int64(g_config.basic_daily_limit));
    http_json(req, 200, o);
out:
    PQclear(res);
}

/* ---- GET /payment/success, GET /payment/cancel ---- */

/* A Checkout Session id as Stripe makes them: "cs_" then [A-Za-z0-9_], at most 255 bytes. */
static int sane_session_id(const char *s)
{
    size_t n;
    if (!s || strncmp(s, "cs_", 3) != 0)
        return 0;
    for (n = 3; s[n]; n++) {
        char c = s[n];
        if (n >= 255 || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return n > 3;
}

static void payment_success(http_req_t *req)
{
    const char *sid = http_query(req, "session_id");
    json_object *o = json_object_new_object();
    json_object_object_add(o, "status", json_object_new_string("processing"));
    json_object_object_add(o, "message",
                           json_object_new_string("Thank you! Your payment is being confirmed; Pro is enabled as "
                                                  "soon as Stripe confirms it. Check GET /subscription/status."));
    json_object_object_add(o, "session_id", sane_session_id(sid) ? json_object_new_string(sid) : NULL);
    http_json(req, 200, o);
}

static void payment_cancel(http_req_t *req)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "status", json_object_new_string("canceled"));
    json_object_object_add(o, "message",
                           json_object_new_string("Checkout was canceled; you have not been charged. "
                                                  "You can subscribe again at any time."));
    http_json(req, 200, o);
}

static const http_route_t routes[] = {
    {"POST", "/subscribe/pro", subscribe_pro},
    {"GET", "/subscription/status", subscription_status},
    {"GET", "/payment/success", payment_success},
    {"GET", "/payment/cancel", payment_cancel},
};

int main(void)
{
    int rc = http_serve("subscribe", routes, sizeof routes / sizeof routes[0], init);
    stripe_cleanup();
    curl_global_cleanup();
    return rc;
}
