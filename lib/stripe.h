/* stripe: Stripe Checkout and webhooks.
 *
 * Pure parts (no I/O, unit-tested): form encoding, Stripe-Signature verification, event parsing, the
 * subscription-status policy and the per-subscription ordering rules. The client part creates Checkout
 * Sessions over libcurl (one easy handle per process, reused so connections stay alive). Nothing here logs or
 * returns the secret key. */
#ifndef GB_STRIPE_H
#define GB_STRIPE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define STRIPE_API_VERSION "2026-10-28.endive" /* pinned on every outgoing call */
#define STRIPE_SIG_TOLERANCE 300               /* seconds, both into the past and the future */
#define STRIPE_SIG_HEADER_MAX 8192             /* longer Stripe-Signature headers are malformed */
#define STRIPE_MAX_RESPONSE (1024 * 1024)      /* ceiling on a Stripe API response body */
#define STRIPE_ID_MAX 256                      /* Stripe object ids are at most 255 bytes */

/* ---- form encoding (application/x-www-form-urlencoded as Stripe reads it) ---- */

/* Append s[0..len) percent-encoded to out: every byte but A-Za-z0-9 and "-._~" becomes %XX (uppercase hex),
 * exactly like curl_easy_escape. */
void stripe_form_escape(buf_t *out, const char *s, size_t len);

/* Append "key=value" (both escaped) to out, preceded by '&' when out is not empty. Bracket keys such as
 * "line_items[0][price]" are escaped too; Stripe decodes them either way. A NULL value appends nothing. */
void stripe_form_add(buf_t *out, const char *key, const char *value);

/* ---- webhook signatures ---- */

enum stripe_sig_result {
    STRIPE_SIG_OK = 0,
    STRIPE_SIG_MISSING = -1,   /* no header (NULL or empty) */
    STRIPE_SIG_MALFORMED = -2, /* no/invalid/duplicate t, no v1, too long */
    STRIPE_SIG_MISMATCH = -3,  /* no v1 equals the expected signature */
    STRIPE_SIG_STALE = -4,     /* t older than the tolerance */
    STRIPE_SIG_FUTURE = -5,    /* t further in the future than the tolerance */
};

/* Lowercase hex HMAC-SHA256 of "<t>.<body>" keyed with the whole secret string (whsec_ prefix included)
 * into out (65 bytes with the NUL). 0 ok, -1 on an OpenSSL failure. */
int stripe_signature_compute(const char *secret, long long t, const char *body, size_t body_len, char out[65]);

/* Verify a Stripe-Signature header ("t=...,v1=...,v1=...,v0=...") over the raw body: accepted when some v1
 * equals the expected signature (constant-time compare after a length check) and |now - t| <= tolerance.
 * Schemes other than v1 are ignored (v0 alone is MALFORMED: no v1). Returns STRIPE_SIG_OK or a negative
 * enum stripe_sig_result; *t_out (may be NULL) gets t when one was parsed. */
int stripe_signature_verify(const char *header, const char *secret, const char *body, size_t body_len, long long now,
                            long tolerance, long long *t_out);

/* A short English reason for a stripe_signature_verify result (static string). */
const char *stripe_sig_strerror(int rc);

/* ---- events ---- */

enum stripe_event_kind {
    STRIPE_EV_OTHER = 0, /* recorded and ignored */
    STRIPE_EV_CHECKOUT_COMPLETED,
    STRIPE_EV_SUBSCRIPTION_CREATED,
    STRIPE_EV_SUBSCRIPTION_UPDATED,
    STRIPE_EV_SUBSCRIPTION_DELETED,
    STRIPE_EV_INVOICE_PAYMENT_FAILED,
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
 *   checkout.session.completed: user_id from client_reference_id, else metadata.user_id; customer;
 *     subscription; mode; payment_status.
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
 * Returns 0 when the event is not about a subscription we track (no subscription id, a checkout in another
 * mode, a subscription event without a status, an event type we ignore): record it and do nothing; *why
 * says why. Returns 1 when it is: *status is the status to store (for a new row: its first status, stored
 * with last_event_created = ev->created; for a row: the new status, last_event_created becoming the larger
 * of the two), or NULL when the row keeps its status, with the reason in *why. Static strings, or
 * ev->status.
 * The rules (per subscription):
 *   customer.subscription.created/updated/deleted (deleted means canceled): no row -> its status; a terminal
 *     row -> kept; ev->created < row_last -> kept; same second and a lower rank than the row's -> kept;
 *     else its status.
 *   checkout.session.completed: stripe_checkout_status(payment_status) for a new row; a row keeps its
 *     status, except that an incomplete row takes a derived status other than incomplete (a paid checkout
 *     completes it: incomplete is only ever an initial state).
 *   invoice.payment_failed: a new row is incomplete (billing_reason subscription_create) or past_due; an
 *     active or trialing row becomes past_due unless the event is older than row_last; any other row is
 *     kept. */
int stripe_sub_change(const stripe_event_t *ev, const char *row_status, long long row_last, const char **status,
                      const char **why);

/* ---- client ---- */

typedef struct stripe_checkout_req {
    const char *api_base;   /* "https://api.stripe.com" (no trailing slash needed) */
    const char *secret_key; /* sk_... */
    const char *price_id;   /* price_... */
    const char *public_url; /* base of success_url and cancel_url */
    long long user_id;
    const char *idempotency_key; /* NULL or "": a random one */
    long timeout_ms;             /* the whole call, retry included; 0: 10000 (one connect at most 5000) */
} stripe_checkout_req_t;

typedef struct stripe_checkout_session {
    char id[STRIPE_ID_MAX]; /* cs_... */
    char url[2048];         /* hosted Checkout page */
} stripe_checkout_session_t;

/* Why a call to Stripe failed, in the classes our client is told about. */
enum stripe_failure {
    STRIPE_FAIL_NONE = 0,
    STRIPE_FAIL_REFUSED,     /* Stripe answered with an error status (4xx, 5xx) */
    STRIPE_FAIL_UNREACHABLE, /* no answer: connection refused, name not resolved, TLS, reset (or not configured) */
    STRIPE_FAIL_TIMEOUT,     /* no answer before the deadline */
    STRIPE_FAIL_UNEXPECTED,  /* an answer we cannot use: a 2xx without id/url, another status, too large */
};

/* The outcome of one Stripe call. */
typedef struct stripe_call_result {
    int failure;      /* enum stripe_failure; STRIPE_FAIL_NONE on success */
    int http_status;  /* Stripe's HTTP status of the last attempt, 0 if none was received */
    int attempts;     /* requests made: 1, or 2 after a retry */
    char detail[400]; /* for the log only, never for our client: Stripe's error type and message or the
                       * transport error (may name hosts, ports, price ids; the secret key is masked) */
} stripe_call_result_t;

/* The fixed sentence our client gets for a failure class (static string; names nothing internal). */
const char *stripe_failure_sentence(int failure);

/* Append the form body of a subscription-mode Checkout Session for req to out (exposed for tests). */
void stripe_checkout_form(const stripe_checkout_req_t *req, buf_t *out);

/* POST {api_base}/v1/checkout/sessions. 0 ok with out filled; -1 on failure, with result->failure (the
 * caller answers 502 upstream_error with stripe_failure_sentence) and result->detail (for the log).
 * result is always filled. A 5xx or a failed connection is retried once with the same Idempotency-Key,
 * within what is left of the one req->timeout_ms budget (not at all with less than 250 ms left). */
int stripe_create_checkout_session(const stripe_checkout_req_t *req, stripe_checkout_session_t *out,
                                   stripe_call_result_t *result);

/* Parse a Checkout Session response body (exposed for tests). 0 ok; -1 with err when id/url are missing. */
int stripe_parse_checkout_session(const char *body, size_t len, stripe_checkout_session_t *out, char *err,
                                  size_t errlen);

/* A log sentence for a Stripe error body {"error":{"type","message"}} and HTTP status (exposed for tests).
 * The message is truncated, control bytes replaced, and any occurrence of secret (may be NULL) masked. */
void stripe_error_message(const char *body, size_t len, long status, const char *secret, char *err, size_t errlen);

/* Release the process's curl handle (end of process; optional). */
void stripe_cleanup(void);

#endif
