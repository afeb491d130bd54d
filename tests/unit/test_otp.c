/* Unit tests for lib/otp.c. */
#define OPENSSL_SUPPRESS_DEPRECATED /* RAND_set_rand_method: used only to script the RNG in one test */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "otp.h"

static const unsigned char KEY[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                      16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
static const unsigned char KEY2[32] = {1};

static int is_six_digits(const char *s)
{
    if (strlen(s) != 6)
        return 0;
    for (int i = 0; i < 6; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* ---- otp_generate ---- */

static void test_generate_format_and_spread(void **state)
{
    (void)state;
    enum { N = 20000 };
    int first_digit[10] = {0}, last_digit[10] = {0};
    int below_100000 = 0, below_10000 = 0;
    char prev[OTP_DIGITS + 1] = "", code[OTP_DIGITS + 1];
    int same_as_prev = 0;

    for (int i = 0; i < N; i++) {
        memset(code, 'x', sizeof code);
        assert_int_equal(otp_generate(code), 0);
        assert_int_equal(code[OTP_DIGITS], '\0');
        if (!is_six_digits(code))
            fail_msg("bad code \"%s\"", code);
        first_digit[code[0] - '0']++;
        last_digit[code[5] - '0']++;
        long v = 0;
        for (int k = 0; k < 6; k++)
            v = v * 10 + (code[k] - '0');
        below_100000 += v < 100000;
        below_10000 += v < 10000;
        same_as_prev += strcmp(code, prev) == 0;
        memcpy(prev, code, sizeof code);
    }
    /* each leading and trailing digit near 10% (expected 2000, sd ~42; the bounds are > 7 sd wide) */
    for (int d = 0; d < 10; d++) {
        if (first_digit[d] < 1700 || first_digit[d] > 2300)
            fail_msg("leading digit %d seen %d times of %d", d, first_digit[d], N);
        if (last_digit[d] < 1700 || last_digit[d] > 2300)
            fail_msg("last digit %d seen %d times of %d", d, last_digit[d], N);
    }
    /* zero padding really happens: ~10% below 100000, ~1% below 10000 */
    assert_true(below_100000 >= 1700 && below_100000 <= 2300);
    assert_true(below_10000 >= 100 && below_10000 <= 320);
    /* consecutive equal codes: expected 0.02 */
    assert_true(same_as_prev <= 2);
}

/* A scripted RNG: RAND_bytes hands out the queued bytes, then fails. */
static const unsigned char *g_script;
static size_t g_script_len, g_script_pos;
static int g_calls;

static int script_bytes(unsigned char *buf, int num)
{
    g_calls++;
    if (num < 0 || g_script_pos + (size_t)num > g_script_len)
        return 0;
    memcpy(buf, g_script + g_script_pos, (size_t)num);
    g_script_pos += (size_t)num;
    return 1;
}

static int script_status(void)
{
    return 1;
}

static RAND_METHOD g_script_method = {
    .bytes = script_bytes,
    .pseudorand = script_bytes,
    .status = script_status,
};

static void use_script(const unsigned char *b, size_t n)
{
    g_script = b;
    g_script_len = n;
    g_script_pos = 0;
    g_calls = 0;
    assert_int_equal(RAND_set_rand_method(&g_script_method), 1);
}

static void restore_rng(void)
{
    RAND_set_rand_method(RAND_OpenSSL());
}

/* Byte patterns are palindromes so that the result does not depend on the byte order the code reads. */
static void test_generate_rejection_sampling(void **state)
{
    (void)state;
    char code[OTP_DIGITS + 1];

    /* 0xFFFFFFFF and 0xFFF1F1FF (4294046207) are >= 4294000000 and must be redrawn; 0xFFF0F0FF
     * (4293980415) is below the bound and gives 980415. */
    static const unsigned char s1[] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xF1, 0xF1, 0xFF, 0xFF, 0xF0, 0xF0, 0xFF};
    use_script(s1, sizeof s1);
    int rc = otp_generate(code);
    size_t used = g_script_pos;
    restore_rng();
    assert_int_equal(rc, 0);
    assert_int_equal(used, 12);
    assert_string_equal(code, "980415");

    /* zero padding: 0 -> "000000" */
    static const unsigned char s2[] = {0, 0, 0, 0};
    use_script(s2, sizeof s2);
    rc = otp_generate(code);
    restore_rng();
    assert_int_equal(rc, 0);
    assert_string_equal(code, "000000");

    /* 00 00 00 2A is 42 read big-endian ("000042") or 704643072 read little-endian ("643072") */
    static const unsigned char s3[] = {0x00, 0x00, 0x00, 0x2A};
    use_script(s3, sizeof s3);
    rc = otp_generate(code);
    restore_rng();
    assert_int_equal(rc, 0);
    assert_true(strcmp(code, "000042") == 0 || strcmp(code, "643072") == 0);

    /* the RNG fails: -1 and no code left behind */
    use_script(s1, 8); /* two rejected draws, then failure */
    memset(code, '7', sizeof code);
    rc = otp_generate(code);
    restore_rng();
    assert_int_equal(rc, -1);
    assert_int_equal(code[0], '\0');

    /* and the real RNG is back */
    assert_int_equal(otp_generate(code), 0);
    assert_true(is_six_digits(code));
}

/* ---- otp_hash ---- */

/* Independent computation with EVP_MAC over the joined string. */
static void ref_hmac(const unsigned char *key, size_t keylen, const char *msg, unsigned char out[32])
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_END};
    size_t outl = 0;
    assert_non_null(ctx);
    assert_int_equal(EVP_MAC_init(ctx, key, keylen, params), 1);
    assert_int_equal(EVP_MAC_update(ctx, (const unsigned char *)msg, strlen(msg)), 1);
    assert_int_equal(EVP_MAC_final(ctx, out, &outl, 32), 1);
    assert_int_equal(outl, 32);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
}

static void test_hash_known_answer(void **state)
{
    (void)state;
    unsigned char d[OTP_HASH_LEN], ref[32];
    /* openssl dgst -sha256 -mac HMAC -macopt hexkey:000102..1f of "login:+15551234567:012345" */
    static const unsigned char kat[32] = {0xea, 0x8a, 0x98, 0xb4, 0x9d, 0x8e, 0xa9, 0x4b, 0xbb, 0x12, 0xd5,
                                          0xf3, 0x69, 0x0f, 0x25, 0xf5, 0x9d, 0x4e, 0x7b, 0x21, 0x5e, 0x63,
                                          0x1d, 0xec, 0x9b, 0x2d, 0xef, 0x51, 0x8a, 0xbe, 0x98, 0x2e};
    assert_int_equal(otp_hash(KEY, sizeof KEY, "login", "+15551234567", "012345", d), 0);
    assert_memory_equal(d, kat, 32);
    ref_hmac(KEY, sizeof KEY, "login:+15551234567:012345", ref);
    assert_memory_equal(d, ref, 32);

    ref_hmac(KEY2, sizeof KEY2, "password_reset:+447700900123:999999", ref);
    assert_int_equal(otp_hash(KEY2, sizeof KEY2, "password_reset", "+447700900123", "999999", d), 0);
    assert_memory_equal(d, ref, 32);
}

static void test_hash_deterministic(void **state)
{
    (void)state;
    unsigned char a[OTP_HASH_LEN], b[OTP_HASH_LEN];
    for (int i = 0; i < 50; i++) {
        char code[OTP_DIGITS + 1];
        assert_int_equal(otp_generate(code), 0);
        assert_int_equal(otp_hash(KEY, sizeof KEY, "login", "+15550001111", code, a), 0);
        assert_int_equal(otp_hash(KEY, sizeof KEY, "login", "+15550001111", code, b), 0);
        assert_memory_equal(a, b, OTP_HASH_LEN);
    }
}

static void test_hash_inputs_matter(void **state)
{
    (void)state;
    unsigned char base[OTP_HASH_LEN], d[OTP_HASH_LEN];
    assert_int_equal(otp_hash(KEY, sizeof KEY, "login", "+15551234567", "123456", base), 0);

    assert_int_equal(otp_hash(KEY, sizeof KEY, "password_reset", "+15551234567", "123456", d), 0);
    assert_memory_not_equal(base, d, OTP_HASH_LEN);
    assert_int_equal(otp_hash(KEY, sizeof KEY, "login", "+15551234568", "123456", d), 0);
    assert_memory_not_equal(base, d, OTP_HASH_LEN);
    assert_int_equal(otp_hash(KEY, sizeof KEY, "login", "+15551234567", "123457", d), 0);
    assert_memory_not_equal(base, d, OTP_HASH_LEN);
    assert_int_equal(otp_hash(KEY2, sizeof KEY2, "login", "+15551234567", "123456", d), 0);
    assert_memory_not_equal(base, d, OTP_HASH_LEN);
    /* a key differing only in length (prefix) is a different key */
    assert_int_equal(otp_hash(KEY, 31, "login", "+15551234567", "123456", d), 0);
    assert_memory_not_equal(base, d, OTP_HASH_LEN);
}

static void test_hash_bad_args(void **state)
{
    (void)state;
    unsigned char d[OTP_HASH_LEN];
    char longpart[200];
    memset(longpart, '1', sizeof longpart - 1);
    longpart[sizeof longpart - 1] = '\0';

    assert_int_equal(otp_hash(NULL, 32, "login", "+1555", "123456", d), -1);
    assert_int_equal(otp_hash(KEY, 0, "login", "+1555", "123456", d), -1);
    assert_int_equal(otp_hash(KEY, sizeof KEY, NULL, "+1555", "123456", d), -1);
    assert_int_equal(otp_hash(KEY, sizeof KEY, "login", NULL, "123456", d), -1);
    assert_int_equal(otp_hash(KEY, sizeof KEY, "login", "+1555", NULL, d), -1);
    assert_int_equal(otp_hash(KEY, sizeof KEY, "", "+1555", "123456", d), -1);
    assert_int_equal(otp_hash(KEY, sizeof KEY, "login", "", "123456", d), -1);
    /* ':' in the leading parts would make "a:b"+"c" and "a"+"b:c" collide */
    assert_int_equal(otp_hash(KEY, sizeof KEY, "log:in", "+1555", "123456", d), -1);
    assert_int_equal(otp_hash(KEY, sizeof KEY, "login", "+15:55", "123456", d), -1);
    /* ceilings */
    assert_int_equal(otp_hash(KEY, sizeof KEY, longpart, "+1555", "123456", d), -1);
    assert_int_equal(otp_hash(KEY, sizeof KEY, "login", longpart, "123456", d), -1);
    assert_int_equal(otp_hash(KEY, sizeof KEY, "login", "+1555", longpart, d), -1);
}

/* ---- otp_check ---- */

static void test_check_accepts_right_code(void **state)
{
    (void)state;
    for (int i = 0; i < 20; i++) {
        char code[OTP_DIGITS + 1];
        unsigned char stored[OTP_HASH_LEN];
        assert_int_equal(otp_generate(code), 0);
        assert_int_equal(otp_hash(KEY, sizeof KEY, "login", "+15551234567", code, stored), 0);
        assert_int_equal(otp_check(KEY, sizeof KEY, "login", "+15551234567", code, stored, sizeof stored), 1);
    }
}

static void test_check_rejects_wrong(void **state)
{
    (void)state;
    unsigned char stored[OTP_HASH_LEN];
    assert_int_equal(otp_hash(KEY, sizeof KEY, "login", "+15551234567", "042042", stored), 0);

    assert_int_equal(otp_check(KEY, sizeof KEY, "login", "+15551234567", "042042", stored, 32), 1);
    assert_int_equal(otp_check(KEY, sizeof KEY, "login", "+15551234567", "042043", stored, 32), 0);
    assert_int_equal(otp_check(KEY, sizeof KEY, "login", "+15551234567", "000000", stored, 32), 0);
    assert_int_equal(otp_check(KEY, sizeof KEY, "password_reset", "+15551234567", "042042", stored, 32), 0);
    assert_int_equal(otp_check(KEY, sizeof KEY, "login", "+15551234568", "042042", stored, 32), 0);
    assert_int_equal(otp_check(KEY2, sizeof KEY2, "login", "+15551234567", "042042", stored, 32), 0);
    /* every single flipped bit of the stored digest is noticed */
    for (size_t i = 0; i < OTP_HASH_LEN * 8; i++) {
        unsigned char t[OTP_HASH_LEN];
        memcpy(t, stored, sizeof t);
        t[i / 8] ^= (unsigned char)(1u << (i % 8));
        assert_int_equal(otp_check(KEY, sizeof KEY, "login", "+15551234567", "042042", t, 32), 0);
    }
}

static void test_check_stored_length(void **state)
{
    (void)state;
    unsigned char stored[OTP_HASH_LEN + 1];
    assert_int_equal(otp_hash(KEY, sizeof KEY, "login", "+15551234567", "123456", stored), 0);
    stored[OTP_HASH_LEN] = 0;
    assert_int_equal(otp_check(KEY, sizeof KEY, "login", "+15551234567", "123456", stored, OTP_HASH_LEN), 1);
    assert_int_equal(otp_check(KEY, sizeof KEY, "login", "+15551234567", "123456", stored, OTP_HASH_LEN - 1), 0);
    assert_int_equal(otp_check(KEY, sizeof KEY, "login", "+15551234567", "123456", stored, OTP_HASH_LEN + 1), 0);
    assert_int_equal(otp_check(KEY, sizeof KEY, "login", "+15551234567", "123456", stored, 0), 0);
    assert_int_equal(otp_check(KEY, sizeof KEY, "login", "+15551234567", "123456", NULL, OTP_HASH_LEN), 0);
    assert_int_equal(otp_check(NULL, 0, "login", "+15551234567", "123456", stored, OTP_HASH_LEN), 0);
}

/* Codes that are not exactly 6 ASCII digits are refused even when the stored digest is of that very
 * string (so the refusal comes from the format check, not from a mismatch). */
static void test_check_rejects_non_digit_codes(void **state)
{
    (void)state;
    static const char *bad[] = {"",
                                "12345",
                                "1234567",
                                "12345a",
                                "a12345",
                                " 12345",
                                "12345 ",
                                "+12345",
                                "-12345",
                                "12 456",
                                "0x1234",
                                "１２３４５６",                                     /* fullwidth */
                                "\xd9\xa1\xd9\xa2\xd9\xa3\xd9\xa4\xd9\xa5\xd9\xa6", /* Arabic-Indic */
                                "123456\n",
                                "12345\xff",
                                "1e5000"};
    unsigned char stored[OTP_HASH_LEN];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(otp_hash(KEY, sizeof KEY, "login", "+15551234567", bad[i], stored), 0);
        if (otp_check(KEY, sizeof KEY, "login", "+15551234567", bad[i], stored, sizeof stored) != 0)
            fail_msg("code \"%s\" accepted", bad[i]);
    }
    /* a NUL after 3 digits: the C string is "123", never 6 digits */
    static const char embedded[] = "123\0"
                                   "56";
    assert_int_equal(otp_check(KEY, sizeof KEY, "login", "+15551234567", embedded, stored, sizeof stored), 0);
    assert_int_equal(otp_check(KEY, sizeof KEY, "login", "+15551234567", NULL, stored, sizeof stored), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_format_and_spread), cmocka_unit_test(test_generate_rejection_sampling),
        cmocka_unit_test(test_hash_known_answer),          cmocka_unit_test(test_hash_deterministic),
        cmocka_unit_test(test_hash_inputs_matter),         cmocka_unit_test(test_hash_bad_args),
        cmocka_unit_test(test_check_accepts_right_code),   cmocka_unit_test(test_check_rejects_wrong),
        cmocka_unit_test(test_check_stored_length),        cmocka_unit_test(test_check_rejects_non_digit_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
