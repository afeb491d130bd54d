/* stripe_client: the Stripe API client. Checkout form encoding (pure), the Checkout Session call over
 * libcurl (one easy handle per process, reused so connections stay alive), Stripe error bodies turned into
 * sanitised log sentences, and the fixed sentences our own client is told. Nothing here logs or returns the
 * secret key. */
#ifndef GB_STRIPE_CLIENT_H
#define GB_STRIPE_CLIENT_H

#include <stddef.h>

#include "stripe_event.h"
#include "util.h"

#define STRIPE_API_VERSION "2026-10-28.endive" /* pinned on every outgoing call */
#define STRIPE_MAX_RESPONSE (1024 * 1024)      /* ceiling on a Stripe API response body */
#define STRIPE_CHECKOUT_BUDGET_MS 10000        /* a Checkout Session call's default budget, its retry included */

/* ---- form encoding (application/x-www-form-urlencoded as Stripe reads it) ---- */

/* Append s[0..len) percent-encoded to out by libcurl's curl_easy_escape: every byte but A-Za-z0-9 and "-._~"
 * becomes %XX (uppercase hex). */
void stripe_form_escape(buf_t *out, const char *s, size_t len);

/* Append "key=value" (both escaped) to out, preceded by '&' when out is not empty. Bracket keys such as
 * "line_items[0][price]" are escaped too; Stripe decodes them either way. A NULL value appends nothing. */
void stripe_form_add(buf_t *out, const char *key, const char *value);

/* ---- client ---- */

typedef struct stripe_checkout_req {
    const char *api_base;   /* "https://api.stripe.com" (no trailing slash needed) */
    const char *secret_key; /* sk_... */
    const char *price_id;   /* price_... */
    const char *public_url; /* base of success_url and cancel_url */
    long long user_id;
    const char *customer;        /* cus_... to reuse (sent as customer, never with customer_email); NULL: none */
    long long expires_at;        /* Unix seconds for the session's expires_at (Stripe: 30 min to 24 h ahead); 0: not
                                  * sent (Stripe's default, 24 h) */
    const char *idempotency_key; /* NULL or "": a random one */
    long timeout_ms;             /* the whole call, retry included; 0: STRIPE_CHECKOUT_BUDGET_MS (one connect at
                                  * most 5000) */
} stripe_checkout_req_t;

typedef struct stripe_checkout_session {
    char id[STRIPE_ID_MAX]; /* cs_... */
    char url[2048];         /* hosted Checkout page */
    long long expires_at;   /* Unix seconds when Stripe expires it; 0 when the response did not say */
} stripe_checkout_session_t;

/* Why a call to Stripe failed, in the classes our client is told about. */
enum stripe_failure {
    STRIPE_FAIL_NONE = 0,
    STRIPE_FAIL_REFUSED,     /* Stripe refused the request: a 4xx other than 409 and 429 */
    STRIPE_FAIL_BUSY,        /* Stripe failed or asked us to slow down: a 5xx, 429 or 409, retried once */
    STRIPE_FAIL_UNREACHABLE, /* no answer: connection refused, name not resolved, TLS, reset (or not configured) */
    STRIPE_FAIL_TIMEOUT,     /* no answer before the deadline */
    STRIPE_FAIL_UNEXPECTED,  /* an answer we cannot use: a 2xx without id/url, another status, too large */
};

/* The outcome of one Stripe call. */
typedef struct stripe_call_result {
    int failure;          /* enum stripe_failure; STRIPE_FAIL_NONE on success */
    int http_status;      /* Stripe's HTTP status of the last attempt, 0 if none was received */
    int attempts;         /* requests made: 1, or 2 after a retry */
    char detail[400];     /* for the log only, never for our client: Stripe's error type and message or the
                           * transport error (may name hosts, ports, price ids; the secret key is masked) */
    char error_code[48];  /* Stripe's error.code of a refusal ("resource_missing", ...), "" when none */
    char error_param[48]; /* Stripe's error.param (the parameter it names: "customer", ...), "" when none */
} stripe_call_result_t;

/* The fixed sentence our client gets for a failure class (static string; names nothing internal). */
const char *stripe_failure_sentence(int failure);

/* Append the form body of a subscription-mode Checkout Session for req to out (exposed for tests). */
void stripe_checkout_form(const stripe_checkout_req_t *req, buf_t *out);

/* POST {api_base}/v1/checkout/sessions. 0 ok with out filled; -1 on failure, with result->failure (the
 * caller answers 502 upstream_error with stripe_failure_sentence) and result->detail (for the log).
 * result is always filled. A 5xx, a failed connection, a 429 (rate limited) or a 409 (the same Idempotency-Key
 * in use by a concurrent request, a lock timeout) is retried once with the same Idempotency-Key, a 429 or 409
 * after a pause of 0.5 s, within what is left of the one req->timeout_ms budget (not at all with less than
 * 250 ms left). */
int stripe_create_checkout_session(const stripe_checkout_req_t *req, stripe_checkout_session_t *out,
                                   stripe_call_result_t *result);

/* Parse a Checkout Session response body (exposed for tests). 0 ok; -1 with err when id/url are missing.
 * expires_at is taken when it is an integer within 1..STRIPE_TIMESTAMP_MAX, else 0. */
int stripe_parse_checkout_session(const char *body, size_t len, stripe_checkout_session_t *out, char *err,
                                  size_t errlen);

/* A log sentence for a Stripe error body {"error":{"type","message"}} and HTTP status (exposed for tests).
 * The message is truncated, control bytes replaced, and any occurrence of secret (may be NULL) masked. */
void stripe_error_message(const char *body, size_t len, long status, const char *secret, char *err, size_t errlen);

/* Stripe's error.code and error.param of the error body body[0..len) into code and param (each "" when absent,
 * not a string, or holding a byte outside [A-Za-z0-9_.\[\]-]; cut to the buffer). */
void stripe_error_fields(const char *body, size_t len, char *code, size_t codelen, char *param, size_t paramlen);

/* Release the process's curl handle (end of process; optional). */
void stripe_cleanup(void);

#endif
