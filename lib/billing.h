/* billing: subscriptions and the Pro tier (API.md "Subscriptions"). The business logic behind
 * cgi-bin/subscribe.c and cgi-bin/webhook.c: the checkout flow, the subscription-status query, and applying a
 * verified Stripe event. Nothing here answers an HTTP request; the handlers map the return codes. billing.c
 * holds all but billing_checkout, which is in billing_checkout.c (it alone needs libcurl).
 *
 * The model: one subscriptions row per Stripe subscription (keyed by its sub_... id), linked to one of our
 * users (user_id, NULL until we know whose it is). A user may have several (two checkout tabs, a new
 * subscription after a cancellation). users.tier is derived from them (billing_tier): pro iff some
 * subscription of the user is active, trialing or past_due (past_due is a grace period while Stripe retries
 * the payment). It is recomputed in the same transaction after every event that changed one of the user's
 * subscriptions, and the user's chatroom list cache is invalidated after the commit.
 *
 * Each event is applied at most once: its id goes into stripe_events in the same transaction as its effect.
 * Events arrive in any order; each subscription orders its own (stripe_sub_change in lib/stripe_event.h has
 * the rules): it remembers the created time of the newest status it applied (last_event_created) and ignores
 * older events; within the same second an event that would move the status back is ignored; a terminal
 * status (canceled, incomplete_expired) is never changed again.
 *
 * The first event about a subscription creates its row even when no user can be resolved yet, so its
 * ordering is remembered; the user is linked by the first event that tells who it is: the user id it
 * carries (metadata.user_id of the subscription, which our checkout sets through
 * subscription_data[metadata][user_id]; client_reference_id, else metadata.user_id, of a checkout session),
 * if that user exists, else the owner of another subscription of the same Stripe customer. A linked user is
 * never replaced; the tier then follows the row's status.
 *
 * Locking, always in this order: the checkout_sessions row a checkout event closes, then the subscription row
 * (SELECT ... FOR UPDATE, or our own INSERT, made without a user so that no foreign-key share lock on the user
 * comes first), then the user row (FOR UPDATE) before linking it and recomputing the tier; nothing holding a
 * user row waits for a subscription row, so there is no deadlock. checkout_claim() (POST /subscribe/pro) locks a
 * checkout_sessions row, then (creating it) takes a foreign-key share lock on its user: the same order. Two deliveries
 * about one subscription serialise on its row; two about different subscriptions of one user serialise on the user row,
 * and the second one recomputes the tier seeing the first one's commit.
 *
 * Return convention: 0 ok, else one of the negative BILLING_* codes below (each function lists which). */
#ifndef GB_BILLING_H
#define GB_BILLING_H

#include <stddef.h>

#include <json-c/json.h>

#include "stripe_client.h"
#include "stripe_event.h"

#define BILLING_DB_FAILED (-1)       /* a PostgreSQL statement failed; db_unavailable() says whether it was down */
#define BILLING_NOT_FOUND (-2)       /* no such user */
#define BILLING_ALREADY_PRO (-3)     /* the user is pro already: no checkout */
#define BILLING_STRIPE_FAILED (-4)   /* the Stripe call failed: see the stripe_call_result_t */
#define BILLING_NOT_CONFIGURED (-5)  /* a Stripe setting is missing */
#define BILLING_BUSY (-6)            /* another request of the user is starting a checkout: try again shortly */
#define BILLING_PAYMENT_PENDING (-7) /* the user's last checkout is being paid (a delayed method): no new one */

/* ---- configuration ---- */

/* Whether the Stripe settings subscriptions need (STRIPE_SECRET_KEY, STRIPE_PRICE_ID, STRIPE_WEBHOOK_SECRET
 * in g_config; empty counts as unset) are present. 0 all present; BILLING_NOT_CONFIGURED with the missing
 * names, comma-separated, in out (outlen bytes, may be truncated). */
int billing_stripe_missing(char *out, size_t outlen);

/* ---- checkout ---- */

/* One open Checkout Session per user (schema step 12): a session we created is handed out again while it is
 * usable, so two tabs, a double click or a retried POST never lead to two sessions that can both be paid. */
#define BILLING_CHECKOUT_TTL_S 3600     /* a new session's expires_at: now + 1 h (Stripe takes 30 min to 24 h) */
#define BILLING_CHECKOUT_MIN_LEFT_S 600 /* handed out again only while at least 10 min are left to pay */
#define BILLING_CHECKOUT_LEASE_S 15     /* a claim's lease: past STRIPE_CHECKOUT_BUDGET_MS and the writes */
#define BILLING_CHECKOUT_WAIT_MS 12000  /* how long a request waits for another request's claim */

/* Start a Pro checkout for user_id: refuses a user who is pro already; answers the user's usable session if
 * there is one (no Stripe call); else claims the user's checkout row (checkout_claim(), waiting while another
 * request of the user holds the claim, at most BILLING_CHECKOUT_WAIT_MS), creates a subscription-mode Checkout
 * Session (stripe_create_checkout_session) with g_config's Stripe settings, expires_at now +
 * BILLING_CHECKOUT_TTL_S, the customer of the user's latest subscription if one has one (asked again without it,
 * within the same budget, when Stripe answers resource_missing on customer), and an Idempotency-Key
 * of the claim (the call's own retry gets the same session), and stores it under the claim. No transaction is
 * open during the Stripe call. On a Stripe failure the claim is given back and nothing is stored.
 * 0 with *session filled (new or stored); BILLING_NOT_CONFIGURED, BILLING_NOT_FOUND,
 * BILLING_ALREADY_PRO, BILLING_PAYMENT_PENDING (the last checkout was completed with a delayed payment method
 * whose result has not come: a second one could be paid too), BILLING_DB_FAILED, BILLING_BUSY (another request's
 * claim outlived the wait, or this one's
 * lease ran out before the session was stored: nothing is handed out, a retry gets the stored session), or
 * BILLING_STRIPE_FAILED with *call filled (call->detail is for the log only, stripe_failure_sentence for the
 * client). *call is always initialised. */
int billing_checkout(long long user_id, stripe_checkout_session_t *session, stripe_call_result_t *call);

/* ---- checkout: the database side (billing.c; billing_checkout.c calls them) ---- */

/* What checkout_claim() answered. */
enum billing_claim_outcome {
    BILLING_CLAIM_UNKNOWN = 0,
    BILLING_CLAIM_OPEN,     /* the user's usable session is in session */
    BILLING_CLAIM_CLAIMED,  /* this request holds the claim: create the session */
    BILLING_CLAIM_BUSY,     /* another request holds a live claim: wait and ask again */
    BILLING_CLAIM_AWAITING, /* the user's last checkout is being paid by a delayed method: no new one */
};

typedef struct billing_claim {
    int outcome;                       /* enum billing_claim_outcome */
    stripe_checkout_session_t session; /* BILLING_CLAIM_OPEN: the session to hand out (AWAITING: its id only) */
    char customer[STRIPE_ID_MAX];      /* BILLING_CLAIM_CLAIMED: the Stripe customer to reuse, "" none */
} billing_claim_t;

/* checkout_claim() for user_id with claim token token (random, one per request). 0 with *out filled;
 * BILLING_NOT_FOUND (the user is gone), BILLING_DB_FAILED. */
int billing_checkout_claim(long long user_id, const char *token, billing_claim_t *out);

/* Store session s (expires_at: Unix seconds) as user_id's, ending the claim token holds. 0 stored; BILLING_BUSY
 * when the claim is no longer token's (its lease ran out and another request took it); BILLING_DB_FAILED. */
int billing_checkout_store(long long user_id, const char *token, const stripe_checkout_session_t *s,
                           long long expires_at);

/* Give the claim token holds back (Stripe failed): the next request claims at once. Best effort: a failure
 * leaves the lease to run out. */
void billing_checkout_release(long long user_id, const char *token);

/* The outcome named s ("open", "claimed", "busy", "awaiting"), BILLING_CLAIM_UNKNOWN for anything else. Pure. */
int billing_claim_outcome(const char *s);

/* How long to pause before asking checkout_claim() again, after `attempt` busy answers (0 first), with left_ms
 * of the wait left: 20 ms doubling up to 160 ms, never past left_ms; 0 when nothing is left. Pure. */
long billing_checkout_pause_ms(int attempt, double left_ms);

/* 1 when s looks like a Checkout Session id as Stripe makes them ("cs_" then [A-Za-z0-9_], at most 255
 * bytes), safe to echo on the payment page; else 0. */
int billing_session_id_valid(const char *s);

/* ---- subscription status ---- */

/* GET /subscription/status as data. Of several subscriptions it shows the one granting access that runs
 * longest, else the latest changed. */
typedef struct billing_status {
    int pro;             /* users.tier is pro */
    char status[32];     /* Stripe's subscription status, "none" for a user who never subscribed */
    char period_end[32]; /* RFC 3339 UTC, "" when unknown */
} billing_status_t;

/* Read user_id's status. 0 ok; BILLING_NOT_FOUND; BILLING_DB_FAILED. */
int billing_status_get(long long user_id, billing_status_t *out);

/* The contract's body {"tier","status","current_period_end","daily_limit"} for st: current_period_end null
 * when unknown, daily_limit null for pro, else daily_limit. A new object owned by the caller. */
json_object *billing_status_json(const billing_status_t *st, long long daily_limit);

/* ---- webhook events ---- */

/* Apply a verified, parsed event in one transaction: record its id (a repeat changes nothing), close the
 * Checkout Session it is about (stripe_event_closes_checkout: never handed out again), lock or create the
 * subscription row, link the user, store the new status and recompute the user's tier; after the commit,
 * invalidate the user's cached chatroom list when one of their subscriptions changed. Must be called outside
 * a transaction. 0 applied, deliberately ignored, or seen before; BILLING_DB_FAILED (rolled back: nothing
 * changed, Stripe should redeliver). */
int billing_apply_event(const stripe_event_t *ev);

/* ---- pure decisions (unit-tested) ---- */

/* "pro" when some status among statuses[0..n) grants Pro (stripe_status_grants), else "basic". Static. */
const char *billing_tier(const char *const *statuses, size_t n);

/* The subscription row on record, as billing_apply_event reads it under lock. */
typedef struct billing_sub_row {
    long long user_id; /* 0: not linked to a user yet */
    int has_customer;  /* stripe_customer_id is set */
    char status[32];
    long long last; /* last_event_created */
} billing_sub_row_t;

/* What an event does to its subscription row and user. */
typedef struct billing_plan {
    const char *status; /* the status to store, NULL to keep the row's (static string or ev->status) */
    const char *why;    /* when status is NULL: why (for the log) */
    long long user_id;  /* the user whose row to lock and whose tier to recompute, 0 none */
    int link;           /* set the row's user to user_id (it had none) */
    int link_customer;  /* set the row's customer to ev->customer (it had none) */
    int conflict;       /* the event names another user than the row's (the row's is kept) */
    int write;          /* the row needs an UPDATE (status, link or link_customer) */
} billing_plan_t;

/* Decide what ev does to the row of the subscription it names. row: the row on record, or NULL when
 * billing_apply_event has just inserted it (its first status, its customer, no user). candidate: the user
 * the event resolves to (see the header comment), used only when the row has no user; 0 none.
 * Returns 0 when there is nothing to do (no status change, nothing to link, no tier to recompute), 1 when
 * plan says what to do. Call only for an event stripe_sub_change tracks. */
int billing_plan(const stripe_event_t *ev, const billing_sub_row_t *row, long long candidate, billing_plan_t *plan);

#endif
