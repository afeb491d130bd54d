/* account: the account flows behind /auth/... and GET /user/me (API.md "Authentication"): signup, one-time
 * codes (send, verify, consume), password login, password set / reset / change, the user JSON and the token
 * response, and the rules of their input fields.
 *
 * The request functions (account_signup ... account_me) answer the request themselves with the contract's
 * JSON: 200/201 on success, else 400 validation_error, 401 (invalid_otp, invalid_credentials, unauthorized),
 * 404, 409 conflict, 429 rate_limited (with Retry-After), 503 when PostgreSQL is down, 500. They expect
 * account_init to have run once. The field rules at the bottom are pure and exposed for unit tests. */
#ifndef GB_ACCOUNT_H
#define GB_ACCOUNT_H

#include <stddef.h>
#include <json-c/json.h>

#include "http.h"
#include "jsonv.h"
#include "otp.h"

#define ACCOUNT_OTP_LOGIN "login"          /* purpose of a login code (POST /auth/send-otp) */
#define ACCOUNT_OTP_RESET "password_reset" /* purpose of a reset code (POST /auth/forgot-password) */

#define ACCOUNT_NAME_MAX 100               /* characters after trimming */
#define ACCOUNT_NAME_BUF 401               /* bytes: ACCOUNT_NAME_MAX code points of up to 4 bytes, and the NUL */
#define ACCOUNT_EMAIL_MIN 3                /* characters after trimming */
#define ACCOUNT_EMAIL_MAX 254              /* characters after trimming */
#define ACCOUNT_EMAIL_BUF 1017             /* bytes: ACCOUNT_EMAIL_MAX code points of up to 4 bytes, and the NUL */
#define ACCOUNT_FIRST_PASSWORD_SECONDS 300 /* a token this young sets a first password without a reset code */
#define ACCOUNT_ERRLEN (JSONV_ERRLEN + 40) /* a field rule's message, for 400 validation_error */

/* Once per process, before serving: derive the OTP digest key from JWT_SECRET (so the secret's two uses never
 * share a key) and make the dummy Argon2id hash a login verifies against when the user has no password (so
 * that a login takes the same time either way). */
void account_init(void);

/* POST /auth/signup: 201 user; 409 when the mobile number is taken. With a password, at most
 * SIGNUP_ADDR_MAX_PER_HOUR per client address an hour (429), and the number is checked before hashing. */
void account_signup(http_req_t *req);
/* POST /auth/send-otp (purpose ACCOUNT_OTP_LOGIN) and /auth/forgot-password (ACCOUNT_OTP_RESET): a new code
 * for the number's user, 200 {"mobile","otp"?,"purpose","expires_in"}; 404 for an unknown number, 429 when
 * sent too often (one per 30 s, 10 per hour and purpose). */
void account_send_otp(http_req_t *req, const char *purpose);
/* POST /auth/verify-otp: consumes a login code, 200 token response. Wrong codes (both purposes, here and in
 * reset-password / change-password) are capped per number (OTP_VERIFY_MAX_FAILURES) and per client address
 * (OTP_VERIFY_ADDR_MAX_FAILURES) a day: 429 rate_limited with Retry-After until the day's window ends. */
void account_verify_otp(http_req_t *req);
/* POST /auth/login: mobile and password, 200 token response; 401 invalid_credentials. Failures are counted
 * per account and per client address (LOGIN_MAX_FAILURES, LOGIN_ADDR_MAX_FAILURES, then a doubling backoff from
 * LOGIN_BACKOFF_SECONDS to LOGIN_BACKOFF_MAX_SECONDS): 429 rate_limited with Retry-After while blocked. Every
 * Argon2 computation (here and in signup, reset and change) takes one of PASSWORD_HASH_CONCURRENCY slots: 503
 * unavailable with Retry-After: 1 when all are busy. */
void account_login(http_req_t *req);
/* POST /auth/reset-password: consumes a reset code (checked before the new password is hashed), sets
 * new_password, revokes older tokens, 200 token response. */
void account_reset_password(http_req_t *req);
/* POST /auth/change-password, after auth_require (req->user_id, req->token_version): checks current_password
 * when the user has one (a wrong one counts as a failed login of the account), or, for the first password of
 * an OTP-only account, a fresh reset code in "otp" (400 without it, 401 invalid_otp when wrong); sets
 * new_password, revokes older tokens (this one included), 200 token response. Of two concurrent changes with
 * one token exactly one succeeds; the other gets 401 (revoked). */
void account_change_password(http_req_t *req);
/* POST /auth/logout, after auth_require: revokes every token of the user (the token-version bump of a password
 * change), 204. */
void account_logout(http_req_t *req);
/* GET /user/me, after auth_require: 200 user. */
void account_me(http_req_t *req);
/* GET /user/me served from the cached user (after auth_require_cached with KEYS_ME_PREFIX; cached/len: what it
 * read, NULL on a miss, not freed here): a copy stamped with the current epoch and this token's token_version
 * is served as is (X-Cache: HIT); anything else reads PostgreSQL (X-Cache: MISS) and stores the copy back
 * (mirror_fill). It can never outlive a revocation (another token_version), a tier change (billing invalidates
 * it with the list, outbox.h) or a Redis restart, restore or flush (mirror.h). */
void account_me_cached(http_req_t *req, const char *cached, size_t len);

/* ---- field rules (pure, unit-tested; implemented in account_fields.c) ----
 * Each reads one field of a request object and returns 0 ok, 1 absent (and optional; JSON null is absent),
 * or -1 invalid with the 400 message naming the field in err (ACCOUNT_ERRLEN bytes). */

/* "name": optional string, trimmed, 1..ACCOUNT_NAME_MAX characters, no control character. */
int account_name_field(json_object *body, char out[ACCOUNT_NAME_BUF], char *err);
/* "email": optional string, trimmed, ACCOUNT_EMAIL_MIN..ACCOUNT_EMAIL_MAX characters, account_valid_email. */
int account_email_field(json_object *body, char out[ACCOUNT_EMAIL_BUF], char *err);
/* A password field (any string: the policy applies to new passwords only). *pw points into body and *len is
 * its length in bytes; *pw is NULL when absent. required makes absence invalid. */
int account_password_field(json_object *body, const char *field, int required, const char **pw, size_t *len, char *err);
/* A new password field: account_password_field plus the password policy (password.h). */
int account_new_password_field(json_object *body, const char *field, int required, const char **pw, size_t *len,
                               char *err);
/* "otp": required, a string of exactly OTP_DIGITS ASCII digits (surrounding whitespace trimmed). Never 1. */
int account_otp_field(json_object *body, char code[OTP_DIGITS + 1], char *err);

/* 1 when the UTF-8 string s has no control character (C0, DEL, C1), no line or paragraph separator (U+2028,
 * U+2029) and no bidirectional embedding, override or isolate (U+202A..202E, U+2066..2069: they reverse the
 * text around a name where it is shown), else 0: a name or email is shown and logged as one plain line. */
int account_printable(const char *s);
/* 1 when s is local@domain: a non-empty local part, exactly one '@', a domain of at least two non-empty
 * dot-separated labels, no space and no control character anywhere; else 0. */
int account_valid_email(const char *s);

#endif
