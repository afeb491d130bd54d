/* webhook: POST /webhook/stripe. Authenticity comes only from the Stripe-Signature header over the raw body.
 *
 * Each event is applied at most once: its id goes into stripe_events in the same transaction as its effect.
 * Events can arrive in any order: a subscriptions row remembers the newest event applied
 * (last_event_created) and an older event is ignored. Ties (1 s resolution) are applied, except that a
 * terminal status (canceled, incomplete_expired) of the subscription on record is never undone.
 *
 * Effects:
 *   checkout.session.completed      subscription recorded, status active, tier pro
 *   customer.subscription.created/updated   status followed; active/trialing -> pro; past_due -> tier kept
 *                                   (grace while Stripe retries); everything else -> basic
 *   customer.subscription.deleted   status canceled, tier basic
 *   invoice.payment_failed          status past_due, tier kept
 *   anything else                   recorded, ignored
 * An event about another subscription than the one on record replaces it only when it grants access (a
 * new subscription after a cancellation); an old subscription ending or failing leaves the current one be. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "config.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "stripe.h"

static db_stmt_t ev_insert = DB_STMT("wh_event_insert",
                                     "INSERT INTO stripe_events (id, type, created) VALUES ($1, $2, $3) "
                                     "ON CONFLICT (id) DO NOTHING RETURNING id",
                                     3);
static db_stmt_t by_subscription =
    DB_STMT("wh_by_subscription", "SELECT user_id FROM subscriptions WHERE stripe_subscription_id = $1", 1);
static db_stmt_t by_customer = DB_STMT("wh_by_customer",
                                       "SELECT user_id FROM subscriptions WHERE stripe_customer_id = $1 "
                                       "ORDER BY updated_at DESC LIMIT 1",
                                       1);
static db_stmt_t lock_user = DB_STMT("wh_lock_user", "SELECT tier FROM users WHERE id = $1 FOR UPDATE", 1);
static db_stmt_t lock_sub = DB_STMT("wh_lock_sub",
                                    "SELECT stripe_subscription_id, status, last_event_created "
                                    "FROM subscriptions WHERE user_id = $1 FOR UPDATE",
                                    1);
static db_stmt_t sub_insert = DB_STMT(
    "wh_sub_insert",
    "INSERT INTO subscriptions (user_id, stripe_customer_id, stripe_subscription_id, status, current_period_end, "
    "last_event_created) VALUES ($1, $2, $3, $4, to_timestamp($5::bigint), $6::bigint)",
    6);
/* $7 't': keep the stored period end when the event carries none (same subscription). */
static db_stmt_t sub_update =
    DB_STMT("wh_sub_update",
            "UPDATE subscriptions SET stripe_customer_id = COALESCE($2, stripe_customer_id), "
            "stripe_subscription_id = COALESCE($3, stripe_subscription_id), status = $4, "
            "current_period_end = CASE WHEN $5::bigint IS NOT NULL THEN to_timestamp($5::bigint) "
            "WHEN $7::boolean THEN current_period_end END, "
            "last_event_created = GREATEST(last_event_created, $6::bigint), updated_at = now() WHERE user_id = $1",
            7);
static db_stmt_t set_tier =
    DB_STMT("wh_set_tier", "UPDATE users SET tier = $2, updated_at = now() WHERE id = $1 AND tier <> $2", 2);

/* Run a one-row lookup returning a bigint in column 0: 1 found (*out), 0 not found, -1 db failure. */
static int lookup_id(db_stmt_t *stmt, const char *arg, long long *out)
{
    const char *p[] = {arg};
    PGresult *res = db_query(stmt, p);
    int rc = -1;
    if (!res)
        return -1;
    rc = 0;
    if (PQntuples(res) >= 1 && parse_ll(PQgetvalue(res, 0, 0), 1, INT64_MAX, out) == 0)
        rc = 1;
    PQclear(res);
    return rc;
}

/* Which of our users the event is about: the owner of its subscription on record, else our user id in it,
 * else the owner of its customer. 1 found, 0 none, -1 db failure. */
static int resolve_user(const stripe_event_t *ev, long long *uid)
{
    int rc;
    if (ev->subscription[0] && (rc = lookup_id(&by_subscription, ev->subscription, uid)) != 0)
        return rc;
    if (ev->user_id > 0) {
        *uid = ev->user_id;
        return 1;
    }
    if (ev->customer[0] && (rc = lookup_id(&by_customer, ev->customer, uid)) != 0)
        return rc;
    return 0;
}

/* Apply a subscription status for the event's user inside the open transaction.
 * 0 done or deliberately ignored (*touched = user id when something changed), -1 db failure. */
static int apply_status(const stripe_event_t *ev, const char *status, int tier_effect, long long *touched)
{
    char uid[24], created[24], period[24];
    PGresult *res = NULL;
    long long user_id = 0, last = 0;
    int rc = -1, r;

    if ((r = resolve_user(ev, &user_id)) < 0)
        goto out;
    if (r == 0) {
        log_warn("stripe event %s (%s): no user found for it; ignored", ev->id, ev->type);
        rc = 0;
        goto out;
    }
    snprintf(uid, sizeof uid, "%lld", user_id);
    snprintf(created, sizeof created, "%lld", ev->created);
    snprintf(period, sizeof period, "%lld", ev->current_period_end);
    const char *pu[] = {uid};
    if (!(res = db_query(&lock_user, pu)))
        goto out;
    if (PQntuples(res) != 1) {
        log_warn("stripe event %s (%s): user %s does not exist; ignored", ev->id, ev->type, uid);
        rc = 0;
        goto out;
    }
    PQclear(res);
    if (!(res = db_query(&lock_sub, pu)))
        goto out;

    const char *customer = ev->customer[0] ? ev->customer : NULL;
    const char *sub = ev->subscription[0] ? ev->subscription : NULL;
    const char *pend = ev->current_period_end > 0 ? period : NULL;
    if (PQntuples(res) == 0) {
        PQclear(res);
        const char *pi[] = {uid, customer, sub, status, pend, created};
        if (!(res = db_query(&sub_insert, pi)))
            goto out;
    } else {
        const char *row_sub = PQgetisnull(res, 0, 0) ? NULL : PQgetvalue(res, 0, 0);
        const char *row_status = PQgetvalue(res, 0, 1);
        if (parse_ll(PQgetvalue(res, 0, 2), INT64_MIN, INT64_MAX, &last) != 0)
            last = 0;
        int same = !row_sub || !sub || strcmp(row_sub, sub) == 0;
        if (ev->created < last) {
            log_info("stripe event %s (%s) is older than the last applied (%lld < %lld); ignored", ev->id, ev->type,
                     ev->created, last);
            rc = 0;
            goto out;
        }
        if (!same && tier_effect != STRIPE_TIER_PRO) {
            log_info("stripe event %s (%s) is about %s, not the current subscription %s; ignored", ev->id, ev->type,
                     sub, row_sub);
            rc = 0;
            goto out;
        }
        if (same && stripe_status_terminal(row_status) && !stripe_status_terminal(status)) {
            log_info("stripe event %s (%s) would undo the terminal status %s; ignored", ev->id, ev->type, row_status);
            rc = 0;
            goto out;
        }
        PQclear(res);
        const char *pu2[] = {uid, customer, sub, status, pend, created, same ? "t" : "f"};
        if (!(res = db_query(&sub_update, pu2)))
            goto out;
    }
    PQclear(res);
    res = NULL;
    if (tier_effect != STRIPE_TIER_KEEP) {
        const char *pt[] = {uid, tier_effect == STRIPE_TIER_PRO ? "pro" : "basic"};
        if (!(res = db_query(&set_tier, pt)))
            goto out;
    }
    *touched = user_id;
    log_info("stripe event %s (%s): user %s status %s%s", ev->id, ev->type, uid, status,
             tier_effect == STRIPE_TIER_PRO     ? ", tier pro"
             : tier_effect == STRIPE_TIER_BASIC ? ", tier basic"
                                                : "");
    rc = 0;
out:
    PQclear(res);
    return rc;
}

/* The event's effect inside the open transaction. 0 ok, -1 db failure. */
static int apply_event(const stripe_event_t *ev, long long *touched)
{
    switch (ev->kind) {
    case STRIPE_EV_CHECKOUT_COMPLETED:
        if (ev->mode[0] && strcmp(ev->mode, "subscription") != 0)
            return 0;
        return apply_status(ev, "active", STRIPE_TIER_PRO, touched);
    case STRIPE_EV_SUBSCRIPTION_CREATED:
    case STRIPE_EV_SUBSCRIPTION_UPDATED:
        if (!ev->status[0]) {
            log_warn("stripe event %s (%s) has no status; ignored", ev->id, ev->type);
            return 0;
        }
        return apply_status(ev, ev->status, stripe_status_tier(ev->status), touched);
    case STRIPE_EV_SUBSCRIPTION_DELETED: return apply_status(ev, "canceled", STRIPE_TIER_BASIC, touched);
    case STRIPE_EV_INVOICE_PAYMENT_FAILED: return apply_status(ev, "past_due", STRIPE_TIER_KEEP, touched);
    default: return 0;
    }
}

/* Drop everything cached that depends on the user's tier (best effort: Redis may be down, and the caches
 * expire anyway). */
static void invalidate_user_caches(long long user_id)
{
    char key[48];
    snprintf(key, sizeof key, "chatrooms:%lld", user_id);
    if (cache_del(key) != 0)
        log_warn("could not drop the cached chatroom list of user %lld", user_id);
}

static void received(http_req_t *req)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "received", json_object_new_boolean(1));
    http_json(req, 200, o);
}

static void stripe_webhook(http_req_t *req)
{
    stripe_event_t ev;
    char err[160], created[24];
    long long touched = 0;
    PGresult *res = NULL;

    if (!g_config.stripe_webhook_secret || !g_config.stripe_webhook_secret[0]) {
        http_error(req, 503, "unavailable",
                   "Stripe webhooks are not available: the server is missing STRIPE_WEBHOOK_SECRET.");
        return;
    }
    int sig = stripe_signature_verify(http_header(req, "Stripe-Signature"), g_config.stripe_webhook_secret, req->body,
                                      req->body_len, (long long)time(NULL), STRIPE_SIG_TOLERANCE, NULL);
    if (sig != STRIPE_SIG_OK) {
        log_warn("stripe webhook refused: %s", stripe_sig_strerror(sig));
        http_error(req, 400, "invalid_signature", stripe_sig_strerror(sig));
        return;
    }
    if (stripe_event_parse(req->body, req->body_len, &ev, err, sizeof err) != 0) {
        http_error(req, 400, "invalid_json", err);
        return;
    }

    if (db_begin() != 0)
        goto dbfail;
    snprintf(created, sizeof created, "%lld", ev.created);
    const char *p[] = {ev.id, ev.type, created};
    if (!(res = db_query(&ev_insert, p)))
        goto dbfail;
    if (PQntuples(res) == 0) { /* seen before: nothing more */
        if (db_commit() != 0)
            goto dbfail;
        log_info("stripe event %s (%s) already applied", ev.id, ev.type);
        received(req);
        goto out;
    }
    if (apply_event(&ev, &touched) != 0 || db_commit() != 0)
        goto dbfail;
    if (touched)
        invalidate_user_caches(touched);
    received(req);
    goto out;
dbfail:
    log_error("stripe event %s (%s) could not be applied; Stripe will retry", ev.id, ev.type);
    http_db_failed(req);
out:
    db_rollback();
    PQclear(res);
}

static const http_route_t routes[] = {
    {"POST", "/webhook/stripe", stripe_webhook},
};

int main(void)
{
    return http_serve("webhook", routes, sizeof routes / sizeof routes[0], NULL);
}
