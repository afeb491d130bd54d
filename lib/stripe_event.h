/* stripe_event: what a webhook event means to us. Pure functions (no I/O, no logging): event parsing, the
 * subscription-status policy (which statuses grant Pro, their ranks) and the per-subscription ordering rules
 * that decide what an event does to a subscription row (stripe_sub_change). lib/billing.c applies the
 * decisions to the database. */
#ifndef GB_STRIPE_EVENT_H
#define GB_STRIPE_EVENT_H

#include <stddef.h>

#include <json-c/json.h>

#define STRIPE_ID_MAX 256 /* Stripe object ids are at most 255 bytes */

/* ---- events ---- */

enum stripe_event_kind {
    STRIPE_EV_OTHER = 0, /* recorded and ignored */
    STRIPE_EV_CHECKOUT_COMPLETED,
    STRIPE_EV_SUBSCRIPTION_CREATED,
    STRIPE_EV_SUBSCRIPTION_UPDATED,
    STRIPE_EV_SUBSCRIPTION_DELETED,
    STRIPE_EV_INVOICE_PAYMENT_FAILED,
    STRIPE_EV_CHECKOUT_ASYNC_SUCCEEDED, /* checkout.session.async_payment_succeeded (delayed payment methods) */
    STRIPE_EV_CHECKOUT_ASYNC_FAILED,    /* checkout.session.async_payment_failed */
    STRIPE_EV_CHECKOUT_EXPIRED,         /* checkout.session.expired (abandoned): closes the session, nothing else */
};

/* What we need of one event. Strings are "" when absent; user_id and current_period_end 0 when absent. */
typedef struct stripe_event {
    char id[STRIPE_ID_MAX];           /* evt_... */
    char type[128];                   /* "checkout.session.completed", ... */
    long long created;                /* Unix seconds */
    int kind;                         /* enum stripe_event_kind */
    long long user_id;                /* our user id: client_reference_id, else metadata.user_id (positive) */
    char customer[STRIPE_ID_MAX];     /* cus_... */
    char subscription[STRIPE_ID_MAX]; /* sub_... */
    char session[STRIPE_ID_MAX];      /* the Checkout Session's id (cs_...), checkout events only */
    char status[32];                  /* the subscription status (subscription events); "" otherwise */
    char mode[32];                    /* checkout session mode ("subscription") */
    char payment_status[32];          /* checkout session: "paid", "unpaid", "no_payment_required" */
    char billing_reason[64];          /* invoice: "subscription_create", "subscription_cycle", ... */
    long long current_period_end;     /* items.data[0].current_period_end, else top-level (pre-basil); 0 when
                                       * absent or outside 1..STRIPE_TIMESTAMP_MAX */
} stripe_event_t;

/* Parse an event JSON document (strict: one object, no trailing bytes, valid UTF-8) into ev.
 * 0 ok; -1 with a sentence in err (errlen bytes) when it is not JSON, lacks id/type/created, or a known type
 * lacks its data.object. Ids longer than STRIPE_ID_MAX-1 bytes are refused. Unknown types need only the
 * envelope.
 * Fields by kind:
 *   checkout.session.completed, checkout.session.async_payment_succeeded / _failed, checkout.session.expired
 *     (data.object is the Checkout Session): session = its id; user_id from client_reference_id, else
 *     metadata.user_id; customer; subscription; mode; payment_status.
 *   customer.subscription.*: subscription = object id; customer; status; metadata.user_id;
 *     current_period_end from items.data[0] first, then the top level (bounded, see stripe_period_end).
 *   invoice.payment_failed: subscription from parent.subscription_details.subscription, else the top-level
 *     subscription; customer; billing_reason; user_id from parent.subscription_details.metadata.user_id, else
 *     subscription_details.metadata.user_id. */
int stripe_event_parse(const char *body, size_t len, stripe_event_t *ev, char *err, size_t errlen);

/* ---- subscription status policy and per-subscription ordering ---- */

/* The latest instant PostgreSQL's to_timestamp and our RFC 3339 output take without surprise:
 * 9999-12-31T23:59:59Z. */
#define STRIPE_TIMESTAMP_MAX 253402300799LL

/* A period end as we store it: t when 1 <= t <= STRIPE_TIMESTAMP_MAX, else 0 (absent). */
long long stripe_period_end(long long t);

/* The statuses that grant Pro, as an SQL list for "status IN (" STRIPE_GRANTING_SQL ")". past_due grants
 * too: a grace period while Stripe retries the payment, until it sends unpaid or canceled. Must agree with
 * stripe_status_grants (the unit tests check it). */
#define STRIPE_GRANTING_SQL "'active', 'trialing', 'past_due'"

/* 1 when a subscription in this status gives its user Pro (active, trialing, past_due), else 0 (unknown
 * future values deny). */
int stripe_status_grants(const char *status);

/* 1 for the terminal statuses (canceled, incomplete_expired) that no later event changes. */
int stripe_status_terminal(const char *status);

/* How far along its life a status is, to break same-second ties (created has 1 s resolution):
 * incomplete 0 < trialing = active 1 < past_due 2 < unpaid = paused = unknown 3 <
 * canceled = incomplete_expired 4. NULL ranks as unknown. */
int stripe_status_rank(const char *status);

/* The status a completed Checkout Session implies for its subscription, from its payment_status:
 * "unpaid" (a delayed payment method) -> "incomplete", "no_payment_required" (e.g. a free trial) ->
 * "trialing", anything else ("paid") -> "active". Static string. */
const char *stripe_checkout_status(const char *payment_status);

/* What event ev does to the status of the subscription it is about (ev->subscription), given the row on
 * record: row_status NULL when there is none yet (row_last is then unused), else its status and
 * last_event_created.
 * Returns 0 when the event is not about a subscription we track (checkout.session.expired, no subscription id, a
 * checkout in another mode, a subscription event without a status, an event type we ignore): record it and do nothing;
 * *why says why. Returns 1 when it is: *status is the status to store (for a new row: its first status, stored with
 * last_event_created = ev->created; for a row: the new status, last_event_created becoming the larger of the two), or
 * NULL when the row keeps its status, with the reason in *why. Static strings, or ev->status. The rules (per
 * subscription): customer.subscription.created/updated/deleted (deleted means canceled): no row -> its status; a
 * terminal row -> kept; ev->created < row_last -> kept; same second and a lower rank than the row's -> kept; else its
 * status. checkout.session.completed: stripe_checkout_status(payment_status) for a new row; a row keeps its status,
 * except that an incomplete row takes a derived status other than incomplete (a paid checkout completes it: incomplete
 * is only ever an initial state). checkout.session.async_payment_succeeded (the delayed payment of a checkout went
 * through): like checkout.session.completed with payment_status paid: active for a new row; an incomplete row becomes
 *     active; any other row is kept.
 *   invoice.payment_failed: a new row is incomplete (billing_reason subscription_create) or past_due; an
 *     active or trialing row becomes past_due unless the event is older than row_last; any other row is
 *     kept.
 *   checkout.session.async_payment_failed (the delayed first payment failed): like invoice.payment_failed
 *     for a first invoice: a new row is incomplete; an active or trialing row becomes past_due unless the
 *     event is older than row_last; any other row (an incomplete one included) is kept.
 *   Checkout events (all three) about a session in another mode than subscription are not tracked. */
int stripe_sub_change(const stripe_event_t *ev, const char *row_status, long long row_last, const char **status,
                      const char **why);

/* 1 when ev is about a Checkout Session that can no longer be paid through (completed, expired, or its delayed
 * payment settled either way) and names it (ev->session), else 0. */
int stripe_event_closes_checkout(const stripe_event_t *ev);

/* ---- JSON helpers (shared with stripe_client.c) ---- */

/* Member key of object o; NULL when o is not an object, the key is absent, or its value is JSON null. The
 * result is borrowed from o. */
json_object *stripe_json_get(json_object *o, const char *key);

/* Copy string member key of o (or the "id" of an expanded object in its place) into dst (dstsize bytes).
 * 0 ok, also when absent or not a string (dst ""); -1 when too long for dst or containing a NUL (dst ""). */
int stripe_json_copy(json_object *o, const char *key, char *dst, size_t dstsize);

#endif
