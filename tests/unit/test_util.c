/* Unit tests for util.c: buffers, the request pool, parse_ll, RFC 3339 formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include <string.h>

#include "util.h"

static void test_buf(void **state)
{
    (void)state;
    buf_t b = {0};
    buf_puts(&b, "abc");
    buf_printf(&b, "-%d-%s", 42, "x");
    assert_string_equal(b.data, "abc-42-x");
    assert_int_equal(b.len, 8);
    for (int i = 0; i < 10000; i++)
        buf_append(&b, "0123456789", 10);
    assert_int_equal(b.len, 8 + 100000);
    assert_int_equal(b.data[b.len], '\0');
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    buf_free(&b);
    assert_null(b.data);
    buf_free(&b); /* twice is fine */
}

static void test_pool(void **state)
{
    (void)state;
    pool_t *p = pool_new();
    char *a = pool_strdup(p, "hello");
    char *big = pool_alloc(p, 100000); /* larger than a chunk */
    char *c = pool_printf(p, "%s-%d", a, 7);
    assert_string_equal(a, "hello");
    assert_string_equal(c, "hello-7");
    assert_int_equal(((uintptr_t)big) % 16, 0);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(big[i], 0);
    assert_null(pool_strdup(p, NULL));
    assert_string_equal(pool_strndup(p, "abcdef", 3), "abc");
    pool_reset(p);
    char *d = pool_strdup(p, "again");
    assert_string_equal(d, "again");
    pool_free(p);
    pool_free(NULL);
}

static void test_parse_ll(void **state)
{
    (void)state;
    long long v = 0;
    assert_int_equal(parse_ll("42", 0, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(parse_ll("-5", -10, 10, &v), 0);
    assert_int_equal(v, -5);
    assert_int_equal(parse_ll("101", 0, 100, &v), -1);
    assert_int_equal(parse_ll("", 0, 100, &v), -1);
    assert_int_equal(parse_ll("-", -10, 100, &v), -1);
    assert_int_equal(parse_ll("12abc", 0, 100, &v), -1);
    assert_int_equal(parse_ll(" 1", 0, 100, &v), -1);
    assert_int_equal(parse_ll("+1", 0, 100, &v), -1);
    assert_int_equal(parse_ll("9223372036854775807", 0, INT64_MAX, &v), 0);
    assert_int_equal(parse_ll("9223372036854775808", 0, INT64_MAX, &v), -1);
    assert_int_equal(parse_ll("99999999999999999999", 0, INT64_MAX, &v), -1);
    assert_int_equal(parse_ll(NULL, 0, 1, &v), -1);
}

static void test_rfc3339(void **state)
{
    (void)state;
    char s[32];
    fmt_rfc3339(0, s);
    assert_string_equal(s, "1970-01-01T00:00:00Z");
    fmt_rfc3339(1795342500, s);
    assert_string_equal(s, "2026-11-22T10:15:00Z");
}

static void test_hex_random(void **state)
{
    (void)state;
    const unsigned char in[] = {0x00, 0x0f, 0xa5, 0xff};
    char out[9];
    hex_encode(in, sizeof in, out);
    assert_string_equal(out, "000fa5ff");
    char a[33], b[33];
    assert_int_equal(random_hex(a, 16), 0);
    assert_int_equal(random_hex(b, 16), 0);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strspn(a, "0123456789abcdef"), 32);
    assert_string_not_equal(a, b);
    char big[200];
    assert_int_equal(random_hex(big, 65), -1); /* over the helper's 64-byte bound */

    /* random_bytes fills all of a large buffer (getrandom(2) may hand out less than asked: the rest is drawn
     * again): zero bytes at the expected rate (1/256, about 256 here) and nowhere in a run of 64 */
    enum { BIG = 65536 };
    unsigned char *r = calloc(BIG, 1);
    assert_non_null(r);
    assert_int_equal(random_bytes(r, BIG), 0);
    size_t zeros = 0, run = 0, longest = 0;
    for (size_t i = 0; i < BIG; i++) {
        zeros += r[i] == 0;
        run = r[i] == 0 ? run + 1 : 0;
        longest = run > longest ? run : longest;
    }
    free(r);
    assert_true(zeros < 512);
    assert_true(longest < 64);
    assert_int_equal(random_bytes(big, 0), 0);
}

/* RFC 4231 test cases 1, 2 and 6 (a key longer than SHA-256's block), the message whole or in two parts at
 * every split: the same MAC. */
static void test_hmac_sha256(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        size_t keylen;
        const char *msg;
        const char *hex;
    } cases[] = {
        {"\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b", 20, "Hi There",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {"Jefe", 4, "what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {NULL, 131, "Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
        {"", 0, "", "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"},
    };
    unsigned char big_key[131], mac[HMAC_SHA256_LEN];
    char hex[2 * HMAC_SHA256_LEN + 1];

    memset(big_key, 0xaa, sizeof big_key);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const void *key = cases[i].key ? (const void *)cases[i].key : big_key;
        size_t len = strlen(cases[i].msg);
        for (size_t split = 0; split <= len; split++) {
            memset(mac, 0, sizeof mac);
            hmac_sha256(key, cases[i].keylen, cases[i].msg, split, split < len ? cases[i].msg + split : NULL,
                        len - split, mac);
            hex_encode(mac, sizeof mac, hex);
            assert_string_equal(hex, cases[i].hex);
        }
    }
}

static void test_url_for_log(void **state)
{
    (void)state;
    static const char *cases[][2] = {
        {"https://user:s3cret@example.com/v1beta", "https://user:***@example.com/v1beta"},
        {"http://:pw@host:8080/x?y=a:b@c", "http://:***@host:8080/x?y=a:b@c"},
        {"https://us:er:p@ss@host/", "https://us:***@host/"},
        {"https://user@host/a:b@c", "https://user@host/a:b@c"}, /* no password; '@' and ':' past the host */
        {"https://host:443/v1", "https://host:443/v1"},
        {"http://127.0.0.1:9/x", "http://127.0.0.1:9/x"},
        {"not a url", "not a url"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_t b = {0};
        url_for_log(&b, cases[i][0]);
        assert_string_equal(b.data, cases[i][1]);
        buf_free(&b);
    }
}

static void test_capped(void **state)
{
    (void)state;
    capped_t c = {.max = 5};
    char data[] = "abcdef";
    assert_int_equal(capped_write(data, 1, 3, &c), 3);
    assert_int_equal(capped_write(data, 1, 2, &c), 2);
    assert_int_equal(c.too_big, 0);
    assert_int_equal(capped_write(data, 1, 1, &c), 0);
    assert_int_equal(c.too_big, 1);
    assert_int_equal(c.b.len, 5);
    assert_memory_equal(c.b.data, "abcab", 5);
    buf_free(&c.b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf),         cmocka_unit_test(test_pool),        cmocka_unit_test(test_parse_ll),
        cmocka_unit_test(test_rfc3339),     cmocka_unit_test(test_hex_random),  cmocka_unit_test(test_capped),
        cmocka_unit_test(test_hmac_sha256), cmocka_unit_test(test_url_for_log),
    };
    return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
