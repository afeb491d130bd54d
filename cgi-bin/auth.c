/* auth: every /auth/... endpoint, GET /user/me and GET /healthz. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "cache.h"
#include "config.h"
#include "db.h"
#include "health.h"
#include "http.h"
#include "jsonv.h"
#include "log.h"
#include "otp.h"
#include "password.h"

#define OTP_TTL 300
#define OTP_MAX_WRONG 5
#define SEND_MIN_INTERVAL 30
#define SEND_MAX_PER_HOUR 10

/* A valid Argon2id hash of a random string, verified against when the user does not exist or has no
 * password, so that a login takes the same time either way. */
static char dummy_hash[PASSWORD_ENCODED_MAX];

/* The OTP digest key, derived from JWT_SECRET so that the two uses of the secret never share a key. */
static unsigned char otp_hmac_key[32];

static void init(void)
{
    static const char label[] = "gemini-backend otp key v1";
    unsigned int n = sizeof otp_hmac_key;
    if (!HMAC(EVP_sha256(), g_config.jwt_secret, (int)g_config.jwt_secret_len, (const unsigned char *)label,
              sizeof label - 1, otp_hmac_key, &n)) {
        log_error("cannot derive the OTP key");
        exit(1);
    }
    char seed[32];
    snprintf(seed, sizeof seed, "%p-%d", (void *)&seed, rand());
    if (password_hash(seed, strlen(seed), dummy_hash, sizeof dummy_hash) != 0)
        dummy_hash[0] = '\0';
}

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

/* Optional password field: 0 ok (pw set or NULL when absent), -1 answered. */
static int password_field(http_req_t *req, json_object *body, const char *field, int required, const char **pw,
                          size_t *pwlen)
{
    json_object *v = NULL;
    char err[JSONV_ERRLEN];
    *pw = NULL;
    if (!json_object_object_get_ex(body, field, &v) || !v) {
        if (required) {
            snprintf(err, sizeof err, "%s is required.", field);
            validation_error(req, err);
            return -1;
        }
        return 0;
    }
    if (!json_object_is_type(v, json_type_string)) {
        snprintf(err, sizeof err, "%s must be a string.", field);
        validation_error(req, err);
        return -1;
    }
    *pw = json_object_get_string(v);
    *pwlen = (size_t)json_object_get_string_len(v);
    return 0;
}

/* A new password: present, a string, and within the policy. */
static int new_password_field(http_req_t *req, json_object *body, const char *field, int required, const char **pw,
                              size_t *pwlen)
{
    char err[JSONV_ERRLEN], msg[JSONV_ERRLEN + 40];
    if (password_field(req, body, field, required, pw, pwlen) != 0)
        return -1;
    if (*pw && password_policy(*pw, *pwlen, err, sizeof err) != 0) {
        snprintf(msg, sizeof msg, "%s: %s", field, err);
        validation_error(req, msg);
        return -1;
    }
    return 0;
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

/* No C0 control character and no DEL: a name or email is shown and logged as one line. */
static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/* local@domain: a non-empty local part without spaces, one '@', a domain of at least two non-empty
 * dot-separated labels; no control characters anywhere. */
static int valid_email(const char *s)
{
    const char *at = strchr(s, '@');
    if (!at || at == s || strchr(at + 1, '@') || !printable(s) || strchr(s, ' '))
        return 0;
    int labels = 0;
    for (const char *p = at + 1;; p++) {
        size_t n = strcspn(p, ".");
        if (n == 0)
            return 0; /* empty label: "a@.b", "a@b..c", "a@b." */
        labels++;
        p += n;
        if (!*p)
            break;
    }
    return labels >= 2;
}

/* ---- POST /auth/signup ---- */

static void signup(http_req_t *req)
{
    /* ON CONFLICT: an existing mobile is an answer (409), not an error in the database's log (with the
     * number in it). */
    static db_stmt_t ins = DB_STMT("auth_signup",
                                   "INSERT INTO users (mobile, name, email, password_hash) VALUES ($1, $2, $3, $4) "
                                   "ON CONFLICT (mobile) DO NOTHING RETURNING " USER_COLUMNS,
                                   4);
    char mobile[17], name[401], email[255], err[JSONV_ERRLEN], hash[PASSWORD_ENCODED_MAX];
    const char *pw = NULL;
    size_t pwlen = 0;
    PGresult *res = NULL;
    json_object *body = body_with_mobile(req, mobile);
    if (!body)
        return;
    int has_name = jsonv_string(body, "name", 0, 1, 1, 100, name, sizeof name, err);
    if (has_name < 0 || (has_name == 0 && !printable(name))) {
        validation_error(req, has_name < 0 ? err : "name must not contain control characters.");
        goto out;
    }
    int has_email = jsonv_string(body, "email", 0, 1, 3, 254, email, sizeof email, err);
    if (has_email < 0 || (has_email == 0 && !valid_email(email))) {
        validation_error(req, has_email < 0 ? err : "email must be a valid email address.");
        goto out;
    }
    if (new_password_field(req, body, "password", 0, &pw, &pwlen) != 0)
        goto out;
    if (pw && password_hash(pw, pwlen, hash, sizeof hash) != 0) {
        http_internal(req);
        goto out;
    }
    const char *params[] = {mobile, has_name == 0 ? name : NULL, has_email == 0 ? email : NULL, pw ? hash : NULL};
    res = db_query(&ins, params);
    if (!res) {
        http_db_failed(req);
        goto out;
    }
    if (PQntuples(res) != 1) {
        http_error(req, 409, "conflict", "An account with this mobile number already exists.");
        goto out;
    }
    http_json(req, 201, user_json(res, 0));
out:
    PQclear(res);
    json_object_put(body);
}

/* ---- OTP sending: POST /auth/send-otp and /auth/forgot-password ---- */

static void send_otp(http_req_t *req, const char *purpose)
{
    static db_stmt_t lock_user = DB_STMT("otp_lock_user", "SELECT id FROM users WHERE mobile = $1 FOR UPDATE", 1);
    /* seconds until the next send is allowed: 0 when allowed now */
    static db_stmt_t wait =
        DB_STMT("otp_send_wait",
                "SELECT GREATEST(0, "
                " COALESCE(ceil(extract(epoch FROM max(sent_at) + interval '"
                "30"
                " seconds' - now())), 0), "
                " CASE WHEN count(*) >= $3 THEN ceil(extract(epoch FROM "
                "   (SELECT sent_at FROM otp_sends WHERE user_id = $1 AND purpose = $2 "
                "     AND sent_at > now() - interval '1 hour' ORDER BY sent_at DESC OFFSET ($3::int - 1) LIMIT 1) "
                "   + interval '1 hour' - now())) ELSE 0 END)::bigint "
                "FROM otp_sends WHERE user_id = $1 AND purpose = $2 AND sent_at > now() - interval '1 hour'",
                3);
    static db_stmt_t upsert =
        DB_STMT("otp_upsert",
                "INSERT INTO otps (user_id, purpose, code_hash, expires_at, attempts, used_at, created_at) "
                "VALUES ($1, $2, $3::bytea, now() + interval '300 seconds', 0, NULL, now()) "
                "ON CONFLICT (user_id, purpose) DO UPDATE SET code_hash = EXCLUDED.code_hash, "
                "expires_at = EXCLUDED.expires_at, attempts = 0, used_at = NULL, created_at = now()",
                3);
    static db_stmt_t log_send =
        DB_STMT("otp_log_send",
                "WITH gone AS (DELETE FROM otp_sends WHERE user_id = $1 AND sent_at < now() - interval '1 day') "
                "INSERT INTO otp_sends (user_id, purpose) VALUES ($1, $2)",
                2);
    char mobile[17], code[OTP_DIGITS + 1], uid[24], per_hour[8];
    unsigned char digest[OTP_HASH_LEN];
    char hexhash[2 + 2 * OTP_HASH_LEN + 1];
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
    snprintf(per_hour, sizeof per_hour, "%d", SEND_MAX_PER_HOUR);
    const char *p2[] = {uid, purpose, per_hour};
    if (!(res = db_query(&wait, p2)))
        goto dbfail;
    long retry = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    res = NULL;
    if (retry > 0) {
        rate_limited(req, retry, "Too many codes requested for this number; wait before asking again.");
        goto out;
    }
    if (otp_generate(code) != 0 || otp_hash(otp_hmac_key, sizeof otp_hmac_key, purpose, mobile, code, digest) != 0) {
        http_internal(req);
        goto out;
    }
    memcpy(hexhash, "\\x", 2);
    for (int i = 0; i < OTP_HASH_LEN; i++)
        snprintf(hexhash + 2 + 2 * i, 3, "%02x", digest[i]);
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

static void send_login_otp(http_req_t *req)
{
    send_otp(req, "login");
}

static void forgot_password(http_req_t *req)
{
    send_otp(req, "password_reset");
}

/* ---- OTP consumption, inside the caller's transaction ----
 * 0: the code was right and is now used (*uid set). -1: answered (401/429/503...). On a wrong code the
 * attempt is counted and committed before answering. */
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
    PGresult *res = NULL;
    int rc = -1;
    const char *p1[] = {mobile};
    if (!(res = db_query(&find_user, p1)))
        goto dbfail;
    if (PQntuples(res) != 1)
        goto invalid;
    snprintf(uid, 24, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    const char *p2[] = {uid, purpose};
    if (!(res = db_query(&find, p2)))
        goto dbfail;
    if (PQntuples(res) != 1 || PQgetvalue(res, 0, 3)[0] == 't' || PQgetvalue(res, 0, 1)[0] != 't')
        goto invalid;
    if (strtol(PQgetvalue(res, 0, 2), NULL, 10) >= OTP_MAX_WRONG) {
        rate_limited(req, SEND_MIN_INTERVAL, "Too many wrong codes: this code is burned; request a new one.");
        goto out;
    }
    size_t hlen = 0;
    unsigned char *stored = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 0), &hlen);
    int ok = stored && otp_check(otp_hmac_key, sizeof otp_hmac_key, purpose, mobile, code, stored, hlen);
    PQfreemem(stored);
    PQclear(res);
    res = NULL;
    if (!ok) {
        if (!(res = db_query(&wrong, p2)) || db_commit() != 0)
            goto dbfail;
        goto invalid;
    }
    if (!(res = db_query(&use, p2)))
        goto dbfail;
    rc = 0;
    goto out;
invalid:
    http_error(req, 401, "invalid_otp", "The code is wrong, expired or already used.");
    goto out;
dbfail:
    http_db_failed(req);
out:
    PQclear(res);
    return rc;
}

/* otp field: a string of exactly 6 digits. */
static int otp_field(http_req_t *req, json_object *body, char code[OTP_DIGITS + 1])
{
    char err[JSONV_ERRLEN];
    if (jsonv_string(body, "otp", 1, 1, 1, 16, code, OTP_DIGITS + 1, err) != 0) {
        validation_error(req, strstr(err, "required") ? err : "otp must be a 6-digit code.");
        return -1;
    }
    if (strlen(code) != OTP_DIGITS || strspn(code, "0123456789") != OTP_DIGITS) {
        validation_error(req, "otp must be a 6-digit code.");
        return -1;
    }
    return 0;
}

static db_stmt_t load_user = DB_STMT("auth_load_user", "SELECT " USER_COLUMNS " FROM users WHERE id = $1", 1);

/* ---- POST /auth/verify-otp ---- */

static void verify_otp(http_req_t *req)
{
    char mobile[17], code[OTP_DIGITS + 1], uid[24];
    PGresult *res = NULL;
    json_object *body = body_with_mobile(req, mobile);
    if (!body)
        return;
    if (otp_field(req, body, code) != 0)
        goto out;
    if (db_begin() != 0) {
        http_db_failed(req);
        goto out;
    }
    if (consume_otp(req, mobile, "login", code, uid) != 0)
        goto out;
    const char *p[] = {uid};
    if (!(res = db_query(&load_user, p)) || PQntuples(res) != 1 || db_commit() != 0) {
        http_db_failed(req);
        goto out;
    }
    auth_respond_token(req, res, 0);
out:
    db_rollback();
    PQclear(res);
    json_object_put(body);
}

/* ---- POST /auth/login ---- */

static void login(http_req_t *req)
{
    static db_stmt_t q =
        DB_STMT("auth_login", "SELECT " USER_COLUMNS ", password_hash FROM users WHERE mobile = $1", 1);
    char mobile[17];
    const char *pw;
    size_t pwlen = 0;
    PGresult *res = NULL;
    json_object *body = body_with_mobile(req, mobile);
    if (!body)
        return;
    if (password_field(req, body, "password", 1, &pw, &pwlen) != 0)
        goto out;
    if (pwlen > 4 * PASSWORD_MAX_CHARS) {
        http_error(req, 401, "invalid_credentials", "The mobile number or password is wrong.");
        goto out;
    }
    const char *p[] = {mobile};
    if (!(res = db_query(&q, p))) {
        http_db_failed(req);
        goto out;
    }
    int found = PQntuples(res) == 1 && !PQgetisnull(res, 0, 8);
    const char *hash = found ? PQgetvalue(res, 0, 8) : dummy_hash;
    int ok = password_verify(hash, pw, pwlen) == 1 && found;
    if (!ok) {
        http_error(req, 401, "invalid_credentials", "The mobile number or password is wrong.");
        goto out;
    }
    auth_respond_token(req, res, 0);
out:
    PQclear(res);
    json_object_put(body);
}

/* Set a new password and revoke every older token, in the open transaction; answers with a fresh token. */
static void set_password_and_respond(http_req_t *req, const char *uid, const char *hash)
{
    static db_stmt_t upd = DB_STMT("auth_set_password",
                                   "UPDATE users SET password_hash = $2, token_version = token_version + 1, "
                                   "updated_at = now() WHERE id = $1 RETURNING " USER_COLUMNS,
                                   2);
    const char *p[] = {uid, hash};
    PGresult *res = db_query(&upd, p);
    if (!res || PQntuples(res) != 1 || db_commit() != 0) {
        http_db_failed(req);
        PQclear(res);
        return;
    }
    auth_token_version_changed(strtoll(uid, NULL, 10), (int)strtol(PQgetvalue(res, 0, 7), NULL, 10));
    auth_respond_token(req, res, 0);
    PQclear(res);
}

/* ---- POST /auth/reset-password ---- */

static void reset_password(http_req_t *req)
{
    char mobile[17], code[OTP_DIGITS + 1], uid[24], hash[PASSWORD_ENCODED_MAX];
    const char *pw;
    size_t pwlen = 0;
    json_object *body = body_with_mobile(req, mobile);
    if (!body)
        return;
    if (otp_field(req, body, code) != 0 || new_password_field(req, body, "new_password", 1, &pw, &pwlen) != 0)
        goto out;
    if (password_hash(pw, pwlen, hash, sizeof hash) != 0) { /* slow: before the transaction takes locks */
        http_internal(req);
        goto out;
    }
    if (db_begin() != 0) {
        http_db_failed(req);
        goto out;
    }
    if (consume_otp(req, mobile, "password_reset", code, uid) != 0)
        goto out;
    set_password_and_respond(req, uid, hash);
out:
    db_rollback();
    json_object_put(body);
}

/* ---- POST /auth/change-password ---- */

/* The slow parts (verifying the current password, hashing the new one) run before the transaction; inside
 * it the user's row is locked and the change applies only if the token version is still the caller's. So of
 * two concurrent changes with one token exactly one succeeds, and the other gets 401 (its token was revoked
 * by the first). */
static void change_password(http_req_t *req)
{
    static db_stmt_t q =
        DB_STMT("auth_current_password", "SELECT password_hash, token_version FROM users WHERE id = $1", 1);
    static db_stmt_t lock = DB_STMT("auth_lock_version", "SELECT token_version FROM users WHERE id = $1 FOR UPDATE", 1);
    char uid[24], tv[16], hash[PASSWORD_ENCODED_MAX];
    const char *cur, *pw;
    size_t curlen = 0, pwlen = 0;
    PGresult *res = NULL;
    json_object *body = NULL;
    if (auth_require(req) != 0)
        return;
    if (!(body = http_json_body(req)))
        return;
    if (password_field(req, body, "current_password", 0, &cur, &curlen) != 0 ||
        new_password_field(req, body, "new_password", 1, &pw, &pwlen) != 0)
        goto out;
    snprintf(uid, sizeof uid, "%lld", req->user_id);
    snprintf(tv, sizeof tv, "%d", req->token_version);
    const char *p[] = {uid};
    if (!(res = db_query(&q, p)) || PQntuples(res) != 1) {
        http_db_failed(req);
        goto out;
    }
    if (strcmp(PQgetvalue(res, 0, 1), tv) != 0)
        goto revoked;
    if (!PQgetisnull(res, 0, 0)) {
        if (!cur) {
            validation_error(req, "current_password is required to change an existing password.");
            goto out;
        }
        if (curlen > 4 * PASSWORD_MAX_CHARS || password_verify(PQgetvalue(res, 0, 0), cur, curlen) != 1) {
            http_error(req, 401, "invalid_credentials", "The current password is wrong.");
            goto out;
        }
    }
    PQclear(res);
    res = NULL;
    if (password_hash(pw, pwlen, hash, sizeof hash) != 0) {
        http_internal(req);
        goto out;
    }
    if (db_begin() != 0 || !(res = db_query(&lock, p)) || PQntuples(res) != 1) {
        http_db_failed(req);
        goto out;
    }
    if (strcmp(PQgetvalue(res, 0, 0), tv) != 0) /* changed meanwhile: the password checked above is stale */
        goto revoked;
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

/* ---- GET /user/me ---- */

static void me(http_req_t *req)
{
    char uid[24];
    if (auth_require(req) != 0)
        return;
    snprintf(uid, sizeof uid, "%lld", req->user_id);
    const char *p[] = {uid};
    PGresult *res = db_query(&load_user, p);
    if (!res)
        http_db_failed(req);
    else if (PQntuples(res) != 1)
        http_not_found(req);
    else
        http_json(req, 200, user_json(res, 0));
    PQclear(res);
}

/* ---- GET /healthz ---- */

static void healthz(http_req_t *req)
{
    health_respond(req);
}

static const http_route_t routes[] = {
    {"POST", "/auth/signup", signup},
    {"POST", "/auth/send-otp", send_login_otp},
    {"POST", "/auth/verify-otp", verify_otp},
    {"POST", "/auth/login", login},
    {"POST", "/auth/forgot-password", forgot_password},
    {"POST", "/auth/reset-password", reset_password},
    {"POST", "/auth/change-password", change_password},
    {"GET", "/user/me", me},
    {"GET", "/healthz", healthz},
};

int main(void)
{
    return http_serve("auth", routes, sizeof routes / sizeof routes[0], init);
}
