/* Unit tests for jsonv.c: string fields (trim, bounds, types), mobile normalisation, compact dumps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "jsonv.h"

static void test_string(void **state)
{
    (void)state;
    char out[32], err[JSONV_ERRLEN];
    json_object *o = json_tokener_parse("{\"t\":\"  hi  \",\"n\":5,\"z\":null,\"e\":\"   \",\"u\":\"\\u00e9\\u00e9\"}");
    assert_int_equal(jsonv_string(o, "t", 1, 1, 1, 10, out, sizeof out, err), 0);
    assert_string_equal(out, "hi");
    assert_int_equal(jsonv_string(o, "t", 1, 0, 1, 10, out, sizeof out, err), 0);
    assert_string_equal(out, "  hi  ");
    assert_int_equal(jsonv_string(o, "missing", 0, 1, 1, 10, out, sizeof out, err), 1);
    assert_int_equal(jsonv_string(o, "missing", 1, 1, 1, 10, out, sizeof out, err), -1);
    assert_non_null(strstr(err, "missing is required"));
    assert_int_equal(jsonv_string(o, "z", 0, 1, 1, 10, out, sizeof out, err), 1); /* null = absent */
    assert_int_equal(jsonv_string(o, "n", 1, 1, 1, 10, out, sizeof out, err), -1);
    assert_non_null(strstr(err, "must be a string"));
    assert_int_equal(jsonv_string(o, "e", 1, 1, 1, 10, out, sizeof out, err), -1); /* blank after trim */
    assert_int_equal(jsonv_string(o, "t", 1, 1, 3, 10, out, sizeof out, err), -1); /* too short */
    assert_int_equal(jsonv_string(o, "u", 1, 1, 2, 2, out, sizeof out, err), 0);   /* 2 code points, 4 bytes */
    assert_int_equal(jsonv_string(o, "u", 1, 1, 1, 1, out, sizeof out, err), -1);
    assert_int_equal(jsonv_string(o, "u", 1, 1, 1, 10, out, 4, err), -1); /* does not fit the buffer */
    json_object_put(o);
}

static void test_mobile(void **state)
{
    (void)state;
    char out[17];
    assert_int_equal(mobile_normalize("+1 555-123-4567", out), 0);
    assert_string_equal(out, "+15551234567");
    assert_int_equal(mobile_normalize("12345678", out), 0);
    assert_string_equal(out, "12345678");
    assert_int_equal(mobile_normalize("123456789012345", out), 0);
    assert_int_equal(mobile_normalize("+123456789012345", out), 0);
    assert_int_equal(mobile_normalize("1234567", out), -1);          /* 7 digits */
    assert_int_equal(mobile_normalize("1234567890123456", out), -1); /* 16 digits */
    assert_int_equal(mobile_normalize("12+3456789", out), -1);
    assert_int_equal(mobile_normalize("++12345678", out), -1);
    assert_int_equal(mobile_normalize("12345678a", out), -1);
    assert_int_equal(mobile_normalize("", out), -1);
    assert_int_equal(mobile_normalize("+", out), -1);
    assert_int_equal(mobile_normalize(NULL, out), -1);

    char err[JSONV_ERRLEN];
    json_object *o = json_tokener_parse("{\"m\":\" +44 20 7946-0958 \",\"bad\":123}");
    assert_int_equal(jsonv_mobile(o, "m", out, err), 0);
    assert_string_equal(out, "+442079460958");
    assert_int_equal(jsonv_mobile(o, "bad", out, err), -1);
    assert_int_equal(jsonv_mobile(o, "absent", out, err), -1);
    json_object_put(o);
}

static void test_dump(void **state)
{
    (void)state;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "url", json_object_new_string("https://x/y"));
    json_object_object_add(o, "n", json_object_new_int(3));
    size_t len;
    const char *s = jsonv_dump(o, &len);
    assert_string_equal(s, "{\"url\":\"https://x/y\",\"n\":3}");
    assert_int_equal(len, strlen(s));
    json_object_put(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_string),
        cmocka_unit_test(test_mobile),
        cmocka_unit_test(test_dump),
    };
    return cmocka_run_group_tests_name("jsonv", tests, NULL, NULL);
}
