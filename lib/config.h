/* config: one typed table of settings with defaults and bounds, read once at start-up from the environment
 * and, when ENV_FILE names one, a .env-style file (KEY=VALUE lines, '#' comments, optional quotes; the real
 * environment wins over the file). A bad value stops the program with a message naming the variable.
 *
 * Production (APP_ENV unset or "production") requires DATABASE_URL, REDIS_URL and JWT_SECRET (>= 32 bytes),
 * defaults OTP_IN_RESPONSE to 0, and runs the offline AI stand-in only when AI_PROVIDER=offline is set: with no
 * provider and no API key, start-up stops. Development (APP_ENV=development) fills in the `make run` servers
 * under the build tree, a built-in signing key, OTP_IN_RESPONSE=1 and the offline provider. */
#ifndef GB_CONFIG_H
#define GB_CONFIG_H

#include <stddef.h>

typedef struct config {
    int development;          /* APP_ENV=development (default production) */
    const char *database_url; /* DATABASE_URL (required in production; development: the make run cluster) */
    const char *redis_url;    /* REDIS_URL (required in production; development: the make run Redis) */
    const char *jwt_secret;   /* JWT_SECRET (>= 32 bytes outside development) */
    size_t jwt_secret_len;
    long jwt_ttl_seconds;   /* JWT_TTL_SECONDS 86400 */
    int otp_in_response;    /* OTP_IN_RESPONSE: production 0, development 1 */
    long basic_daily_limit; /* BASIC_DAILY_LIMIT 5 */
    const char *public_url; /* PUBLIC_URL http://127.0.0.1:$PORT */
    const char *stripe_secret_key, *stripe_webhook_secret, *stripe_price_id; /* NULL when unset */
    const char *stripe_api_base; /* STRIPE_API_BASE https://api.stripe.com */
    const char *ai_provider; /* AI_PROVIDER gemini|openai|offline (default derived from keys; offline only explicitly in
                                production) */
    const char *gemini_api_key, *gemini_model, *gemini_api_base;
    const char *openai_api_key, *openai_model, *openai_api_base;
    const char *ai_system_prompt;   /* AI_SYSTEM_PROMPT */
    long ai_history_messages;       /* AI_HISTORY_MESSAGES 20: turns sent upstream */
    long ai_timeout_ms;             /* AI_TIMEOUT_MS 60000: one upstream call */
    long ai_max_attempts;           /* AI_MAX_ATTEMPTS 6: then the reply fails */
    long worker_concurrency;        /* WORKER_CONCURRENCY 256: upstream calls in flight */
    long worker_recover_seconds;    /* WORKER_RECOVER_SECONDS 30: pending replies older than this are re-queued */
    long worker_grace_seconds;      /* WORKER_GRACE_SECONDS 10: SIGTERM lets calls in flight finish this long */
    long port;                      /* PORT 8080 */
    int log_level;                  /* LOG_LEVEL info */
    int log_format;                 /* LOG_FORMAT text|json (enum log_format) */
    int log_target;                 /* LOG_TARGET stderr|syslog (enum log_target) */
    const char *metrics_dir;        /* METRICS_DIR: the per-process counter files GET /metrics sums */
    const char *metrics_allow_from; /* METRICS_ALLOW_FROM: client addresses /metrics answers ("any": all) */
    /* CORS_ALLOWED_ORIGINS: comma list of origins (scheme://host[:port]) answered with CORS headers; NULL: none */
    const char *cors_allowed_origins;
    /* Abuse limits (issue 16; counters in PostgreSQL, lib/throttle.h) */
    long login_max_failures;           /* LOGIN_MAX_FAILURES 5: failed logins per account, then backoff */
    long login_addr_max_failures;      /* LOGIN_ADDR_MAX_FAILURES 50: failed logins per client address, then backoff */
    long login_backoff_seconds;        /* LOGIN_BACKOFF_SECONDS 30: first wait, doubled per further failure */
    long login_backoff_max_seconds;    /* LOGIN_BACKOFF_MAX_SECONDS 900: longest wait */
    long password_hash_concurrency;    /* PASSWORD_HASH_CONCURRENCY 2: Argon2 computations at once, all processes */
    long signup_addr_max_per_hour;     /* SIGNUP_ADDR_MAX_PER_HOUR 20: signups with a password per address */
    long otp_verify_max_failures;      /* OTP_VERIFY_MAX_FAILURES 20: wrong codes per number per day */
    long otp_verify_addr_max_failures; /* OTP_VERIFY_ADDR_MAX_FAILURES 200: wrong codes per address per day */
    long chatroom_max_per_user;        /* CHATROOM_MAX_PER_USER 1000: chatrooms one user may have */
} config_t;

/* The process-wide configuration, valid after config_load succeeded. */
extern config_t g_config;

/* Load g_config. 0 ok; -1 with every problem found in err, one line each ("\n" between them), each naming its
 * variable. Safe to call again (tests). */
int config_load(char *err, size_t errlen);

/* A buffer for config_load's err that holds all its lines. */
#define CONFIG_ERR_MAX 2048

/* Start-up helper for programs: config_load, log_init(prog); on failure prints the message and exits 2. */
void config_load_or_die(const char *prog);

#endif
