/* Fuzz target: the ENV_FILE parser and the settings table behind it (config_load in lib/config.c). The input
 * is the file's content (handed over as /proc/self/fd/N of a memfd); the fuzzer's own environment is cleared of
 * every setting first, so that the file alone decides. Checked: a load that succeeds leaves every setting the
 * programs rely on set and in its bounds, and free-text settings hold exactly what the file's last line for them
 * says (a line read the documented way: whole, trimmed, "export " and matching quotes dropped); a file with a
 * malformed line never loads; a load that fails says why. */
#include "fuzz.h"

#include <ctype.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "http.h"
#include "log.h"

static int fd = -1;

/* The documented reading of the file for one setting: 1 with its last value in v and vn (quotes dropped), 0 when
 * no line sets it, -1 when some line is malformed (no NAME=, a NUL byte, over 65535 bytes). */
static int ref_value(const char *d, size_t size, const char *name, const char **v, size_t *vn)
{
    int found = 0;
    for (size_t pos = 0; pos < size;) {
        const char *nl = memchr(d + pos, '\n', size - pos);
        size_t b = pos, e = nl ? (size_t)(nl - d) : size;
        pos = nl ? e + 1 : size;
        if (e - b > 65535 || memchr(d + b, '\0', e - b))
            return -1;
        while (e > b && isspace((unsigned char)d[e - 1]))
            e--;
        while (b < e && isspace((unsigned char)d[b]))
            b++;
        if (b == e || d[b] == '#')
            continue;
        if (e - b >= 7 && memcmp(d + b, "export ", 7) == 0)
            b += 7;
        const char *eq = memchr(d + b, '=', e - b);
        if (!eq || eq == d + b)
            return -1;
        size_t nl_ = (size_t)(eq - (d + b)), vb = (size_t)(eq - d) + 1, ve = e;
        if (ve - vb >= 2 && (d[vb] == '"' || d[vb] == '\'') && d[ve - 1] == d[vb])
            vb++, ve--;
        if (nl_ == strlen(name) && memcmp(d + b, name, nl_) == 0) {
            *v = d + vb;
            *vn = ve - vb;
            found = 1;
        }
    }
    return found;
}

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
    const char *v = NULL;
    size_t vn = 0;
    if (ref_value((const char *)data, size, "APP_ENV", &v, &vn) < 0)
        FUZZ_CHECK(rc == -1); /* a malformed line anywhere: the file is refused */
    if (rc != 0) {
        FUZZ_CHECK(err[0] != '\0' && memchr(err, '\0', sizeof err) != NULL);
        return 0;
    }
    const config_t *c = &g_config;
    static const struct {
        const char *name;
        size_t off;
    } texts[] = {{"AI_SYSTEM_PROMPT", offsetof(config_t, ai_system_prompt)},
                 {"PUBLIC_URL", offsetof(config_t, public_url)},
                 {"GEMINI_MODEL", offsetof(config_t, gemini_model)},
                 {"STRIPE_PRICE_ID", offsetof(config_t, stripe_price_id)},
                 {"DATABASE_URL", offsetof(config_t, database_url)}};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        const char *got = *(const char *const *)((const char *)c + texts[i].off);
        if (ref_value((const char *)data, size, texts[i].name, &v, &vn) == 1 && vn > 0)
            FUZZ_CHECK(got && strlen(got) == vn && memcmp(got, v, vn) == 0);
    }
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
