/* stripe: Stripe Checkout and webhooks.
 *
 * Pure parts (no I/O, unit-tested): form encoding, Stripe-Signature verification, event parsing and the
 * subscription-status policy. The client part creates Checkout Sessions over libcurl (one easy handle per
 * process, reused so connections stay alive). Nothing here logs or returns the secret key. */
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
    long long current_period_end;     /* items.data[0].current_period_end, else top-level (pre-basil) */
} stripe_event_t;

/* Parse an event JSON document (strict: one object, no trailing bytes, valid UTF-8) into ev.
 * 0 ok; -1 with a sentence in err (errlen bytes) when it is not JSON, lacks id/type/created, or a known type
 * lacks its data.object. Ids longer than STRIPE_ID_MAX-1 bytes are refused. Unknown types need only the
 * envelope.
 * Fields by kind:
 *   checkout.session.completed: user_id from client_reference_id, else metadata.user_id; customer;
 *     subscription; mode.
 *   customer.subscription.*: subscription = object id; customer; status; metadata.user_id;
 *     current_period_end from items.data[0] first, then the top level.
 *   invoice.payment_failed: subscription from parent.subscription_details.subscription, else the top-level
 *     subscription; customer; user_id from parent.subscription_details.metadata.user_id, else
 *     subscription_details.metadata.user_id. */
int stripe_event_parse(const char *body, size_t len, stripe_event_t *ev, char *err, size_t errlen);

/* ---- subscription status policy ---- */

enum stripe_tier_effect {
    STRIPE_TIER_BASIC = 0, /* deny: canceled, unpaid, incomplete, incomplete_expired, paused, unknown */
    STRIPE_TIER_PRO = 1,   /* grant: active, trialing */
    STRIPE_TIER_KEEP = 2,  /* past_due: grace while Stripe retries the payment; the tier is left as it is */
};

/* The tier a subscription status implies (unknown future values deny). */
int stripe_status_tier(const char *status);

/* 1 for the terminal statuses (canceled, incomplete_expired) that a stale event must never undo. */
int stripe_status_terminal(const char *status);

/* ---- client ---- */

typedef struct stripe_checkout_req {
    const char *api_base;   /* "https://api.stripe.com" (no trailing slash needed) */
    const char *secret_key; /* sk_... */
    const char *price_id;   /* price_... */
    const char *public_url; /* base of success_url and cancel_url */
    long long user_id;
    const char *idempotency_key; /* NULL or "": a random one */
    long timeout_ms;             /* 0: 10000 (connect at most 5000) */
} stripe_checkout_req_t;

typedef struct stripe_checkout_session {
    char id[STRIPE_ID_MAX]; /* cs_... */
    char url[2048];         /* hosted Checkout page */
} stripe_checkout_session_t;

/* Append the form body of a subscription-mode Checkout Session for req to out (exposed for tests). */
void stripe_checkout_form(const stripe_checkout_req_t *req, buf_t *out);

/* POST {api_base}/v1/checkout/sessions. 0 ok with out filled. -1 on failure with a sentence in err fit for
 * our client (Stripe's error type and message, or the transport failure; never the key): the caller answers
 * 502 upstream_error. *http_status (may be NULL) gets Stripe's HTTP status, 0 if none was received.
 * A 5xx or a failed connection is retried once with the same Idempotency-Key. */
int stripe_create_checkout_session(const stripe_checkout_req_t *req, stripe_checkout_session_t *out, int *http_status,
                                   char *err, size_t errlen);

/* Parse a Checkout Session response body (exposed for tests). 0 ok; -1 with err when id/url are missing. */
int stripe_parse_checkout_session(const char *body, size_t len, stripe_checkout_session_t *out, char *err,
                                  size_t errlen);

/* Our sentence for a Stripe error body {"error":{"type","message"}} and HTTP status (exposed for tests).
 * The message is truncated, control bytes replaced, and any occurrence of secret (may be NULL) masked. */
void stripe_error_message(const char *body, size_t len, long status, const char *secret, char *err, size_t errlen);

/* Release the process's curl handle (end of process; optional). */
void stripe_cleanup(void);

#endif
