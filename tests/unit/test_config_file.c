/* Unit tests for the ENV_FILE reader of config.c on lines the fuzzer's config target pointed at: a line longer
 * than a read buffer stays one line (its tail never becomes a setting of its own), error messages count lines
 * right after a long one, and a line over the cap or with a NUL byte is refused with its number. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char path[] = "/tmp/gb-config-file-XXXXXX";

/* ENV_FILE with text[0..len) and nothing else deciding: the settings these tests use are cleared. */
static int load(const char *text, size_t len, char *err, size_t errlen)
{
    static const char *vars[] = {"APP_ENV",           "PORT",           "AI_SYSTEM_PROMPT", "JWT_SECRET",
                                 "BASIC_DAILY_LIMIT", "DATABASE_URL",   "REDIS_URL",        "AI_PROVIDER",
                                 "GEMINI_API_KEY",    "OPENAI_API_KEY", "LOG_LEVEL"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    strcpy(path, "/tmp/gb-config-file-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    setenv("ENV_FILE", path, 1);
    err[0] = '\0';
    int rc = config_load(err, errlen);
    unlink(path);
    unsetenv("ENV_FILE");
    return rc;
}

/* "APP_ENV=development\nAI_SYSTEM_PROMPT=" + fill bytes of "x" (or of "a=a=..." when pairs) + tail + "\n" + after. */
static char *long_file_of(size_t fill, int pairs, const char *tail, const char *after)
{
    const char *head = "APP_ENV=development\nAI_SYSTEM_PROMPT=";
    size_t hl = strlen(head), tl = strlen(tail), al = strlen(after);
    char *t = malloc(hl + fill + tl + 1 + al + 1);
    assert_non_null(t);
    memcpy(t, head, hl);
    for (size_t i = 0; i < fill; i++)
        t[hl + i] = pairs ? "a="[i % 2] : 'x';
    memcpy(t + hl + fill, tail, tl);
    t[hl + fill + tl] = '\n';
    memcpy(t + hl + fill + tl + 1, after, al + 1);
    return t;
}

static char *long_file(size_t fill, const char *tail, const char *after)
{
    return long_file_of(fill, 0, tail, after);
}

static void test_long_line_stays_one_line(void **state)
{
    (void)state;
    char err[256];
    /* 17 + 4078 bytes fill a 4096-byte read buffer exactly: "PORT=1234" is still part of the prompt */
    char *t = long_file(4078, "PORT=1234", "");
    assert_int_equal(load(t, strlen(t), err, sizeof err), 0);
    assert_int_equal(g_config.port, 8080);
    assert_int_equal(strlen(g_config.ai_system_prompt), 4078 + 9);
    assert_string_equal(g_config.ai_system_prompt + 4078, "PORT=1234");
    free(t);
    t = long_file(20000, "", "BASIC_DAILY_LIMIT=7\n"); /* a 20 kB prompt, and a setting after it */
    assert_int_equal(load(t, strlen(t), err, sizeof err), 0);
    assert_int_equal(strlen(g_config.ai_system_prompt), 20000);
    assert_int_equal(g_config.basic_daily_limit, 7);
    free(t);
}

static void test_line_numbers_after_long_line(void **state)
{
    (void)state;
    char err[256];
    /* a value of "a=a=...": cut into pieces, each piece would read as a setting "a" and shift the count */
    char *t = long_file_of(6000, 1, "", "NOT A SETTING\n");
    assert_int_equal(load(t, strlen(t), err, sizeof err), -1);
    assert_non_null(strstr(err, " line 3: expected NAME=value"));
    free(t);
}

static void test_line_cap_and_nul(void **state)
{
    (void)state;
    char err[256];
    char *t = long_file(70000, "", "");
    assert_int_equal(load(t, strlen(t), err, sizeof err), -1);
    assert_non_null(strstr(err, " line 2: "));
    assert_non_null(strstr(err, "longer than"));
    free(t);
    static const char nul[] = "APP_ENV=development\nJWT_SECRET=abc\0def\n";
    assert_int_equal(load(nul, sizeof nul - 1, err, sizeof err), -1);
    assert_non_null(strstr(err, " line 2: "));
    assert_non_null(strstr(err, "NUL"));
    static const char last[] = "APP_ENV=development\nPORT=8123"; /* no newline at the end */
    assert_int_equal(load(last, sizeof last - 1, err, sizeof err), 0);
    assert_int_equal(g_config.port, 8123);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_line_stays_one_line),
        cmocka_unit_test(test_line_numbers_after_long_line),
        cmocka_unit_test(test_line_cap_and_nul),
    };
    return cmocka_run_group_tests_name("config_file", tests, NULL, NULL);
}
