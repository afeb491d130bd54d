#include "stripe_sig.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "util.h"

int stripe_signature_compute(const char *secret, long long t, const char *body, size_t body_len, char out[65])
{
    unsigned char mac[HMAC_SHA256_LEN];
    char ts[24];
    int n = snprintf(ts, sizeof ts, "%lld.", t);

    out[0] = '\0';
    if (!secret || n <= 0 || (size_t)n >= sizeof ts)
        return -1;
    hmac_sha256(secret, strlen(secret), ts, (size_t)n, body, body_len, mac);
    hex_encode(mac, sizeof mac, out);
    explicit_bzero(mac, sizeof mac);
    return 0;
}

static int parse_unix(const char *s, size_t len, long long *out)
{
    long long v = 0;
    if (len == 0 || len > 12)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* The next comma-separated item of the header from *p (before end), without surrounding blanks, in [*item, *item_end);
 * *p moves past it. 0 when there is none left. */
static int next_item(const char **p, const char *end, const char **item, const char **item_end)
{
    if (*p >= end)
        return 0;
    const char *comma = memchr(*p, ',', (size_t)(end - *p));
    const char *b = *p, *e = comma ? comma : end;
    while (b < e && (*b == ' ' || *b == '\t'))
        b++;
    while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *item = b;
    *item_end = e;
    *p = comma ? comma + 1 : end;
    return 1;
}

int stripe_signature_verify(const char *header, const char *secret, const char *body, size_t body_len, long long now,
                            long tolerance, long long *t_out)
{
    char expected[65];
    long long t = 0;
    int have_t = 0, nv1 = 0, match = 0;
    int rc = STRIPE_SIG_MALFORMED;

    if (!header || !*header)
        return STRIPE_SIG_MISSING;
    if (!secret || !*secret)
        return STRIPE_SIG_MISMATCH;
    size_t hlen = strnlen(header, STRIPE_SIG_HEADER_MAX + 1);
    if (hlen > STRIPE_SIG_HEADER_MAX)
        return STRIPE_SIG_MALFORMED;

    /* First pass: find t (we need it before computing the expected signature). */
    const char *p = header, *end = header + hlen, *it, *ie;
    while (next_item(&p, end, &it, &ie)) {
        const char *eq = memchr(it, '=', (size_t)(ie - it));
        if (eq) {
            size_t klen = (size_t)(eq - it);
            const char *v = eq + 1;
            size_t vlen = (size_t)(ie - v);
            if (klen == 1 && it[0] == 't') {
                if (have_t || parse_unix(v, vlen, &t) < 0)
                    return STRIPE_SIG_MALFORMED;
                have_t = 1;
            } else if (klen == 2 && it[0] == 'v' && it[1] == '1') {
                nv1++;
            }
        }
    }
    if (!have_t || nv1 == 0)
        return STRIPE_SIG_MALFORMED;
    if (t_out)
        *t_out = t;
    if (stripe_signature_compute(secret, t, body, body_len, expected) < 0)
        return STRIPE_SIG_MISMATCH;

    /* Second pass: compare every v1 in constant time; keep going after a match so timing does not say
     * which one matched. */
    p = header;
    while (next_item(&p, end, &it, &ie)) {
        if (ie - it == 3 + 64 && it[0] == 'v' && it[1] == '1' && it[2] == '=' &&
            CRYPTO_memcmp(it + 3, expected, 64) == 0)
            match = 1;
    }
    explicit_bzero(expected, sizeof expected);
    if (!match)
        rc = STRIPE_SIG_MISMATCH;
    else if (now - t > tolerance)
        rc = STRIPE_SIG_STALE;
    else if (t - now > tolerance)
        rc = STRIPE_SIG_FUTURE;
    else
        rc = STRIPE_SIG_OK;
    return rc;
}

const char *stripe_sig_strerror(int rc)
{
    switch (rc) {
    case STRIPE_SIG_OK: return "signature valid";
    case STRIPE_SIG_MISSING: return "Missing Stripe-Signature header.";
    case STRIPE_SIG_MALFORMED: return "Malformed Stripe-Signature header: it needs a timestamp t and a v1 signature.";
    case STRIPE_SIG_MISMATCH: return "No v1 signature matches the payload.";
    case STRIPE_SIG_STALE: return "The Stripe-Signature timestamp is too old.";
    case STRIPE_SIG_FUTURE: return "The Stripe-Signature timestamp is too far in the future.";
    default: return "Invalid Stripe-Signature header.";
    }
}
