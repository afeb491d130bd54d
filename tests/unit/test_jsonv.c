/* Unit tests for jsonv.c: string fields (trim, bounds, types), mobile normalisation, compact dumps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
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

/* The value of field "v" of {"v": s} trimmed into out; the jsonv_string return code. */
static int trim_one(const char *s, char *out, size_t size)
{
    char err[JSONV_ERRLEN];
    json_object *o = json_object_new_object();
    json_object_object_add(o, "v", json_object_new_string(s));
    int rc = jsonv_string(o, "v", 1, 1, 1, 100, out, size, err);
    json_object_put(o);
    return rc;
}

/* Every Unicode White_Space code point is trimmed at both ends; ZWSP and BOM are not White_Space. */
static void test_trim_unicode(void **state)
{
    (void)state;
    static const char *spaces[] = {
        "\t",           "\n",           "\v",           "\f",           "\r",           " ",
        "\xc2\x85",     "\xc2\xa0",     "\xe1\x9a\x80", "\xe2\x80\x80", "\xe2\x80\x81", "\xe2\x80\x85",
        "\xe2\x80\x8a", "\xe2\x80\xa8", "\xe2\x80\xa9", "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe3\x80\x80",
    };
    char in[64], out[64];
    for (size_t i = 0; i < sizeof spaces / sizeof spaces[0]; i++) {
        const char *sp = spaces[i];
        snprintf(in, sizeof in, "%s%s", sp, sp);
        assert_int_equal(trim_one(in, out, sizeof out), -1); /* only White_Space: empty */
        snprintf(in, sizeof in, "%s%sx%sy%s", sp, sp, sp, sp);
        assert_int_equal(trim_one(in, out, sizeof out), 0);
        snprintf(in, sizeof in, "x%sy", sp); /* inner spaces stay */
        assert_string_equal(out, in);
    }
    /* a mix, and the "one ideographic space" content of the audit */
    assert_int_equal(trim_one("\xe3\x80\x80", out, sizeof out), -1);
    assert_int_equal(trim_one("\xc2\xa0 \xe2\x80\xa8\t\xe3\x80\x80", out, sizeof out), -1);
    assert_int_equal(trim_one("\xe2\x80\xa9\xc2\xa0hi\xe2\x80\xaf\xc2\x85", out, sizeof out), 0);
    assert_string_equal(out, "hi");
    /* not White_Space: U+200B ZERO WIDTH SPACE, U+FEFF BOM, U+180E, U+200C, U+2060, and look-alikes */
    static const char *kept[] = {"\xe2\x80\x8b", "\xef\xbb\xbf", "\xe1\xa0\x8e", "\xe2\x80\x8c", "\xe2\x81\xa0",
                                 "\xc2\xa1",     "\xe2\x80\x8f", "\xe3\x80\x81", "\xe2\x80\xb0"};
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        assert_int_equal(trim_one(kept[i], out, sizeof out), 0);
        assert_string_equal(out, kept[i]);
        snprintf(in, sizeof in, " %s\xe3\x80\x80", kept[i]);
        assert_int_equal(trim_one(in, out, sizeof out), 0);
        assert_string_equal(out, kept[i]);
    }
    /* other non-ASCII text next to the ends is untouched (its last bytes are not a space) */
    assert_int_equal(trim_one("\xc3\xa9t\xc3\xa9\xe2\x80\x80", out, sizeof out), 0);
    assert_string_equal(out, "\xc3\xa9t\xc3\xa9");
    assert_int_equal(trim_one("\xf0\x9f\x98\x80 ", out, sizeof out), 0); /* a 4-byte emoji at the end */
    assert_string_equal(out, "\xf0\x9f\x98\x80");
    assert_int_equal(trim_one("\xe2\x80\x80\xf0\x9f\x98\x80", out, sizeof out), 0);
    assert_string_equal(out, "\xf0\x9f\x98\x80");
}

static void test_mobile(void **state)
{
    (void)state;
    char out[17];
    assert_int_equal(mobile_normalize("+1 555-123-4567", out), 0);
    assert_string_equal(out, "+15551234567");
    assert_int_equal(mobile_normalize("15551234567", out), 0); /* the same account: E.164 always has the + */
    assert_string_equal(out, "+15551234567");
    assert_int_equal(mobile_normalize("1-555-123 4567", out), 0);
    assert_string_equal(out, "+15551234567");
    assert_int_equal(mobile_normalize("12345678", out), 0);
    assert_string_equal(out, "+12345678");
    assert_int_equal(mobile_normalize("123456789012345", out), 0);
    assert_string_equal(out, "+123456789012345");
    assert_int_equal(mobile_normalize("+123456789012345", out), 0);
    assert_string_equal(out, "+123456789012345");
    assert_int_equal(mobile_normalize(" + 1234 5678", out), 0); /* spaces around the + are stripped too */
    assert_string_equal(out, "+12345678");
    assert_int_equal(mobile_normalize("1234567", out), -1);          /* 7 digits */
    assert_int_equal(mobile_normalize("1234567890123456", out), -1); /* 16 digits */
    assert_int_equal(mobile_normalize("12+3456789", out), -1);
    assert_int_equal(mobile_normalize("++12345678", out), -1);
    assert_int_equal(mobile_normalize("12345678a", out), -1);
    assert_int_equal(mobile_normalize("", out), -1);
    assert_int_equal(mobile_normalize("+", out), -1);
    assert_int_equal(mobile_normalize("+1234567", out), -1);  /* 7 digits with the + */
    assert_int_equal(mobile_normalize("1234+5678", out), -1); /* a + only in front */
    assert_int_equal(mobile_normalize("+ - ", out), -1);
    assert_int_equal(mobile_normalize(NULL, out), -1);

    char err[JSONV_ERRLEN];
    json_object *o = json_tokener_parse("{\"m\":\" +44 20 7946-0958 \",\"bad\":123}");
    assert_int_equal(jsonv_mobile(o, "m", out, err), 0);
    assert_string_equal(out, "+442079460958");
    json_object *o2 = json_tokener_parse("{\"m\":\"44 20 7946-0958\"}");
    assert_int_equal(jsonv_mobile(o2, "m", out, err), 0);
    assert_string_equal(out, "+442079460958");
    json_object_put(o2);
    assert_int_equal(jsonv_mobile(o, "bad", out, err), -1);
    assert_int_equal(jsonv_mobile(o, "absent", out, err), -1);
    json_object_put(o);
}

#define NOT_TEXT(s) jsonv_not_text(s, sizeof(s) - 1)

static void test_not_text(void **state)
{
    (void)state;
    assert_null(NOT_TEXT(""));
    assert_null(NOT_TEXT("{\"a\":\"\xc3\xa9 \\ud83d\\ude00\"}"));
    assert_null(NOT_TEXT("not json, but text")); /* the parser's to refuse */
    /* bytes json-c's own check lets through: an overlong '/', an encoded surrogate, past U+10FFFF; a stray byte */
    assert_string_equal(NOT_TEXT("{\"a\":\"\xc0\xaf\"}"), "is not valid UTF-8");
    assert_string_equal(NOT_TEXT("{\"a\":\"\xed\xa0\x80\"}"), "is not valid UTF-8");
    assert_string_equal(NOT_TEXT("{\"a\":\"\xf4\x90\x80\x80\"}"), "is not valid UTF-8");
    assert_string_equal(NOT_TEXT("{\"\xff\":1}"), "is not valid UTF-8");
    assert_string_equal(NOT_TEXT("{\"a\":\"\\udc00\"}"), "has a \\u escape of a lone surrogate, which is not text");
    /* raw control characters inside strings (json-c takes them, even strict); escaped ones and whitespace
     * between tokens are fine */
    assert_string_equal(NOT_TEXT("{\"title\":\"nl\nhere\"}"), "has an unescaped control character in a string");
    assert_string_equal(NOT_TEXT("{\"a\":\"tab\there\"}"), "has an unescaped control character in a string");
    assert_string_equal(NOT_TEXT("{\"a\x01\":1}"), "has an unescaped control character in a string");
    assert_null(NOT_TEXT("{\n\t\"a\" :\r\n \"x\\ny\\t\\u0001\\\\\"}\n"));
    /* what json-c alone does with one */
    json_tokener *tok = json_tokener_new();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, "{\"a\":\"x\ny\"}", 11);
    assert_non_null(o);
    json_object_put(o);
    json_tokener_free(tok);
}

#define LONE(s) jsonv_lone_surrogate(s, sizeof(s) - 1)

static void test_lone_surrogate(void **state)
{
    (void)state;
    /* lone surrogates: a high one alone, at the end, before another high one or before a non-surrogate escape;
     * a low one alone, or first */
    assert_int_equal(LONE("{\"a\":\"\\ud800\"}"), 1);
    assert_int_equal(LONE("{\"a\":\"x\\uD83D\"}"), 1);
    assert_int_equal(LONE("{\"a\":\"\\ud800\\ud800\"}"), 1);
    assert_int_equal(LONE("{\"a\":\"\\ud800\\u0041\"}"), 1);
    assert_int_equal(LONE("{\"a\":\"\\ud800x\\udc00\"}"), 1); /* the low one must follow at once */
    assert_int_equal(LONE("{\"a\":\"\\udc00\"}"), 1);
    assert_int_equal(LONE("{\"a\":\"\\uDFFF\\uD800\"}"), 1);
    assert_int_equal(LONE("{\"\\ud800\":1}"), 1); /* in a key as well */
    assert_int_equal(LONE("[\"ok\",{\"b\":[\"\\udbff\"]}]"), 1);
    /* fine: pairs, other escapes, an escaped backslash before a "u", surrogates written outside strings */
    assert_int_equal(LONE("{\"a\":\"\\ud83d\\ude00\"}"), 0);
    assert_int_equal(LONE("{\"a\":\"\\uDBFF\\uDFFF \\u00e9 \\u0000\"}"), 0);
    assert_int_equal(LONE("{\"a\":\"\\\\ud800\"}"), 0);        /* \\ then the text "ud800" */
    assert_int_equal(LONE("{\"a\":\"\\\"\\\\\",\"b\":1}"), 0); /* \" and \\ inside a string */
    assert_int_equal(LONE("{\"a\":1} ud800"), 0);
    assert_int_equal(LONE(""), 0);
    assert_int_equal(LONE("{\"a\":\"\\ud8"), 0); /* malformed: left to the parser */
    /* what json-c alone would do, and why the check exists: the lone surrogate becomes U+FFFD */
    json_object *o = json_tokener_parse("{\"a\":\"\\ud800\"}");
    assert_non_null(o);
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
        cmocka_unit_test(test_string),         cmocka_unit_test(test_trim_unicode), cmocka_unit_test(test_mobile),
        cmocka_unit_test(test_lone_surrogate), cmocka_unit_test(test_not_text),     cmocka_unit_test(test_dump),
    };
    return cmocka_run_group_tests_name("jsonv", tests, NULL, NULL);
}
