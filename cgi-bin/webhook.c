/* webhook: POST /webhook/stripe. Authenticity comes only from the Stripe-Signature header over the raw body.
 *
 * The model: one subscriptions row per Stripe subscription (keyed by its sub_... id), linked to one of our
 * users (user_id, NULL until we know whose it is). A user may have several (two checkout tabs, a new
 * subscription after a cancellation). users.tier is derived from them: pro iff some subscription of the
 * user is active, trialing or past_due (past_due is a grace period while Stripe retries the payment). It is
 * recomputed in the same transaction after every event that changed one of the user's subscriptions, and
 * the user's chatroom list cache is invalidated after the commit.
 *
 * Each event is applied at most once: its id goes into stripe_events in the same transaction as its effect.
 * Events arrive in any order; each subscription orders its own (stripe_sub_change in lib/stripe.c has the
 * rules): it remembers the created time of the newest status it applied (last_event_created) and ignores
 * older events; within the same second (created has 1 s resolution) an event that would move the status
 * back (incomplete < trialing = active < past_due < unpaid = paused < canceled = incomplete_expired) is
 * ignored; a terminal status (canceled, incomplete_expired) is never changed again.
 *
 * Effects on the subscription the event names:
 *   customer.subscription.created/updated   its status and period end
 *   customer.subscription.deleted           canceled
 *   checkout.session.completed              a new subscription gets active (paid), trialing (no payment
 *                                           required) or incomplete (unpaid: a delayed payment method);
 *                                           an incomplete one is completed; any other keeps its status
 *   invoice.payment_failed                  an active or trialing subscription becomes past_due; a new
 *                                           one is incomplete (first invoice) or past_due; others kept
 *   anything else, or no subscription id    recorded, ignored
 * The first event about a subscription creates its row even when no user can be resolved yet, so its
 * ordering is remembered; the user is linked by the first event that tells who it is: the user id it
 * carries (metadata.user_id of the subscription, which our checkout sets through
 * subscription_data[metadata][user_id]; client_reference_id, else metadata.user_id, of a checkout session),
 * if that user exists, else the owner of another subscription of the same Stripe customer. A linked user is
 * never replaced; the tier then follows the row's status.
 *
 * Locking, always in this order: the subscription row (SELECT ... FOR UPDATE, or our own INSERT, made
 * without a user so that no foreign-key share lock on the user comes first), then the user row (FOR
 * UPDATE) before linking it and recomputing the tier; nothing holding a user row waits for a subscription
 * row, so there is no deadlock. Two deliveries about one subscription serialise on its row; two about
 * different subscriptions of one user serialise on the user row, and the second one recomputes the tier
 * seeing the first one's commit. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "chat.h"
#include "config.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "stripe.h"

static db_stmt_t ev_insert = DB_STMT("wh_event_insert",
                                     "INSERT INTO stripe_events (id, type, created) VALUES ($1, $2, $3) "
                                     "ON CONFLICT (id) DO NOTHING RETURNING id",
                                     3);
static db_stmt_t sub_lock = DB_STMT("wh_sub_lock",
                                    "SELECT user_id, stripe_customer_id IS NOT NULL, status, last_event_created "
                                    "FROM subscriptions WHERE id = $1 FOR UPDATE",
                                    1);
static db_stmt_t sub_insert =
    DB_STMT("wh_sub_insert",
            "INSERT INTO subscriptions (id, stripe_customer_id, status, current_period_end, last_event_created) "
            "VALUES ($1, $2, $3, to_timestamp($4::bigint), $5::bigint) ON CONFLICT (id) DO NOTHING RETURNING id",
            5);
/* $4 NULL keeps the status, $5 NULL the period end, $6 NULL last_event_created (GREATEST skips NULLs). */
static db_stmt_t sub_update =
    DB_STMT("wh_sub_update",
            "UPDATE subscriptions SET user_id = COALESCE(user_id, $2::bigint), "
            "stripe_customer_id = COALESCE(stripe_customer_id, $3), status = COALESCE($4, status), "
            "current_period_end = COALESCE(to_timestamp($5::bigint), current_period_end), "
            "last_event_created = GREATEST(last_event_created, $6::bigint), updated_at = now() WHERE id = $1",
            6);
static db_stmt_t user_exists = DB_STMT("wh_user_exists", "SELECT id FROM users WHERE id = $1", 1);
static db_stmt_t user_lock = DB_STMT("wh_user_lock", "SELECT id FROM users WHERE id = $1 FOR UPDATE", 1);
static db_stmt_t by_customer = DB_STMT("wh_by_customer",
                                       "SELECT user_id FROM subscriptions WHERE stripe_customer_id = $1 "
                                       "AND id <> $2 AND user_id IS NOT NULL ORDER BY updated_at DESC LIMIT 1",
                                       2);
/* The derived tier, written only when it differs; returns the new tier then. */
static db_stmt_t tier_recompute =
    DB_STMT("wh_tier_recompute",
            "UPDATE users u SET tier = d.tier, updated_at = now() FROM (SELECT CASE WHEN EXISTS (SELECT 1 FROM "
            "subscriptions s WHERE s.user_id = $1 AND s.status IN (" STRIPE_GRANTING_SQL ")) THEN 'pro' ELSE 'basic' "
            "END AS tier) d WHERE u.id = $1 AND u.tier <> d.tier RETURNING u.tier",
            1);

/* The subscription row on record. */
typedef struct sub_row {
    long long user_id; /* 0: not linked */
    int has_customer;
    char status[32];
    long long last;
} sub_row_t;

/* Run a statement whose first column is a bigint: 1 with *out from the first row, 0 no row, -1 db failure. */
static int query_id(db_stmt_t *stmt, const char *const *params, long long *out)
{
    PGresult *res = db_query(stmt, params);
    int rc = -1;
    if (!res)
        return -1;
    rc = 0;
    if (PQntuples(res) >= 1 && parse_ll(PQgetvalue(res, 0, 0), 1, INT64_MAX, out) == 0)
        rc = 1;
    PQclear(res);
    return rc;
}

/* Lock the subscription's row: 1 found (row filled), 0 none, -1 db failure. */
static int lock_sub(const char *id, sub_row_t *row)
{
    const char *p[] = {id};
    PGresult *res = db_query(&sub_lock, p);
    if (!res)
        return -1;
    memset(row, 0, sizeof *row);
    int found = PQntuples(res) == 1;
    if (found) {
        if (PQgetisnull(res, 0, 0) || parse_ll(PQgetvalue(res, 0, 0), 1, INT64_MAX, &row->user_id) != 0)
            row->user_id = 0;
        row->has_customer = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
        snprintf(row->status, sizeof row->status, "%s", PQgetvalue(res, 0, 2));
        if (parse_ll(PQgetvalue(res, 0, 3), INT64_MIN, INT64_MAX, &row->last) != 0)
            row->last = 0;
    }
    PQclear(res);
    return found;
}

/* Whose subscription the event is about, for a row that has no user yet: the event's user id if that user
 * exists, else the owner of another subscription of the same customer. 1 found (*uid), 0 none, -1 failure. */
static int candidate_user(const stripe_event_t *ev, long long *uid)
{
    char id[24];
    int rc;
    *uid = 0;
    if (ev->user_id > 0) {
        snprintf(id, sizeof id, "%lld", ev->user_id);
        const char *p[] = {id};
        if ((rc = query_id(&user_exists, p, uid)) != 0)
            return rc;
        log_warn("stripe event %s (%s) names user %s, who does not exist", ev->id, ev->type, id);
    }
    if (ev->customer[0]) {
        const char *p[] = {ev->customer, ev->subscription};
        return query_id(&by_customer, p, uid);
    }
    return 0;
}

/* Lock the user row: 1 locked, 0 no such user, -1 db failure. */
static int lock_user(long long user_id)
{
    char id[24];
    long long got = 0;
    snprintf(id, sizeof id, "%lld", user_id);
    const char *p[] = {id};
    return query_id(&user_lock, p, &got);
}

/* Set the user's tier from their subscriptions (the user row is locked). 0 ok, -1 db failure. */
static int recompute_tier(const stripe_event_t *ev, long long user_id)
{
    char id[24];
    snprintf(id, sizeof id, "%lld", user_id);
    const char *p[] = {id};
    PGresult *res = db_query(&tier_recompute, p);
    if (!res)
        return -1;
    if (PQntuples(res) == 1)
        log_info("stripe event %s (%s): user %s is now %s", ev->id, ev->type, id, PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

/* Apply the event to the subscription it names, inside the open transaction. 0 done or deliberately
 * ignored (*touched = the linked user when their subscription changed), -1 db failure. */
static int apply_event(const stripe_event_t *ev, long long *touched)
{
    char uid[24], created[24], period[24];
    const char *status = NULL, *why = "";
    long long user_id = 0;
    sub_row_t row;
    int r, inserted = 0;

    if (!stripe_sub_change(ev, NULL, 0, &status, &why)) {
        if (ev->kind != STRIPE_EV_OTHER)
            log_info("stripe event %s (%s) ignored: %s", ev->id, ev->type, why);
        return 0;
    }
    snprintf(created, sizeof created, "%lld", ev->created);
    snprintf(period, sizeof period, "%lld", ev->current_period_end);
    const char *customer = ev->customer[0] ? ev->customer : NULL;
    const char *pend = ev->current_period_end > 0 ? period : NULL;

    /* The row, locked; or ours, inserted (without a user: the user row is locked only after the
     * subscription row, and a foreign-key check would take a share lock on it first). A concurrent first
     * event about the same subscription makes our insert a no-op once it commits; then its row is locked. */
    for (int attempt = 0;; attempt++) {
        if ((r = lock_sub(ev->subscription, &row)) < 0)
            return -1;
        if (r == 1)
            break;
        if (attempt > 0) {
            log_error("stripe event %s (%s): subscription %s neither inserted nor found", ev->id, ev->type,
                      ev->subscription);
            return -1;
        }
        const char *pi[] = {ev->subscription, customer, status, pend, created};
        PGresult *res = db_query(&sub_insert, pi);
        if (!res)
            return -1;
        inserted = PQntuples(res) == 1;
        PQclear(res);
        if (inserted) {
            log_info("stripe event %s (%s): subscription %s recorded as %s", ev->id, ev->type, ev->subscription,
                     status);
            status = NULL; /* stored already */
            row.has_customer = customer != NULL;
            break;
        }
    }

    if (!inserted) {
        stripe_sub_change(ev, row.status, row.last, &status, &why);
        if (status)
            log_info("stripe event %s (%s): subscription %s %s -> %s", ev->id, ev->type, ev->subscription, row.status,
                     status);
        else
            log_info("stripe event %s (%s): subscription %s stays %s: %s", ev->id, ev->type, ev->subscription,
                     row.status, why);
    }
    int link = 0;
    user_id = row.user_id;
    if (!user_id) {
        if (candidate_user(ev, &user_id) < 0)
            return -1;
        link = user_id > 0;
    } else if (ev->user_id > 0 && ev->user_id != user_id) {
        log_warn("stripe event %s (%s) names user %lld, but subscription %s belongs to user %lld; kept", ev->id,
                 ev->type, ev->user_id, ev->subscription, user_id);
    }
    int link_customer = !row.has_customer && customer;
    if (!inserted && !status && !link && !link_customer)
        return 0;
    if (user_id && (r = lock_user(user_id)) != 1) {
        if (r < 0)
            return -1;
        user_id = 0, link = 0; /* the candidate is gone */
    }
    if (status || link || link_customer) {
        snprintf(uid, sizeof uid, "%lld", user_id);
        const char *pu[] = {ev->subscription, link ? uid : NULL,    customer,
                            status,           status ? pend : NULL, status ? created : NULL};
        PGresult *res = db_query(&sub_update, pu);
        if (!res)
            return -1;
        PQclear(res);
    }
    if (link)
        log_info("stripe event %s (%s): subscription %s linked to user %lld", ev->id, ev->type, ev->subscription,
                 user_id);
    if (!user_id)
        return 0;
    if (recompute_tier(ev, user_id) < 0)
        return -1;
    *touched = user_id;
    return 0;
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
    char err[160], msg[160], created[24];
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
        log_warn("request %s: stripe webhook refused: %s", req->request_id, stripe_sig_strerror(sig));
        snprintf(msg, sizeof msg, "The Stripe-Signature check failed: %s", stripe_sig_strerror(sig));
        http_error(req, 400, "validation_error", msg);
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
    if (touched) /* the tier, or a subscription it shows, may have changed */
        chat_cache_invalidate(touched);
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
    http_set_max_body(HTTP_MAX_BODY_WEBHOOK); /* Stripe events can be large; the JSON endpoints keep 128 KiB */
    return http_serve("webhook", routes, sizeof routes / sizeof routes[0], NULL);
}
