/* Unit tests for lib/token.c and lib/token_issue.c (HS256 JWTs: issued with libjwt 1.10, verified with nettle's
 * HMAC; hand-made tokens are signed with OpenSSL's; Authorization header parsing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "token.h"

#define NOW ((time_t)1800000000)
#define TTL 86400L

static const unsigned char KEY[32] = {0x8f, 0x1e, 0x3a, 0x77, 0x02, 0xc4, 0x59, 0xbd, 0x6e, 0x10, 0xf3,
                                      0x2b, 0x94, 0x48, 0xd1, 0x05, 0x7a, 0xe6, 0x33, 0x9c, 0x21, 0x5f,
                                      0xb8, 0x0d, 0x4c, 0x97, 0xea, 0x16, 0x62, 0xaf, 0x38, 0xc9};
/* KEY with its last byte changed */
static const unsigned char KEY2[32] = {0x8f, 0x1e, 0x3a, 0x77, 0x02, 0xc4, 0x59, 0xbd, 0x6e, 0x10, 0xf3,
                                       0x2b, 0x94, 0x48, 0xd1, 0x05, 0x7a, 0xe6, 0x33, 0x9c, 0x21, 0x5f,
                                       0xb8, 0x0d, 0x4c, 0x97, 0xea, 0x16, 0x62, 0xaf, 0x38, 0xca};

/* ---- helpers: base64url and hand-made tokens ---- */

static char *b64url(const unsigned char *in, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(n * 4 / 3 + 4), *p = out;
    assert_non_null(out);
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *p++ = tbl[v >> 18];
        *p++ = tbl[(v >> 12) & 63];
        *p++ = tbl[(v >> 6) & 63];
        *p++ = tbl[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *p++ = tbl[v >> 18];
        *p++ = tbl[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *p++ = tbl[v >> 18];
        *p++ = tbl[(v >> 12) & 63];
        *p++ = tbl[(v >> 6) & 63];
    }
    *p = '\0';
    return out;
}

static char *b64url_str(const char *s)
{
    return b64url((const unsigned char *)s, strlen(s));
}

/* Decode one unpadded base64url segment (test-side, for inspecting what token_issue wrote). */
static char *b64url_decode(const char *s, size_t n)
{
    char *out = calloc(1, n + 1), *p = out;
    uint32_t acc = 0;
    int bits = 0;
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        const char c = s[i];
        int v = 0;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '-')
            v = 62;
        else if (c == '_')
            v = 63;
        else
            fail_msg("not base64url: %c", c);
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *p++ = (char)((acc >> bits) & 0xFF);
        }
    }
    return out;
}

static char *join3(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 3;
    char *out = malloc(n);
    assert_non_null(out);
    snprintf(out, n, "%s.%s.%s", a, b, c);
    return out;
}

/* HS256 by hand: header and payload segments exactly as given, signature = base64url(HMAC-SHA256(key,
 * hdr "." payload)). Independent of libjwt's encoder. */
static char *hand_sign(const char *hdr_seg, const char *pl_seg, const unsigned char *key, size_t keylen)
{
    size_t n = strlen(hdr_seg) + strlen(pl_seg) + 2;
    char *msg = malloc(n);
    unsigned char mac[32];
    unsigned int maclen = 0;
    assert_non_null(msg);
    snprintf(msg, n, "%s.%s", hdr_seg, pl_seg);
    assert_non_null(HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), mac, &maclen));
    assert_int_equal(maclen, 32);
    char *sig = b64url(mac, 32);
    char *t = join3(hdr_seg, pl_seg, sig);
    free(sig);
    free(msg);
    return t;
}

/* Sign arbitrary claims with libjwt (so tests can make tokens token_issue never would). */
static char *sign_claims(jwt_alg_t alg, const unsigned char *key, size_t keylen, const char *claims_json)
{
    jwt_t *j = NULL;
    assert_int_equal(jwt_new(&j), 0);
    assert_int_equal(jwt_add_grants_json(j, claims_json), 0);
    assert_int_equal(jwt_set_alg(j, alg, key, (int)keylen), 0);
    char *t = jwt_encode_str(j);
    assert_non_null(t);
    jwt_free(j);
    return t;
}

/* Valid claims for NOW with the given fields replaced by a raw JSON fragment (or removed when NULL). */
static char *claims_with(const char *sub, const char *iat, const char *exp, const char *tv, const char *typ_use,
                         const char *jti)
{
    static char buf[1024];
    size_t n = 0;
    const char *names[] = {"sub", "iat", "exp", "tv", "typ_use", "jti"};
    const char *vals[] = {sub, iat, exp, tv, typ_use, jti};
    buf[n++] = '{';
    for (int i = 0; i < 6; i++) {
        if (!vals[i])
            continue;
        int w = snprintf(buf + n, sizeof buf - n, "%s\"%s\":%s", n > 1 ? "," : "", names[i], vals[i]);
        assert_true(w > 0 && (size_t)w < sizeof buf - n);
        n += (size_t)w;
    }
    assert_true(n + 2 <= sizeof buf);
    buf[n++] = '}';
    buf[n] = '\0';
    return buf;
}

#define GOOD_SUB "\"42\""
#define GOOD_IAT "1800000000"
#define GOOD_EXP "1800086400"
#define GOOD_TV "3"
#define GOOD_USE "\"access\""
#define GOOD_JTI "\"00112233445566778899aabbccddeeff\""
#define GOOD_CLAIMS claims_with(GOOD_SUB, GOOD_IAT, GOOD_EXP, GOOD_TV, GOOD_USE, GOOD_JTI)

static int verify(const char *tok)
{
    token_claims_t c;
    return token_verify(KEY, sizeof KEY, tok, NOW, &c);
}

static int verify_claims_json(const char *json)
{
    char *t = sign_claims(JWT_ALG_HS256, KEY, sizeof KEY, json);
    int rc = verify(t);
    free(t);
    return rc;
}

/* ---- verify without OpenSSL ---- */

/* OpenSSL's allocations, counted from main() on (CRYPTO_set_mem_functions works only before its first one). */
static int g_openssl_hooked;
static unsigned long g_openssl_allocs;

static void *count_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    g_openssl_allocs++;
    return malloc(n);
}

static void *count_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    g_openssl_allocs++;
    return realloc(p, n);
}

static void count_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    free(p);
}

/* GOOD_CLAIMS under {"alg":"HS256","typ":"JWT"}, signed with KEY by Python's hmac module */
#define PRESIGNED                                                                                                      \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiIsImlhdCI6MTgwMDAwMDAwMCwiZXhwIjoxODAwMDg2NDAwLCJ0diI6Myw"     \
    "idHlwX3VzZSI6ImFjY2VzcyIsImp0aSI6IjAwMTEyMjMzNDQ1NTY2Nzc4ODk5YWFiYmNjZGRlZWZmIn0.fGlxpE6AeV8wkjNMQcAz0HOz16YS"    \
    "u44qmQPKK4CNDJo"

/* Verifying a token starts nothing in OpenSSL: its first EVP, HMAC or RAND call loads its provider tables,
 * about 230 KiB that a FastCGI process keeps (lib/token.c). Runs first, before any other test uses OpenSSL;
 * then OpenSSL's HMAC (what libjwt's keyed jwt_decode calls) shows that the count does move. */
static void test_verify_leaves_openssl_alone(void **state)
{
    (void)state;
    token_claims_t c;
    unsigned char mac[32];
    unsigned int maclen = 0;

    assert_true(g_openssl_hooked);
    assert_int_equal(token_verify(KEY, sizeof KEY, PRESIGNED, NOW, &c), 0);
    assert_int_equal(c.user_id, 42);
    assert_int_equal(c.token_version, 3);
    assert_int_equal(token_verify(KEY2, sizeof KEY2, PRESIGNED, NOW, &c), -1);
    assert_int_equal(g_openssl_allocs, 0);
    assert_non_null(HMAC(EVP_sha256(), KEY, (int)sizeof KEY, (const unsigned char *)"x", 1, mac, &maclen));
    assert_true(g_openssl_allocs > 0);
}

/* ---- issue + verify ---- */

static int is_hex32(const char *s)
{
    if (strlen(s) != 32)
        return 0;
    for (int i = 0; i < 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static void test_round_trip(void **state)
{
    (void)state;
    token_claims_t c;
    char *t = token_issue(KEY, sizeof KEY, 42, 3, NOW, TTL);
    assert_non_null(t);
    assert_true(strlen(t) <= TOKEN_MAX_LEN);
    memset(&c, 0x55, sizeof c);
    assert_int_equal(token_verify(KEY, sizeof KEY, t, NOW, &c), 0);
    assert_int_equal(c.user_id, 42);
    assert_int_equal(c.token_version, 3);
    assert_int_equal(c.iat, (long long)NOW);
    assert_int_equal(c.exp, (long long)NOW + TTL);
    assert_true(is_hex32(c.jti));
    /* still valid just before expiry, refused from exp on (no leeway) */
    assert_int_equal(token_verify(KEY, sizeof KEY, t, NOW + TTL - 1, &c), 0);
    assert_int_equal(token_verify(KEY, sizeof KEY, t, NOW + TTL, &c), -1);
    assert_int_equal(token_verify(KEY, sizeof KEY, t, NOW + TTL + 59, &c), -1);
    assert_int_equal(token_verify(KEY, sizeof KEY, t, NOW + TTL + 100000, &c), -1);
    /* a failed verify leaves no claims behind */
    assert_int_equal(c.user_id, 0);
    assert_int_equal(c.jti[0], '\0');
    free(t);

    /* big ids and versions survive */
    t = token_issue(KEY, sizeof KEY, 9007199254740993LL, 2147483647, NOW, 60);
    assert_non_null(t);
    assert_int_equal(token_verify(KEY, sizeof KEY, t, NOW, &c), 0);
    assert_int_equal(c.user_id, 9007199254740993LL);
    assert_int_equal(c.token_version, 2147483647);
    free(t);
    t = token_issue(KEY, sizeof KEY, 1, 0, NOW, 1);
    assert_non_null(t);
    assert_int_equal(token_verify(KEY, sizeof KEY, t, NOW, &c), 0);
    assert_int_equal(c.user_id, 1);
    assert_int_equal(c.token_version, 0);
    free(t);
}

/* What is inside: header HS256, sub as a JSON string, integer iat/exp/tv, random jti, typ_use "access". */
static void test_issued_contents(void **state)
{
    (void)state;
    char *t = token_issue(KEY, sizeof KEY, 77, 5, NOW, TTL);
    assert_non_null(t);
    const char *d1 = strchr(t, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    assert_non_null(d2);
    assert_null(strchr(d2 + 1, '.'));
    char *hdr = b64url_decode(t, (size_t)(d1 - t));
    char *pl = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1));
    assert_non_null(strstr(hdr, "\"alg\":\"HS256\""));
    assert_non_null(strstr(pl, "\"sub\":\"77\""));
    assert_non_null(strstr(pl, "\"iat\":1800000000"));
    assert_non_null(strstr(pl, "\"exp\":1800086400"));
    assert_non_null(strstr(pl, "\"tv\":5"));
    assert_non_null(strstr(pl, "\"typ_use\":\"access\""));
    assert_non_null(strstr(pl, "\"jti\":\""));
    free(hdr);
    free(pl);

    /* libjwt itself agrees on the claim types */
    jwt_t *j = NULL;
    assert_int_equal(jwt_decode(&j, t, KEY, sizeof KEY), 0);
    assert_int_equal(jwt_get_alg(j), JWT_ALG_HS256);
    assert_string_equal(jwt_get_grant(j, "sub"), "77");
    assert_int_equal(jwt_get_grant_int(j, "exp"), 1800086400L);
    jwt_free(j);

    /* jti is fresh per token */
    token_claims_t a, b;
    char *t2 = token_issue(KEY, sizeof KEY, 77, 5, NOW, TTL);
    assert_non_null(t2);
    assert_string_not_equal(t, t2);
    assert_int_equal(token_verify(KEY, sizeof KEY, t, NOW, &a), 0);
    assert_int_equal(token_verify(KEY, sizeof KEY, t2, NOW, &b), 0);
    assert_string_not_equal(a.jti, b.jti);
    free(t);
    free(t2);
}

static void test_issue_bad_args(void **state)
{
    (void)state;
    assert_null(token_issue(NULL, 32, 1, 0, NOW, TTL));
    assert_null(token_issue(KEY, 0, 1, 0, NOW, TTL));
    assert_null(token_issue(KEY, sizeof KEY, 0, 0, NOW, TTL));
    assert_null(token_issue(KEY, sizeof KEY, -5, 0, NOW, TTL));
    assert_null(token_issue(KEY, sizeof KEY, 1, -1, NOW, TTL));
    assert_null(token_issue(KEY, sizeof KEY, 1, 0, NOW, 0));
    assert_null(token_issue(KEY, sizeof KEY, 1, 0, NOW, -10));
    assert_null(token_issue(KEY, sizeof KEY, 1, 0, (time_t)-1, TTL));
    char *t = token_issue(KEY, 1, 1, 0, NOW, TTL); /* one byte is the documented minimum */
    assert_non_null(t);
    assert_int_equal(token_verify(KEY, 1, t, NOW, &(token_claims_t){0}), 0);
    free(t);
}

/* ---- verify: keys and signatures ---- */

static void test_wrong_key(void **state)
{
    (void)state;
    token_claims_t c;
    char *t = token_issue(KEY, sizeof KEY, 42, 0, NOW, TTL);
    assert_non_null(t);
    assert_int_equal(token_verify(KEY2, sizeof KEY2, t, NOW, &c), -1);
    assert_int_equal(token_verify(KEY, sizeof KEY - 1, t, NOW, &c), -1); /* a prefix of the key */
    /* no key: libjwt would accept the token unverified, we must not */
    assert_int_equal(token_verify(NULL, 0, t, NOW, &c), -1);
    assert_int_equal(token_verify(KEY, 0, t, NOW, &c), -1);
    assert_int_equal(token_verify(NULL, sizeof KEY, t, NOW, &c), -1);
    /* sanity: the right key works, so the refusals above are about the key */
    assert_int_equal(token_verify(KEY, sizeof KEY, t, NOW, &c), 0);
    /* bad call shapes */
    assert_int_equal(token_verify(KEY, sizeof KEY, t, NOW, NULL), -1);
    assert_int_equal(token_verify(KEY, sizeof KEY, NULL, NOW, &c), -1);
    free(t);
}

static void test_tampered_payload(void **state)
{
    (void)state;
    char *t = token_issue(KEY, sizeof KEY, 42, 0, NOW, TTL);
    assert_non_null(t);
    char *d1 = strchr(t, '.'), *d2 = strchr(d1 + 1, '.');
    assert_int_equal(verify(t), 0);

    /* same header and signature, payload rewritten to another user with the same other claims */
    char *hdr = strndup(t, (size_t)(d1 - t));
    char *pl = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1));
    char *p = strstr(pl, "\"sub\":\"42\"");
    assert_non_null(p);
    p[8] = '1'; /* "sub":"12" */
    char *pl64 = b64url_str(pl);
    char *forged = join3(hdr, pl64, d2 + 1);
    assert_int_equal(verify(forged), -1);
    free(forged);
    free(pl64);

    /* also the token version bumped back */
    free(pl);
    pl = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1));
    p = strstr(pl, "\"tv\":0");
    assert_non_null(p);
    p[5] = '7';
    pl64 = b64url_str(pl);
    forged = join3(hdr, pl64, d2 + 1);
    assert_int_equal(verify(forged), -1);
    free(forged);
    free(pl64);

    /* every single character of the payload changed in turn */
    for (char *q = d1 + 1; q < d2; q++) {
        char saved = *q;
        *q = saved == 'A' ? 'B' : 'A';
        if (verify(t) != -1)
            fail_msg("payload change at %td accepted", q - t);
        *q = saved;
    }
    /* and the header */
    for (char *q = t; q < d1; q++) {
        char saved = *q;
        *q = saved == 'A' ? 'B' : 'A';
        if (verify(t) != -1)
            fail_msg("header change at %td accepted", q - t);
        *q = saved;
    }
    assert_int_equal(verify(t), 0);
    free(pl);
    free(hdr);
    free(t);
}

static void test_tampered_signature(void **state)
{
    (void)state;
    char *t = token_issue(KEY, sizeof KEY, 42, 0, NOW, TTL);
    assert_non_null(t);
    char *sig = strrchr(t, '.') + 1;
    size_t n = strlen(sig);
    assert_int_equal(n, 43); /* 32-byte HMAC, unpadded */
    for (size_t i = 0; i < n; i++) {
        char saved = sig[i];
        sig[i] = saved == 'x' ? 'y' : 'x';
        if (verify(t) != -1)
            fail_msg("signature change at %zu accepted", i);
        sig[i] = saved;
    }
    /* a signature from another token of the same key */
    char *other = token_issue(KEY, sizeof KEY, 43, 0, NOW, TTL);
    assert_non_null(other);
    char *mixed = malloc(strlen(t) + 64);
    assert_non_null(mixed);
    memcpy(mixed, t, (size_t)(sig - t));
    strcpy(mixed + (sig - t), strrchr(other, '.') + 1);
    assert_int_equal(verify(mixed), -1);
    /* padding appended to an otherwise valid signature */
    snprintf(mixed, strlen(t) + 64, "%s=", t);
    assert_int_equal(verify(mixed), -1);
    /* the same 32 bytes written non-canonically: the last character's two unused low bits set */
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    strcpy(mixed, t);
    char *last = mixed + strlen(mixed) - 1;
    int v = (int)(strchr(abc, *last) - abc);
    assert_int_equal(v & 3, 0);
    for (int low = 1; low < 4; low++) {
        *last = abc[v | low];
        assert_int_equal(verify(mixed), -1);
    }
    free(mixed);
    free(other);
    assert_int_equal(verify(t), 0);
    free(t);
}

static void test_truncated(void **state)
{
    (void)state;
    char *t = token_issue(KEY, sizeof KEY, 42, 0, NOW, TTL);
    assert_non_null(t);
    size_t n = strlen(t);
    char *cut = malloc(n + 1);
    assert_non_null(cut);
    for (size_t k = 0; k < n; k++) {
        memcpy(cut, t, k);
        cut[k] = '\0';
        if (verify(cut) != -1)
            fail_msg("prefix of length %zu accepted", k);
    }
    /* the signature dropped, with and without its dot */
    char *d2 = strrchr(t, '.');
    memcpy(cut, t, (size_t)(d2 - t) + 1);
    cut[d2 - t + 1] = '\0';
    assert_int_equal(verify(cut), -1);
    cut[d2 - t] = '\0';
    assert_int_equal(verify(cut), -1);
    free(cut);
    free(t);
}

/* A token made without libjwt's encoder verifies (interoperability), and one whose signature is valid over
 * non-canonical segments (base64 padding, standard alphabet) is refused before libjwt sees it. */
static void test_hand_made_tokens(void **state)
{
    (void)state;
    token_claims_t c;
    char *h = b64url_str("{\"alg\":\"HS256\",\"typ\":\"JWT\"}");
    char *p = b64url_str(GOOD_CLAIMS);
    char *t = hand_sign(h, p, KEY, sizeof KEY);
    assert_int_equal(token_verify(KEY, sizeof KEY, t, NOW, &c), 0);
    assert_int_equal(c.user_id, 42);
    assert_int_equal(c.token_version, 3);
    assert_string_equal(c.jti, "00112233445566778899aabbccddeeff");
    free(t);
    /* the same signed with another key */
    t = hand_sign(h, p, KEY2, sizeof KEY2);
    assert_int_equal(verify(t), -1);
    free(t);
    /* the header's typ: absent or JWT in any case passes; any other is refused (libjwt's rule, still applied
     * when it parses a token whose signature token.c has checked) */
    const struct {
        const char *header;
        int rc;
    } typs[] = {
        {"{\"alg\":\"HS256\"}", 0},
        {"{\"alg\":\"HS256\",\"typ\":\"jwt\"}", 0},
        {"{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", -1},
        {"{\"alg\":\"HS256\",\"typ\":\"JWS\"}", -1},
    };
    for (size_t i = 0; i < sizeof typs / sizeof typs[0]; i++) {
        char *th = b64url_str(typs[i].header);
        t = hand_sign(th, p, KEY, sizeof KEY);
        if (verify(t) != typs[i].rc)
            fail_msg("header %s: want %d", typs[i].header, typs[i].rc);
        free(t);
        free(th);
    }

    /* a "crit" header names extensions the recipient must understand: none is, so any is refused */
    char *ch = b64url_str("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"crit\":[\"exp\"]}");
    t = hand_sign(ch, p, KEY, sizeof KEY);
    assert_int_equal(verify(t), -1);
    free(t);
    free(ch);

    /* padded segments, correctly signed over the padded text */
    size_t hl = strlen(h), pl = strlen(p);
    char *hp = malloc(hl + 4), *pp = malloc(pl + 4);
    assert_non_null(hp);
    assert_non_null(pp);
    snprintf(hp, hl + 4, "%s%s", h, (hl % 4) == 2 ? "==" : (hl % 4) == 3 ? "=" : "");
    snprintf(pp, pl + 4, "%s%s", p, (pl % 4) == 2 ? "==" : (pl % 4) == 3 ? "=" : "");
    assert_true(strcmp(hp, h) != 0 || strcmp(pp, p) != 0); /* at least one really is padded */
    t = hand_sign(hp, pp, KEY, sizeof KEY);
    assert_int_equal(verify(t), -1);
    free(t);
    /* whitespace inside a segment, correctly signed */
    char *ws = malloc(hl + 2);
    assert_non_null(ws);
    memcpy(ws, h, 4);
    ws[4] = ' ';
    memcpy(ws + 5, h + 4, hl - 4 + 1);
    t = hand_sign(ws, p, KEY, sizeof KEY);
    assert_int_equal(verify(t), -1);
    free(t);
    free(ws);
    free(hp);
    free(pp);
    free(p);
    free(h);
}

/* ---- verify: algorithm pinning ---- */

static void test_alg_none(void **state)
{
    (void)state;
    char *good = token_issue(KEY, sizeof KEY, 42, 0, NOW, TTL);
    assert_non_null(good);
    const char *d1 = strchr(good, '.'), *d2 = strchr(d1 + 1, '.');
    char *payload = strndup(d1 + 1, (size_t)(d2 - d1 - 1));
    const char *headers[] = {"{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"alg\":\"none\"}",
                             "{\"alg\":\"None\",\"typ\":\"JWT\"}", "{\"alg\":\"NONE\",\"typ\":\"JWT\"}",
                             "{\"typ\":\"JWT\"}"};

    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char *h = b64url_str(headers[i]);
        char *empty_sig = join3(h, payload, "");
        char *with_sig = join3(h, payload, d2 + 1);
        if (verify(empty_sig) != -1)
            fail_msg("alg none with empty signature accepted: %s", headers[i]);
        if (verify(with_sig) != -1)
            fail_msg("alg none with a signature accepted: %s", headers[i]);
        free(empty_sig);
        free(with_sig);
        free(h);
    }

    /* sanity: the hand-made token is a real unsecured JWT (libjwt takes it when given no key) */
    char *h = b64url_str(headers[0]);
    char *none = join3(h, payload, "");
    jwt_t *j = NULL;
    assert_int_equal(jwt_decode(&j, none, NULL, 0), 0);
    assert_int_equal(jwt_get_alg(j), JWT_ALG_NONE);
    assert_string_equal(jwt_get_grant(j, "sub"), "42");
    jwt_free(j);
    /* and our verify refuses it even with a NULL key */
    assert_int_equal(token_verify(NULL, 0, none, NOW, &(token_claims_t){0}), -1);
    free(none);
    free(h);
    free(payload);
    free(good);
}

static void test_other_hmac_algs_refused(void **state)
{
    (void)state;
    const jwt_alg_t algs[] = {JWT_ALG_HS384, JWT_ALG_HS512};
    for (size_t i = 0; i < 2; i++) {
        char *t = sign_claims(algs[i], KEY, sizeof KEY, GOOD_CLAIMS);
        /* libjwt verifies it with our key: only our pin stops it */
        jwt_t *j = NULL;
        assert_int_equal(jwt_decode(&j, t, KEY, sizeof KEY), 0);
        assert_int_equal(jwt_get_alg(j), algs[i]);
        jwt_free(j);
        assert_int_equal(verify(t), -1);
        free(t);
    }
    /* the same claims under HS256 pass, so the refusal above is the algorithm */
    assert_int_equal(verify_claims_json(GOOD_CLAIMS), 0);

    /* an HS256 token re-labelled HS512 in the header */
    char *t = sign_claims(JWT_ALG_HS256, KEY, sizeof KEY, GOOD_CLAIMS);
    const char *d1 = strchr(t, '.'), *d2 = strchr(d1 + 1, '.');
    char *h = b64url_str("{\"alg\":\"HS512\",\"typ\":\"JWT\"}");
    char *pl = strndup(d1 + 1, (size_t)(d2 - d1 - 1));
    char *forged = join3(h, pl, d2 + 1);
    assert_int_equal(verify(forged), -1);
    free(forged);
    free(pl);
    free(h);
    free(t);
}

/* The header's alg must be exactly "HS256" (issue 16): libjwt reads the name case-insensitively, so a token
 * labelled "hs256" (or "Hs256") and correctly signed with HMAC-SHA256 would pass its check. */
static void test_alg_exact_case(void **state)
{
    (void)state;
    char *p = b64url_str(GOOD_CLAIMS);
    static const char *headers[] = {
        "{\"alg\":\"hs256\",\"typ\":\"JWT\"}",
        "{\"alg\":\"Hs256\",\"typ\":\"JWT\"}",
        "{\"alg\":\"HS256 \"}",
        "{\"alg\":\"HS2560\"}",
        "{\"alg\":[\"HS256\"]}",
        "{\"typ\":\"JWT\"}",
        "{\"alg\":null}",
        "[\"HS256\"]",
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char *h = b64url_str(headers[i]);
        char *t = hand_sign(h, p, KEY, sizeof KEY);
        if (verify(t) != -1)
            fail_msg("header %s accepted", headers[i]);
        free(t);
        free(h);
    }
    /* control: the exact name, hand-signed the same way, passes */
    char *h = b64url_str("{\"typ\":\"JWT\",\"alg\":\"HS256\"}");
    char *t = hand_sign(h, p, KEY, sizeof KEY);
    assert_int_equal(verify(t), 0);
    free(t);
    free(h);
    free(p);
}

/* ---- verify: claims ---- */

static void test_exp(void **state)
{
    (void)state;
    /* no leeway on exp: exp = NOW+1 ok, NOW and earlier refused (iat earlier still) */
    assert_int_equal(verify_claims_json(claims_with(GOOD_SUB, "1799990000", "1800000001", GOOD_TV, GOOD_USE, GOOD_JTI)),
                     0);
    assert_int_equal(verify_claims_json(claims_with(GOOD_SUB, "1799990000", "1800000000", GOOD_TV, GOOD_USE, GOOD_JTI)),
                     -1);
    assert_int_equal(verify_claims_json(claims_with(GOOD_SUB, "1799990000", "1799999970", GOOD_TV, GOOD_USE, GOOD_JTI)),
                     -1);
    assert_int_equal(verify_claims_json(claims_with(GOOD_SUB, "1000", "2000", GOOD_TV, GOOD_USE, GOOD_JTI)), -1);
    /* missing or not an integer */
    static const char *bad[] = {NULL,   "\"1800086400\"", "1800086400.5", "1.8000864e9",
                                "null", "true",           "[1800086400]", "-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (verify_claims_json(claims_with(GOOD_SUB, GOOD_IAT, bad[i], GOOD_TV, GOOD_USE, GOOD_JTI)) != -1)
            fail_msg("exp %s accepted", bad[i] ? bad[i] : "(missing)");

    /* an issued token that expired */
    char *t = token_issue(KEY, sizeof KEY, 42, 0, NOW - 1000, 100);
    assert_non_null(t);
    assert_int_equal(verify(t), -1);
    free(t);
}

static void test_iat(void **state)
{
    (void)state;
    /* iat up to 60 s ahead is clock skew, more is refused */
    assert_int_equal(verify_claims_json(claims_with(GOOD_SUB, "1800000060", GOOD_EXP, GOOD_TV, GOOD_USE, GOOD_JTI)), 0);
    assert_int_equal(verify_claims_json(claims_with(GOOD_SUB, "1800000061", GOOD_EXP, GOOD_TV, GOOD_USE, GOOD_JTI)),
                     -1);
    assert_int_equal(verify_claims_json(claims_with(GOOD_SUB, "1900000000", "1900086400", GOOD_TV, GOOD_USE, GOOD_JTI)),
                     -1);
    /* issued in the future by token_issue itself */
    char *t = token_issue(KEY, sizeof KEY, 42, 0, NOW + 3600, TTL);
    assert_non_null(t);
    assert_int_equal(verify(t), -1);
    free(t);
    static const char *bad[] = {NULL, "\"1800000000\"", "1800000000.0", "null", "-5", "{}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (verify_claims_json(claims_with(GOOD_SUB, bad[i], GOOD_EXP, GOOD_TV, GOOD_USE, GOOD_JTI)) != -1)
            fail_msg("iat %s accepted", bad[i] ? bad[i] : "(missing)");
}

/* nbf ("not before"): absent is fine (token_issue writes none); present, the token waits for it (60 s leeway) */
static void test_nbf(void **state)
{
    (void)state;
    const struct {
        const char *nbf;
        int rc;
    } cases[] = {{"1799990000", 0}, {"1800000060", 0}, {"1800000061", -1},   {"1900000000", -1},
                 {"\"1\"", -1},     {"-1", -1},        {"1800000000.5", -1}, {"null", -1}};
    char json[1200];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *c = GOOD_CLAIMS;
        snprintf(json, sizeof json, "%.*s,\"nbf\":%s}", (int)strlen(c) - 1, c, cases[i].nbf);
        if (verify_claims_json(json) != cases[i].rc)
            fail_msg("nbf %s: want %d", cases[i].nbf, cases[i].rc);
    }
}

static void test_sub(void **state)
{
    (void)state;
    assert_int_equal(verify_claims_json(claims_with("\"1\"", GOOD_IAT, GOOD_EXP, GOOD_TV, GOOD_USE, GOOD_JTI)), 0);
    assert_int_equal(
        verify_claims_json(claims_with("\"9223372036854775807\"", GOOD_IAT, GOOD_EXP, GOOD_TV, GOOD_USE, GOOD_JTI)), 0);
    static const char *bad[] = {NULL,
                                "42",
                                "\"0\"",
                                "\"-1\"",
                                "\"abc\"",
                                "\"12a\"",
                                "\"\"",
                                "\"007\"",
                                "\" 5\"",
                                "\"5 \"",
                                "\"+5\"",
                                "\"1.0\"",
                                "\"1e3\"",
                                "null",
                                "[\"5\"]",
                                "\"9223372036854775808\"",
                                "\"99999999999999999999\"",
                                "\"0x10\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (verify_claims_json(claims_with(bad[i], GOOD_IAT, GOOD_EXP, GOOD_TV, GOOD_USE, GOOD_JTI)) != -1)
            fail_msg("sub %s accepted", bad[i] ? bad[i] : "(missing)");
}

static void test_tv(void **state)
{
    (void)state;
    token_claims_t c;
    char *t =
        sign_claims(JWT_ALG_HS256, KEY, sizeof KEY, claims_with(GOOD_SUB, GOOD_IAT, GOOD_EXP, "0", GOOD_USE, GOOD_JTI));
    assert_int_equal(token_verify(KEY, sizeof KEY, t, NOW, &c), 0);
    assert_int_equal(c.token_version, 0);
    free(t);
    static const char *bad[] = {NULL, "\"3\"", "3.5", "-1", "2147483648", "null", "false"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (verify_claims_json(claims_with(GOOD_SUB, GOOD_IAT, GOOD_EXP, bad[i], GOOD_USE, GOOD_JTI)) != -1)
            fail_msg("tv %s accepted", bad[i] ? bad[i] : "(missing)");
}

static void test_typ_use_and_jti(void **state)
{
    (void)state;
    static const char *bad_use[] = {NULL, "\"refresh\"", "\"ACCESS\"", "\"\"", "1", "null"};
    for (size_t i = 0; i < sizeof bad_use / sizeof bad_use[0]; i++)
        if (verify_claims_json(claims_with(GOOD_SUB, GOOD_IAT, GOOD_EXP, GOOD_TV, bad_use[i], GOOD_JTI)) != -1)
            fail_msg("typ_use %s accepted", bad_use[i] ? bad_use[i] : "(missing)");
    static const char *bad_jti[] = {NULL,
                                    "\"\"",
                                    "\"00112233445566778899aabbccddeef\"",
                                    "\"00112233445566778899aabbccddeeff0\"",
                                    "\"00112233445566778899AABBCCDDEEFF\"",
                                    "\"0011223344556677889gaabbccddeeff\"",
                                    "12345"};
    for (size_t i = 0; i < sizeof bad_jti / sizeof bad_jti[0]; i++)
        if (verify_claims_json(claims_with(GOOD_SUB, GOOD_IAT, GOOD_EXP, GOOD_TV, GOOD_USE, bad_jti[i])) != -1)
            fail_msg("jti %s accepted", bad_jti[i] ? bad_jti[i] : "(missing)");
    /* extra unknown claims are fine */
    assert_int_equal(verify_claims_json("{\"sub\":\"42\",\"iat\":1800000000,\"exp\":1800086400,\"tv\":3,"
                                        "\"typ_use\":\"access\",\"jti\":\"00112233445566778899aabbccddeeff\","
                                        "\"role\":\"admin\"}"),
                     0);
}

/* ---- verify: garbage and length ---- */

static void test_garbage(void **state)
{
    (void)state;
    char *good = token_issue(KEY, sizeof KEY, 42, 0, NOW, TTL);
    assert_non_null(good);
    char buf[TOKEN_MAX_LEN + 64];
    static const char *junk[] = {"",
                                 ".",
                                 "..",
                                 "...",
                                 "a",
                                 "abc",
                                 "a.b",
                                 "a.b.c",
                                 "a..c",
                                 ".b.c",
                                 "a.b.",
                                 "eyJ.eyJ.",
                                 "eyJhbGciOiJIUzI1NiJ9",
                                 "Bearer x.y.z",
                                 "null",
                                 "{}",
                                 "\xff\xfe.\x80.\x01",
                                 "a.b.c.d",
                                 "====.====.===="};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
        if (verify(junk[i]) != -1)
            fail_msg("junk \"%s\" accepted", junk[i]);
    /* a valid token with surrounding or embedded characters */
    const char *wraps[] = {" %s", "%s ", "%s\n", "%s.", ".%s", "%s.x", "\"%s\"", "%s\t"};
    for (size_t i = 0; i < sizeof wraps / sizeof wraps[0]; i++) {
        snprintf(buf, sizeof buf, wraps[i], good);
        if (verify(buf) != -1)
            fail_msg("wrapped token \"%s\" accepted", wraps[i]);
    }
    /* standard base64 characters instead of base64url */
    snprintf(buf, sizeof buf, "%s", good);
    for (char *p = buf; *p; p++)
        if (*p == '-' || *p == '_')
            *p = *p == '-' ? '+' : '/';
    if (strcmp(buf, good) != 0)
        assert_int_equal(verify(buf), -1);
    /* pseudo-random bytes */
    unsigned x = 12345;
    for (int round = 0; round < 200; round++) {
        size_t n = (size_t)(round % 97) + 1;
        for (size_t k = 0; k < n; k++) {
            x = x * 1103515245u + 12345u;
            buf[k] = (char)((x >> 16) % 255 + 1);
        }
        buf[n] = '\0';
        assert_int_equal(verify(buf), -1);
    }
    free(good);
}

static void test_length_cap(void **state)
{
    (void)state;
    char *big = malloc(TOKEN_MAX_LEN + 2);
    assert_non_null(big);
    memset(big, 'a', TOKEN_MAX_LEN + 1);
    big[TOKEN_MAX_LEN + 1] = '\0';
    assert_int_equal(verify(big), -1);
    free(big);

    /* a correctly signed, otherwise valid token: accepted under the cap, refused over it */
    char claims[4096], pad[3000];
    for (size_t padlen = 100; padlen <= 2000; padlen += 1900) {
        memset(pad, 'p', padlen);
        pad[padlen] = '\0';
        snprintf(claims, sizeof claims,
                 "{\"sub\":\"42\",\"iat\":1800000000,\"exp\":1800086400,\"tv\":3,\"typ_use\":\"access\","
                 "\"jti\":\"00112233445566778899aabbccddeeff\",\"pad\":\"%s\"}",
                 pad);
        char *t = sign_claims(JWT_ALG_HS256, KEY, sizeof KEY, claims);
        if (strlen(t) <= TOKEN_MAX_LEN)
            assert_int_equal(verify(t), 0);
        else
            assert_int_equal(verify(t), -1);
        assert_true(padlen == 100 ? strlen(t) <= TOKEN_MAX_LEN : strlen(t) > TOKEN_MAX_LEN);
        free(t);
    }
}

/* ---- token_from_header ---- */

static void test_from_header(void **state)
{
    (void)state;
    const char *v;

    v = "Bearer abc.def.ghi";
    assert_ptr_equal(token_from_header(v), v + 7);
    v = "bearer abc.def.ghi";
    assert_ptr_equal(token_from_header(v), v + 7);
    v = "BEARER abc";
    assert_ptr_equal(token_from_header(v), v + 7);
    v = "bEaReR abc";
    assert_ptr_equal(token_from_header(v), v + 7);
    v = "Bearer    abc.def.ghi";
    assert_ptr_equal(token_from_header(v), v + 10);
    assert_string_equal(token_from_header("Bearer x"), "x");

    static const char *bad[] = {"",
                                "Bearer",
                                "Bearer ",
                                "Bearer    ",
                                "Bearerabc",
                                "Bearer\tabc",
                                "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
                                "Token abc",
                                "Bearer abc def",
                                "Bearer abc ",
                                "Bearer abc\t",
                                "Bearer abc\r\n",
                                "Bearer a\nb",
                                " Bearer abc",
                                "Bearer: abc",
                                "Bear abc",
                                "Bearers abc",
                                "Bearer \xc3\xa9t\xc3\xa9",
                                "abc.def.ghi"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (token_from_header(bad[i]) != NULL)
            fail_msg("header \"%s\" accepted", bad[i]);
    assert_null(token_from_header(NULL));

    /* length cap: exactly TOKEN_MAX_LEN is fine, one more is refused */
    char *h = malloc(7 + TOKEN_MAX_LEN + 2);
    assert_non_null(h);
    memcpy(h, "Bearer ", 7);
    memset(h + 7, 'a', TOKEN_MAX_LEN);
    h[7 + TOKEN_MAX_LEN] = '\0';
    assert_ptr_equal(token_from_header(h), h + 7);
    h[7 + TOKEN_MAX_LEN] = 'a';
    h[7 + TOKEN_MAX_LEN + 1] = '\0';
    assert_null(token_from_header(h));
    free(h);

    /* the real thing end to end */
    char *t = token_issue(KEY, sizeof KEY, 42, 0, NOW, TTL);
    assert_non_null(t);
    char hdr[TOKEN_MAX_LEN + 16];
    snprintf(hdr, sizeof hdr, "Bearer %s", t);
    const char *got = token_from_header(hdr);
    assert_non_null(got);
    assert_string_equal(got, t);
    assert_int_equal(verify(got), 0);
    free(t);
}

int main(void)
{
    g_openssl_hooked = CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_leaves_openssl_alone), /* first: see there */
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_issued_contents),
        cmocka_unit_test(test_issue_bad_args),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_tampered_payload),
        cmocka_unit_test(test_tampered_signature),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_hand_made_tokens),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_other_hmac_algs_refused),
        cmocka_unit_test(test_alg_exact_case),
        cmocka_unit_test(test_exp),
        cmocka_unit_test(test_iat),
        cmocka_unit_test(test_nbf),
        cmocka_unit_test(test_sub),
        cmocka_unit_test(test_tv),
        cmocka_unit_test(test_typ_use_and_jti),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_length_cap),
        cmocka_unit_test(test_from_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
