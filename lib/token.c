/* token: verifying our HS256 JWTs (REFERENCE.md section 3); token_issue.c signs them with libjwt 1.10.
 * The signature is checked here with nettle's HMAC-SHA256 (util's hmac_sha256), then libjwt parses the claims
 * without a key: the algorithm pin, every claim and the length cap are ours. Not libjwt's own check, which is
 * OpenSSL's HMAC: OpenSSL 3's first EVP call loads its provider and name tables, about 230 KiB of heap that a
 * FastCGI process keeps for life (README "Benchmarks", Memory), while nettle (already loaded: GnuTLS, under
 * Debian's libpq) needs no setup and allocates nothing. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include <json-c/json.h>
#include <jwt.h>
#include <nettle/base64.h>
#include <openssl/crypto.h>

#include "token.h"
#include "util.h"

/* Seconds of clock skew allowed on iat: a token issued by a machine whose clock runs slightly ahead. exp has
 * no leeway: the contract refuses an expired token, and the lifetime (JWT_TTL_SECONDS) is long. */
#define TOKEN_IAT_LEEWAY 60
#define TOKEN_INT_JSON_MAX 24

static int b64url_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Three non-empty base64url segments separated by two dots, nothing else (no padding, no whitespace). */
static int well_formed(const char *t, size_t len)
{
    size_t seg = 0, dots = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c == '.') {
            if (seg == 0 || ++dots > 2)
                return 0;
            seg = 0;
        } else if (b64url_char(c)) {
            seg++;
        } else {
            return 0;
        }
    }
    return dots == 2 && seg > 0;
}

/* Strict decimal: optional '-' (if allow_neg), no leading zeros, no sign '+', within long long. */
static int parse_int(const char *s, int allow_neg, long long *out)
{
    int neg = 0;
    unsigned long long v = 0, lim;
    const char *p = s;

    if (*p == '-') {
        if (!allow_neg)
            return -1;
        neg = 1;
        p++;
    }
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] != '\0'))
        return -1;
    lim = neg ? (unsigned long long)LLONG_MAX + 1 : (unsigned long long)LLONG_MAX;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (lim - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (neg)
        *out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
    else
        *out = (long long)v;
    return 0;
}

/* An integer claim. jwt_get_grant_int() cannot tell a missing or non-integer claim from 0 or -1 without errno
 * juggling, and reads 1.5 or "42" as 0: read the claim's JSON text instead and accept only a JSON integer. */
static int grant_int(jwt_t *j, const char *name, long long *out)
{
    char *js = jwt_get_grants_json(j, name);
    int rc = -1;

    if (!js || strlen(js) > TOKEN_INT_JSON_MAX)
        goto out;
    rc = parse_int(js, 1, out);
out:
    free(js);
    return rc;
}

static const char *grant_str(jwt_t *j, const char *name)
{
    /* NULL if missing (errno ENOENT) or not a JSON string (errno 0): both are a refusal here. */
    return jwt_get_grant(j, name);
}

/* The header segment (base64url, no padding) decodes to a JSON object whose "alg" is the string "HS256",
 * byte for byte. libjwt compares the name case-insensitively ("hs256" passes) and only after decoding; this
 * runs first. 1 ok, 0 refused. */
#define TOKEN_HEADER_MAX 512 /* bytes of a decoded header: ours is 27 */

static int header_alg_exact(const char *seg, size_t len)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char out[TOKEN_HEADER_MAX + 1];
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0, ok = 0;
    json_object *o = NULL, *alg = NULL;
    json_tokener *tk = NULL;

    if (len % 4 == 1 || len / 4 * 3 + 2 > TOKEN_HEADER_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        const char *p = memchr(tbl, seg[i], 64);
        if (!p)
            return 0;
        acc = (acc << 6) | (unsigned)(p - tbl);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    out[n] = '\0';
    if (memchr(out, '\0', n)) /* json-c would stop at an embedded NUL */
        goto out;
    tk = json_tokener_new();
    o = json_tokener_parse_ex(tk, (const char *)out, (int)n);
    if (!o || json_tokener_get_error(tk) != json_tokener_success || json_tokener_get_parse_end(tk) != n)
        goto out;
    ok = json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, "alg", &alg) &&
         json_object_is_type(alg, json_type_string) && json_object_get_string_len(alg) == 5 &&
         memcmp(json_object_get_string(alg), "HS256", 5) == 0;
out:
    json_object_put(o);
    if (tk)
        json_tokener_free(tk);
    return ok;
}

/* The signature segment is the base64url text (no padding) of HMAC-SHA256(key, "header.payload"), compared
 * in constant time as text, which is what libjwt does (so a non-canonical encoding of the right MAC is refused
 * too). token has two dots (well_formed). 1 ok, 0 refused. */
static int signature_ok(const unsigned char *key, size_t keylen, const char *token, size_t len)
{
    const char *sig = (const char *)memrchr(token, '.', len) + 1;
    size_t siglen = len - (size_t)(sig - token), n;
    struct base64_encode_ctx b64;
    uint8_t mac[HMAC_SHA256_LEN];
    char enc[BASE64_ENCODE_LENGTH(HMAC_SHA256_LEN) + BASE64_ENCODE_FINAL_LENGTH];

    hmac_sha256(key, keylen, token, (size_t)(sig - 1 - token), NULL, 0, mac);
    base64url_encode_init(&b64);
    n = base64_encode_update(&b64, enc, sizeof mac, mac);
    n += base64_encode_final(&b64, enc + n);
    while (n > 0 && enc[n - 1] == '=')
        n--;
    return siglen == n && CRYPTO_memcmp(sig, enc, n) == 0;
}

/* Everything about a token that depends only on its exact bytes and the key: structure, signature, algorithm
 * and claim types. The time checks are the caller's. token[0..len) is well_formed. */
static int verify_static(const unsigned char *key, size_t keylen, const char *token, size_t len, token_claims_t *out)
{
    jwt_t *j = NULL;
    token_claims_t c;
    const char *s;
    long long v;
    int rc = -1;

    memset(&c, 0, sizeof c);
    if (!header_alg_exact(token, strcspn(token, ".")) || !signature_ok(key, keylen, token, len))
        goto out;
    /* Only parsing is left to libjwt: without a key it checks no signature (and reports JWT_ALG_NONE), which
     * the two checks above have done, pinned to HS256. It still refuses a header "typ" other than JWT. */
    if (jwt_decode(&j, token, NULL, 0) != 0 || !j)
        goto out;

    s = grant_str(j, "typ_use");
    if (!s || strcmp(s, TOKEN_USE) != 0)
        goto out;

    s = grant_str(j, "sub"); /* RFC 7519: a string; ours is a positive decimal user id */
    if (!s || strlen(s) > 19 || parse_int(s, 0, &v) != 0 || v <= 0)
        goto out;
    c.user_id = v;

    if (grant_int(j, "iat", &c.iat) != 0 || c.iat < 0)
        goto out;
    if (grant_int(j, "exp", &c.exp) != 0 || c.exp < 0)
        goto out;

    if (grant_int(j, "tv", &v) != 0 || v < 0 || v > INT_MAX)
        goto out;
    c.token_version = (int)v;

    /* RFC 7519's nbf, when present, is honoured (token_verify); RFC 7515's crit names header extensions a
     * recipient must understand, and this one understands none. */
    char *js = jwt_get_grants_json(j, "nbf");
    int has = js != NULL;
    free(js);
    if (has && (grant_int(j, "nbf", &c.nbf) != 0 || c.nbf < 0))
        goto out;
    js = jwt_get_headers_json(j, "crit");
    has = js != NULL;
    free(js);
    if (has)
        goto out;

    s = grant_str(j, "jti");
    if (!s || strlen(s) != 2 * TOKEN_JTI_BYTES)
        goto out;
    for (size_t i = 0; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            goto out;
    memcpy(c.jti, s, sizeof c.jti);

    *out = c;
    rc = 0;
out:
    jwt_free(j);
    return rc;
}

/* A small direct-mapped cache of token strings this process has already verified (signature and claims).
 * A hit needs the exact same bytes and the same key, so it proves exactly what a fresh verification would;
 * expiry and revocation are still checked on every use. Clients send the same token many times (polling),
 * which makes the HMAC and libjwt's JSON work the cost worth skipping. */
#define CACHE_SLOTS 128
#define CACHE_TOKEN_MAX 512

static struct cache_slot {
    uint64_t hash, keyhash;
    size_t len;
    token_claims_t claims;
    char token[CACHE_TOKEN_MAX];
} verified[CACHE_SLOTS];

static uint64_t fnv1a(const void *p, size_t n, uint64_t h)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

int token_verify(const unsigned char *key, size_t keylen, const char *token, time_t now, token_claims_t *out)
{
    token_claims_t c;
    long long t = (long long)now;
    size_t len;
    struct cache_slot *slot = NULL;
    uint64_t h = 0, kh = 0;

    if (out)
        memset(out, 0, sizeof *out);
    /* An empty key would make every signature a public function of the token. */
    if (!key || keylen == 0 || keylen > INT_MAX || !token || !out)
        return -1;
    len = strnlen(token, TOKEN_MAX_LEN + 1);
    if (len > TOKEN_MAX_LEN || !well_formed(token, len))
        return -1;
    if (len <= CACHE_TOKEN_MAX) {
        kh = fnv1a(key, keylen, 0xcbf29ce484222325ULL);
        h = fnv1a(token, len, kh);
        slot = &verified[h % CACHE_SLOTS];
    }
    if (slot && slot->hash == h && slot->keyhash == kh && slot->len == len &&
        CRYPTO_memcmp(slot->token, token, len) == 0) {
        c = slot->claims;
    } else {
        if (verify_static(key, keylen, token, len, &c) != 0)
            return -1;
        if (slot) {
            slot->hash = h;
            slot->keyhash = kh;
            slot->len = len;
            slot->claims = c;
            memcpy(slot->token, token, len);
        }
    }
    if (c.iat - TOKEN_IAT_LEEWAY > t || t >= c.exp || c.nbf - TOKEN_IAT_LEEWAY > t)
        return -1;
    *out = c;
    return 0;
}

const char *token_from_header(const char *value)
{
    static const char scheme[] = "bearer";
    const char *p, *tok;
    size_t n = 0;

    if (!value)
        return NULL;
    for (size_t i = 0; i < sizeof scheme - 1; i++) {
        char ch = value[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if (ch != scheme[i])
            return NULL; /* also stops at the NUL of a short value */
    }
    p = value + sizeof scheme - 1;
    if (*p != ' ')
        return NULL;
    while (*p == ' ')
        p++;
    tok = p;
    for (; tok[n]; n++) {
        unsigned char ch = (unsigned char)tok[n];
        if (ch <= 0x20 || ch >= 0x7f || n >= TOKEN_MAX_LEN)
            return NULL;
    }
    return n > 0 ? tok : NULL;
}
