#include "chat.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "auth.h"
#include "cache.h"
#include "config.h"
#include "db.h"
#include "jsonv.h"
#include "keys.h"
#include "log.h"
#include "outbox.h"
#include "queue.h"
#include "util.h"

#define CT_JSON "application/json; charset=utf-8"

/* ---- SQL ---------------------------------------------------------------------------------------------- */

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
/* room_json expects these 5 columns in this order. */
#define ROOM_COLS "c.id, c.title, " TS("c.created_at") ", " TS("c.updated_at") ", c.message_count"
#define ROOM_NCOLS 5
/* msg_json expects these 7 columns in this order. */
#define MSG_COLS "m.id, m.chatroom_id, m.role, m.content, m.status, m.error, " TS("m.created_at")

static db_stmt_t q_room_create =
    DB_STMT("chat_room_create", "INSERT INTO chatrooms AS c (user_id, title) VALUES ($1, $2) RETURNING " ROOM_COLS, 2);

static db_stmt_t q_room_list =
    DB_STMT("chat_room_list",
            "SELECT " ROOM_COLS " FROM chatrooms c WHERE c.user_id = $1 ORDER BY c.updated_at DESC, c.id DESC", 1);

/* One round trip: the room (no row: not found / not the caller's) and its latest messages, oldest first.
 * A room without messages gives one row with NULL message columns. */
static db_stmt_t q_room_get =
    DB_STMT("chat_room_get",
            "SELECT " ROOM_COLS ", " MSG_COLS " FROM chatrooms c LEFT JOIN LATERAL ("
            "SELECT * FROM messages mm WHERE mm.chatroom_id = c.id ORDER BY mm.id DESC LIMIT $3) m ON true "
            "WHERE c.id = $1 AND c.user_id = $2 ORDER BY m.id",
            3);

static db_stmt_t q_room_delete = DB_STMT("chat_room_delete", "DELETE FROM chatrooms WHERE id = $1 AND user_id = $2", 2);

/* A page: messages with id < $3, newest $4 of them, returned oldest first. */
static db_stmt_t q_messages_page = DB_STMT("chat_messages_page",
                                           "SELECT c.id, " MSG_COLS " FROM chatrooms c LEFT JOIN LATERAL ("
                                           "SELECT * FROM messages mm WHERE mm.chatroom_id = c.id AND mm.id < $3 "
                                           "ORDER BY mm.id DESC LIMIT $4) m ON true "
                                           "WHERE c.id = $1 AND c.user_id = $2 ORDER BY m.id",
                                           4);

static db_stmt_t q_usage = DB_STMT(
    "chat_usage",
    "SELECT u.tier, COALESCE((SELECT d.used FROM daily_usage d WHERE d.user_id = u.id AND d.day = $2::date), 0) "
    "FROM users u WHERE u.id = $1",
    2);

/* Claim an Idempotency-Key with the fingerprint of this request ($3, hex): a row comes back when this request
 * owns the key (new, or older than 24 h and replaced). No row: a committed first request holds it (a
 * concurrent one is waited for by the insert). */
static db_stmt_t q_idem_claim =
    DB_STMT("chat_idem_claim",
            "INSERT INTO idempotency_keys AS k (user_id, key, status, body, fingerprint) "
            "VALUES ($1, $2, 0, '', decode($3, 'hex')) "
            "ON CONFLICT (user_id, key) DO UPDATE SET status = 0, body = '', created_at = now(), "
            "fingerprint = EXCLUDED.fingerprint WHERE k.created_at < now() - interval '24 hours' RETURNING 1",
            3);

/* The stored response and whether it was made by the same request ($3: this request's fingerprint). A key
 * stored before fingerprints existed (NULL) counts as the same request, as it always did. */
static db_stmt_t q_idem_get = DB_STMT("chat_idem_get",
                                      "SELECT status, body, fingerprint IS NULL OR fingerprint = decode($3, 'hex') "
                                      "FROM idempotency_keys WHERE user_id = $1 AND key = $2",
                                      3);

static db_stmt_t q_idem_store =
    DB_STMT("chat_idem_store", "UPDATE idempotency_keys SET status = $3, body = $4 WHERE user_id = $1 AND key = $2", 4);

/* Ownership and tier, locking the room so a concurrent DELETE waits for this message (or wins first). */
static db_stmt_t q_room_lock = DB_STMT("chat_room_lock",
                                       "SELECT u.tier FROM chatrooms c JOIN users u ON u.id = c.user_id "
                                       "WHERE c.id = $1 AND c.user_id = $2 FOR UPDATE OF c",
                                       2);

/* Count one message for the day; $3 is the limit (NULL: unlimited). The upsert holds the row lock, so
 * concurrent requests of one user are serialised here: no row back means the limit is reached. */
static db_stmt_t q_usage_take = DB_STMT(
    "chat_usage_take",
    "INSERT INTO daily_usage AS d (user_id, day, used) SELECT $1, $2::date, 1 WHERE $3::int IS NULL OR $3::int > 0 "
    "ON CONFLICT (user_id, day) DO UPDATE SET used = d.used + 1 WHERE $3::int IS NULL OR d.used < $3::int "
    "RETURNING d.used",
    3);

/* The user's message and the pending reply (in this order, so the reply has the larger id), and the room's
 * counters. */
static db_stmt_t q_message_insert =
    DB_STMT("chat_message_insert",
            "WITH room AS (UPDATE chatrooms SET message_count = message_count + 2, updated_at = now() WHERE id = $1) "
            "INSERT INTO messages AS m (chatroom_id, user_id, role, content, status) "
            "VALUES ($1, $2, 'user', $3, 'completed'), ($1, $2, 'model', '', 'pending') RETURNING " MSG_COLS,
            3);

/* ---- pure helpers -------------------------------------------------------------------------------------- */

int chat_parse_limit(const char *s, long *out)
{
    long long v;

    if (!s) {
        *out = CHAT_PAGE_DEFAULT;
        return 0;
    }
    if (parse_ll(s, 1, CHAT_PAGE_MAX, &v) < 0)
        return -1;
    *out = (long)v;
    return 0;
}

int chat_parse_before(const char *s, long long *out)
{
    long long v;

    if (!s) {
        *out = LLONG_MAX;
        return 0;
    }
    if (parse_ll(s, 1, LLONG_MAX, &v) < 0)
        return -1;
    *out = v;
    return 0;
}

int chat_idem_key_valid(const char *key)
{
    size_t n = 0;

    if (!key)
        return 0;
    for (; key[n]; n++) {
        unsigned char c = (unsigned char)key[n];
        if (c < 0x21 || c > 0x7e || n >= CHAT_IDEM_KEY_MAX)
            return 0;
    }
    return n > 0;
}

long chat_seconds_to_midnight(time_t now)
{
    long long t = (long long)now;
    long long r = t % 86400;

    if (r < 0) /* before 1970: C's % keeps the sign */
        r += 86400;
    return (long)(86400 - r);
}

void chat_utc_day(time_t now, char out[11])
{
    struct tm tm;

    if (!gmtime_r(&now, &tm) || strftime(out, 11, "%Y-%m-%d", &tm) != 10)
        snprintf(out, 11, "1970-01-01");
}

void chat_idem_fingerprint(long long room_id, const char *content, size_t len, char out[CHAT_FINGERPRINT_HEX])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char rid[24];
    int n = snprintf(rid, sizeof rid, "%lld", room_id);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 || EVP_DigestUpdate(ctx, rid, (size_t)n + 1) != 1 ||
        EVP_DigestUpdate(ctx, content, len) != 1 || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32) {
        /* OpenSSL cannot fail here short of running out of memory, which aborts everywhere else too */
        log_error("chat: SHA-256 failed");
        abort();
    }
    EVP_MD_CTX_free(ctx);
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

int chat_cache_is_body(const char *val, size_t len)
{
    return val && len > 0 && val[0] == '{';
}

/* ---- list cache ---------------------------------------------------------------------------------------- */

/* Store body under key only if the key still holds what the reader saw before reading PostgreSQL
 * (ARGV[1]: that value, '' for none). Writers replace the key by a unique tombstone after they commit, so
 * a list read before a change can never land after its invalidation. */
static const char cache_fill_lua[] = "local v = redis.call('GET', KEYS[1]) "
                                     "if (v == false and ARGV[1] == '') or v == ARGV[1] then "
                                     "redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1 end "
                                     "return 0";

static void cache_fill(const char *key, const char *seen, size_t seenlen, const char *body, size_t len)
{
    char ttl[16];
    int n = snprintf(ttl, sizeof ttl, "%d", CHAT_LIST_TTL);
    const char *argv[] = {"EVAL", cache_fill_lua, "1", key, seen, body, ttl};
    size_t lens[] = {4, sizeof cache_fill_lua - 1, 1, strlen(key), seenlen, len, (size_t)n};
    redisReply *r = cache_cmd(7, argv, lens);

    if (r && r->type == REDIS_REPLY_ERROR)
        log_warn("chat: cache fill of %s refused: %.*s", key, (int)(r->len < 200 ? r->len : 200), r->str);
    freeReplyObject(r); /* NULL: Redis down, the list was served from PostgreSQL anyway */
}

/* ---- JSON shapes ---------------------------------------------------------------------------------------- */

static long long ll_at(const PGresult *res, int row, int col)
{
    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static json_object *str_at(const PGresult *res, int row, int col)
{
    return json_object_new_string_len(PQgetvalue(res, row, col), PQgetlength(res, row, col));
}

/* chatroom {"id","title","created_at","updated_at","message_count"} from ROOM_COLS at col. */
static json_object *room_json(const PGresult *res, int row, int col)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "id", json_object_new_int64(ll_at(res, row, col)));
    json_object_object_add(o, "title", str_at(res, row, col + 1));
    json_object_object_add(o, "created_at", str_at(res, row, col + 2));
    json_object_object_add(o, "updated_at", str_at(res, row, col + 3));
    json_object_object_add(o, "message_count", json_object_new_int64(ll_at(res, row, col + 4)));
    return o;
}

/* message {"id","chatroom_id","role","content","status","error","created_at"} from MSG_COLS at col. */
static json_object *msg_json(const PGresult *res, int row, int col)
{
    json_object *o = json_object_new_object();
    const char *status = PQgetvalue(res, row, col + 4);
    int failed = strcmp(status, "failed") == 0;

    json_object_object_add(o, "id", json_object_new_int64(ll_at(res, row, col)));
    json_object_object_add(o, "chatroom_id", json_object_new_int64(ll_at(res, row, col + 1)));
    json_object_object_add(o, "role", str_at(res, row, col + 2));
    json_object_object_add(o, "content", str_at(res, row, col + 3));
    json_object_object_add(o, "status", str_at(res, row, col + 4));
    json_object_object_add(o, "error", failed && !PQgetisnull(res, row, col + 5) ? str_at(res, row, col + 5) : NULL);
    json_object_object_add(o, "created_at", str_at(res, row, col + 6));
    return o;
}

/* ---- request helpers ------------------------------------------------------------------------------------- */

/* Answer a failed statement: 503 when PostgreSQL is unreachable, else 500 (logged, nothing leaked). */
static void db_fail(http_req_t *req, const char *what)
{
    if (!db_unavailable())
        log_error("chat: %s failed (sqlstate %s)", what, db_sqlstate());
    http_db_failed(req);
}

/* 404 for the caller's resource that is not there, or 401 when the caller's user itself is gone. */
static void not_found(http_req_t *req)
{
    if (!auth_user_gone(req))
        http_not_found(req);
}

/* Read a trimmed string field into a pool buffer large enough for any string of this body. */
static int body_string(http_req_t *req, json_object *body, const char *field, int required, size_t max, char **out)
{
    char err[JSONV_ERRLEN];
    size_t size = req->body_len + 1;
    char *buf = pool_alloc(req->pool, size);
    int rc;

    rc = jsonv_string(body, field, required, 1, 1, max, buf, size, err);
    if (rc < 0) {
        http_error(req, 400, "validation_error", err);
        return -1;
    }
    *out = rc == 0 ? buf : NULL;
    return rc;
}

/* ---- endpoints ------------------------------------------------------------------------------------------- */

void chat_create(http_req_t *req)
{
    json_object *body = NULL;
    PGresult *res = NULL;
    char uid[24];
    char *title = NULL;

    outbox_retry(0, NULL);

    if (req->body_len > 0) {
        body = http_json_body(req);
        if (!body)
            goto out;
        if (body_string(req, body, "title", 0, CHAT_TITLE_MAX, &title) < 0)
            goto out;
    }
    snprintf(uid, sizeof uid, "%lld", req->user_id);
    const char *params[] = {uid, title ? title : CHAT_TITLE_DEFAULT};
    res = db_query(&q_room_create, params);
    if (!res && db_foreign_key_violation() && auth_user_gone(req))
        goto out; /* the user was deleted after the token was checked */
    if (!res || PQntuples(res) != 1) {
        db_fail(req, "chatroom insert");
        goto out;
    }
    outbox_invalidate_list(req->user_id);
    http_json(req, 201, room_json(res, 0, 0));
out:
    PQclear(res);
    json_object_put(body);
}

void chat_list(http_req_t *req, const char *cached, size_t len)
{
    PGresult *res = NULL;
    json_object *obj = NULL, *arr;
    char uid[24], key[CHAT_CACHE_KEY_MAX], tomb[OUTBOX_TOMB_SIZE];
    const char *s;
    size_t slen = 0;
    int lost = outbox_retry(req->user_id, tomb);

    if (lost != 0) {
        /* This process lost an invalidation of this user: what the cache held is stale. Once the tombstone is
         * written (lost == 1) it is what a fill may replace; while Redis is still down nothing is stored. */
        cached = lost > 0 ? tomb : NULL;
        len = lost > 0 ? strlen(tomb) : 0;
    }
    if (chat_cache_is_body(cached, len)) {
        http_set_header(req, "X-Cache", "HIT");
        http_raw(req, 200, CT_JSON, cached, len);
        return;
    }
    snprintf(uid, sizeof uid, "%lld", req->user_id);
    const char *params[] = {uid};
    res = db_query(&q_room_list, params);
    if (!res) {
        db_fail(req, "chatroom list");
        goto out;
    }
    if (PQntuples(res) == 0 && auth_user_gone(req))
        goto out;
    obj = json_object_new_object();
    arr = json_object_new_array_ext(PQntuples(res));
    json_object_object_add(obj, "chatrooms", arr);
    for (int i = 0; i < PQntuples(res); i++)
        json_object_array_add(arr, room_json(res, i, 0));
    s = jsonv_dump(obj, &slen);

    keys_chatrooms(req->user_id, key);
    if (lost >= 0)
        cache_fill(key, cached ? cached : "", cached ? len : 0, s, slen);
    http_set_header(req, "X-Cache", "MISS");
    http_raw(req, 200, CT_JSON, s, slen);
out:
    json_object_put(obj);
    PQclear(res);
}

void chat_get(http_req_t *req, long long room_id)
{
    PGresult *res = NULL;
    json_object *room, *arr;
    char uid[24], rid[24], lim[24];

    outbox_retry(0, NULL);

    if (room_id <= 0) {
        not_found(req);
        return;
    }
    snprintf(uid, sizeof uid, "%lld", req->user_id);
    snprintf(rid, sizeof rid, "%lld", room_id);
    snprintf(lim, sizeof lim, "%d", CHAT_ROOM_MESSAGES);
    const char *params[] = {rid, uid, lim};
    res = db_query(&q_room_get, params);
    if (!res) {
        db_fail(req, "chatroom get");
        goto out;
    }
    if (PQntuples(res) == 0) {
        not_found(req);
        goto out;
    }
    room = room_json(res, 0, 0);
    arr = json_object_new_array_ext(PQntuples(res));
    for (int i = 0; i < PQntuples(res); i++)
        if (!PQgetisnull(res, i, ROOM_NCOLS))
            json_object_array_add(arr, msg_json(res, i, ROOM_NCOLS));
    json_object_object_add(room, "messages", arr);
    http_json(req, 200, room);
out:
    PQclear(res);
}

void chat_delete(http_req_t *req, long long room_id)
{
    PGresult *res = NULL;
    char uid[24], rid[24];

    outbox_retry(0, NULL);

    if (room_id <= 0) {
        not_found(req);
        return;
    }
    snprintf(uid, sizeof uid, "%lld", req->user_id);
    snprintf(rid, sizeof rid, "%lld", room_id);
    const char *params[] = {rid, uid};
    res = db_query(&q_room_delete, params);
    if (!res) {
        db_fail(req, "chatroom delete");
        goto out;
    }
    if (strcmp(PQcmdTuples(res), "1") != 0) {
        not_found(req);
        goto out;
    }
    outbox_invalidate_list(req->user_id);
    http_empty(req, 204);
out:
    PQclear(res);
}

void chat_messages(http_req_t *req, long long room_id)
{
    PGresult *res = NULL;
    json_object *obj, *arr;
    char uid[24], rid[24], bef[24], lim[24];
    long limit;
    long long before;
    int n, first = 0;

    outbox_retry(0, NULL);

    if (room_id <= 0) {
        not_found(req);
        return;
    }
    if (chat_parse_limit(http_query(req, "limit"), &limit) < 0) {
        http_error(req, 400, "validation_error", "limit must be an integer from 1 to 100.");
        return;
    }
    if (chat_parse_before(http_query(req, "before"), &before) < 0) {
        http_error(req, 400, "validation_error", "before must be a message id (a positive integer).");
        return;
    }
    snprintf(uid, sizeof uid, "%lld", req->user_id);
    snprintf(rid, sizeof rid, "%lld", room_id);
    snprintf(bef, sizeof bef, "%lld", before);
    snprintf(lim, sizeof lim, "%ld", limit + 1); /* one more tells whether older messages exist */
    const char *params[] = {rid, uid, bef, lim};
    res = db_query(&q_messages_page, params);
    if (!res) {
        db_fail(req, "messages page");
        goto out;
    }
    if (PQntuples(res) == 0) {
        not_found(req);
        goto out;
    }
    n = PQntuples(res);
    if (PQgetisnull(res, 0, 1))
        n = 0; /* the room has no messages in range: one row of NULLs */
    if (n > limit)
        first = n - (int)limit; /* rows are oldest first: drop the extra oldest one */
    obj = json_object_new_object();
    arr = json_object_new_array_ext(n - first);
    for (int i = first; i < n; i++)
        json_object_array_add(arr, msg_json(res, i, 1));
    json_object_object_add(obj, "messages", arr);
    json_object_object_add(obj, "next_before", first > 0 ? json_object_new_int64(ll_at(res, first, 1)) : NULL);
    http_json(req, 200, obj);
out:
    PQclear(res);
}

void chat_usage(http_req_t *req)
{
    PGresult *res = NULL;
    json_object *o;
    char uid[24], day[11], resets[32];
    time_t now = time(NULL);
    long long used;
    int pro;

    outbox_retry(0, NULL);

    snprintf(uid, sizeof uid, "%lld", req->user_id);
    chat_utc_day(now, day);
    const char *params[] = {uid, day};
    res = db_query(&q_usage, params);
    if (!res) {
        db_fail(req, "usage");
        goto out;
    }
    if (PQntuples(res) != 1) {
        not_found(req);
        goto out;
    }
    pro = strcmp(PQgetvalue(res, 0, 0), "pro") == 0;
    used = ll_at(res, 0, 1);
    fmt_rfc3339((int64_t)now + chat_seconds_to_midnight(now), resets);

    o = json_object_new_object();
    json_object_object_add(o, "tier", str_at(res, 0, 0));
    json_object_object_add(o, "date", json_object_new_string(day));
    json_object_object_add(o, "used", json_object_new_int64(used));
    if (pro) {
        json_object_object_add(o, "limit", NULL);
        json_object_object_add(o, "remaining", NULL);
    } else {
        long long lim = g_config.basic_daily_limit;
        json_object_object_add(o, "limit", json_object_new_int64(lim));
        json_object_object_add(o, "remaining", json_object_new_int64(used < lim ? lim - used : 0));
    }
    json_object_object_add(o, "resets_at", json_object_new_string(resets));
    http_json(req, 200, o);
out:
    PQclear(res);
}

/* Replay the stored first response of an Idempotency-Key (the claim found a committed one), or refuse with 409
 * when the key was used for another request (other chatroom or other content). */
static void idem_replay(http_req_t *req, const char *uid, const char *key, const char *fingerprint)
{
    const char *params[] = {uid, key, fingerprint};
    PGresult *res = db_query(&q_idem_get, params);
    long long status = 0;

    db_rollback();
    if (!res) {
        db_fail(req, "idempotency lookup");
        return;
    }
    if (PQntuples(res) == 1)
        status = ll_at(res, 0, 0);
    if (status < 200 || status > 599) {
        /* Only a committed response is ever visible; this is a key replaced or purged just now. */
        http_error(req, 409, "conflict", "A request with this Idempotency-Key is in progress; retry later.");
    } else if (strcmp(PQgetvalue(res, 0, 2), "t") != 0) {
        http_error(req, 409, "conflict", "This Idempotency-Key was used with a different request.");
    } else {
        http_set_header(req, "Idempotent-Replayed", "true");
        http_raw(req, (int)status, CT_JSON, PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1));
    }
    PQclear(res);
}

void chat_post_message(http_req_t *req, long long room_id)
{
    json_object *body = NULL, *resp = NULL;
    PGresult *res = NULL;
    const char *idem = http_header(req, "Idempotency-Key");
    char *content = NULL;
    char uid[24], rid[24], day[11], lim[24], retry[24], fp[CHAT_FINGERPRINT_HEX];
    const char *s;
    size_t slen = 0;
    long long reply_id = 0;
    time_t now = time(NULL);
    int in_tx = 0, pro, urow, rrow;

    outbox_retry(0, NULL);

    if (room_id <= 0) {
        not_found(req);
        goto out;
    }
    if (idem && !chat_idem_key_valid(idem)) {
        http_error(req, 400, "validation_error", "Idempotency-Key must be 1 to 255 visible ASCII characters.");
        goto out;
    }
    body = http_json_body(req);
    if (!body)
        goto out;
    if (body_string(req, body, "content", 1, CHAT_CONTENT_MAX, &content) != 0)
        goto out;

    snprintf(uid, sizeof uid, "%lld", req->user_id);
    snprintf(rid, sizeof rid, "%lld", room_id);
    chat_utc_day(now, day);

    if (db_begin() < 0) {
        db_fail(req, "begin");
        goto out;
    }
    in_tx = 1;

    if (idem) {
        chat_idem_fingerprint(room_id, content, strlen(content), fp);
        const char *p[] = {uid, idem, fp};
        res = db_query(&q_idem_claim, p);
        if (!res)
            goto dberr;
        if (PQntuples(res) == 0) {
            in_tx = 0; /* idem_replay rolls back */
            idem_replay(req, uid, idem, fp);
            goto out;
        }
        PQclear(res);
        res = NULL;
    }

    {
        const char *p[] = {rid, uid};
        res = db_query(&q_room_lock, p);
        if (!res)
            goto dberr;
        if (PQntuples(res) != 1) {
            not_found(req);
            goto out;
        }
        pro = strcmp(PQgetvalue(res, 0, 0), "pro") == 0;
        PQclear(res);
        res = NULL;
    }

    {
        /* Pro is unlimited but still counted: "used" is the day's accepted messages whatever the tier. */
        snprintf(lim, sizeof lim, "%ld", g_config.basic_daily_limit);
        const char *p[] = {uid, day, pro ? NULL : lim};
        res = db_query(&q_usage_take, p);
        if (!res)
            goto dberr;
        if (PQntuples(res) != 1) {
            db_rollback();
            in_tx = 0;
            snprintf(retry, sizeof retry, "%ld", chat_seconds_to_midnight(now));
            http_set_header(req, "Retry-After", retry);
            http_error(req, 429, "daily_limit_reached",
                       pool_printf(req->pool, "The daily limit of %ld messages is reached; it resets at midnight UTC.",
                                   g_config.basic_daily_limit));
            goto out;
        }
        PQclear(res);
        res = NULL;
    }

    {
        const char *p[] = {rid, uid, content};
        res = db_query(&q_message_insert, p);
        if (!res)
            goto dberr;
        if (PQntuples(res) != 2) {
            log_error("chat: message insert returned an unexpected row count");
            db_rollback();
            in_tx = 0;
            http_internal(req);
            goto out;
        }
        urow = strcmp(PQgetvalue(res, 0, 2), "user") == 0 ? 0 : 1;
        rrow = 1 - urow;
        reply_id = ll_at(res, rrow, 0);
        resp = json_object_new_object();
        json_object_object_add(resp, "message", msg_json(res, urow, 0));
        json_object_object_add(resp, "reply", msg_json(res, rrow, 0));
        PQclear(res);
        res = NULL;
        s = jsonv_dump(resp, &slen);
    }

    if (idem) {
        const char *p[] = {uid, idem, "202", s};
        res = db_query(&q_idem_store, p);
        if (!res)
            goto dberr;
        PQclear(res);
        res = NULL;
    }

    in_tx = 0;
    if (db_commit() < 0) {
        db_rollback();
        db_fail(req, "commit");
        goto out;
    }

    if (queue_enqueue(reply_id) < 0)
        log_warn("chat: enqueue of reply %lld failed; the recovery sweep will pick it up", reply_id);
    outbox_invalidate_list(req->user_id);
    http_raw(req, 202, CT_JSON, s, slen);
    goto out;

dberr:
    if (db_foreign_key_violation()) { /* the user was deleted after the token was checked */
        db_rollback();
        in_tx = 0;
        if (auth_user_gone(req))
            goto out;
    }
    /* db_fail reads the failure state before the rollback can touch it. */
    db_fail(req, "post message");
out:
    if (in_tx)
        db_rollback();
    PQclear(res);
    json_object_put(resp);
    json_object_put(body);
}
