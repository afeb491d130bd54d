/* Fuzz target: the ENV_FILE parser and the settings table behind it (config_load in lib/config.c). The input
 * is the file's content (handed over as /proc/self/fd/N of a memfd); the fuzzer's own environment is cleared of
 * every setting first, so that the file alone decides. Checked: a load that succeeds leaves every setting the
 * programs rely on set and in its bounds; a load that fails says why. */
#include "fuzz.h"

#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "http.h"
#include "log.h"

static int fd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char *const names[] = {"APP_ENV",
                                        "LOG_LEVEL",
                                        "DATABASE_URL",
                                        "REDIS_URL",
                                        "JWT_SECRET",
                                        "JWT_TTL_SECONDS",
                                        "OTP_IN_RESPONSE",
                                        "BASIC_DAILY_LIMIT",
                                        "PUBLIC_URL",
                                        "STRIPE_SECRET_KEY",
                                        "STRIPE_WEBHOOK_SECRET",
                                        "STRIPE_PRICE_ID",
                                        "STRIPE_API_BASE",
                                        "AI_PROVIDER",
                                        "GEMINI_API_KEY",
                                        "GEMINI_MODEL",
                                        "GEMINI_API_BASE",
                                        "OPENAI_API_KEY",
                                        "OPENAI_MODEL",
                                        "OPENAI_API_BASE",
                                        "AI_SYSTEM_PROMPT",
                                        "AI_HISTORY_MESSAGES",
                                        "AI_TIMEOUT_MS",
                                        "AI_MAX_ATTEMPTS",
                                        "WORKER_CONCURRENCY",
                                        "WORKER_RECOVER_SECONDS",
                                        "PORT",
                                        "CORS_ALLOWED_ORIGINS"};
    char path[64];
    (void)argc, (void)argv;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        unsetenv(names[i]);
    fd = memfd_create("fuzz-env", 0);
    if (fd < 0)
        abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    setenv("ENV_FILE", path, 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
        abort();
    memset(err, 0, sizeof err);
    int rc = config_load(err, sizeof err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        FUZZ_CHECK(err[0] != '\0' && memchr(err, '\0', sizeof err) != NULL);
        return 0;
    }
    const config_t *c = &g_config;
    FUZZ_CHECK(c->database_url && c->redis_url && c->jwt_secret && c->public_url && c->ai_provider);
    FUZZ_CHECK(c->jwt_secret_len == strlen(c->jwt_secret));
    FUZZ_CHECK(c->development || c->jwt_secret_len >= 32);
    FUZZ_CHECK(c->otp_in_response == 0 || c->otp_in_response == 1);
    FUZZ_CHECK(c->log_level >= LOG_DEBUG && c->log_level <= LOG_ERROR);
    FUZZ_CHECK(c->jwt_ttl_seconds >= 60 && c->jwt_ttl_seconds <= 31536000);
    FUZZ_CHECK(c->basic_daily_limit >= 0 && c->basic_daily_limit <= 1000000);
    FUZZ_CHECK(c->ai_history_messages >= 1 && c->ai_history_messages <= 200);
    FUZZ_CHECK(c->ai_timeout_ms >= 100 && c->ai_timeout_ms <= 600000);
    FUZZ_CHECK(c->ai_max_attempts >= 1 && c->ai_max_attempts <= 100);
    FUZZ_CHECK(c->worker_concurrency >= 1 && c->worker_concurrency <= 4096);
    FUZZ_CHECK(c->worker_recover_seconds >= 1 && c->worker_recover_seconds <= 86400);
    FUZZ_CHECK(c->port >= 1 && c->port <= 65535);
    FUZZ_CHECK(strcmp(c->ai_provider, "gemini") == 0 || strcmp(c->ai_provider, "openai") == 0 ||
               strcmp(c->ai_provider, "offline") == 0);
    FUZZ_CHECK(strcmp(c->ai_provider, "gemini") != 0 || c->gemini_api_key);
    if (c->cors_allowed_origins) { /* every origin of a valid list is allowed, by itself */
        const char *p = c->cors_allowed_origins;
        char origin[512];
        for (;;) {
            p += strspn(p, " ");
            size_t n = strcspn(p, ",");
            while (n && p[n - 1] == ' ')
                n--;
            if (n < sizeof origin) {
                memcpy(origin, p, n);
                origin[n] = '\0';
                FUZZ_CHECK(http_cors_allowed(c->cors_allowed_origins, origin) == 1);
            }
            p = strchr(p, ',');
            if (!p)
                break;
            p++;
        }
    }
    return 0;
}
