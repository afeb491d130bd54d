/* Fuzz target: JWT verification (lib/token.c: token_from_header, token_verify) with a fixed key and clock.
 * Two kinds of input:
 *  - one line: an Authorization header value, taken apart and verified as auth_require does;
 *  - "HEADER\nPAYLOAD": two JSON texts that the target encodes and signs with the key (HS256), so that the
 *    claim checks behind the signature are reached too.
 * Checked: a token that passes has every claim in range (sub > 0, tv >= 0, a 32-hex jti, iat and exp around
 * the clock), libjwt's own verification with the key (OpenSSL's HMAC) accepts it as HS256 too, and a second
 * verification (the verified-token cache) gives the same answer. */
#include "fuzz.h"

#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "token.h"

#define KEY "fuzz-key-0123456789abcdef0123456789abcdef"
#define NOW 1800000000 /* 2027-01-15 */

static size_t b64url(const uint8_t *in, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = abc[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = abc[v & 63];
    }
    out[o] = '\0';
    return o;
}

static void verify(const char *token)
{
    const unsigned char *key = (const unsigned char *)KEY;
    token_claims_t c, again;
    int rc = token_verify(key, sizeof KEY - 1, token, NOW, &c);
    if (getenv("FUZZ_DEBUG")) /* FUZZ_DEBUG=1 build-fuzz/fuzz/token FILE: what a seed verifies to */
        fprintf(stderr, "token_verify(%s) = %d\n", token, rc);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc == 0) {
        FUZZ_CHECK(c.user_id > 0);
        FUZZ_CHECK(c.token_version >= 0);
        FUZZ_CHECK(c.iat - 60 <= NOW && NOW < c.exp);
        FUZZ_CHECK(strlen(c.jti) == 32 && strspn(c.jti, "0123456789abcdef") == 32);
        jwt_t *j = NULL;
        FUZZ_CHECK(jwt_decode(&j, token, key, sizeof KEY - 1) == 0 && jwt_get_alg(j) == JWT_ALG_HS256);
        jwt_free(j);
    }
    FUZZ_CHECK(token_verify(key, sizeof KEY - 1, token, NOW, &again) == rc);
    FUZZ_CHECK(rc != 0 || memcmp(&c, &again, sizeof c) == 0);
    FUZZ_CHECK(token_verify(key, 0, token, NOW, &again) == -1); /* no key: nothing verifies */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t rest, first = fuzz_line(data, size, &rest);
    if (rest == size) { /* an Authorization value */
        char *value = fuzz_cstr(data, size);
        const char *t = token_from_header(value);
        if (t) {
            FUZZ_CHECK(t > value && strlen(t) <= TOKEN_MAX_LEN);
            verify(t);
        }
        verify(value);
        free(value);
        return 0;
    }
    if (first > 1024 || size - rest > 1024)
        return 0;
    /* HEADER\nPAYLOAD, signed here */
    char token[4 * 1024 + 128];
    size_t n = b64url(data, first, token);
    token[n++] = '.';
    n += b64url(data + rest, size - rest, token + n);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    if (!HMAC(EVP_sha256(), KEY, (int)(sizeof KEY - 1), (const unsigned char *)token, n, mac, &maclen))
        abort();
    token[n++] = '.';
    b64url(mac, maclen, token + n);
    verify(token);
    return 0;
}
