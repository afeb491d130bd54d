/* Unit tests for utf8_length and utf8_valid (lib/utf8.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "util.h"

#define L(lit) utf8_length((lit), sizeof(lit) - 1)

/* Reference encoder: the shortest form of cp (any value, surrogates included) into out; returns bytes. */
static size_t encode(uint32_t cp, unsigned char out[4])
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Encode cp in exactly n bytes (n larger than needed gives an overlong form). */
static void encode_n(uint32_t cp, size_t n, unsigned char out[4])
{
    static const unsigned char lead[5] = {0, 0x00, 0xC0, 0xE0, 0xF0};
    for (size_t k = n - 1; k > 0; k--) {
        out[k] = (unsigned char)(0x80 | (cp & 0x3F));
        cp >>= 6;
    }
    out[0] = (unsigned char)(lead[n] | cp);
}

/* Reference validator of one whole sequence, written differently from the library: decode by bit masks,
 * then require the minimal length and a valid scalar value. */
static int ref_valid_one(const unsigned char *p, size_t n)
{
    uint32_t cp;
    size_t want;
    if (n == 0)
        return 0;
    if ((p[0] & 0x80) == 0x00) {
        cp = p[0];
        want = 1;
    } else if ((p[0] & 0xE0) == 0xC0) {
        cp = p[0] & 0x1F;
        want = 2;
    } else if ((p[0] & 0xF0) == 0xE0) {
        cp = p[0] & 0x0F;
        want = 3;
    } else if ((p[0] & 0xF8) == 0xF0) {
        cp = p[0] & 0x07;
        want = 4;
    } else {
        return 0;
    }
    if (n != want)
        return 0;
    for (size_t k = 1; k < n; k++) {
        if ((p[k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[k] & 0x3F);
    }
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000))
        return 0;
    return 1;
}

static void test_empty_and_null(void **state)
{
    (void)state;
    assert_int_equal(utf8_length("", 0), 0);
    assert_int_equal(utf8_length(NULL, 0), 0);
    assert_int_equal(utf8_length(NULL, 5), -1);
    assert_int_equal(utf8_valid("", 0), 1);
    assert_int_equal(utf8_valid(NULL, 0), 1);
    assert_int_equal(utf8_valid(NULL, 5), 0);
    /* len governs, not NUL termination */
    assert_int_equal(utf8_length("abc", 2), 2);
}

static void test_ascii(void **state)
{
    (void)state;
    assert_int_equal(L("hello"), 5);
    assert_int_equal(L("a b\tc\n"), 6);
    /* U+0000 is a valid code point; rejecting NUL is the caller's policy */
    assert_int_equal(utf8_length("a\0b", 3), 3);
    assert_int_equal(L("\x7f"), 1);
}

static void test_multibyte_counts(void **state)
{
    (void)state;
    assert_int_equal(L("\xc3\xa9"), 1); /* é U+00E9 */
    assert_int_equal(L("caf\xc3\xa9"), 4);
    assert_int_equal(L("\xe2\x82\xac"), 1);     /* € U+20AC */
    assert_int_equal(L("\xf0\x9f\x98\x80"), 1); /* 😀 U+1F600 */
    assert_int_equal(L("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z"), 5);
    assert_int_equal(L("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"), 3); /* 日本語 */
}

static void test_boundaries(void **state)
{
    (void)state;
    assert_int_equal(L("\xc2\x80"), 1);         /* U+0080, first 2-byte */
    assert_int_equal(L("\xdf\xbf"), 1);         /* U+07FF, last 2-byte */
    assert_int_equal(L("\xe0\xa0\x80"), 1);     /* U+0800, first 3-byte */
    assert_int_equal(L("\xed\x9f\xbf"), 1);     /* U+D7FF, just below surrogates */
    assert_int_equal(L("\xee\x80\x80"), 1);     /* U+E000, just above surrogates */
    assert_int_equal(L("\xef\xbf\xbf"), 1);     /* U+FFFF */
    assert_int_equal(L("\xef\xbb\xbf"), 1);     /* BOM U+FEFF is a valid character */
    assert_int_equal(L("\xf0\x90\x80\x80"), 1); /* U+10000, first 4-byte */
    assert_int_equal(L("\xf4\x8f\xbf\xbf"), 1); /* U+10FFFF, last code point */
}

static void test_overlong(void **state)
{
    (void)state;
    assert_int_equal(L("\xc0\x80"), -1);                 /* overlong NUL ("modified UTF-8") */
    assert_int_equal(L("\xc0\xaf"), -1);                 /* overlong '/' */
    assert_int_equal(L("\xc1\xbf"), -1);                 /* overlong U+007F */
    assert_int_equal(L("\xe0\x80\xaf"), -1);             /* 3-byte overlong '/' */
    assert_int_equal(L("\xe0\x9f\xbf"), -1);             /* 3-byte overlong U+07FF */
    assert_int_equal(L("\xf0\x80\x80\xaf"), -1);         /* 4-byte overlong '/' */
    assert_int_equal(L("\xf0\x8f\xbf\xbf"), -1);         /* 4-byte overlong U+FFFF */
    assert_int_equal(L("\xf8\x88\x80\x80\x80"), -1);     /* 5-byte form */
    assert_int_equal(L("\xfc\x84\x80\x80\x80\x80"), -1); /* 6-byte form */
}

static void test_surrogates_and_range(void **state)
{
    (void)state;
    assert_int_equal(L("\xed\xa0\x80"), -1);             /* U+D800 */
    assert_int_equal(L("\xed\xbf\xbf"), -1);             /* U+DFFF */
    assert_int_equal(L("\xed\xa0\xbd\xed\xb8\x80"), -1); /* CESU-8 pair for U+1F600 */
    assert_int_equal(L("\xf4\x90\x80\x80"), -1);         /* U+110000 */
    assert_int_equal(L("\xf5\x80\x80\x80"), -1);
    assert_int_equal(L("\xf7\xbf\xbf\xbf"), -1); /* U+1FFFFF */
    assert_int_equal(L("\xfe"), -1);
    assert_int_equal(L("\xff"), -1);
    assert_int_equal(L("ok\xff"), -1);
}

static void test_truncated(void **state)
{
    (void)state;
    assert_int_equal(L("\xc3"), -1);
    assert_int_equal(L("\xe2\x82"), -1);
    assert_int_equal(L("\xe2"), -1);
    assert_int_equal(L("\xf0\x9f\x98"), -1);
    assert_int_equal(L("\xf0\x9f"), -1);
    assert_int_equal(L("abc\xf0"), -1);
    /* truncated in the middle, followed by ASCII: the ASCII byte is not a continuation */
    assert_int_equal(L("\xe2\x82"
                       "a"),
                     -1);
    assert_int_equal(L("\xc3"
                       "a"),
                     -1);
    /* a sequence cut off by len even though the bytes continue in memory */
    assert_int_equal(utf8_length("\xe2\x82\xac", 2), -1);
    assert_int_equal(utf8_length("\xf0\x9f\x98\x80", 3), -1);
}

static void test_stray_continuation(void **state)
{
    (void)state;
    assert_int_equal(L("\x80"), -1);
    assert_int_equal(L("\xbf"), -1);
    assert_int_equal(L("a\x80"
                       "b"),
                     -1);
    assert_int_equal(L("\xc3\xa9\xa9"), -1); /* one continuation too many */
    assert_int_equal(L("\xe2\x82\xac\x80"), -1);
    assert_int_equal(L("\xf0\x9f\x98\x80\x80"), -1);
}

/* Every code point encoded in its shortest form: scalar values count as one, surrogates are refused. */
static void test_all_code_points(void **state)
{
    (void)state;
    unsigned char b[4];
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        size_t n = encode(cp, b);
        long want = (cp >= 0xD800 && cp <= 0xDFFF) ? -1 : 1;
        if (utf8_length((const char *)b, n) != want)
            fail_msg("U+%04X: got %ld, want %ld", (unsigned)cp, utf8_length((const char *)b, n), want);
        /* utf8_decode: the code point back and its length, or 0 for a surrogate */
        unsigned got = 0xFFFFFFFFu;
        size_t k = utf8_decode((const char *)b, n, &got);
        if (want < 0 ? k != 0 : (k != n || got != cp))
            fail_msg("utf8_decode U+%04X: %zu bytes, U+%04X", (unsigned)cp, k, got);
        if (n > 1 && utf8_decode((const char *)b, n - 1, &got) != 0)
            fail_msg("utf8_decode U+%04X truncated accepted", (unsigned)cp);
    }
}

/* Every code point below U+10000 in a longer (overlong) form is refused. */
static void test_all_overlongs(void **state)
{
    (void)state;
    unsigned char b[4];
    for (uint32_t cp = 0; cp < 0x10000; cp++) {
        size_t shortest = encode(cp, b);
        for (size_t n = shortest + 1; n <= 4; n++) {
            if (n == 1)
                continue;
            encode_n(cp, n, b);
            if (utf8_length((const char *)b, n) != -1)
                fail_msg("overlong U+%04X in %zu bytes accepted", (unsigned)cp, n);
        }
    }
}

/* Every 1-, 2- and 3-byte string against the reference validator (a valid string of those lengths is either
 * one sequence or a concatenation of shorter ones). */
static void test_exhaustive_short(void **state)
{
    (void)state;
    for (uint32_t v = 0; v < 0x100; v++) {
        unsigned char b[1] = {(unsigned char)v};
        long want = ref_valid_one(b, 1) ? 1 : -1;
        assert_int_equal(utf8_length((const char *)b, 1), want);
    }
    for (uint32_t v = 0; v < 0x10000; v++) {
        unsigned char b[2] = {(unsigned char)(v >> 8), (unsigned char)v};
        long want = -1;
        if (ref_valid_one(b, 2))
            want = 1;
        else if (ref_valid_one(b, 1) && ref_valid_one(b + 1, 1))
            want = 2;
        if (utf8_length((const char *)b, 2) != want)
            fail_msg("%02X %02X: got %ld want %ld", b[0], b[1], utf8_length((const char *)b, 2), want);
    }
    for (uint32_t v = 0; v < 0x1000000; v++) {
        unsigned char b[3] = {(unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
        long want = -1;
        if (ref_valid_one(b, 3))
            want = 1;
        else if (ref_valid_one(b, 1) && ref_valid_one(b + 1, 2))
            want = 2;
        else if (ref_valid_one(b, 2) && ref_valid_one(b + 2, 1))
            want = 2;
        else if (ref_valid_one(b, 1) && ref_valid_one(b + 1, 1) && ref_valid_one(b + 2, 1))
            want = 3;
        if (utf8_length((const char *)b, 3) != want)
            fail_msg("%02X %02X %02X: got %ld want %ld", b[0], b[1], b[2], utf8_length((const char *)b, 3), want);
        if (utf8_valid((const char *)b, 3) != (want > 0))
            fail_msg("%02X %02X %02X: utf8_valid disagrees with utf8_length", b[0], b[1], b[2]);
    }
}

/* Every 4-byte string whose first byte is a 4-byte lead (F0..F7), with the continuation bytes sampled from
 * the interesting values. */
static void test_four_byte_leads(void **state)
{
    (void)state;
    static const unsigned char c[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC3, 0xFF};
    const size_t nc = sizeof c;
    for (unsigned lead = 0xF0; lead <= 0xF7; lead++)
        for (size_t i = 0; i < nc; i++)
            for (size_t j = 0; j < nc; j++)
                for (size_t k = 0; k < nc; k++) {
                    unsigned char b[4] = {(unsigned char)lead, c[i], c[j], c[k]};
                    long want = ref_valid_one(b, 4) ? 1 : -1;
                    if (utf8_length((const char *)b, 4) != want)
                        fail_msg("%02X %02X %02X %02X", b[0], b[1], b[2], b[3]);
                }
}

static void test_long_string(void **state)
{
    (void)state;
    char big[3 * 1000 + 1];
    for (int i = 0; i < 1000; i++)
        memcpy(big + 3 * i, "\xe2\x82\xac", 3);
    assert_int_equal(utf8_length(big, 3000), 1000);
    big[1500] = 'x'; /* breaks the sequence at 1500 (a lead byte position): now two continuations are stray */
    assert_int_equal(utf8_length(big, 3000), -1);
}

static void test_is_space(void **state)
{
    (void)state;
    static const unsigned yes[] = {0x09,   0x0A,   0x0D,   0x20,   0x85,   0xA0,   0x1680,
                                   0x2000, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
    static const unsigned no[] = {0x00, 0x08, 0x0E, 0x41, 0x180E, 0x200B, 0x2060, 0xFEFF, 0x10FFFF};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        assert_true(utf8_is_space(yes[i]));
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_false(utf8_is_space(no[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_space),
        cmocka_unit_test(test_empty_and_null),
        cmocka_unit_test(test_ascii),
        cmocka_unit_test(test_multibyte_counts),
        cmocka_unit_test(test_boundaries),
        cmocka_unit_test(test_overlong),
        cmocka_unit_test(test_surrogates_and_range),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_stray_continuation),
        cmocka_unit_test(test_all_code_points),
        cmocka_unit_test(test_all_overlongs),
        cmocka_unit_test(test_exhaustive_short),
        cmocka_unit_test(test_four_byte_leads),
        cmocka_unit_test(test_long_string),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
