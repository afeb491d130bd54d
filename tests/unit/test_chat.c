/* Unit tests for the pure parts of lib/chat.c: pagination parameters, Idempotency-Key validation, the
 * UTC day and the seconds to midnight, the cache key and tombstone recognition. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "chat.h"

static void test_limit_default_and_bounds(void **state)
{
    long v = -7;
    (void)state;

    assert_int_equal(chat_parse_limit(NULL, &v), 0);
    assert_int_equal(v, CHAT_PAGE_DEFAULT);
    assert_int_equal(chat_parse_limit("1", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(chat_parse_limit("100", &v), 0);
    assert_int_equal(v, 100);
    assert_int_equal(chat_parse_limit("37", &v), 0);
    assert_int_equal(v, 37);
}

static void test_limit_invalid(void **state)
{
    static const char *bad[] = {"", "0", "101", "-1", "abc", "5x", " 5", "1.5", "99999999999999999999999", "1e2"};
    long v = 42;
    (void)state;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(chat_parse_limit(bad[i], &v), -1);
        assert_int_equal(v, 42); /* untouched on failure */
    }
}

static void test_before(void **state)
{
    static const char *bad[] = {"", "0", "-5", "abc", "12abc", "99999999999999999999", "9223372036854775808"};
    long long v = 0;
    (void)state;

    assert_int_equal(chat_parse_before(NULL, &v), 0);
    assert_true(v == LLONG_MAX);
    assert_int_equal(chat_parse_before("1", &v), 0);
    assert_true(v == 1);
    assert_int_equal(chat_parse_before("123456789012", &v), 0);
    assert_true(v == 123456789012LL);
    assert_int_equal(chat_parse_before("9223372036854775807", &v), 0);
    assert_true(v == LLONG_MAX);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 77;
        assert_int_equal(chat_parse_before(bad[i], &v), -1);
        assert_true(v == 77);
    }
}

/* SHA-256 over "<room id>" NUL "<content>": the room and the content both tell requests apart, and the NUL
 * keeps room 5 + "1hello" apart from room 51 + "hello". */
static void test_idem_fingerprint(void **state)
{
    char a[CHAT_FINGERPRINT_HEX], b[CHAT_FINGERPRINT_HEX];
    (void)state;

    chat_idem_fingerprint(5, "hello", 5, a);
    assert_string_equal(a, "3d4c083fcbeca5fb370ebcaeec1999e3ff3a920e12fdc584bd55bda6718e560c");
    chat_idem_fingerprint(5, "", 0, a);
    assert_string_equal(a, "166f829e016f2315a8099e3a8d2dbec6d91572379ff02c760ba4e0335789d47f");
    chat_idem_fingerprint(51, "hello", 5, a);
    assert_string_equal(a, "fc89d9646574d62ba03b8778d5da5ee8b9b3c0e44a5dc8fb8c5adb206d123751");
    chat_idem_fingerprint(5, "1hello", 6, b);
    assert_string_not_equal(a, b);
    chat_idem_fingerprint(5, "hello!", 5, b); /* only len bytes count */
    chat_idem_fingerprint(5, "hello", 5, a);
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), 64);
}

static void test_seconds_to_midnight(void **state)
{
    const time_t day = 1795305600; /* 2026-11-22T00:00:00Z */
    (void)state;

    assert_int_equal(chat_seconds_to_midnight(day), 86400);
    assert_int_equal(chat_seconds_to_midnight(day + 1), 86399);
    assert_int_equal(chat_seconds_to_midnight(day + 36900), 86400 - 36900); /* 10:15:00 */
    assert_int_equal(chat_seconds_to_midnight(day + 86399), 1);
    assert_int_equal(chat_seconds_to_midnight(day + 86400), 86400);
    assert_int_equal(chat_seconds_to_midnight(0), 86400);
    assert_int_equal(chat_seconds_to_midnight(-1), 1);
    for (time_t t = day - 5000; t < day + 200000; t += 977) {
        long s = chat_seconds_to_midnight(t);
        assert_true(s >= 1 && s <= 86400);
        assert_int_equal((t + s) % 86400, 0);
    }
}

static void test_utc_day(void **state)
{
    char d[11];
    const time_t day = 1795305600; /* 2026-11-22T00:00:00Z */
    (void)state;

    chat_utc_day(day, d);
    assert_string_equal(d, "2026-11-22");
    chat_utc_day(day - 1, d);
    assert_string_equal(d, "2026-11-21");
    chat_utc_day(day + 86399, d);
    assert_string_equal(d, "2026-11-22");
    chat_utc_day(0, d);
    assert_string_equal(d, "1970-01-01");
    chat_utc_day(951782400, d); /* 2000-02-29 (leap day) */
    assert_string_equal(d, "2000-02-29");
}

static void test_cache_body(void **state)
{
    (void)state;

    assert_true(chat_cache_is_body("{\"chatrooms\":[]}", 16));
    assert_false(chat_cache_is_body("~0123456789abcdef", 17)); /* tombstone */
    assert_false(chat_cache_is_body("", 0));
    assert_false(chat_cache_is_body(NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_default_and_bounds),
        cmocka_unit_test(test_limit_invalid),
        cmocka_unit_test(test_before),
        cmocka_unit_test(test_idem_fingerprint),
        cmocka_unit_test(test_seconds_to_midnight),
        cmocka_unit_test(test_utc_day),
        cmocka_unit_test(test_cache_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
