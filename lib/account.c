#include "account.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "auth.h"
#include "config.h"
#include "db.h"
#include "jsonv.h"
#include "keys.h"
#include "log.h"
#include "mirror.h"
#include "password.h"
#include "throttle.h"
#include "token.h"
#include "util.h"

#define STR_(x) #x
#define STR(x) STR_(x)

#define OTP_TTL 300          /* seconds a code stays valid */
#define OTP_MAX_WRONG 5      /* wrong tries that burn a code */
#define SEND_MIN_INTERVAL 30 /* seconds between two codes of one purpose */
#define SEND_MAX_PER_HOUR 10 /* codes of one purpose per hour */
#define LOGIN_WINDOW 3600    /* seconds: failed logins are counted per hour (LOGIN_*_MAX_FAILURES) */
#define DAY 86400            /* seconds: the window of the daily caps */

/* The columns user_json and respond_token expect, in this order: "SELECT " USER_COLUMNS " FROM users ...". */
#define USER_COLUMNS                                                                                                   \
    "id, mobile, name, email, tier, password_hash IS NOT NULL, " DB_RFC3339("created_at") ", token_version"
#define USER_NCOLS 8 /* a column after USER_COLUMNS is at this index */

static db_stmt_t q_load_user = DB_STMT("account_load_user", "SELECT " USER_COLUMNS " FROM users WHERE id = $1", 1);

/* A valid Argon2id hash of a random string, see account_init. */
static char dummy_hash[PASSWORD_ENCODED_MAX];

/* The OTP digest key, derived from JWT_SECRET. */
static unsigned char otp_hmac_key[HMAC_SHA256_LEN];

void account_init(void)
{
    static const char label[] = "gemini-backend otp key v1";
    char seed[33];

    hmac_sha256(g_config.jwt_secret, g_config.jwt_secret_len, label, sizeof label - 1, NULL, 0, otp_hmac_key);
    if (random_hex(seed, 16) != 0 || password_hash(seed, strlen(seed), dummy_hash, sizeof dummy_hash) != 0)
        dummy_hash[0] = '\0'; /* verifying against "" fails: unknown users are still refused, only faster */
}

/* ---- responses ------------------------------------------------------------------------------------------ */

static void validation_error(http_req_t *req, const char *msg)
{
    http_error(req, 400, "validation_error", msg);
}

static void rate_limited(http_req_t *req, long retry_after, const char *msg)
{
    char s[24];
    snprintf(s, sizeof s, "%ld", retry_after < 1 ? 1 : retry_after);
    http_set_header(req, "Retry-After", s);
    http_error(req, 429, "rate_limited", msg);
}

/* 503 when every Argon2 slot is busy (PASSWORD_HASH_CONCURRENCY): load is shed at once instead of queueing
 * behind the slow hashes, so the process stays free for cheap requests. */
static void hash_busy(http_req_t *req)
{
    http_set_header(req, "Retry-After", "1");
    http_error(req, 503, "unavailable", "Too many password checks are running; retry in a moment.");
}

/* The client's address as the web server saw it (REMOTE_ADDR; behind a proxy, the proxy's). */
static const char *client_addr(http_req_t *req)
{
    const char *a = http_param(req, "REMOTE_ADDR");
    return a && *a ? a : "unknown";
}

/* The abuse limits (throttle.h), from the configuration. */
static throttle_rule_t rule_login_user(void)
{
    return (throttle_rule_t){"login_user", LOGIN_WINDOW, g_config.login_max_failures, g_config.login_backoff_seconds,
                             g_config.login_backoff_max_seconds};
}

static throttle_rule_t rule_login_addr(void)
{
    return (throttle_rule_t){"login_addr", LOGIN_WINDOW, g_config.login_addr_max_failures,
                             g_config.login_backoff_seconds, g_config.login_backoff_max_seconds};
}

static throttle_rule_t rule_signup_addr(void)
{
    return (throttle_rule_t){"signup_addr", 3600, g_config.signup_addr_max_per_hour, 0, 0};
}

static throttle_rule_t rule_otp_user(void)
{
    return (throttle_rule_t){"otp_user", DAY, g_config.otp_verify_max_failures, 0, 0};
}

static throttle_rule_t rule_otp_addr(void)
{
    return (throttle_rule_t){"otp_addr", DAY, g_config.otp_verify_addr_max_failures, 0, 0};
}

/* Take an event of s1 under r1 and one of s2 under r2 (s2 may be NULL) in a transaction of their own, before the
 * slow part they guard (throttle_take): 0 both taken, > 0 the longer wait of a blocked one (then neither is
 * counted), -1 down. */
static long take_events(const throttle_rule_t *r1, const char *s1, throttle_claim_t *c1, const throttle_rule_t *r2,
                        const char *s2, throttle_claim_t *c2)
{
    if (db_begin() != 0)
        return -1;
    long w1 = throttle_take(r1, s1, c1), w2 = s2 && w1 >= 0 ? throttle_take(r2, s2, c2) : 0;
    long w = w1 < 0 || w2 < 0 ? -1 : w1 > w2 ? w1 : w2;
    if (w != 0 || db_commit() != 0) {
        db_rollback();
        return w > 0 ? w : -1;
    }
    return 0;
}

/* Give back the events take_events took when the request is refused before the outcome (no Argon2 slot):
 * best effort, the answer is already an error. */
static void give_back(const throttle_rule_t *r1, const char *s1, const throttle_claim_t *c1, const throttle_rule_t *r2,
                      const char *s2, const throttle_claim_t *c2)
{
    throttle_release(r1, s1, c1);
    if (s2)
        throttle_release(r2, s2, c2);
}

/* Hash a new password under an Argon2 slot. 0 ok; -1 answered (503 busy or down, 500). */
/* Take an Argon2 slot (throttle_hash_acquire): 0 taken, -1 after answering 503 (all busy, or PostgreSQL down). */
static int hash_slot(http_req_t *req)
{
    int slot = throttle_hash_acquire();
    if (slot > 0)
        return 0;
    if (slot == 0)
        hash_busy(req);
    else
        http_db_failed(req);
    return -1;
}

static int hash_new_password(http_req_t *req, const char *pw, size_t len, char hash[PASSWORD_ENCODED_MAX])
{
    if (hash_slot(req) != 0)
        return -1;
    int rc = password_hash(pw, len, hash, PASSWORD_ENCODED_MAX);
    throttle_hash_release();
    if (rc != 0)
        http_internal(req);
    return rc;
}

static json_object *nullable_string(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : json_object_new_string(PQgetvalue(res, row, col));
}

/* user {"id","mobile","name","email","tier","has_password","created_at"} from USER_COLUMNS in row. */
static json_object *user_json(const PGresult *res, int row)
{
    json_object *u = json_object_new_object();
    json_object_object_add(u, "id", json_object_new_int64(strtoll(PQgetvalue(res, row, 0), NULL, 10)));
    json_object_object_add(u, "mobile", json_object_new_string(PQgetvalue(res, row, 1)));
    json_object_object_add(u, "name", nullable_string(res, row, 2));
    json_object_object_add(u, "email", nullable_string(res, row, 3));
    json_object_object_add(u, "tier", json_object_new_string(PQgetvalue(res, row, 4)));
    json_object_object_add(u, "has_password", json_object_new_boolean(PQgetvalue(res, row, 5)[0] == 't'));
    json_object_object_add(u, "created_at", json_object_new_string(PQgetvalue(res, row, 6)));
    return u;
}

/* 200 {"access_token","token_type":"Bearer","expires_in","user"} for the user in row (USER_COLUMNS). */
static void respond_token(http_req_t *req, const PGresult *res, int row)
{
    long long uid = strtoll(PQgetvalue(res, row, 0), NULL, 10);
    int tv = (int)strtol(PQgetvalue(res, row, 7), NULL, 10);
    char *tok = token_issue((const unsigned char *)g_config.jwt_secret, g_config.jwt_secret_len, uid, tv, time(NULL),
                            g_config.jwt_ttl_seconds);
    if (!tok) {
        log_error("could not issue a token for user %lld", uid);
        http_internal(req);
        return;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "access_token", json_object_new_string(tok));
    json_object_object_add(o, "token_type", json_object_new_string("Bearer"));
    json_object_object_add(o, "expires_in", json_object_new_int64(g_config.jwt_ttl_seconds));
    json_object_object_add(o, "user", user_json(res, row));
    free(tok);
    http_json(req, 200, o);
}

/* The request's JSON object and its normalised "mobile": the body (the caller puts it), or NULL after
 * answering 400. */
static json_object *body_with_mobile(http_req_t *req, char mobile[17])
{
    char err[JSONV_ERRLEN];
    json_object *body = http_json_body(req);
    if (body && jsonv_mobile(body, "mobile", mobile, err) != 0) {
        validation_error(req, err);
        json_object_put(body);
        return NULL;
    }
    return body;
}

/* ---- signup ---------------------------------------------------------------------------------------------- */

void account_signup(http_req_t *req)
{
    /* ON CONFLICT: an existing mobile is an answer (409), not an error in the database's log (with the
     * number in it). */
    static db_stmt_t exists = DB_STMT("account_signup_exists", "SELECT 1 FROM users WHERE mobile = $1", 1);
    static db_stmt_t ins = DB_STMT("account_signup",
                                   "INSERT INTO users (mobile, name, email, password_hash) VALUES ($1, $2, $3, $4) "
                                   "ON CONFLICT (mobile) DO NOTHING RETURNING " USER_COLUMNS,
                                   4);
    char mobile[17], name[ACCOUNT_NAME_BUF], email[ACCOUNT_EMAIL_BUF], err[ACCOUNT_ERRLEN];
    char hash[PASSWORD_ENCODED_MAX];
    const char *pw = NULL;
    size_t pwlen = 0;
    PGresult *res = NULL;
    int has_name, has_email;
    throttle_rule_t rule = rule_signup_addr();
    throttle_claim_t claim;
    const char *addr = client_addr(req);
    json_object *body = body_with_mobile(req, mobile);

    if (!body)
        return;
    if ((has_name = account_name_field(body, name, err)) < 0 ||
        (has_email = account_email_field(body, email, err)) < 0 ||
        account_new_password_field(body, "password", 0, &pw, &pwlen, err) < 0) {
        validation_error(req, err);
        goto out;
    }
    if (pw) {
        /* The expensive part only for a number that is free, and counted per address before it is paid; given
         * back when it is not paid (no Argon2 slot) or no account comes of it (another signup took the number). */
        const char *pm[] = {mobile};
        long wait;
        if (!(res = db_query(&exists, pm))) {
            http_db_failed(req);
            goto out;
        }
        if (PQntuples(res) != 0) {
            http_error(req, 409, "conflict", "An account with this mobile number already exists.");
            goto out;
        }
        PQclear(res);
        res = NULL;
        if ((wait = take_events(&rule, addr, &claim, NULL, NULL, NULL)) != 0) {
            if (wait > 0)
                rate_limited(req, wait, "Too many signups from this address; wait before trying again.");
            else
                http_db_failed(req);
            goto out;
        }
        if (hash_new_password(req, pw, pwlen, hash) != 0) {
            give_back(&rule, addr, &claim, NULL, NULL, NULL);
            goto out;
        }
    }
    const char *params[] = {mobile, has_name == 0 ? name : NULL, has_email == 0 ? email : NULL, pw ? hash : NULL};
    res = db_query(&ins, params);
    if (!res) {
        http_db_failed(req);
        goto out;
    }
    if (PQntuples(res) != 1) {
        if (pw)
            give_back(&rule, addr, &claim, NULL, NULL, NULL);
        http_error(req, 409, "conflict", "An account with this mobile number already exists.");
        goto out;
    }
    http_json(req, 201, user_json(res, 0));
out:
    PQclear(res);
    json_object_put(body);
}

/* ---- one-time codes ----------------------------------------------------------------------------------------- */

/* Seconds until the next code of a purpose may be sent to a user ($1, $2; $3 = SEND_MAX_PER_HOUR): 0 when now. */
static db_stmt_t q_send_wait =
    DB_STMT("otp_send_wait",
            "SELECT GREATEST(0, "
            " COALESCE(ceil(extract(epoch FROM max(sent_at) + interval '" STR(
                SEND_MIN_INTERVAL) " seconds' - now())), 0), "
                                   " CASE WHEN count(*) >= $3 THEN ceil(extract(epoch FROM "
                                   "   (SELECT sent_at FROM otp_sends WHERE user_id = $1 AND purpose = $2 "
                                   "     AND sent_at > now() - interval '1 hour' ORDER BY sent_at DESC OFFSET "
                                   "($3::int - 1) LIMIT 1) "
                                   "   + interval '1 hour' - now())) ELSE 0 END)::bigint "
                                   "FROM otp_sends WHERE user_id = $1 AND purpose = $2 AND sent_at > now() - "
                                   "interval '1 hour'",
            3);

/* The seconds until user uid may be sent a new code of purpose (0: now), or -1 when the statement failed. */
static long send_wait_seconds(const char *uid, const char *purpose)
{
    char per_hour[8];
    snprintf(per_hour, sizeof per_hour, "%d", SEND_MAX_PER_HOUR);
    const char *p[] = {uid, purpose, per_hour};
    PGresult *res = db_query(&q_send_wait, p);
    long wait = res && PQntuples(res) == 1 ? strtol(PQgetvalue(res, 0, 0), NULL, 10) : -1;
    PQclear(res);
    return wait;
}

void account_send_otp(http_req_t *req, const char *purpose)
{
    static db_stmt_t lock_user = DB_STMT("otp_lock_user", "SELECT id FROM users WHERE mobile = $1 FOR UPDATE", 1);
    static db_stmt_t upsert =
        DB_STMT("otp_upsert",
                "INSERT INTO otps (user_id, purpose, code_hash, expires_at, attempts, used_at, created_at) "
                "VALUES ($1, $2, $3::bytea, now() + interval '" STR(
                    OTP_TTL) " seconds', 0, NULL, now()) "
                             "ON CONFLICT (user_id, purpose) DO UPDATE SET code_hash = EXCLUDED.code_hash, "
                             "expires_at = EXCLUDED.expires_at, attempts = 0, used_at = NULL, created_at = now()",
                3);
    /* Old rows are the worker's housekeeping's to remove (the one place otp_sends is purged). */
    static db_stmt_t log_send = DB_STMT("otp_log_send", "INSERT INTO otp_sends (user_id, purpose) VALUES ($1, $2)", 2);
    char mobile[17], code[OTP_DIGITS + 1], uid[24];
    unsigned char digest[OTP_HASH_LEN];
    char hexhash[2 + 2 * OTP_HASH_LEN + 1] = "\\x"; /* bytea hex input */
    PGresult *res = NULL;
    json_object *body = body_with_mobile(req, mobile);

    if (!body)
        return;
    if (db_begin() != 0)
        goto dbfail;
    const char *p1[] = {mobile};
    if (!(res = db_query(&lock_user, p1)))
        goto dbfail;
    if (PQntuples(res) != 1) {
        http_error(req, 404, "not_found", "No account uses this mobile number; sign up first.");
        goto out;
    }
    snprintf(uid, sizeof uid, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    res = NULL;
    long retry = send_wait_seconds(uid, purpose);
    if (retry < 0)
        goto dbfail;
    if (retry > 0) {
        rate_limited(req, retry, "Too many codes requested for this number; wait before asking again.");
        goto out;
    }
    if (otp_generate(code) != 0 || otp_hash(otp_hmac_key, sizeof otp_hmac_key, purpose, mobile, code, digest) != 0) {
        http_internal(req);
        goto out;
    }
    hex_encode(digest, OTP_HASH_LEN, hexhash + 2);
    const char *p3[] = {uid, purpose, hexhash};
    if (!(res = db_query(&upsert, p3)))
        goto dbfail;
    PQclear(res);
    const char *p4[] = {uid, purpose};
    if (!(res = db_query(&log_send, p4)))
        goto dbfail;
    if (db_commit() != 0)
        goto dbfail;

    json_object *o = json_object_new_object();
    json_object_object_add(o, "mobile", json_object_new_string(mobile));
    if (g_config.otp_in_response)
        json_object_object_add(o, "otp", json_object_new_string(code));
    json_object_object_add(o, "purpose", json_object_new_string(purpose));
    json_object_object_add(o, "expires_in", json_object_new_int(OTP_TTL));
    http_json(req, 200, o);
    goto out;
dbfail:
    http_db_failed(req);
out:
    db_rollback();
    PQclear(res);
    json_object_put(body);
}

/* Consume a code inside the caller's transaction. 0: the code was right and is now used (uid set). -1:
 * answered (401/429/503...). A failed verification is counted (the code's attempts, and the daily caps per
 * number and per client address, OTP_VERIFY_MAX_FAILURES / OTP_VERIFY_ADDR_MAX_FAILURES) and committed before
 * answering; a number or address over its cap gets 429 before any code is looked at. */
static int consume_otp(http_req_t *req, const char *mobile, const char *purpose, const char *code, char uid[24])
{
    static db_stmt_t find_user = DB_STMT("otp_find_user", "SELECT id FROM users WHERE mobile = $1", 1);
    static db_stmt_t find = DB_STMT("otp_find",
                                    "SELECT code_hash, expires_at > now(), attempts, used_at IS NOT NULL "
                                    "FROM otps WHERE user_id = $1 AND purpose = $2 FOR UPDATE",
                                    2);
    static db_stmt_t wrong =
        DB_STMT("otp_wrong", "UPDATE otps SET attempts = attempts + 1 WHERE user_id = $1 AND purpose = $2", 2);
    static db_stmt_t use = DB_STMT("otp_use", "UPDATE otps SET used_at = now() WHERE user_id = $1 AND purpose = $2", 2);
    throttle_rule_t by_user = rule_otp_user(), by_addr = rule_otp_addr();
    throttle_claim_t of_addr, of_user;
    const char *addr = client_addr(req);
    long wait;
    int live = 0; /* a live code was compared and did not match: a guess at this number */
    PGresult *res = NULL;
    int rc = -1;
    const char *p1[] = {mobile};

    /* Each try is taken (counted) first, address then number, and given back below unless it is a failure of
     * that subject; the caller's transaction keeps both rows locked to its end, so parallel tries queue. Any
     * other way out (429, 503) rolls the takes back with the transaction. */
    uid[0] = '\0';
    if ((wait = throttle_take(&by_addr, addr, &of_addr)) != 0)
        goto limited;
    if (!(res = db_query(&find_user, p1)))
        goto dbfail;
    if (PQntuples(res) != 1)
        goto invalid;
    snprintf(uid, 24, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    res = NULL;
    if ((wait = throttle_take(&by_user, uid, &of_user)) != 0)
        goto limited;
    const char *p2[] = {uid, purpose};
    if (!(res = db_query(&find, p2)))
        goto dbfail;
    if (PQntuples(res) != 1 || PQgetvalue(res, 0, 3)[0] == 't' || PQgetvalue(res, 0, 1)[0] != 't')
        goto invalid;
    if (strtol(PQgetvalue(res, 0, 2), NULL, 10) >= OTP_MAX_WRONG) {
        /* Retry-After: when a new code may be asked for (the send limits), at least 1 s. */
        long wait_send = send_wait_seconds(uid, purpose);
        if (wait_send < 0)
            goto dbfail;
        rate_limited(req, wait_send > 0 ? wait_send : 1,
                     "Too many wrong codes: this code is burned; request a new one.");
        goto out;
    }
    size_t hlen = 0;
    unsigned char *stored = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 0), &hlen);
    int ok = stored && otp_check(otp_hmac_key, sizeof otp_hmac_key, purpose, mobile, code, stored, hlen);
    PQfreemem(stored);
    PQclear(res);
    res = NULL;
    if (!ok) {
        if (!(res = db_query(&wrong, p2)))
            goto dbfail;
        live = 1;
        goto invalid;
    }
    if (!(res = db_query(&use, p2)) || throttle_release(&by_addr, addr, &of_addr) != 0 ||
        throttle_release(&by_user, uid, &of_user) != 0)
        goto dbfail;
    rc = 0;
    goto out;
limited:
    if (wait < 0)
        goto dbfail;
    rate_limited(req, wait, "Too many wrong codes for this number or from this address; wait before trying again.");
    goto out;
invalid:
    /* Every failure counts for the address (guessing across numbers); a wrong live code also for the number. */
    if ((uid[0] && !live && throttle_release(&by_user, uid, &of_user) != 0) || db_commit() != 0)
        goto dbfail;
    http_error(req, 401, "invalid_otp", "The code is wrong, expired or already used.");
    goto out;
dbfail:
    http_db_failed(req);
out:
    PQclear(res);
    return rc;
}

void account_verify_otp(http_req_t *req)
{
    char mobile[17], code[OTP_DIGITS + 1], uid[24], err[ACCOUNT_ERRLEN];
    PGresult *res = NULL;
    json_object *body = body_with_mobile(req, mobile);

    if (!body)
        return;
    if (account_otp_field(body, code, err) != 0) {
        validation_error(req, err);
        goto out;
    }
    if (db_begin() != 0) {
        http_db_failed(req);
        goto out;
    }
    if (consume_otp(req, mobile, ACCOUNT_OTP_LOGIN, code, uid) != 0)
        goto out;
    const char *p[] = {uid};
    if (!(res = db_query(&q_load_user, p))) {
        http_db_failed(req);
        goto out;
    }
    if (PQntuples(res) != 1) { /* deleted since the code was found */
        http_error(req, 401, "invalid_otp", "The code is wrong, expired or already used.");
        goto out;
    }
    if (db_commit() != 0) {
        http_db_failed(req);
        goto out;
    }
    respond_token(req, res, 0);
out:
    db_rollback();
    PQclear(res);
    json_object_put(body);
}

/* ---- passwords ------------------------------------------------------------------------------------------------ */

void account_login(http_req_t *req)
{
    static db_stmt_t q =
        DB_STMT("account_login", "SELECT " USER_COLUMNS ", password_hash FROM users WHERE mobile = $1", 1);
    char mobile[17], err[ACCOUNT_ERRLEN];
    const char *pw;
    size_t pwlen = 0;
    PGresult *res = NULL;
    json_object *body = body_with_mobile(req, mobile);

    if (!body)
        return;
    if (account_password_field(body, "password", 1, &pw, &pwlen, err) != 0) {
        validation_error(req, err);
        goto out;
    }
    if (pwlen > 4 * PASSWORD_MAX_CHARS) {
        http_error(req, 401, "invalid_credentials", "The mobile number or password is wrong.");
        goto out;
    }
    const char *p[] = {mobile};
    if (!(res = db_query(&q, p))) {
        http_db_failed(req);
        goto out;
    }
    /* Failures are counted per account (an unknown number has none: the address counts) and per client
     * address; while either is blocked the password is not even checked. Each try is taken as a failure before
     * the hash, so parallel tries cannot pass the limits, and given back when the password was right. */
    throttle_rule_t by_user = rule_login_user(), by_addr = rule_login_addr();
    throttle_claim_t of_addr, of_user;
    const char *addr = client_addr(req), *user = NULL;
    char uid[24] = "";
    if (PQntuples(res) == 1) {
        snprintf(uid, sizeof uid, "%s", PQgetvalue(res, 0, 0));
        user = uid;
    }
    long wait = take_events(&by_addr, addr, &of_addr, &by_user, user, &of_user);
    if (wait != 0) {
        if (wait > 0)
            rate_limited(req, wait, "Too many failed logins; wait before trying again.");
        else
            http_db_failed(req);
        goto out;
    }
    if (hash_slot(req) != 0) {
        give_back(&by_addr, addr, &of_addr, &by_user, user, &of_user);
        goto out;
    }
    int found = user && !PQgetisnull(res, 0, USER_NCOLS);
    const char *hash = found ? PQgetvalue(res, 0, USER_NCOLS) : dummy_hash;
    int ok = password_verify(hash, pw, pwlen) == 1 && found;
    throttle_hash_release();
    if (!ok) {
        http_error(req, 401, "invalid_credentials", "The mobile number or password is wrong.");
        goto out;
    }
    /* A stale count would lock the owner out later. */
    if (throttle_release(&by_addr, addr, &of_addr) != 0 || throttle_reset(&by_user, uid) != 0) {
        http_db_failed(req);
        goto out;
    }
    respond_token(req, res, 0);
out:
    PQclear(res);
    json_object_put(body);
}

/* 401 for a request whose user no longer exists (deleted after its token or code was checked). */
static void user_gone(http_req_t *req)
{
    http_set_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
    http_error(req, 401, "unauthorized", "The token's user no longer exists.");
}

/* The caller's user row through stmt (one parameter: the user id uid): 0 found, and its token version (column
 * tv_col) is still the token's; 1 the version moved (the token was revoked meanwhile); -1 answered (503, or 401
 * when the user is gone). *res is the caller's to clear in every case. */
static int own_user_row(http_req_t *req, db_stmt_t *stmt, const char *uid, int tv_col, PGresult **res)
{
    char tv[16];
    const char *p[] = {uid};
    snprintf(tv, sizeof tv, "%d", req->token_version);
    if (!(*res = db_query(stmt, p))) {
        http_db_failed(req);
        return -1;
    }
    if (PQntuples(*res) != 1) {
        user_gone(req);
        return -1;
    }
    return strcmp(PQgetvalue(*res, 0, tv_col), tv) != 0;
}

/* Set a new password and revoke every older token, committing the open transaction; answers with a fresh
 * token. The password logins the old one blocked are forgiven: the caller has just proved the number. */
static void set_password_and_respond(http_req_t *req, const char *uid, const char *hash)
{
    throttle_rule_t by_user = rule_login_user();
    static db_stmt_t upd = DB_STMT("account_set_password",
                                   "UPDATE users SET password_hash = $2, token_version = token_version + 1, "
                                   "updated_at = now() WHERE id = $1 RETURNING " USER_COLUMNS,
                                   2);
    const char *p[] = {uid, hash};
    PGresult *res = db_query(&upd, p);

    if (res && PQntuples(res) != 1) { /* the user was deleted meanwhile */
        user_gone(req);
        PQclear(res);
        return;
    }
    if (!res || throttle_reset(&by_user, uid) != 0 || db_commit() != 0) {
        http_db_failed(req);
        PQclear(res);
        return;
    }
    auth_token_version_changed(strtoll(uid, NULL, 10), (int)strtol(PQgetvalue(res, 0, 7), NULL, 10));
    respond_token(req, res, 0);
    PQclear(res);
}

void account_reset_password(http_req_t *req)
{
    char mobile[17], code[OTP_DIGITS + 1], uid[24], hash[PASSWORD_ENCODED_MAX], err[ACCOUNT_ERRLEN];
    const char *pw;
    size_t pwlen = 0;
    json_object *body = body_with_mobile(req, mobile);

    if (!body)
        return;
    if (account_otp_field(body, code, err) != 0 ||
        account_new_password_field(body, "new_password", 1, &pw, &pwlen, err) != 0) {
        validation_error(req, err);
        goto out;
    }
    /* The cheap check first: a wrong, unknown or missing code costs no hash. The hash then runs with the code
     * consumed but not yet committed (a failure rolls the consumption back). */
    if (db_begin() != 0) {
        http_db_failed(req);
        goto out;
    }
    if (consume_otp(req, mobile, ACCOUNT_OTP_RESET, code, uid) != 0)
        goto out;
    if (hash_new_password(req, pw, pwlen, hash) != 0)
        goto out;
    set_password_and_respond(req, uid, hash);
out:
    db_rollback();
    json_object_put(body);
}

/* With a password set, the slow parts (verifying the current password, hashing the new one) run before the
 * transaction; inside it the user's row is locked and the change applies only if the token version is still
 * the caller's. Without one (an OTP-only account), an old token alone is not enough: the first password needs
 * a token issued within ACCOUNT_FIRST_PASSWORD_SECONDS (the user has just proved the number with a login code)
 * or a fresh reset code ("otp", from POST /auth/forgot-password), consumed inside the transaction before the
 * user's row is locked (reset-password's order, so the two cannot deadlock) and before the hash. A stolen
 * day-old token cannot set the password. */
void account_change_password(http_req_t *req)
{
    static db_stmt_t q =
        DB_STMT("account_current_password", "SELECT password_hash, token_version, mobile FROM users WHERE id = $1", 1);
    static db_stmt_t lock =
        DB_STMT("account_lock_version", "SELECT token_version FROM users WHERE id = $1 FOR UPDATE", 1);
    char uid[24], mobile[17], code[OTP_DIGITS + 1], hash[PASSWORD_ENCODED_MAX], err[ACCOUNT_ERRLEN];
    const char *cur, *pw;
    size_t curlen = 0, pwlen = 0;
    PGresult *res = NULL;
    int first, row;
    json_object *body = http_json_body(req);

    if (!body)
        return;
    if (account_password_field(body, "current_password", 0, &cur, &curlen, err) < 0 ||
        account_new_password_field(body, "new_password", 1, &pw, &pwlen, err) != 0) {
        validation_error(req, err);
        goto out;
    }
    snprintf(uid, sizeof uid, "%lld", req->user_id);
    if ((row = own_user_row(req, &q, uid, 1, &res)) < 0)
        goto out;
    if (row > 0)
        goto revoked;
    first = PQgetisnull(res, 0, 0);
    if (first) {
        json_object *o;
        if (!json_object_object_get_ex(body, "otp", &o) || json_object_is_type(o, json_type_null)) {
            if ((long long)time(NULL) - req->token_iat <= ACCOUNT_FIRST_PASSWORD_SECONDS) {
                first = 2; /* a fresh login proved the number: no code needed */
            } else {
                validation_error(req, "otp is required to set a first password with a token older than 5 minutes: "
                                      "request a code with POST /auth/forgot-password, or log in again.");
                goto out;
            }
        } else if (account_otp_field(body, code, err) != 0) {
            validation_error(req, err);
            goto out;
        }
        snprintf(mobile, sizeof mobile, "%s", PQgetvalue(res, 0, 2));
    } else {
        throttle_rule_t by_user = rule_login_user();
        throttle_claim_t claim;
        long wait;
        if (!cur) {
            validation_error(req, "current_password is required to change an existing password.");
            goto out;
        }
        /* A wrong current_password is a failed login of this account (a stolen token guessing it), taken before
         * the hash like a login's. */
        if ((wait = take_events(&by_user, uid, &claim, NULL, NULL, NULL)) != 0) {
            if (wait > 0)
                rate_limited(req, wait, "Too many failed password checks; wait before trying again.");
            else
                http_db_failed(req);
            goto out;
        }
        if (hash_slot(req) != 0) {
            give_back(&by_user, uid, &claim, NULL, NULL, NULL);
            goto out;
        }
        int ok = curlen <= 4 * PASSWORD_MAX_CHARS && password_verify(PQgetvalue(res, 0, 0), cur, curlen) == 1;
        throttle_hash_release();
        if (!ok) {
            http_error(req, 401, "invalid_credentials", "The current password is wrong.");
            goto out;
        }
        if (throttle_release(&by_user, uid, &claim) != 0) {
            http_db_failed(req);
            goto out;
        }
        PQclear(res);
        res = NULL;
        if (hash_new_password(req, pw, pwlen, hash) != 0)
            goto out;
    }
    PQclear(res);
    res = NULL;
    if (db_begin() != 0) {
        http_db_failed(req);
        goto out;
    }
    if (first == 1) {
        /* The code before the user's row, in reset-password's order (throttle rows, code, user): the two racing
         * for one account queue instead of deadlocking. A failure below rolls the consumption back. */
        char otp_uid[24];
        if (consume_otp(req, mobile, ACCOUNT_OTP_RESET, code, otp_uid) != 0)
            goto out;
        if (strcmp(otp_uid, uid) != 0) { /* the number moved to another account meanwhile */
            http_error(req, 401, "invalid_otp", "The code is wrong, expired or already used.");
            goto out;
        }
    }
    if ((row = own_user_row(req, &lock, uid, 0, &res)) < 0)
        goto out;
    if (row > 0) /* changed meanwhile: what was checked above is stale */
        goto revoked;
    if (first && hash_new_password(req, pw, pwlen, hash) != 0)
        goto out;
    set_password_and_respond(req, uid, hash);
    goto out;
revoked:
    http_set_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
    http_error(req, 401, "unauthorized", "The token has been revoked.");
out:
    db_rollback();
    PQclear(res);
    json_object_put(body);
}

/* Revokes every token of the user with the same token-version bump a password change makes. */
void account_logout(http_req_t *req)
{
    static db_stmt_t bump = DB_STMT("account_logout",
                                    "UPDATE users SET token_version = token_version + 1, updated_at = now() "
                                    "WHERE id = $1 RETURNING token_version",
                                    1);
    char uid[24];

    snprintf(uid, sizeof uid, "%lld", req->user_id);
    const char *p[] = {uid};
    PGresult *res = db_query(&bump, p);
    if (!res)
        http_db_failed(req);
    else if (PQntuples(res) != 1) {
        http_set_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        http_error(req, 401, "unauthorized", "The token's user no longer exists.");
    } else {
        auth_token_version_changed(req->user_id, (int)strtol(PQgetvalue(res, 0, 0), NULL, 10));
        http_empty(req, 204);
    }
    PQclear(res);
}

/* ---- the user ------------------------------------------------------------------------------------------------- */

void account_me(http_req_t *req)
{
    char uid[24];

    snprintf(uid, sizeof uid, "%lld", req->user_id);
    const char *p[] = {uid};
    PGresult *res = db_query(&q_load_user, p);
    if (!res)
        http_db_failed(req);
    else if (PQntuples(res) != 1)
        user_gone(req);
    else
        http_json(req, 200, user_json(res, 0));
    PQclear(res);
}

void account_me_cached(http_req_t *req, const char *cached, size_t len)
{
    static const char ct[] = "application/json; charset=utf-8";
    char uid[24], key[KEYS_USER_MAX];
    const char *payload, *bar, *s;
    size_t plen, slen = 0;
    long long tv;
    json_object *u = NULL;
    buf_t stamped = {0};

    /* A hit: "<token_version>|<json>" under the trusted epoch, read for the version of this very token. */
    if (cached && mirror_unwrap(cached, len, &payload, &plen) && (bar = memchr(payload, '|', plen)) != NULL) {
        char num[16];
        size_t n = (size_t)(bar - payload);
        if (n > 0 && n < sizeof num) {
            memcpy(num, payload, n);
            num[n] = '\0';
            if (parse_ll(num, 0, 2147483647, &tv) == 0 && tv == req->token_version) {
                http_set_header(req, "X-Cache", "HIT");
                http_raw(req, 200, ct, bar + 1, plen - n - 1);
                return;
            }
        }
    }
    snprintf(uid, sizeof uid, "%lld", req->user_id);
    const char *p[] = {uid};
    PGresult *res = db_query(&q_load_user, p);
    if (!res) {
        http_db_failed(req);
        goto out;
    }
    if (PQntuples(res) != 1) { /* deleted since its token was checked (the copies learn it shortly) */
        user_gone(req);
        goto out;
    }
    u = user_json(res, 0);
    s = jsonv_dump(u, &slen);
    buf_printf(&stamped, "%s|", PQgetvalue(res, 0, 7)); /* the token_version the user was read with */
    buf_append(&stamped, s, slen);
    keys_me(req->user_id, key);
    mirror_fill(key, cached, cached ? len : 0, stamped.data, stamped.len, KEYS_ME_TTL);
    http_set_header(req, "X-Cache", "MISS");
    http_raw(req, 200, ct, s, slen);
out:
    buf_free(&stamped);
    json_object_put(u);
    PQclear(res);
}
