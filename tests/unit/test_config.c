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

static const char *vars[] = {"APP_ENV",
                             "JWT_SECRET",
                             "ENV_FILE",
                             "BASIC_DAILY_LIMIT",
                             "PORT",
                             "PUBLIC_URL",
                             "AI_PROVIDER",
                             "GEMINI_API_KEY",
                             "OPENAI_API_KEY",
                             "OPENAI_MODEL",
                             "OTP_IN_RESPONSE",
                             "LOG_LEVEL",
                             "JWT_TTL_SECONDS",
                             "DATABASE_URL",
                             "REDIS_URL",
                             "CORS_ALLOWED_ORIGINS",
                             "STRIPE_API_BASE",
                             "GEMINI_API_BASE",
                             "OPENAI_API_BASE",
                             "METRICS_ALLOW_FROM"};

static int clean(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    return 0;
}

static const char *strong = "0123456789abcdef0123456789abcdef";

/* What production requires, so that each test changes one thing. */
static void production_basics(void)
{
    setenv("DATABASE_URL", "postgresql:///gemini?host=/run/pg", 1);
    setenv("REDIS_URL", "unix:///run/redis.sock", 1);
    setenv("JWT_SECRET", strong, 1);
    setenv("GEMINI_API_KEY", "k", 1);
}

static void test_defaults(void **state)
{
    (void)state;
    char err[256];
    production_basics();
    assert_int_equal(config_load(err, sizeof err), 0);
    assert_int_equal(g_config.development, 0);
    assert_int_equal(g_config.jwt_ttl_seconds, 86400);
    assert_int_equal(g_config.basic_daily_limit, 5);
    assert_int_equal(g_config.otp_in_response, 0); /* production: the OTP is not in the body */
    assert_int_equal(g_config.port, 8080);
    assert_string_equal(g_config.public_url, "http://127.0.0.1:8080");
    assert_string_equal(g_config.ai_provider, "gemini");
    assert_string_equal(g_config.database_url, "postgresql:///gemini?host=/run/pg");
    assert_string_equal(g_config.redis_url, "unix:///run/redis.sock");
    assert_string_equal(g_config.gemini_model, "gemini-3.5-flash");
    assert_string_equal(g_config.stripe_api_base, "https://api.stripe.com");
    assert_null(g_config.stripe_secret_key);
    assert_int_equal(g_config.worker_concurrency, 256);
    setenv("PORT", "9000", 1);
    unsetenv("GEMINI_API_KEY");
    setenv("OPENAI_API_KEY", "k", 1);
    assert_int_equal(config_load(err, sizeof err), 0);
    assert_string_equal(g_config.public_url, "http://127.0.0.1:9000");
    assert_string_equal(g_config.ai_provider, "openai");
}

/* Development: everything but the secret has a default pointing at the `make run` servers. */
static void test_development_defaults(void **state)
{
    (void)state;
    char err[256];
    setenv("APP_ENV", "development", 1);
    assert_int_equal(config_load(err, sizeof err), 0);
    assert_int_equal(g_config.development, 1);
    assert_int_equal(g_config.otp_in_response, 1);
    assert_string_equal(g_config.ai_provider, "offline");
    assert_non_null(strstr(g_config.database_url, "/var/pg"));
    assert_non_null(strstr(g_config.redis_url, "/var/redis.sock"));
    setenv("OTP_IN_RESPONSE", "0", 1);
    assert_int_equal(config_load(err, sizeof err), 0);
    assert_int_equal(g_config.otp_in_response, 0);
}

/* Production: each required variable, when missing, stops start-up with a message naming it. */
static void test_production_requires(void **state)
{
    (void)state;
    char err[256];
    static const char *required[] = {"DATABASE_URL", "REDIS_URL", "JWT_SECRET"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        production_basics();
        unsetenv(required[i]);
        err[0] = '\0';
        assert_int_equal(config_load(err, sizeof err), -1);
        assert_non_null(strstr(err, required[i]));
        setenv(required[i], "", 1); /* empty counts as unset */
        assert_int_equal(config_load(err, sizeof err), -1);
        assert_non_null(strstr(err, required[i]));
    }
    production_basics();
    setenv("APP_ENV", "production", 1); /* explicit is the same as unset */
    assert_int_equal(config_load(err, sizeof err), 0);
    assert_null(strstr(g_config.database_url, "/var/pg"));

    /* no key and no provider: refused rather than the offline stand-in */
    unsetenv("GEMINI_API_KEY");
    assert_int_equal(config_load(err, sizeof err), -1);
    assert_non_null(strstr(err, "AI_PROVIDER"));
    setenv("AI_PROVIDER", "offline", 1);
    assert_int_equal(config_load(err, sizeof err), 0);
    assert_string_equal(g_config.ai_provider, "offline");

    setenv("OTP_IN_RESPONSE", "1", 1); /* an explicit 1 is honoured (a staging deployment with mocked SMS) */
    assert_int_equal(config_load(err, sizeof err), 0);
    assert_int_equal(g_config.otp_in_response, 1);
}

static void test_secret_policy(void **state)
{
    (void)state;
    char err[256];
    production_basics();
    unsetenv("JWT_SECRET");
    assert_int_equal(config_load(err, sizeof err), -1); /* production, no secret */
    assert_non_null(strstr(err, "JWT_SECRET"));
    setenv("JWT_SECRET", "short", 1);
    assert_int_equal(config_load(err, sizeof err), -1);
    assert_non_null(strstr(err, "JWT_SECRET"));
    /* long enough, but the public development key or typed by hand */
    setenv("JWT_SECRET", "development-only-secret-never-use-in-production!", 1);
    assert_int_equal(config_load(err, sizeof err), -1);
    assert_non_null(strstr(err, "JWT_SECRET is the built-in development key"));
    setenv("JWT_SECRET", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1);
    assert_int_equal(config_load(err, sizeof err), -1);
    assert_non_null(strstr(err, "JWT_SECRET is too weak"));
    setenv("JWT_SECRET", "changemechangemechangemechangeme", 1);
    assert_int_equal(config_load(err, sizeof err), -1);
    setenv("JWT_SECRET", "abcdefghabcdefghabcdefghabcdefgh", 1); /* 8 different: accepted */
    assert_int_equal(config_load(err, sizeof err), 0);
    setenv("JWT_SECRET", "short", 1);
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

/* A new install learns every problem in one run: each on a line of its own, naming its variable; a small
 * buffer keeps what fits, ended. */
static void test_every_problem(void **state)
{
    (void)state;
    char err[CONFIG_ERR_MAX];
    setenv("BASIC_DAILY_LIMIT", "many", 1);
    setenv("CORS_ALLOWED_ORIGINS", "https://app.example.com/", 1);
    assert_int_equal(config_load(err, sizeof err), -1); /* production, nothing set */
    const char *want[] = {"BASIC_DAILY_LIMIT", "DATABASE_URL",         "REDIS_URL",
                          "JWT_SECRET",        "CORS_ALLOWED_ORIGINS", "AI_PROVIDER is not set"};
    int lines = 1;
    for (const char *c = err; *c; c++)
        lines += *c == '\n';
    assert_int_equal(lines, 6);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_non_null(strstr(err, want[i]));
    char small[24];
    memset(small, 'x', sizeof small);
    assert_int_equal(config_load(small, sizeof small), -1);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_int_equal(strncmp(small, "BASIC_DAILY_LIMIT must", 22), 0);
}

static void test_bounds(void **state)
{
    (void)state;
    char err[256];
    production_basics();
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
    unsetenv("GEMINI_API_KEY");
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
    production_basics();
    unsetenv("JWT_SECRET");
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
    production_basics();
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

/* The base URLs and METRICS_ALLOW_FROM: a value the app could only fail with later (every checkout a 502, /metrics
 * closed to everyone) stops start-up naming the variable. */
static void test_urls_and_addresses(void **state)
{
    (void)state;
    static const char *url_vars[] = {"PUBLIC_URL", "STRIPE_API_BASE", "GEMINI_API_BASE", "OPENAI_API_BASE"};
    static const char *good_urls[] = {"https://api.example.com", "http://127.0.0.1:8080", "http://[::1]:9/v1",
                                      "https://example.com/base/"};
    static const char *bad_urls[] = {"notaurl",
                                     "ftp://x",
                                     "https://",
                                     "http:///path",
                                     "http://:80",
                                     "https://a.example/?x=1",
                                     "https://a.example/#f",
                                     "https://a b.example",
                                     "https://\xc3\xa9.example"};
    char err[256];
    production_basics();
    assert_int_equal(config_load(err, sizeof err), 0);
    assert_string_equal(g_config.metrics_allow_from, "127.0.0.1,::1");
    for (size_t v = 0; v < sizeof url_vars / sizeof url_vars[0]; v++) {
        for (size_t i = 0; i < sizeof good_urls / sizeof good_urls[0]; i++) {
            setenv(url_vars[v], good_urls[i], 1);
            assert_int_equal(config_load(err, sizeof err), 0);
        }
        for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
            setenv(url_vars[v], bad_urls[i], 1);
            err[0] = '\0';
            assert_int_equal(config_load(err, sizeof err), -1);
            assert_non_null(strstr(err, url_vars[v]));
        }
        unsetenv(url_vars[v]);
    }
    static const char *good_addrs[] = {"any", "127.0.0.1", "10.0.0.5, 192.168.1.9", "::1,127.0.0.1", "2001:db8::7"};
    static const char *bad_addrs[] = {"garbage",     "localhost",  "127.0.0.1,nope",
                                      "::0001",      "10.0.0.0/8", "127.0.0.01",
                                      "2001:DB8::7", ",",          "1.2.3.4.5"};
    for (size_t i = 0; i < sizeof good_addrs / sizeof good_addrs[0]; i++) {
        setenv("METRICS_ALLOW_FROM", good_addrs[i], 1);
        assert_int_equal(config_load(err, sizeof err), 0);
    }
    for (size_t i = 0; i < sizeof bad_addrs / sizeof bad_addrs[0]; i++) {
        setenv("METRICS_ALLOW_FROM", bad_addrs[i], 1);
        err[0] = '\0';
        assert_int_equal(config_load(err, sizeof err), -1);
        assert_non_null(strstr(err, "METRICS_ALLOW_FROM"));
    }
}

/* The abuse limits of issue 16: defaults, and a bad value stops start-up naming the variable. */
static void test_abuse_limits(void **state)
{
    (void)state;
    static const char *names[] = {
        "LOGIN_MAX_FAILURES",        "LOGIN_ADDR_MAX_FAILURES",      "LOGIN_BACKOFF_SECONDS",
        "LOGIN_BACKOFF_MAX_SECONDS", "PASSWORD_HASH_CONCURRENCY",    "SIGNUP_ADDR_MAX_PER_HOUR",
        "OTP_VERIFY_MAX_FAILURES",   "OTP_VERIFY_ADDR_MAX_FAILURES", "CHATROOM_MAX_PER_USER"};
    char err[256];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        unsetenv(names[i]);
    production_basics();
    assert_int_equal(config_load(err, sizeof err), 0);
    assert_int_equal(g_config.login_max_failures, 5);
    assert_int_equal(g_config.login_addr_max_failures, 50);
    assert_int_equal(g_config.login_backoff_seconds, 30);
    assert_int_equal(g_config.login_backoff_max_seconds, 900);
    assert_int_equal(g_config.password_hash_concurrency, 4);
    assert_int_equal(g_config.signup_addr_max_per_hour, 20);
    assert_int_equal(g_config.otp_verify_max_failures, 20);
    assert_int_equal(g_config.otp_verify_addr_max_failures, 200);
    assert_int_equal(g_config.chatroom_max_per_user, 1000);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        setenv(names[i], "0", 1); /* every one of them is at least 1 */
        assert_int_equal(config_load(err, sizeof err), -1);
        assert_non_null(strstr(err, names[i]));
        unsetenv(names[i]);
    }
    setenv("CHATROOM_MAX_PER_USER", "3", 1);
    assert_int_equal(config_load(err, sizeof err), 0);
    assert_int_equal(g_config.chatroom_max_per_user, 3);
    unsetenv("CHATROOM_MAX_PER_USER");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clean),
        cmocka_unit_test_setup(test_development_defaults, clean),
        cmocka_unit_test_setup(test_production_requires, clean),
        cmocka_unit_test_setup(test_secret_policy, clean),
        cmocka_unit_test_setup(test_bounds, clean),
        cmocka_unit_test_setup(test_env_file, clean),
        cmocka_unit_test_setup(test_cors_origins, clean),
        cmocka_unit_test_setup(test_urls_and_addresses, clean),
        cmocka_unit_test_setup(test_abuse_limits, clean),
        cmocka_unit_test_setup(test_every_problem, clean),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
