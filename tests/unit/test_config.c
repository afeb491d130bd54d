/* Unit tests for config.c: defaults, bounds, the env file, secrets policy. */
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

static const char *vars[] = {"APP_ENV",         "JWT_SECRET",  "ENV_FILE",        "BASIC_DAILY_LIMIT",   "PORT",
                             "PUBLIC_URL",      "AI_PROVIDER", "GEMINI_API_KEY",  "OPENAI_API_KEY",      "OPENAI_MODEL",
                             "OTP_IN_RESPONSE", "LOG_LEVEL",   "JWT_TTL_SECONDS", "CORS_ALLOWED_ORIGINS"};

static int clean(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    return 0;
}

static const char *strong = "0123456789abcdef0123456789abcdef";

static void test_defaults(void **state)
{
    (void)state;
    char err[256];
    setenv("JWT_SECRET", strong, 1);
    assert_int_equal(config_load(err, sizeof err), 0);
    assert_int_equal(g_config.development, 0);
    assert_int_equal(g_config.jwt_ttl_seconds, 86400);
    assert_int_equal(g_config.basic_daily_limit, 5);
    assert_int_equal(g_config.otp_in_response, 1);
    assert_int_equal(g_config.port, 8080);
    assert_string_equal(g_config.public_url, "http://127.0.0.1:8080");
    assert_string_equal(g_config.ai_provider, "offline");
    assert_string_equal(g_config.gemini_model, "gemini-3.5-flash");
    assert_string_equal(g_config.stripe_api_base, "https://api.stripe.com");
    assert_null(g_config.stripe_secret_key);
    assert_int_equal(g_config.worker_concurrency, 32);
    setenv("PORT", "9000", 1);
    setenv("GEMINI_API_KEY", "k", 1);
    assert_int_equal(config_load(err, sizeof err), 0);
    assert_string_equal(g_config.public_url, "http://127.0.0.1:9000");
    assert_string_equal(g_config.ai_provider, "gemini");
}

static void test_secret_policy(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(config_load(err, sizeof err), -1); /* production, no secret */
    assert_non_null(strstr(err, "JWT_SECRET"));
    setenv("JWT_SECRET", "short", 1);
    assert_int_equal(config_load(err, sizeof err), -1);
    assert_non_null(strstr(err, "JWT_SECRET"));
    setenv("APP_ENV", "development", 1); /* development tolerates a weak or missing secret */
    assert_int_equal(config_load(err, sizeof err), 0);
    unsetenv("JWT_SECRET");
    assert_int_equal(config_load(err, sizeof err), 0);
    assert_true(g_config.jwt_secret_len >= 32);
    setenv("APP_ENV", "staging", 1);
    assert_int_equal(config_load(err, sizeof err), -1);
    assert_non_null(strstr(err, "APP_ENV"));
    setenv("APP_ENV", "test", 1); /* only "development" relaxes the secret checks */
    assert_int_equal(config_load(err, sizeof err), -1);
    assert_non_null(strstr(err, "APP_ENV"));
}

static void test_bounds(void **state)
{
    (void)state;
    char err[256];
    setenv("JWT_SECRET", strong, 1);
    setenv("BASIC_DAILY_LIMIT", "abc", 1);
    assert_int_equal(config_load(err, sizeof err), -1);
    assert_non_null(strstr(err, "BASIC_DAILY_LIMIT"));
    setenv("BASIC_DAILY_LIMIT", "-1", 1);
    assert_int_equal(config_load(err, sizeof err), -1);
    setenv("BASIC_DAILY_LIMIT", "7", 1);
    setenv("OTP_IN_RESPONSE", "maybe", 1);
    assert_int_equal(config_load(err, sizeof err), -1);
    assert_non_null(strstr(err, "OTP_IN_RESPONSE"));
    setenv("OTP_IN_RESPONSE", "0", 1);
    assert_int_equal(config_load(err, sizeof err), 0);
    assert_int_equal(g_config.basic_daily_limit, 7);
    assert_int_equal(g_config.otp_in_response, 0);
    setenv("AI_PROVIDER", "gemini", 1); /* no key */
    assert_int_equal(config_load(err, sizeof err), -1);
    assert_non_null(strstr(err, "GEMINI_API_KEY"));
    setenv("AI_PROVIDER", "claude", 1);
    assert_int_equal(config_load(err, sizeof err), -1);
}

static void test_env_file(void **state)
{
    (void)state;
    char path[] = "/tmp/gb-config-XXXXXX", err[256];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "# comment\n\nexport JWT_SECRET=\"abcdefghijklmnopqrstuvwxyz0123456789\"\n"
                       "BASIC_DAILY_LIMIT=9\nPORT='8181'\nBASIC_DAILY_LIMIT=11\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    setenv("ENV_FILE", path, 1);
    setenv("PORT", "8282", 1); /* the real environment wins */
    assert_int_equal(config_load(err, sizeof err), 0);
    assert_string_equal(g_config.jwt_secret, "abcdefghijklmnopqrstuvwxyz0123456789");
    assert_int_equal(g_config.basic_daily_limit, 11); /* last assignment wins */
    assert_int_equal(g_config.port, 8282);
    unlink(path);
    assert_int_equal(config_load(err, sizeof err), -1); /* a named file that is missing is an error */
    assert_non_null(strstr(err, "ENV_FILE"));
}

static void test_cors_origins(void **state)
{
    (void)state;
    char err[256];
    setenv("JWT_SECRET", strong, 1);
    assert_int_equal(config_load(err, sizeof err), 0);
    assert_null(g_config.cors_allowed_origins); /* default: none */
    setenv("CORS_ALLOWED_ORIGINS", "https://app.example.com, http://localhost:5173", 1);
    assert_int_equal(config_load(err, sizeof err), 0);
    assert_string_equal(g_config.cors_allowed_origins, "https://app.example.com, http://localhost:5173");
    static const char *bad[] = {"app.example.com",          /* no scheme */
                                "https://app.example.com/", /* a trailing slash never matches an Origin */
                                "https://app.example.com/x",
                                "ftp://app.example.com",
                                "https://",
                                "https://a.example,", /* an empty item */
                                "https://a.example,,https://b.example",
                                "*",
                                "https://*.example.com"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("CORS_ALLOWED_ORIGINS", bad[i], 1);
        err[0] = '\0';
        assert_int_equal(config_load(err, sizeof err), -1);
        assert_non_null(strstr(err, "CORS_ALLOWED_ORIGINS"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clean),     cmocka_unit_test_setup(test_secret_policy, clean),
        cmocka_unit_test_setup(test_bounds, clean),       cmocka_unit_test_setup(test_env_file, clean),
        cmocka_unit_test_setup(test_cors_origins, clean),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
