/* otp: 6-digit one-time codes from OpenSSL's CSPRNG, stored as HMAC-SHA256(key, purpose ":" mobile ":" code)
 * and compared in constant time (REFERENCE.md 7.2, 7.4). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "otp.h"
#include "util.h"

_Static_assert(OTP_HASH_LEN == HMAC_SHA256_LEN, "an OTP digest is one HMAC-SHA256");

/* Largest multiple of 10^6 not above 2^32: values at or above it would make low codes more likely. */
#define OTP_REJECT_FROM 4294000000u
#define OTP_MODULUS 1000000u
/* Ceilings for the MAC input parts (purposes are short words, mobiles E.164 at most 16 characters). */
#define OTP_PART_MAX 64

int otp_generate(char out[OTP_DIGITS + 1])
{
    uint32_t v = 0;
    int rc = -1;

    out[0] = '\0';
    for (;;) {
        unsigned char b[4];
        if (RAND_bytes(b, (int)sizeof b) != 1)
            goto out;
        /* big-endian; the byte order does not matter for uniformity */
        v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
        explicit_bzero(b, sizeof b);
        if (v < OTP_REJECT_FROM)
            break;
    }
    if (snprintf(out, OTP_DIGITS + 1, "%06u", (unsigned)(v % OTP_MODULUS)) != OTP_DIGITS) {
        out[0] = '\0';
        goto out;
    }
    rc = 0;
out:
    return rc;
}

/* A part is usable if it is present, not longer than OTP_PART_MAX and (for the parts before the last) has no
 * ':' so that the joined message is unambiguous. */
static int part_ok(const char *s, int allow_colon, size_t *len)
{
    if (!s)
        return 0;
    *len = strnlen(s, OTP_PART_MAX + 1);
    if (*len > OTP_PART_MAX)
        return 0;
    if (!allow_colon && memchr(s, ':', *len))
        return 0;
    return 1;
}

int otp_hash(const unsigned char *key, size_t keylen, const char *purpose, const char *mobile, const char *code,
             unsigned char out[OTP_HASH_LEN])
{
    unsigned char msg[3 * OTP_PART_MAX + 2];
    size_t plen, mlen, clen, n = 0;
    int rc = -1;

    if (!key || keylen == 0 || !out)
        goto out;
    if (!part_ok(purpose, 0, &plen) || plen == 0 || !part_ok(mobile, 0, &mlen) || mlen == 0 || !part_ok(code, 1, &clen))
        goto out;
    memcpy(msg + n, purpose, plen);
    n += plen;
    msg[n++] = ':';
    memcpy(msg + n, mobile, mlen);
    n += mlen;
    msg[n++] = ':';
    memcpy(msg + n, code, clen);
    n += clen;
    hmac_sha256(key, keylen, msg, n, NULL, 0, out);
    rc = 0;
out:
    explicit_bzero(msg, sizeof msg); /* holds the code */
    return rc;
}

static int is_code(const char *code)
{
    if (!code)
        return 0;
    for (int i = 0; i < OTP_DIGITS; i++)
        if (code[i] < '0' || code[i] > '9')
            return 0; /* also stops at a NUL before 6 digits */
    return code[OTP_DIGITS] == '\0';
}

int otp_check(const unsigned char *key, size_t keylen, const char *purpose, const char *mobile, const char *code,
              const unsigned char *stored, size_t stored_len)
{
    unsigned char digest[OTP_HASH_LEN];
    int ok = 0;

    if (!stored || stored_len != OTP_HASH_LEN || !is_code(code))
        goto out;
    if (otp_hash(key, keylen, purpose, mobile, code, digest) != 0)
        goto out;
    ok = CRYPTO_memcmp(digest, stored, OTP_HASH_LEN) == 0;
out:
    explicit_bzero(digest, sizeof digest);
    return ok;
}
