/* Fuzz target: the Stripe-Signature header of webhook deliveries (lib/stripe_sig.c). Input: the header value on
 * the first line, the raw body after it. "{sig}" in the header is replaced by the true v1 signature of the body
 * at t=T (the fixed clock), so that inputs can carry a matching signature and reach the time checks.
 * Checked: the signature we compute (nettle's HMAC, util's hmac_sha256) is OpenSSL's HMAC-SHA256 of "<T>.<body>";
 * the result is one of the documented codes; OK only with a v1 that is the true signature of the body for the
 * header's t, and that t within the tolerance. */
#include "fuzz.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "stripe_sig.h"
#include "util.h"

#define SECRET "whsec_fuzz0123456789abcdef"
#define T 1800000000LL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t rest, hlen = fuzz_line(data, size, &rest);
    const char *body = (const char *)data + rest;
    size_t body_len = size - rest;
    char sig[65], expected[65];
    buf_t header = {0};

    if (stripe_signature_compute(SECRET, T, body, body_len, sig) != 0)
        abort();
    { /* the same MAC from OpenSSL, over the joined message */
        buf_t msg = {0};
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int maclen = 0;
        char hex[2 * EVP_MAX_MD_SIZE + 1];
        buf_printf(&msg, "%lld.", T);
        buf_append(&msg, body, body_len);
        FUZZ_CHECK(HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)msg.data, msg.len, mac,
                        &maclen) != NULL &&
                   maclen == 32);
        hex_encode(mac, maclen, hex);
        FUZZ_CHECK(strcmp(hex, sig) == 0);
        buf_free(&msg);
    }
    for (size_t i = 0; i < hlen;) { /* the header with {sig} filled in */
        if (hlen - i >= 5 && memcmp(data + i, "{sig}", 5) == 0) {
            buf_append(&header, sig, 64);
            i += 5;
        } else {
            buf_append(&header, data + i, 1);
            i++;
        }
    }
    buf_append(&header, "", 0);

    long long t = -1;
    for (long long now = T - 400; now <= T + 400; now += 200) {
        int rc = stripe_signature_verify(header.data, SECRET, body, body_len, now, STRIPE_SIG_TOLERANCE, &t);
        FUZZ_CHECK(rc <= 0 && rc >= STRIPE_SIG_FUTURE);
        FUZZ_CHECK(stripe_sig_strerror(rc) != NULL);
        if (rc == STRIPE_SIG_OK || rc == STRIPE_SIG_STALE || rc == STRIPE_SIG_FUTURE) {
            /* a v1 matched: the true signature for the t it parsed */
            FUZZ_CHECK(t >= 0);
            FUZZ_CHECK(stripe_signature_compute(SECRET, t, body, body_len, expected) == 0);
            FUZZ_CHECK(strstr(header.data, expected) != NULL);
        }
        if (rc == STRIPE_SIG_OK)
            FUZZ_CHECK(now - t <= STRIPE_SIG_TOLERANCE && t - now <= STRIPE_SIG_TOLERANCE);
        if (rc == STRIPE_SIG_STALE)
            FUZZ_CHECK(now - t > STRIPE_SIG_TOLERANCE);
        if (rc == STRIPE_SIG_FUTURE)
            FUZZ_CHECK(t - now > STRIPE_SIG_TOLERANCE);
    }
    /* another secret never matches */
    int other = stripe_signature_verify(header.data, "whsec_other", body, body_len, T, STRIPE_SIG_TOLERANCE, NULL);
    FUZZ_CHECK(other != STRIPE_SIG_OK);
    FUZZ_CHECK(stripe_signature_verify(header.data, "", body, body_len, T, STRIPE_SIG_TOLERANCE, NULL) != 0);
    buf_free(&header);
    return 0;
}
