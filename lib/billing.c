#include "billing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outbox.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "util.h"

/* ---------------------------------------------------------------------------------------------------- */
/* configuration */

int billing_stripe_missing(char *out, size_t outlen)
{
    const struct {
        const char *name, *value;
    } vars[] = {
        {"STRIPE_SECRET_KEY", g_config.stripe_secret_key},
        {"STRIPE_PRICE_ID", g_config.stripe_price_id},
        {"STRIPE_WEBHOOK_SECRET", g_config.stripe_webhook_secret},
    };
    size_t off = 0;
    int missing = 0;

    if (outlen > 0)
        out[0] = '\0';
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        if (vars[i].value && vars[i].value[0])
            continue;
        if (off < outlen) { /* snprintf truncates; off past outlen stops further writes */
            int n = snprintf(out + off, outlen - off, "%s%s", missing ? ", " : "", vars[i].name);
            off += n > 0 ? (size_t)n : 0;
        }
        missing++;
    }
    return missing ? BILLING_NOT_CONFIGURED : 0;
}

/* ---------------------------------------------------------------------------------------------------- */
/* checkout (billing_checkout itself, which calls Stripe, is in billing_checkout.c) */

int billing_session_id_valid(const char *s)
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

/* The user's checkout row (checkout_claim() of schema steps 12 and 13: it locks the row for the statement only). */
static db_stmt_t q_claim = DB_STMT(
    "billing_checkout_claim",
    "SELECT outcome, session_id, url, expires_at, customer FROM checkout_claim($1::bigint, $2, $3::int, $4::int)", 4);
static db_stmt_t q_store = DB_STMT("billing_checkout_store",
                                   "UPDATE checkout_sessions SET session_id = $3, url = $4, "
                                   "expires_at = to_timestamp($5::bigint), closed_at = NULL, claim_token = NULL, "
                                   "claim_until = NULL, updated_at = now() WHERE user_id = $1 AND claim_token = $2 "
                                   "RETURNING user_id",
                                   5);
static db_stmt_t q_release = DB_STMT("billing_checkout_release",
                                     "UPDATE checkout_sessions SET claim_token = NULL, claim_until = NULL, "
                                     "updated_at = now() WHERE user_id = $1 AND claim_token = $2",
                                     2);

int billing_claim_outcome(const char *s)
{
    if (!s)
        return BILLING_CLAIM_UNKNOWN;
    if (strcmp(s, "open") == 0)
        return BILLING_CLAIM_OPEN;
    if (strcmp(s, "claimed") == 0)
        return BILLING_CLAIM_CLAIMED;
    if (strcmp(s, "busy") == 0)
        return BILLING_CLAIM_BUSY;
    if (strcmp(s, "awaiting") == 0)
        return BILLING_CLAIM_AWAITING;
    return BILLING_CLAIM_UNKNOWN;
}

long billing_checkout_pause_ms(int attempt, double left_ms)
{
    long pause = 20;
    for (int i = 0; i < attempt && pause < 160; i++)
        pause *= 2;
    if (pause > 160)
        pause = 160;
    if (left_ms < 1)
        return 0;
    return left_ms < (double)pause ? (long)left_ms : pause;
}

int billing_checkout_claim(long long user_id, const char *token, billing_claim_t *out)
{
    char uid[24], lease[16], min_left[16];
    PGresult *res = NULL;
    int rc = BILLING_DB_FAILED;

    memset(out, 0, sizeof *out);
    snprintf(uid, sizeof uid, "%lld", user_id);
    snprintf(lease, sizeof lease, "%d", BILLING_CHECKOUT_LEASE_S);
    snprintf(min_left, sizeof min_left, "%d", BILLING_CHECKOUT_MIN_LEFT_S);
    const char *p[] = {uid, token, lease, min_left};
    /* once: the claim is a write; a repeat with the same token would find its own claim anyway */
    if (!(res = db_query_once(&q_claim, p))) {
        if (db_foreign_key_violation()) /* the user was deleted since the token was checked */
            rc = BILLING_NOT_FOUND;
        goto out;
    }
    if (PQntuples(res) != 1 || !(out->outcome = billing_claim_outcome(PQgetvalue(res, 0, 0)))) {
        log_error("billing: checkout_claim answered %d rows, outcome '%s'", PQntuples(res),
                  PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "");
        goto out;
    }
    if (out->outcome == BILLING_CLAIM_OPEN) {
        stripe_checkout_session_t *s = &out->session;
        if (PQgetisnull(res, 0, 1) || PQgetisnull(res, 0, 2) || PQgetisnull(res, 0, 3) ||
            PQgetlength(res, 0, 1) >= (int)sizeof s->id || PQgetlength(res, 0, 2) >= (int)sizeof s->url ||
            parse_ll(PQgetvalue(res, 0, 3), 1, STRIPE_TIMESTAMP_MAX, &s->expires_at) != 0) {
            log_error("billing: checkout_claim answered an unusable open session for user %s", uid);
            goto out;
        }
        snprintf(s->id, sizeof s->id, "%s", PQgetvalue(res, 0, 1));
        snprintf(s->url, sizeof s->url, "%s", PQgetvalue(res, 0, 2));
    } else if (out->outcome == BILLING_CLAIM_AWAITING && PQgetlength(res, 0, 1) < (int)sizeof out->session.id) {
        snprintf(out->session.id, sizeof out->session.id, "%s", PQgetvalue(res, 0, 1)); /* for the log */
    } else if (out->outcome == BILLING_CLAIM_CLAIMED && !PQgetisnull(res, 0, 4) &&
               PQgetlength(res, 0, 4) < (int)sizeof out->customer) {
        snprintf(out->customer, sizeof out->customer, "%s", PQgetvalue(res, 0, 4));
    }
    rc = 0;
out:
    PQclear(res);
    return rc;
}

int billing_checkout_store(long long user_id, const char *token, const stripe_checkout_session_t *s,
                           long long expires_at)
{
    char uid[24], exp[24];
    PGresult *res = NULL;
    int rc = BILLING_DB_FAILED;

    snprintf(uid, sizeof uid, "%lld", user_id);
    snprintf(exp, sizeof exp, "%lld", expires_at);
    const char *p[] = {uid, token, s->id, s->url, exp};
    if (!(res = db_query_once(&q_store, p)))
        goto out;
    rc = PQntuples(res) == 1 ? 0 : BILLING_BUSY;
out:
    PQclear(res);
    return rc;
}

void billing_checkout_release(long long user_id, const char *token)
{
    char uid[24];
    snprintf(uid, sizeof uid, "%lld", user_id);
    const char *p[] = {uid, token};
    PGresult *res = db_query_once(&q_release, p);
    if (!res)
        log_warn("billing: the checkout claim of user %s could not be given back; it ends with its lease", uid);
    PQclear(res);
}

/* ---------------------------------------------------------------------------------------------------- */
/* subscription status */

int billing_status_get(long long user_id, billing_status_t *out)
{
    static db_stmt_t q =
        DB_STMT("billing_status",
                "SELECT u.tier, s.status, " DB_RFC3339(
                    "s.current_period_end") " "
                                            "FROM users u LEFT JOIN LATERAL (SELECT status, current_period_end FROM "
                                            "subscriptions "
                                            "WHERE user_id = u.id ORDER BY status IN (" STRIPE_GRANTING_SQL ") DESC, "
                                            "CASE WHEN status IN (" STRIPE_GRANTING_SQL
                                            ") THEN current_period_end END DESC NULLS LAST, "
                                            "updated_at DESC, id DESC LIMIT 1) s ON true WHERE u.id = $1",
                1);
    char uid[24];
    PGresult *res = NULL;
    int rc = BILLING_DB_FAILED;

    memset(out, 0, sizeof *out);
    snprintf(uid, sizeof uid, "%lld", user_id);
    const char *p[] = {uid};
    if (!(res = db_query(&q, p)))
        goto out;
    if (PQntuples(res) != 1) {
        rc = BILLING_NOT_FOUND;
        goto out;
    }
    out->pro = strcmp(PQgetvalue(res, 0, 0), "pro") == 0;
    snprintf(out->status, sizeof out->status, "%s", PQgetisnull(res, 0, 1) ? "none" : PQgetvalue(res, 0, 1));
    if (!PQgetisnull(res, 0, 2))
        snprintf(out->period_end, sizeof out->period_end, "%s", PQgetvalue(res, 0, 2));
    rc = 0;
out:
    PQclear(res);
    return rc;
}

json_object *billing_status_json(const billing_status_t *st, long long daily_limit)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "tier", json_object_new_string(st->pro ? "pro" : "basic"));
    json_object_object_add(o, "status", json_object_new_string(st->status[0] ? st->status : "none"));
    json_object_object_add(o, "current_period_end", st->period_end[0] ? json_object_new_string(st->period_end) : NULL);
    json_object_object_add(o, "daily_limit", st->pro ? NULL : json_object_new_int64(daily_limit));
    return o;
}

/* ---------------------------------------------------------------------------------------------------- */
/* pure decisions */

const char *billing_tier(const char *const *statuses, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (stripe_status_grants(statuses[i]))
            return "pro";
    return "basic";
}

int billing_plan(const stripe_event_t *ev, const billing_sub_row_t *row, long long candidate, billing_plan_t *plan)
{
    memset(plan, 0, sizeof *plan);
    plan->why = "";
    if (row) {
        stripe_sub_change(ev, row->status, row->last, &plan->status, &plan->why);
        plan->link_customer = !row->has_customer && ev->customer[0];
        plan->user_id = row->user_id;
        if (row->user_id && ev->user_id > 0 && ev->user_id != row->user_id)
            plan->conflict = 1;
    }
    /* A row we have just inserted holds its first status and customer already, and no user. */
    if (!plan->user_id && candidate > 0) {
        plan->user_id = candidate;
        plan->link = 1;
    }
    plan->write = plan->status || plan->link || plan->link_customer;
    return plan->write ? 1 : 0;
}

/* ---------------------------------------------------------------------------------------------------- */
/* webhook events */

static db_stmt_t ev_insert = DB_STMT("billing_event_insert",
                                     "INSERT INTO stripe_events (id, type, created) VALUES ($1, $2, $3) "
                                     "ON CONFLICT (id) DO NOTHING RETURNING id",
                                     3);
static db_stmt_t sub_lock = DB_STMT("billing_sub_lock",
                                    "SELECT user_id, stripe_customer_id IS NOT NULL, status, last_event_created "
                                    "FROM subscriptions WHERE id = $1 FOR UPDATE",
                                    1);
static db_stmt_t sub_insert =
    DB_STMT("billing_sub_insert",
            "INSERT INTO subscriptions (id, stripe_customer_id, status, current_period_end, last_event_created) "
            "VALUES ($1, $2, $3, to_timestamp($4::bigint), $5::bigint) ON CONFLICT (id) DO NOTHING RETURNING id",
            5);
/* $4 NULL keeps the status, $5 NULL the period end, $6 NULL last_event_created (GREATEST skips NULLs). */
static db_stmt_t sub_update =
    DB_STMT("billing_sub_update",
            "UPDATE subscriptions SET user_id = COALESCE(user_id, $2::bigint), "
            "stripe_customer_id = COALESCE(stripe_customer_id, $3), status = COALESCE($4, status), "
            "current_period_end = COALESCE(to_timestamp($5::bigint), current_period_end), "
            "last_event_created = GREATEST(last_event_created, $6::bigint), updated_at = now() WHERE id = $1",
            6);
/* The Checkout Session an event is about is never handed out again (schema step 12); $2: it was completed unpaid,
 * a delayed payment is pending (step 13: no new checkout meanwhile). The result of that payment clears it. */
static db_stmt_t checkout_close =
    DB_STMT("billing_checkout_close",
            "UPDATE checkout_sessions SET closed_at = now(), awaiting_payment = $2::boolean, updated_at = now() "
            "WHERE session_id = $1 AND (closed_at IS NULL OR awaiting_payment) RETURNING user_id",
            2);
static db_stmt_t user_exists = DB_STMT("billing_user_exists", "SELECT id FROM users WHERE id = $1", 1);
static db_stmt_t user_lock = DB_STMT("billing_user_lock", "SELECT id FROM users WHERE id = $1 FOR UPDATE", 1);
static db_stmt_t by_customer = DB_STMT("billing_by_customer",
                                       "SELECT user_id FROM subscriptions WHERE stripe_customer_id = $1 "
                                       "AND id <> $2 AND user_id IS NOT NULL ORDER BY updated_at DESC LIMIT 1",
                                       2);
static db_stmt_t user_statuses =
    DB_STMT("billing_user_statuses", "SELECT status FROM subscriptions WHERE user_id = $1", 1);
/* The derived tier, written only when it differs; returns the new tier then. */
static db_stmt_t tier_set =
    DB_STMT("billing_tier_set",
            "UPDATE users SET tier = $2, updated_at = now() WHERE id = $1 AND tier <> $2 RETURNING tier", 2);

/* Run a statement whose first column is a bigint: 1 with *out from the first row, 0 no row, -1 db failure. */
static int query_id(db_stmt_t *stmt, const char *const *params, long long *out)
{
    PGresult *res = db_query(stmt, params);
    int rc = 0;
    if (!res)
        return -1;
    if (PQntuples(res) >= 1 && parse_ll(PQgetvalue(res, 0, 0), 1, INT64_MAX, out) == 0)
        rc = 1;
    PQclear(res);
    return rc;
}

/* Lock the subscription's row: 1 found (row filled), 0 none, -1 db failure. */
static int lock_sub(const char *id, billing_sub_row_t *row)
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

/* Set the user's tier from their subscriptions (billing_tier; the user row is locked, so this statement's
 * snapshot sees every commit that changed them before). 0 ok, -1 db failure. */
static int recompute_tier(const stripe_event_t *ev, long long user_id)
{
    char id[24];
    const char **statuses = NULL;
    PGresult *res = NULL, *set = NULL;
    int rc = -1;

    snprintf(id, sizeof id, "%lld", user_id);
    const char *p[] = {id};
    if (!(res = db_query(&user_statuses, p)))
        goto out;
    size_t n = (size_t)PQntuples(res);
    statuses = xcalloc(n ? n : 1, sizeof *statuses);
    for (size_t i = 0; i < n; i++)
        statuses[i] = PQgetvalue(res, (int)i, 0);
    const char *ps[] = {id, billing_tier(statuses, n)};
    if (!(set = db_query(&tier_set, ps)))
        goto out;
    if (PQntuples(set) == 1)
        log_info("stripe event %s (%s): user %s is now %s", ev->id, ev->type, id, PQgetvalue(set, 0, 0));
    rc = 0;
out:
    free(statuses);
    PQclear(set);
    PQclear(res);
    return rc;
}

/* Apply the event to the subscription it names, inside the open transaction. 0 done or deliberately
 * ignored (*touched = the linked user when their subscription changed), -1 db failure. */
static int apply_event(const stripe_event_t *ev, long long *touched)
{
    char uid[24], created[24], period[24];
    const char *status = NULL, *why = "";
    long long candidate = 0;
    billing_sub_row_t row;
    billing_plan_t plan;
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
            break;
        }
    }

    if (inserted || !row.user_id) {
        if (candidate_user(ev, &candidate) < 0)
            return -1;
    }
    r = billing_plan(ev, inserted ? NULL : &row, candidate, &plan);
    if (!inserted) {
        if (plan.status)
            log_info("stripe event %s (%s): subscription %s %s -> %s", ev->id, ev->type, ev->subscription, row.status,
                     plan.status);
        else
            log_info("stripe event %s (%s): subscription %s stays %s: %s", ev->id, ev->type, ev->subscription,
                     row.status, plan.why);
    }
    if (plan.conflict)
        log_warn("stripe event %s (%s) names user %lld, but subscription %s belongs to user %lld; kept", ev->id,
                 ev->type, ev->user_id, ev->subscription, row.user_id);
    if (!r)
        return 0;
    if (plan.user_id && (r = lock_user(plan.user_id)) != 1) {
        if (r < 0)
            return -1;
        plan.user_id = 0, plan.link = 0; /* the candidate is gone */
        plan.write = plan.status || plan.link_customer;
    }
    if (plan.write) {
        snprintf(uid, sizeof uid, "%lld", plan.user_id);
        const char *pu[] = {ev->subscription, plan.link ? uid : NULL,    plan.link_customer ? customer : NULL,
                            plan.status,      plan.status ? pend : NULL, plan.status ? created : NULL};
        PGresult *res = db_query(&sub_update, pu);
        if (!res)
            return -1;
        PQclear(res);
    }
    if (plan.link)
        log_info("stripe event %s (%s): subscription %s linked to user %lld", ev->id, ev->type, ev->subscription,
                 plan.user_id);
    if (!plan.user_id)
        return 0;
    if (recompute_tier(ev, plan.user_id) < 0)
        return -1;
    *touched = plan.user_id;
    return 0;
}

int billing_apply_event(const stripe_event_t *ev)
{
    char created[24];
    long long touched = 0;
    PGresult *res = NULL;
    int rc = BILLING_DB_FAILED;

    if (db_begin() != 0)
        goto out;
    snprintf(created, sizeof created, "%lld", ev->created);
    const char *p[] = {ev->id, ev->type, created};
    if (!(res = db_query(&ev_insert, p)))
        goto out;
    if (PQntuples(res) == 0) { /* seen before: nothing more */
        if (db_commit() != 0)
            goto out;
        log_info("stripe event %s (%s) already applied", ev->id, ev->type);
        rc = 0;
        goto out;
    }
    if (stripe_event_closes_checkout(ev)) { /* first: the lock order in billing.h */
        PQclear(res);
        int awaiting = ev->kind == STRIPE_EV_CHECKOUT_COMPLETED && strcmp(ev->payment_status, "unpaid") == 0;
        const char *pc[] = {ev->session, awaiting ? "true" : "false"};
        if (!(res = db_query(&checkout_close, pc)))
            goto out;
        if (PQntuples(res) == 1)
            log_info("stripe event %s (%s): checkout session %s of user %s closed", ev->id, ev->type, ev->session,
                     PQgetvalue(res, 0, 0));
    }
    if (apply_event(ev, &touched) != 0 || db_commit() != 0)
        goto out;
    if (touched) /* the tier, or a subscription it shows, may have changed */
        outbox_invalidate_user(touched);
    rc = 0;
out:
    if (rc != 0)
        log_error("stripe event %s (%s) could not be applied; Stripe will retry", ev->id, ev->type);
    db_rollback();
    PQclear(res);
    return rc;
}
