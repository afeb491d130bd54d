#include "chat.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "auth.h"
#include "cache.h"
#include "config.h"
#include "db.h"
#include "jsonv.h"
#include "log.h"
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

void chat_cache_key(long long user_id, char out[CHAT_CACHE_KEY_MAX])
{
    snprintf(out, CHAT_CACHE_KEY_MAX, CHAT_CACHE_PREFIX "%lld", user_id);
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

/* ---- lost invalidations ----------------------------------------------------------------------------------
 * An invalidation that cannot reach Redis is not dropped: the user id goes into the PostgreSQL outbox
 * cache_invalidations (drained by the worker, chat_cache_outbox_drain) and into this process's own short list,
 * retried at its next request. A row is (re)stamped with clock_timestamp() on every lost invalidation, and the
 * drain deletes a row only if its stamp is still the one it read before writing the tombstone, so an
 * invalidation lost while a drain runs is never deleted unreplayed. */

static db_stmt_t q_outbox_add = DB_STMT("chat_outbox_add",
                                        "INSERT INTO cache_invalidations (user_id) VALUES ($1) "
                                        "ON CONFLICT (user_id) DO UPDATE SET noted_at = clock_timestamp()",
                                        1);

static db_stmt_t q_outbox_read = DB_STMT(
    "chat_outbox_read", "SELECT user_id, noted_at::text FROM cache_invalidations ORDER BY noted_at LIMIT $1", 1);

static db_stmt_t q_outbox_done = DB_STMT("chat_outbox_done",
                                         "DELETE FROM cache_invalidations c USING unnest($1::bigint[], "
                                         "$2::timestamptz[]) AS d(user_id, noted_at) "
                                         "WHERE c.user_id = d.user_id AND c.noted_at = d.noted_at",
                                         2);

#define TOMB_SIZE 26          /* '~' + 24 hex digits + NUL */
#define PENDING_MAX 32        /* this process's own lost invalidations (the outbox has them all anyway) */
#define PENDING_RETRY_MS 1000 /* while Redis stays down, retry them at most this often */

static long long pending[PENDING_MAX];
static int npending;
static double pending_retry_at;

/* A fresh unique tombstone ('~' then random hex; never '{', so chat_cache_is_body tells it from a list).
 * 0 ok, -1 no randomness. */
static int tomb_make(char tomb[TOMB_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char rnd[(TOMB_SIZE - 2) / 2];

    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return -1;
    tomb[0] = '~';
    for (size_t i = 0; i < sizeof rnd; i++) {
        tomb[1 + 2 * i] = hex[rnd[i] >> 4];
        tomb[2 + 2 * i] = hex[rnd[i] & 15];
    }
    tomb[TOMB_SIZE - 1] = '\0';
    return 0;
}

/* The argv of SET chatrooms:<uid> <tomb> EX CHAT_LIST_TTL; key and ttl are the caller's buffers. */
static void tomb_argv(long long user_id, const char *tomb, char key[CHAT_CACHE_KEY_MAX], char ttl[16],
                      const char *argv[5], size_t lens[5])
{
    int n = snprintf(ttl, 16, "%d", CHAT_LIST_TTL);

    chat_cache_key(user_id, key);
    argv[0] = "SET", argv[1] = key, argv[2] = tomb, argv[3] = "EX", argv[4] = ttl;
    lens[0] = 3, lens[1] = strlen(key), lens[2] = strlen(tomb), lens[3] = 2, lens[4] = (size_t)n;
}

/* Replace user_id's cached list by a new tombstone (returned in tomb when not NULL). 0 written, -1 Redis down
 * or refusing. */
static int tomb_write(long long user_id, char *tomb_out)
{
    char key[CHAT_CACHE_KEY_MAX], ttl[16], tomb[TOMB_SIZE];
    const char *argv[5];
    size_t lens[5];
    int rc;

    if (tomb_make(tomb) != 0) {
        /* Without a unique tombstone fall back to DEL (still right unless a reader races this one). */
        chat_cache_key(user_id, key);
        if (tomb_out)
            tomb_out[0] = '\0';
        return cache_del(key);
    }
    tomb_argv(user_id, tomb, key, ttl, argv, lens);
    redisReply *r = cache_cmd(5, argv, lens);
    rc = r && r->type == REDIS_REPLY_STATUS ? 0 : -1;
    if (r && rc != 0)
        log_warn("chat: SET %s refused: %.*s", key, (int)(r->len < 200 ? r->len : 200), r->str ? r->str : "?");
    freeReplyObject(r);
    if (rc == 0 && tomb_out)
        memcpy(tomb_out, tomb, TOMB_SIZE);
    return rc;
}

static int pending_find(long long user_id)
{
    for (int i = 0; i < npending; i++)
        if (pending[i] == user_id)
            return i;
    return -1;
}

static void pending_drop(int i)
{
    pending[i] = pending[--npending];
}

static void pending_add(long long user_id)
{
    if (pending_find(user_id) >= 0)
        return;
    if (npending == PENDING_MAX)
        pending_drop(0); /* the outbox still has it; the worker replays it */
    pending[npending++] = user_id;
    pending_retry_at = now_ms() + PENDING_RETRY_MS;
}

/* At the start of a request: retry this process's lost invalidations once Redis may answer again. Returns 1
 * when self was among them and its tombstone is now written (into self_tomb), -1 when self is still pending
 * (Redis still down), 0 when self was not pending. Self (the user whose list is being read) is retried at
 * every read, since its list is at stake; the others at most every PENDING_RETRY_MS while Redis stays down. */
static int pending_retry(long long self, char self_tomb[TOMB_SIZE])
{
    int me = pending_find(self), rc = 0;

    if (npending == 0 || (me < 0 && now_ms() < pending_retry_at))
        return 0;
    if (me >= 0) {
        if (tomb_write(self, self_tomb) != 0) {
            pending_retry_at = now_ms() + PENDING_RETRY_MS;
            return -1;
        }
        pending_drop(me);
        rc = 1;
    }
    for (int i = npending - 1; i >= 0; i--) {
        if (tomb_write(pending[i], NULL) != 0) {
            pending_retry_at = now_ms() + PENDING_RETRY_MS; /* Redis still down: the rest waits */
            break;
        }
        pending_drop(i);
    }
    return rc;
}

void chat_cache_outbox_note(long long user_id)
{
    char uid[24];

    snprintf(uid, sizeof uid, "%lld", user_id);
    const char *params[] = {uid};
    PGresult *res = db_query(&q_outbox_add, params);
    if (res)
        log_warn("cache: the Redis state of user %lld could not be updated (Redis down); recorded for replay",
                 user_id);
    else
        log_error("cache: the Redis state of user %lld could not be updated: Redis down and the outbox insert "
                  "failed (sqlstate %s); it may stay stale until its TTL",
                  user_id, db_sqlstate());
    PQclear(res);
}

void chat_cache_invalidate(long long user_id)
{
    int i;

    pending_retry(0, NULL);
    if (tomb_write(user_id, NULL) == 0) {
        if ((i = pending_find(user_id)) >= 0)
            pending_drop(i); /* this tombstone covers the older change too */
        return;
    }
    pending_add(user_id);
    chat_cache_outbox_note(user_id);
}

int chat_cache_outbox_drain(int max)
{
    PGresult *res = NULL;
    char lim[24];
    int n, rc = CHAT_OUTBOX_DB_FAILED, done = 0;
    buf_t ids = {0}, stamps = {0};

    snprintf(lim, sizeof lim, "%d", max > 0 ? max : 1);
    const char *params[] = {lim};
    res = db_query(&q_outbox_read, params);
    if (!res)
        goto out;
    n = PQntuples(res);
    if (n == 0) {
        rc = 0;
        goto out;
    }

    /* One pipelined round trip: for row i, command 2i writes the list's tombstone and 2i+1 drops the token
     * version mirror (auth_token_version_changed records its lost writes here too; the next request reads
     * the version from PostgreSQL). The argument buffers of row i live in cmds[i]. */
    struct tomb_cmd {
        char key[CHAT_CACHE_KEY_MAX], ttl[16], tomb[TOMB_SIZE], authv[40];
        const char *argv[5], *del_argv[2];
        size_t lens[5], del_lens[2];
    } *cmds = xcalloc((size_t)n, sizeof *cmds);
    int *argc = xcalloc(2 * (size_t)n, sizeof *argc);
    const char ***argv = xcalloc(2 * (size_t)n, sizeof *argv);
    const size_t **lens = xcalloc(2 * (size_t)n, sizeof *lens);
    redisReply **replies = xcalloc(2 * (size_t)n, sizeof *replies);
    long long *uids = xcalloc((size_t)n, sizeof *uids);
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        struct tomb_cmd *c = &cmds[i];
        if (parse_ll(PQgetvalue(res, i, 0), 1, LLONG_MAX, &uids[i]) != 0 || tomb_make(c->tomb) != 0) {
            ok = 0;
            break;
        }
        tomb_argv(uids[i], c->tomb, c->key, c->ttl, c->argv, c->lens);
        auth_token_version_key(uids[i], c->authv, sizeof c->authv);
        c->del_argv[0] = "DEL", c->del_argv[1] = c->authv;
        c->del_lens[0] = 3, c->del_lens[1] = strlen(c->authv);
        argc[2 * i] = 5, argv[2 * i] = c->argv, lens[2 * i] = c->lens;
        argc[2 * i + 1] = 2, argv[2 * i + 1] = c->del_argv, lens[2 * i + 1] = c->del_lens;
    }
    if (!ok) {
        log_error("chat: cannot replay lost invalidations (bad row or no randomness)");
        rc = CHAT_OUTBOX_REDIS_DOWN;
    } else if (cache_pipeline(2 * n, argc, argv, lens, replies) != 0) {
        rc = CHAT_OUTBOX_REDIS_DOWN; /* the rows stay for the next drain */
    } else {
        buf_puts(&ids, "{");
        buf_puts(&stamps, "{");
        for (int i = 0; i < n; i++) {
            if (replies[2 * i]->type != REDIS_REPLY_STATUS || replies[2 * i + 1]->type != REDIS_REPLY_INTEGER)
                continue;
            buf_printf(&ids, "%s%lld", done ? "," : "", uids[i]);
            buf_printf(&stamps, "%s\"%s\"", done ? "," : "", PQgetvalue(res, i, 1));
            done++;
        }
        buf_puts(&ids, "}");
        buf_puts(&stamps, "}");
        rc = done == n ? 0 : CHAT_OUTBOX_REDIS_DOWN;
    }
    for (int i = 0; i < 2 * n; i++)
        freeReplyObject(replies[i]);
    free(cmds);
    free(argc);
    free(argv);
    free(lens);
    free(replies);
    free(uids);
    PQclear(res);
    res = NULL;
    if (done > 0) {
        const char *dp[] = {ids.data, stamps.data};
        res = db_query(&q_outbox_done, dp);
        if (!res)
            rc = CHAT_OUTBOX_DB_FAILED; /* replayed; the rows go at the next drain (one more tombstone) */
        else if (rc == 0)
            rc = done;
    }
out:
    PQclear(res);
    buf_free(&ids);
    buf_free(&stamps);
    return rc;
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

    pending_retry(0, NULL);

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
    if (!res || PQntuples(res) != 1) {
        db_fail(req, "chatroom insert");
        goto out;
    }
    chat_cache_invalidate(req->user_id);
    http_json(req, 201, room_json(res, 0, 0));
out:
    PQclear(res);
    json_object_put(body);
}

void chat_list(http_req_t *req, const char *cached, size_t len)
{
    PGresult *res = NULL;
    json_object *obj = NULL, *arr;
    char uid[24], key[CHAT_CACHE_KEY_MAX], tomb[TOMB_SIZE];
    const char *s;
    size_t slen = 0;
    int lost = pending_retry(req->user_id, tomb);

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
    obj = json_object_new_object();
    arr = json_object_new_array_ext(PQntuples(res));
    json_object_object_add(obj, "chatrooms", arr);
    for (int i = 0; i < PQntuples(res); i++)
        json_object_array_add(arr, room_json(res, i, 0));
    s = jsonv_dump(obj, &slen);

    chat_cache_key(req->user_id, key);
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

    pending_retry(0, NULL);

    if (room_id <= 0) {
        http_not_found(req);
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
        http_not_found(req);
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

    pending_retry(0, NULL);

    if (room_id <= 0) {
        http_not_found(req);
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
        http_not_found(req);
        goto out;
    }
    chat_cache_invalidate(req->user_id);
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

    pending_retry(0, NULL);

    if (room_id <= 0) {
        http_not_found(req);
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
        http_not_found(req);
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

    pending_retry(0, NULL);

    snprintf(uid, sizeof uid, "%lld", req->user_id);
    chat_utc_day(now, day);
    const char *params[] = {uid, day};
    res = db_query(&q_usage, params);
    if (!res) {
        db_fail(req, "usage");
        goto out;
    }
    if (PQntuples(res) != 1) {
        http_not_found(req);
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

    pending_retry(0, NULL);

    if (room_id <= 0) {
        http_not_found(req);
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
            http_not_found(req);
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
    chat_cache_invalidate(req->user_id);
    http_raw(req, 202, CT_JSON, s, slen);
    goto out;

dberr:
    /* db_fail reads the failure state before the rollback can touch it. */
    db_fail(req, "post message");
out:
    if (in_tx)
        db_rollback();
    PQclear(res);
    json_object_put(resp);
    json_object_put(body);
}
