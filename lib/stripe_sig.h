/* stripe_sig: the Stripe-Signature header of webhook deliveries (REFERENCE.md 2.3). Pure functions over
 * (buf, len): no I/O, no logging; the secret is never copied anywhere but into the HMAC. */
#ifndef GB_STRIPE_SIG_H
#define GB_STRIPE_SIG_H

#include <stddef.h>

#define STRIPE_SIG_TOLERANCE 300   /* seconds, both into the past and the future */
#define STRIPE_SIG_HEADER_MAX 8192 /* longer Stripe-Signature headers are malformed */

enum stripe_sig_result {
    STRIPE_SIG_OK = 0,
    STRIPE_SIG_MISSING = -1,   /* no header (NULL or empty) */
    STRIPE_SIG_MALFORMED = -2, /* no/invalid/duplicate t, no v1, too long */
    STRIPE_SIG_MISMATCH = -3,  /* no v1 equals the expected signature */
    STRIPE_SIG_STALE = -4,     /* t older than the tolerance */
    STRIPE_SIG_FUTURE = -5,    /* t further in the future than the tolerance */
};

/* Lowercase hex HMAC-SHA256 of "<t>.<body>" keyed with the whole secret string (whsec_ prefix included)
 * into out (65 bytes with the NUL). 0 ok, -1 (out empty) when secret is NULL. */
int stripe_signature_compute(const char *secret, long long t, const char *body, size_t body_len, char out[65]);

/* Verify a Stripe-Signature header ("t=...,v1=...,v1=...,v0=...") over the raw body: accepted when some v1
 * equals the expected signature (constant-time compare after a length check) and |now - t| <= tolerance.
 * Schemes other than v1 are ignored (v0 alone is MALFORMED: no v1). Returns STRIPE_SIG_OK or a negative
 * enum stripe_sig_result; *t_out (may be NULL) gets t when one was parsed. */
int stripe_signature_verify(const char *header, const char *secret, const char *body, size_t body_len, long long now,
                            long tolerance, long long *t_out);

/* A short English reason for a stripe_signature_verify result (static string). */
const char *stripe_sig_strerror(int rc);

#endif
