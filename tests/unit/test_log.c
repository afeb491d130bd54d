/* Unit tests for log.c: text and JSON lines on stderr, sanitising, the request context, levels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "log.h"

/* Run fn with stderr sent to a temporary file; returns what was written (static buffer). */
static const char *capture(void (*fn)(void))
{
    static char out[8192];
    char path[] = "/tmp/gb-log-test.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, out, sizeof out - 1);
    close(fd);
    unlink(path);
    out[n > 0 ? n : 0] = '\0';
    return out;
}

static void text_lines(void)
{
    log_setup("t", LOG_INFO, LOG_FORMAT_TEXT, LOG_TARGET_STDERR);
    log_debug("hidden %d", 1);
    log_info("two\nlines\x01");
    log_set_context("rid-1", 42);
    log_warn("in a request");
    log_set_context(NULL, 0);
}

static void test_text(void **state)
{
    (void)state;
    const char *out = capture(text_lines);
    assert_null(strstr(out, "hidden"));
    assert_non_null(strstr(out, " t["));
    assert_non_null(strstr(out, " INFO two?lines?\n"));
    assert_non_null(strstr(out, " WARN in a request rid=rid-1 uid=42\n"));
    /* exactly two lines */
    int n = 0;
    for (const char *p = out; *p; p++)
        n += *p == '\n';
    assert_int_equal(n, 2);
}

static void json_lines(void)
{
    log_setup("j", LOG_DEBUG, LOG_FORMAT_JSON, LOG_TARGET_STDERR);
    log_set_context("r\"2", 7);
    log_error("quote \" backslash \\ nl \n bad \xff utf8 \xc3\xa9");
    log_set_context(NULL, 0);
    log_debug("plain");
}

static void test_json(void **state)
{
    (void)state;
    const char *out = capture(json_lines);
    const char *nl = strchr(out, '\n');
    assert_non_null(nl);
    char first[2048];
    memcpy(first, out, (size_t)(nl - out));
    first[nl - out] = '\0';
    json_object *o = json_tokener_parse(first);
    assert_non_null(o);
    json_object *v;
    assert_true(json_object_object_get_ex(o, "level", &v));
    assert_string_equal(json_object_get_string(v), "error");
    assert_true(json_object_object_get_ex(o, "prog", &v));
    assert_string_equal(json_object_get_string(v), "j");
    assert_true(json_object_object_get_ex(o, "msg", &v));
    assert_string_equal(json_object_get_string(v), "quote \" backslash \\ nl \n bad ? utf8 \xc3\xa9");
    assert_true(json_object_object_get_ex(o, "request_id", &v));
    assert_string_equal(json_object_get_string(v), "r\"2");
    assert_true(json_object_object_get_ex(o, "user_id", &v));
    assert_int_equal(json_object_get_int64(v), 7);
    json_object_put(o);
    json_object *second = json_tokener_parse(nl + 1);
    assert_non_null(second);
    assert_false(json_object_object_get_ex(second, "request_id", &v));
    json_object_put(second);
}

static void test_parse(void **state)
{
    (void)state;
    assert_int_equal(log_level_parse("warning"), LOG_WARN);
    assert_int_equal(log_level_parse("DEBUG"), LOG_DEBUG);
    assert_int_equal(log_level_parse("loud"), -1);
    assert_int_equal(log_format_parse("json"), LOG_FORMAT_JSON);
    assert_int_equal(log_format_parse("xml"), -1);
    assert_int_equal(log_target_parse("syslog"), LOG_TARGET_SYSLOG);
    assert_int_equal(log_target_parse(NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
