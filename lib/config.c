#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "log.h"
#include "util.h"

config_t g_config;

enum ctype { C_STR, C_LONG, C_BOOL };

typedef struct setting {
    const char *name;
    enum ctype type;
    const char *def; /* NULL: unset */
    long min, max;   /* C_LONG bounds */
    size_t off;
} setting_t;

#define S(n, d, f)                                                                                                     \
    {                                                                                                                  \
        n, C_STR, d, 0, 0, offsetof(config_t, f)                                                                       \
    }
#define L(n, d, lo, hi, f)                                                                                             \
    {                                                                                                                  \
        n, C_LONG, d, lo, hi, offsetof(config_t, f)                                                                    \
    }
#define B(n, d, f)                                                                                                     \
    {                                                                                                                  \
        n, C_BOOL, d, 0, 1, offsetof(config_t, f)                                                                      \
    }

/* The one table of settings: name, default and bounds. Derived defaults are filled in config_load. */
static const setting_t settings[] = {
    S("DATABASE_URL", NULL, database_url), /* required in production; development: dev_database_url */
    S("REDIS_URL", NULL, redis_url),       /* required in production; development: dev_redis_url */
    S("JWT_SECRET", NULL, jwt_secret),
    L("JWT_TTL_SECONDS", "86400", 60, 31536000, jwt_ttl_seconds),
    B("OTP_IN_RESPONSE", NULL, otp_in_response), /* production 0, development 1 */
    L("BASIC_DAILY_LIMIT", "5", 0, 1000000, basic_daily_limit),
    S("PUBLIC_URL", NULL, public_url),
    S("STRIPE_SECRET_KEY", NULL, stripe_secret_key),
    S("STRIPE_WEBHOOK_SECRET", NULL, stripe_webhook_secret),
    S("STRIPE_PRICE_ID", NULL, stripe_price_id),
    S("STRIPE_API_BASE", "https://api.stripe.com", stripe_api_base),
    S("AI_PROVIDER", NULL, ai_provider),
    S("GEMINI_API_KEY", NULL, gemini_api_key),
    S("GEMINI_MODEL", "gemini-3.5-flash", gemini_model),
    S("GEMINI_API_BASE", "https://generativelanguage.googleapis.com", gemini_api_base),
    S("OPENAI_API_KEY", NULL, openai_api_key),
    S("OPENAI_MODEL", NULL, openai_model),
    S("OPENAI_API_BASE", "https://api.openai.com/v1", openai_api_base),
    S("AI_SYSTEM_PROMPT", "You are a helpful assistant. Answer clearly and concisely.", ai_system_prompt),
    L("AI_HISTORY_MESSAGES", "20", 1, 200, ai_history_messages),
    L("AI_TIMEOUT_MS", "60000", 100, 600000, ai_timeout_ms),
    L("AI_MAX_ATTEMPTS", "6", 1, 100, ai_max_attempts),
    L("WORKER_CONCURRENCY", "256", 1, 4096, worker_concurrency),
    L("WORKER_RECOVER_SECONDS", "30", 1, 86400, worker_recover_seconds),
    L("WORKER_GRACE_SECONDS", "10", 0, 3600, worker_grace_seconds),
    L("PORT", "8080", 1, 65535, port),
    S("CORS_ALLOWED_ORIGINS", NULL, cors_allowed_origins),
    S("METRICS_DIR", NULL, metrics_dir), /* development: var/metrics; production: /run/gemini-backend/metrics */
    S("METRICS_ALLOW_FROM", "127.0.0.1,::1", metrics_allow_from),
    L("LOGIN_MAX_FAILURES", "5", 1, 1000, login_max_failures),
    L("LOGIN_ADDR_MAX_FAILURES", "50", 1, 1000000, login_addr_max_failures),
    L("LOGIN_BACKOFF_SECONDS", "30", 1, 86400, login_backoff_seconds),
    L("LOGIN_BACKOFF_MAX_SECONDS", "900", 1, 86400, login_backoff_max_seconds),
    L("PASSWORD_HASH_CONCURRENCY", "4", 1, 1024, password_hash_concurrency),
    L("SIGNUP_ADDR_MAX_PER_HOUR", "20", 1, 1000000, signup_addr_max_per_hour),
    L("OTP_VERIFY_MAX_FAILURES", "20", 1, 1000, otp_verify_max_failures),
    L("OTP_VERIFY_ADDR_MAX_FAILURES", "200", 1, 1000000, otp_verify_addr_max_failures),
    L("CHATROOM_MAX_PER_USER", "1000", 1, 1000000, chatroom_max_per_user),
};

/* Values read from ENV_FILE, looked up after the real environment. Owned here for the process lifetime. */
static char **file_kv;
static size_t file_n;

static void file_clear(void)
{
    for (size_t i = 0; i < file_n; i++)
        free(file_kv[i]);
    free(file_kv);
    file_kv = NULL;
    file_n = 0;
}

#define ENV_FILE_LINE_MAX 65536 /* bytes of one ENV_FILE line with its newline (a long AI_SYSTEM_PROMPT fits) */

/* The next line of f, without its '\n', NUL-terminated in line[0..cap). 1 a line, 0 the end of the file, -1 a line
 * that does not fit, -2 a NUL byte in it. A whole line or nothing: a long value is never cut into two lines. */
static int read_line(FILE *f, char *line, size_t cap)
{
    size_t n = 0;
    int c;
    while ((c = getc(f)) != EOF && c != '\n') {
        if (c == '\0')
            return -2;
        if (n + 1 >= cap)
            return -1;
        line[n++] = (char)c;
    }
    line[n] = '\0';
    return c == EOF && n == 0 ? 0 : 1;
}

/* What config_load found wrong: every problem, one per line, so that a new install learns them all in one run. */
typedef struct {
    char *buf;
    size_t cap, used;
    int n;
} problems_t;

static void problem(problems_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(problems_t *p, const char *fmt, ...)
{
    p->n++;
    if (!p->cap || p->used + 1 >= p->cap)
        return;
    if (p->used)
        p->buf[p->used++] = '\n';
    va_list ap;
    va_start(ap, fmt);
    size_t room = p->cap - p->used;
    int w = vsnprintf(p->buf + p->used, room, fmt, ap);
    va_end(ap);
    p->used += w < 0 ? 0 : (size_t)w < room ? (size_t)w : room - 1; /* a cut message keeps its start */
}

static int file_load(const char *path, problems_t *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        problem(err, "ENV_FILE: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    char *line = xmalloc(ENV_FILE_LINE_MAX);
    int lineno = 0, rc = 0, got;
    while ((got = read_line(f, line, ENV_FILE_LINE_MAX)) != 0) {
        lineno++;
        if (got < 0) {
            problem(err, "ENV_FILE %s line %d: %s", path, lineno, got == -1 ? "longer than 65535 bytes" : "a NUL byte");
            rc = -1;
            break;
        }
        char *s = line;
        size_t n = strlen(s);
        while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || isspace((unsigned char)s[n - 1])))
            s[--n] = '\0';
        while (isspace((unsigned char)*s))
            s++;
        if (!*s || *s == '#')
            continue;
        if (strncmp(s, "export ", 7) == 0)
            s += 7;
        char *eq = strchr(s, '=');
        if (!eq || eq == s) {
            problem(err, "ENV_FILE %s line %d: expected NAME=value", path, lineno);
            rc = -1;
            break;
        }
        char *v = eq + 1;
        size_t vl = strlen(v);
        if (vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0]) {
            v[vl - 1] = '\0';
            v++;
        }
        *eq = '\0';
        file_kv = xrealloc(file_kv, (file_n + 1) * sizeof *file_kv);
        file_kv[file_n++] = xstrdup(s);
        file_kv = xrealloc(file_kv, (file_n + 1) * sizeof *file_kv);
        file_kv[file_n++] = xstrdup(v);
    }
    free(line);
    fclose(f);
    return rc;
}

/* The environment wins over the file; an empty value counts as unset. */
static const char *lookup(const char *name)
{
    const char *v = getenv(name);
    if (v && *v)
        return v;
    for (size_t i = file_n; i >= 2; i -= 2) /* the last assignment in the file wins */
        if (strcmp(file_kv[i - 2], name) == 0)
            return *file_kv[i - 1] ? file_kv[i - 1] : NULL;
    return NULL;
}

static int set_one(const setting_t *s, problems_t *err)
{
    const char *v = lookup(s->name);
    if (!v)
        v = s->def;
    char *base = (char *)&g_config;
    switch (s->type) {
    case C_STR: *(const char **)(base + s->off) = v; return 0;
    case C_LONG: {
        long long n;
        if (parse_ll(v, s->min, s->max, &n) != 0) {
            problem(err, "%s must be an integer from %ld to %ld", s->name, s->min, s->max);
            return -1;
        }
        *(long *)(base + s->off) = (long)n;
        return 0;
    }
    case C_BOOL:
        if (!v) /* no default: derived in config_load */
            *(int *)(base + s->off) = -1;
        else if (strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0)
            *(int *)(base + s->off) = 1;
        else if (strcmp(v, "0") == 0 || strcasecmp(v, "false") == 0 || strcasecmp(v, "no") == 0)
            *(int *)(base + s->off) = 0;
        else {
            problem(err, "%s must be 1 or 0", s->name);
            return -1;
        }
        return 0;
    }
    return -1;
}

/* The length of s's "https://" or "http://", or 0 when it starts with neither. */
static size_t http_scheme_len(const char *s)
{
    return strncmp(s, "https://", 8) == 0 ? 8 : strncmp(s, "http://", 7) == 0 ? 7 : 0;
}

/* CORS_ALLOWED_ORIGINS: comma-separated origins as browsers send them in Origin, "http(s)://host[:port]" with
 * no path, not even a trailing slash (then it would never match); spaces around the commas are allowed. */
static int origins_valid(const char *list)
{
    const char *p = list;
    for (;;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, ",");
        while (n && p[n - 1] == ' ')
            n--;
        size_t scheme = http_scheme_len(p);
        if (!scheme || n <= scheme)
            return 0;
        for (size_t i = scheme; i < n; i++)
            if (p[i] == '/' || p[i] == ' ' || p[i] == '?' || p[i] == '#' || p[i] == '*' || (unsigned char)p[i] < 0x21 ||
                (unsigned char)p[i] > 0x7e)
                return 0;
        p = strchr(p, ',');
        if (!p)
            return 1;
        p++;
    }
}

/* A base URL the app builds links or API calls on (PUBLIC_URL, *_API_BASE): "http(s)://host[:port][/path]", printable
 * ASCII with no query or fragment (a path is appended to it). */
static int base_url_valid(const char *url)
{
    size_t scheme = http_scheme_len(url);
    if (!scheme || url[scheme] == '\0' || url[scheme] == '/' || url[scheme] == ':')
        return 0;
    for (const char *c = url; *c; c++)
        if ((unsigned char)*c < 0x21 || (unsigned char)*c > 0x7e || *c == '?' || *c == '#')
            return 0;
    return 1;
}

/* METRICS_ALLOW_FROM: "any" or addresses written as REMOTE_ADDR carries them (health_metrics_allowed compares the
 * text), so each must be an IPv4 or IPv6 address in its canonical form: "::0001" would never match "::1". */
static int addresses_valid(const char *list)
{
    int items = 0;
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ", ");
        if (n == 0)
            break;
        char item[INET6_ADDRSTRLEN], canon[INET6_ADDRSTRLEN];
        unsigned char bin[sizeof(struct in6_addr)];
        if (n >= sizeof item)
            return 0;
        memcpy(item, p, n);
        item[n] = '\0';
        int af = strchr(item, ':') ? AF_INET6 : AF_INET;
        if (strcmp(item, "any") != 0 &&
            (inet_pton(af, item, bin) != 1 || !inet_ntop(af, bin, canon, sizeof canon) || strcmp(canon, item) != 0))
            return 0;
        items++;
        p += n;
    }
    return items > 0;
}

/* A development-only signing key, used when APP_ENV=development and no JWT_SECRET is set. It is in the public
 * source, so production refuses it as a JWT_SECRET. */
static const char dev_secret[] = "development-only-secret-never-use-in-production!";

/* How many different bytes S holds: a key typed by hand ("aaaa...", "changeme" repeated) has few; 64 digits of
 * `openssl rand -hex 32` have fewer than 8 different ones with a chance below 1e-18. */
static int distinct_bytes(const char *s)
{
    unsigned char seen[256] = {0};
    int n = 0;
    for (; *s; s++)
        if (!seen[(unsigned char)*s]++)
            n++;
    return n;
}

/* The servers `make run` starts under the build tree's var/: development defaults only. In production nothing
 * falls back to a path of the machine the binaries were built on. */
#ifdef DEFAULT_VAR_DIR
static const char dev_database_url[] = "postgresql:///gemini?host=" DEFAULT_VAR_DIR "/pg";
static const char dev_redis_url[] = "unix://" DEFAULT_VAR_DIR "/redis.sock";
#else
static const char *const dev_database_url = NULL, *const dev_redis_url = NULL;
#endif
#define PROD_METRICS_DIR "/run/gemini-backend/metrics" /* what the systemd units create */
#ifdef DEFAULT_VAR_DIR
static const char dev_metrics_dir[] = DEFAULT_VAR_DIR "/metrics";
#else
static const char dev_metrics_dir[] = PROD_METRICS_DIR;
#endif

/* A setting production cannot do without: 0 when set (or filled in with dev_default in development), else -1
 * with a message naming it. */
static int require(const char **field, const char *name, const char *dev_default, const char *hint, problems_t *err)
{
    if (*field)
        return 0;
    if (g_config.development && dev_default) {
        *field = dev_default;
        return 0;
    }
    problem(err, "%s is required%s (%s)", name, g_config.development ? "" : " in production (APP_ENV=production)",
            hint);
    return -1;
}

int config_load(char *err, size_t errlen)
{
    static char public_url[128];
    problems_t e = {err, errlen, 0, 0};
    if (errlen)
        err[0] = '\0';
    file_clear();
    memset(&g_config, 0, sizeof g_config);
    const char *envfile = getenv("ENV_FILE");
    if (envfile && *envfile && file_load(envfile, &e) != 0)
        return -1; /* what the file would have set is unknown: the rest would only mislead */

    const char *app_env = lookup("APP_ENV");
    if (!app_env || strcmp(app_env, "production") == 0)
        g_config.development = 0;
    else if (strcmp(app_env, "development") == 0)
        g_config.development = 1;
    else
        problem(&e, "APP_ENV must be production or development"); /* the rest is checked as production */
    const char *lvl = lookup("LOG_LEVEL");
    g_config.log_level = lvl ? log_level_parse(lvl) : LOG_INFO;
    if (g_config.log_level < 0)
        problem(&e, "LOG_LEVEL must be debug, info, warn or error");
    const char *fmt = lookup("LOG_FORMAT"), *target = lookup("LOG_TARGET");
    g_config.log_format = fmt ? log_format_parse(fmt) : LOG_FORMAT_TEXT;
    g_config.log_target = target ? log_target_parse(target) : LOG_TARGET_STDERR;
    if (g_config.log_format < 0)
        problem(&e, "LOG_FORMAT must be text or json");
    if (g_config.log_target < 0)
        problem(&e, "LOG_TARGET must be stderr or syslog");

    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++)
        set_one(&settings[i], &e);

    require(&g_config.database_url, "DATABASE_URL", dev_database_url,
            "a libpq connection string, e.g. postgresql://gemini@db.example/gemini", &e);
    require(&g_config.redis_url, "REDIS_URL", dev_redis_url,
            "redis://[:password@]host:port/db or unix://[:password@]/path/to/redis.sock", &e);
    if (g_config.otp_in_response < 0) /* SMS is mocked: the code in the body is a development convenience */
        g_config.otp_in_response = g_config.development;

    if (!g_config.jwt_secret && g_config.development)
        g_config.jwt_secret = dev_secret;
    if (!g_config.jwt_secret)
        problem(&e,
                "JWT_SECRET is required (at least 32 bytes of random data; generate one with: openssl rand -hex 32)");
    else if ((g_config.jwt_secret_len = strlen(g_config.jwt_secret)) < 32 && !g_config.development)
        problem(&e, "JWT_SECRET is too weak: it must be at least 32 bytes (openssl rand -hex 32)");
    else if (!g_config.development && strcmp(g_config.jwt_secret, dev_secret) == 0)
        problem(&e,
                "JWT_SECRET is the built-in development key, which is public: generate one with openssl rand -hex 32");
    else if (!g_config.development && distinct_bytes(g_config.jwt_secret) < 8)
        problem(&e, "JWT_SECRET is too weak: it has fewer than 8 different characters (openssl rand -hex 32)");

    if (!g_config.metrics_dir)
        g_config.metrics_dir = g_config.development ? dev_metrics_dir : PROD_METRICS_DIR;

    if (!g_config.public_url) {
        snprintf(public_url, sizeof public_url, "http://127.0.0.1:%ld", g_config.port);
        g_config.public_url = public_url;
    }
    static const struct {
        const char *name;
        const char *const *value;
    } urls[] = {{"PUBLIC_URL", &g_config.public_url},
                {"STRIPE_API_BASE", &g_config.stripe_api_base},
                {"GEMINI_API_BASE", &g_config.gemini_api_base},
                {"OPENAI_API_BASE", &g_config.openai_api_base}};
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++)
        if (*urls[i].value && !base_url_valid(*urls[i].value))
            problem(&e, "%s must be an http:// or https:// URL like https://api.example.com (no query)", urls[i].name);
    if (g_config.metrics_allow_from && !addresses_valid(g_config.metrics_allow_from))
        problem(&e, "METRICS_ALLOW_FROM must be a comma-separated list of IP addresses as the web server passes them "
                    "(e.g. 127.0.0.1,::1), or any");
    if (g_config.cors_allowed_origins && !origins_valid(g_config.cors_allowed_origins))
        problem(&e, "CORS_ALLOWED_ORIGINS must be a comma-separated list of origins like https://app.example.com "
                    "(scheme, host, optional port; no path or trailing slash)");
    if (!g_config.ai_provider) {
        if (!g_config.gemini_api_key && !g_config.openai_api_key && !g_config.development)
            /* never answer users with the stand-in by accident */
            problem(&e, "AI_PROVIDER is not set and neither GEMINI_API_KEY nor OPENAI_API_KEY is: set a key, or "
                        "AI_PROVIDER=offline for the labelled local stand-in");
        g_config.ai_provider = g_config.gemini_api_key ? "gemini" : g_config.openai_api_key ? "openai" : "offline";
    } else if (strcmp(g_config.ai_provider, "gemini") != 0 && strcmp(g_config.ai_provider, "openai") != 0 &&
               strcmp(g_config.ai_provider, "offline") != 0)
        problem(&e, "AI_PROVIDER must be gemini, openai or offline");
    if (strcmp(g_config.ai_provider, "gemini") == 0 && !g_config.gemini_api_key)
        problem(&e, "AI_PROVIDER=gemini needs GEMINI_API_KEY");
    if (strcmp(g_config.ai_provider, "openai") == 0 && !g_config.openai_api_key && !g_config.openai_model)
        /* local servers (Ollama, llama.cpp) need no key, but then say which model to use */
        problem(&e, "AI_PROVIDER=openai needs OPENAI_API_KEY or OPENAI_MODEL");
    return e.n ? -1 : 0;
}

void config_load_or_die(const char *prog)
{
    char err[CONFIG_ERR_MAX];
    if (config_load(err, sizeof err) != 0) {
        for (const char *line = err; *line;) {
            size_t n = strcspn(line, "\n");
            fprintf(stderr, "%s: configuration error: %.*s\n", prog, (int)n, line);
            line += n + (line[n] == '\n');
        }
        exit(2);
    }
    log_setup(prog, g_config.log_level, g_config.log_format, g_config.log_target);
    if (g_config.development && strcmp(g_config.jwt_secret, dev_secret) == 0)
        log_warn("APP_ENV=development and no JWT_SECRET: using the built-in development key");
}

/* Runs before main() in every program linked with config.o (all of them: they call config_load_or_die). glibc
 * passes argc, argv and envp to ELF constructors, so --help, --version and --check (lib/cli.h) are answered
 * here, alike in every binary, without a line in any main(). */
__attribute__((constructor)) static void config_early_options(int argc, char **argv, char **envp)
{
    (void)envp;
    cli_early(argc, argv);
}
