/* Unit tests for the pure parts of lib/account: the printable and email rules and every input field rule
 * (name, email, password, new password, otp) with the 400 messages they leave. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "account.h"
#include "password.h"

/* {"<field>": <json value>} */
static json_object *with(const char *field, const char *value)
{
    char s[2048];
    snprintf(s, sizeof s, "{\"%s\":%s}", field, value);
    json_object *o = json_tokener_parse(s);
    assert_non_null(o);
    return o;
}

/* A JSON string literal of n copies of the UTF-8 sequence unit. */
static const char *repeat(const char *unit, int n)
{
    static char s[1800];
    size_t len = strlen(unit), o = 0;
    s[o++] = '"';
    for (int i = 0; i < n && o + len + 2 < sizeof s; i++, o += len)
        memcpy(s + o, unit, len);
    s[o++] = '"';
    s[o] = '\0';
    return s;
}

static void test_printable(void **state)
{
    (void)state;
    assert_true(account_printable("Ada Lovelace"));
    assert_true(account_printable(""));
    assert_true(account_printable("Zo\xc3\xab \xe6\x9d\x8e")); /* UTF-8 bytes are not control characters */
    assert_false(account_printable("a\tb"));
    assert_false(account_printable("a\nb"));
    assert_false(account_printable("\x1f"));
    assert_false(account_printable("del\x7f"));
}

static void test_valid_email(void **state)
{
    (void)state;
    assert_true(account_valid_email("a@b.co"));
    assert_true(account_valid_email("first.last+tag@mail.example.org"));
    assert_false(account_valid_email(""));
    assert_false(account_valid_email("plain"));
    assert_false(account_valid_email("@b.co"));    /* empty local part */
    assert_false(account_valid_email("a@b"));      /* one label */
    assert_false(account_valid_email("a@@b.co"));  /* two '@' */
    assert_false(account_valid_email("a@b@c.co")); /* two '@' */
    assert_false(account_valid_email("a@.b"));     /* empty label */
    assert_false(account_valid_email("a@b..c"));   /* empty label */
    assert_false(account_valid_email("a@b."));     /* empty last label */
    assert_false(account_valid_email("a b@c.de")); /* space */
    assert_false(account_valid_email("a@c.de\r")); /* control character */
}

static void test_name_field(void **state)
{
    char out[ACCOUNT_NAME_BUF], err[ACCOUNT_ERRLEN];
    json_object *o;
    (void)state;

    o = json_object_new_object();
    assert_int_equal(account_name_field(o, out, err), 1); /* optional */
    json_object_put(o);
    o = with("name", "null");
    assert_int_equal(account_name_field(o, out, err), 1); /* null is absent */
    json_object_put(o);
    o = with("name", "\"  Ada  \"");
    assert_int_equal(account_name_field(o, out, err), 0);
    assert_string_equal(out, "Ada");
    json_object_put(o);
    o = with("name", "\"   \"");
    assert_int_equal(account_name_field(o, out, err), -1);
    assert_string_equal(err, "name must not be empty.");
    json_object_put(o);
    o = with("name", repeat("x", ACCOUNT_NAME_MAX));
    assert_int_equal(account_name_field(o, out, err), 0);
    json_object_put(o);
    o = with("name", repeat("\xe6\x9d\x8e", ACCOUNT_NAME_MAX)); /* 100 characters of 3 bytes fit */
    assert_int_equal(account_name_field(o, out, err), 0);
    assert_int_equal(strlen(out), 3 * ACCOUNT_NAME_MAX);
    json_object_put(o);
    o = with("name", repeat("x", ACCOUNT_NAME_MAX + 1));
    assert_int_equal(account_name_field(o, out, err), -1);
    assert_string_equal(err, "name must be 1 to 100 characters.");
    json_object_put(o);
    o = with("name", "\"Ada\\u0007\"");
    assert_int_equal(account_name_field(o, out, err), -1);
    assert_string_equal(err, "name must not contain control or text-direction characters.");
    json_object_put(o);
    /* C1 controls (U+0085 NEL, U+009B CSI), a line separator and the bidi overrides and isolates: refused */
    const char *bad[] = {"\"a\\u0085b\"", "\"a\\u009bb\"", "\"a\\u2028b\"", "\"a\\u202eb\"", "\"a\\u2067b\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o = with("name", bad[i]);
        assert_int_equal(account_name_field(o, out, err), -1);
        json_object_put(o);
    }
    /* letters of any script, ZWJ emoji and a right-to-left name stay */
    o = with("name", "\"\xd7\xa9\xd7\xa8\xd7\x94 \xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb \xc3\xa9\u00a0x\"");
    assert_int_equal(account_name_field(o, out, err), 0);
    json_object_put(o);
    o = with("name", "42");
    assert_int_equal(account_name_field(o, out, err), -1);
    assert_string_equal(err, "name must be a string.");
    json_object_put(o);
}

static void test_email_field(void **state)
{
    char out[ACCOUNT_EMAIL_BUF], err[ACCOUNT_ERRLEN];
    json_object *o;
    (void)state;

    o = json_object_new_object();
    assert_int_equal(account_email_field(o, out, err), 1);
    json_object_put(o);
    o = with("email", "\" ada@example.com \"");
    assert_int_equal(account_email_field(o, out, err), 0);
    assert_string_equal(out, "ada@example.com");
    json_object_put(o);
    o = with("email", "\"ab\"");
    assert_int_equal(account_email_field(o, out, err), -1);
    assert_string_equal(err, "email must be 3 to 254 characters.");
    json_object_put(o);
    o = with("email", "\"ada@example\"");
    assert_int_equal(account_email_field(o, out, err), -1);
    assert_string_equal(err, "email must be a valid email address.");
    json_object_put(o);
    o = with("email", repeat("a", ACCOUNT_EMAIL_MAX + 1));
    assert_int_equal(account_email_field(o, out, err), -1);
    json_object_put(o);
    /* the limit counts characters: 250 of two bytes and "@b.c" are 254 characters (504 bytes) */
    char long_email[600];
    memset(long_email, 0, sizeof long_email);
    long_email[0] = '"';
    for (int i = 0; i < 250; i++)
        memcpy(long_email + 1 + 2 * i, "\xc3\xa9", 2);
    strcat(long_email, "@b.c\"");
    o = with("email", long_email);
    assert_int_equal(account_email_field(o, out, err), 0);
    assert_int_equal(strlen(out), 504);
    json_object_put(o);
}

static void test_password_field(void **state)
{
    char err[ACCOUNT_ERRLEN];
    const char *pw = "x";
    size_t len = 99;
    json_object *o;
    (void)state;

    o = json_object_new_object();
    assert_int_equal(account_password_field(o, "password", 0, &pw, &len, err), 1);
    assert_null(pw);
    assert_int_equal(account_password_field(o, "password", 1, &pw, &len, err), -1);
    assert_string_equal(err, "password is required.");
    json_object_put(o);
    o = with("password", "null");
    assert_int_equal(account_password_field(o, "password", 0, &pw, &len, err), 1);
    json_object_put(o);
    o = with("password", "12345678");
    assert_int_equal(account_password_field(o, "password", 0, &pw, &len, err), -1);
    assert_string_equal(err, "password must be a string.");
    json_object_put(o);
    o = with("current_password", "\" any \"");
    assert_int_equal(account_password_field(o, "current_password", 1, &pw, &len, err), 0);
    assert_string_equal(pw, " any "); /* passwords are not trimmed, and any length is read */
    assert_int_equal(len, 5);
    json_object_put(o);
}

static void test_new_password_field(void **state)
{
    char err[ACCOUNT_ERRLEN];
    const char *pw;
    size_t len;
    json_object *o;
    (void)state;

    o = with("new_password", "\"short\"");
    assert_int_equal(account_new_password_field(o, "new_password", 1, &pw, &len, err), -1);
    assert_string_equal(err, "new_password must be 8 to 128 characters.");
    json_object_put(o);
    o = with("new_password", repeat("p", PASSWORD_MIN_CHARS));
    assert_int_equal(account_new_password_field(o, "new_password", 1, &pw, &len, err), 0);
    assert_int_equal(len, PASSWORD_MIN_CHARS);
    json_object_put(o);
    o = with("new_password", repeat("p", PASSWORD_MAX_CHARS));
    assert_int_equal(account_new_password_field(o, "new_password", 1, &pw, &len, err), 0);
    json_object_put(o);
    o = with("new_password", repeat("p", PASSWORD_MAX_CHARS + 1));
    assert_int_equal(account_new_password_field(o, "new_password", 1, &pw, &len, err), -1);
    json_object_put(o);
    o = json_object_new_object();
    assert_int_equal(account_new_password_field(o, "password", 0, &pw, &len, err), 1); /* signup: optional */
    assert_int_equal(account_new_password_field(o, "new_password", 1, &pw, &len, err), -1);
    assert_string_equal(err, "new_password is required.");
    json_object_put(o);
}

static void test_otp_field(void **state)
{
    char code[OTP_DIGITS + 1], err[ACCOUNT_ERRLEN];
    static const char *bad[] = {"\"12345\"",
                                "\"1234567\"",
                                "\"12ab56\"",
                                "\"12 456\"",
                                "\"\"",
                                "123456",
                                "\"\\uff11\\uff12\\uff13\\uff14\\uff15\\uff16\"" /* full-width digits */};
    json_object *o;
    (void)state;

    o = with("otp", "\"012345\"");
    assert_int_equal(account_otp_field(o, code, err), 0);
    assert_string_equal(code, "012345");
    json_object_put(o);
    o = with("otp", "\" 654321 \"");
    assert_int_equal(account_otp_field(o, code, err), 0);
    assert_string_equal(code, "654321");
    json_object_put(o);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o = with("otp", bad[i]);
        err[0] = '\0';
        assert_int_equal(account_otp_field(o, code, err), -1);
        assert_string_equal(err, "otp must be a 6-digit code.");
        json_object_put(o);
    }
    o = json_object_new_object();
    assert_int_equal(account_otp_field(o, code, err), -1);
    assert_string_equal(err, "otp is required.");
    json_object_put(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_printable),      cmocka_unit_test(test_valid_email),
        cmocka_unit_test(test_name_field),     cmocka_unit_test(test_email_field),
        cmocka_unit_test(test_password_field), cmocka_unit_test(test_new_password_field),
        cmocka_unit_test(test_otp_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
