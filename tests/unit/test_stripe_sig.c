/* Unit tests of lib/stripe_sig.c: Stripe-Signature compute and verify (REFERENCE.md 2.3 test vector,
 * tolerance, several v1, other schemes, tampering, malformed headers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "stripe_sig.h"

/* REFERENCE.md 2.3 test vector (stripe-node and openssl agree). */
#define VEC_SECRET "whsec_test_secret"
#define VEC_T 1700000000LL
#define VEC_BODY "{\"id\":\"evt_test_webhook\",\"object\":\"event\"}"
#define VEC_SIG "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990"
#define VEC_HEADER "t=1700000000,v1=" VEC_SIG
#define WRONG_SIG "0000000000000000000000000000000000000000000000000000000000000000"

static int verify(const char *header, const char *body, long long now)
{
    return stripe_signature_verify(header, VEC_SECRET, body, strlen(body), now, STRIPE_SIG_TOLERANCE, NULL);
}

/* ---- signatures ---- */

static void test_sig_compute_vector(void **state)
{
    (void)state;
    char hex[65];
    assert_int_equal(stripe_signature_compute(VEC_SECRET, VEC_T, VEC_BODY, strlen(VEC_BODY), hex), 0);
    assert_string_equal(hex, VEC_SIG);
    /* the key is the whole string, prefix included */
    assert_int_equal(stripe_signature_compute("test_secret", VEC_T, VEC_BODY, strlen(VEC_BODY), hex), 0);
    assert_string_not_equal(hex, VEC_SIG);
    /* t is part of the signed payload */
    assert_int_equal(stripe_signature_compute(VEC_SECRET, VEC_T + 1, VEC_BODY, strlen(VEC_BODY), hex), 0);
    assert_string_not_equal(hex, VEC_SIG);
}

static void test_sig_vector_accepted(void **state)
{
    (void)state;
    long long t = 0;
    assert_int_equal(
        stripe_signature_verify(VEC_HEADER, VEC_SECRET, VEC_BODY, strlen(VEC_BODY), VEC_T, STRIPE_SIG_TOLERANCE, &t),
        STRIPE_SIG_OK);
    assert_int_equal(t, VEC_T);
    /* the body is the raw bytes: a length shorter than the string is a different payload */
    assert_int_equal(stripe_signature_verify(VEC_HEADER, VEC_SECRET, VEC_BODY, strlen(VEC_BODY) - 1, VEC_T,
                                             STRIPE_SIG_TOLERANCE, NULL),
                     STRIPE_SIG_MISMATCH);
}

static void test_sig_tolerance(void **state)
{
    (void)state;
    assert_int_equal(verify(VEC_HEADER, VEC_BODY, VEC_T + 300), STRIPE_SIG_OK);
    assert_int_equal(verify(VEC_HEADER, VEC_BODY, VEC_T + 301), STRIPE_SIG_STALE);
    assert_int_equal(verify(VEC_HEADER, VEC_BODY, VEC_T + 86400), STRIPE_SIG_STALE);
    assert_int_equal(verify(VEC_HEADER, VEC_BODY, VEC_T - 300), STRIPE_SIG_OK);
    assert_int_equal(verify(VEC_HEADER, VEC_BODY, VEC_T - 301), STRIPE_SIG_FUTURE);
    /* real time: the vector is years old */
    assert_int_equal(stripe_signature_verify(VEC_HEADER, VEC_SECRET, VEC_BODY, strlen(VEC_BODY), (long long)time(NULL),
                                             STRIPE_SIG_TOLERANCE, NULL),
                     STRIPE_SIG_STALE);
}

static void test_sig_fresh_roundtrip(void **state)
{
    (void)state;
    char hex[65], header[128];
    const char *body = "{\"id\":\"evt_1\",\"type\":\"x\",\"created\":1}\n";
    long long now = 1800000000LL;
    assert_int_equal(stripe_signature_compute("whsec_abc", now, body, strlen(body), hex), 0);
    snprintf(header, sizeof header, "t=%lld,v1=%s", now, hex);
    assert_int_equal(stripe_signature_verify(header, "whsec_abc", body, strlen(body), now, 300, NULL), 0);
    assert_int_equal(stripe_signature_verify(header, "whsec_abd", body, strlen(body), now, 300, NULL),
                     STRIPE_SIG_MISMATCH);
    /* empty body is still a payload */
    assert_int_equal(stripe_signature_compute("whsec_abc", now, "", 0, hex), 0);
    snprintf(header, sizeof header, "t=%lld,v1=%s", now, hex);
    assert_int_equal(stripe_signature_verify(header, "whsec_abc", "", 0, now, 300, NULL), 0);
}

static void test_sig_multiple_v1(void **state)
{
    (void)state;
    assert_int_equal(verify("t=1700000000,v1=" WRONG_SIG ",v1=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_OK);
    assert_int_equal(verify("t=1700000000,v1=" VEC_SIG ",v1=" WRONG_SIG, VEC_BODY, VEC_T), STRIPE_SIG_OK);
    assert_int_equal(verify("v1=" WRONG_SIG ",t=1700000000,v0=" WRONG_SIG ",v1=" VEC_SIG, VEC_BODY, VEC_T),
                     STRIPE_SIG_OK);
    assert_int_equal(verify("t=1700000000,v1=" WRONG_SIG ",v1=" WRONG_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MISMATCH);
    /* optional whitespace after commas */
    assert_int_equal(verify("t=1700000000, v1=" WRONG_SIG ", v1=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_OK);
}

static void test_sig_other_schemes_ignored(void **state)
{
    (void)state;
    /* v0 carrying the right value is not accepted: only v1 counts (downgrade protection) */
    assert_int_equal(verify("t=1700000000,v0=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t=1700000000,v0=" VEC_SIG ",v1=" WRONG_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MISMATCH);
    assert_int_equal(verify("t=1700000000,v2=" VEC_SIG ",v1=" WRONG_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MISMATCH);
    assert_int_equal(verify("t=1700000000,V1=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t=1700000000,v1x=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
}

static void test_sig_tampered(void **state)
{
    (void)state;
    assert_int_equal(verify(VEC_HEADER, "{\"id\":\"evt_test_webhook\",\"object\":\"evenT\"}", VEC_T),
                     STRIPE_SIG_MISMATCH);
    assert_int_equal(verify(VEC_HEADER, VEC_BODY " ", VEC_T), STRIPE_SIG_MISMATCH);
    /* a moved timestamp with the old signature */
    assert_int_equal(verify("t=1700000001,v1=" VEC_SIG, VEC_BODY, 1700000001), STRIPE_SIG_MISMATCH);
    /* uppercase hex or a truncated/extended signature never matches */
    char upper[] = VEC_HEADER;
    for (char *p = upper + 16; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    assert_int_equal(verify(upper, VEC_BODY, VEC_T), STRIPE_SIG_MISMATCH);
    char shorter[] = VEC_HEADER;
    shorter[strlen(shorter) - 1] = '\0';
    assert_int_equal(verify(shorter, VEC_BODY, VEC_T), STRIPE_SIG_MISMATCH);
    assert_int_equal(verify(VEC_HEADER "0", VEC_BODY, VEC_T), STRIPE_SIG_MISMATCH);
}

static void test_sig_missing_and_malformed(void **state)
{
    (void)state;
    assert_int_equal(verify(NULL, VEC_BODY, VEC_T), STRIPE_SIG_MISSING);
    assert_int_equal(verify("", VEC_BODY, VEC_T), STRIPE_SIG_MISSING);
    assert_int_equal(verify("v1=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t=1700000000", VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t=1700000000,", VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t=,v1=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t=17000x0000,v1=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t=-1700000000,v1=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t=99999999999999999999,v1=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t=1700000000,t=1700000000,v1=" VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("garbage", VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify(",,,", VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    assert_int_equal(verify("t 1700000000 v1 " VEC_SIG, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);

    /* a header past the ceiling is refused even if it would verify */
    size_t n = STRIPE_SIG_HEADER_MAX + 100;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'x', n);
    memcpy(big, VEC_HEADER ",", strlen(VEC_HEADER ","));
    big[n] = '\0';
    assert_int_equal(verify(big, VEC_BODY, VEC_T), STRIPE_SIG_MALFORMED);
    free(big);

    /* no secret configured: nothing verifies */
    assert_int_not_equal(stripe_signature_verify(VEC_HEADER, "", VEC_BODY, strlen(VEC_BODY), VEC_T, 300, NULL),
                         STRIPE_SIG_OK);
    assert_int_not_equal(stripe_signature_verify(VEC_HEADER, NULL, VEC_BODY, strlen(VEC_BODY), VEC_T, 300, NULL),
                         STRIPE_SIG_OK);
    assert_non_null(stripe_sig_strerror(STRIPE_SIG_STALE));
}

int main(void)
{
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sig_compute_vector),
        cmocka_unit_test(test_sig_vector_accepted),
        cmocka_unit_test(test_sig_tolerance),
        cmocka_unit_test(test_sig_fresh_roundtrip),
        cmocka_unit_test(test_sig_multiple_v1),
        cmocka_unit_test(test_sig_other_schemes_ignored),
        cmocka_unit_test(test_sig_tampered),
        cmocka_unit_test(test_sig_missing_and_malformed),
    };
    /* clang-format on */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
