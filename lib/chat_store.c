#include "chat_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"

/* room_json expects these 5 columns in this order. */
#define ROOM_COLS "c.id, c.title, " DB_RFC3339("c.created_at") ", " DB_RFC3339("c.updated_at") ", c.message_count"
#define ROOM_NCOLS 5
/* msg_json expects these 7 columns in this order. */
#define MSG_COLS "m.id, m.chatroom_id, m.role, m.content, m.status, m.error, " DB_RFC3339("m.created_at")

/* A user's creates are serialised on their row (NO KEY UPDATE: the foreign-key checks of the user's other writes
 * still pass), so the count the insert sees includes every committed room: at most $3 (CHATROOM_MAX_PER_USER)
 * rooms, even under concurrent creates. No row back: the cap is reached. */
static db_stmt_t q_room_create_lock =
    DB_STMT("chat_room_create_lock", "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", 1);
static db_stmt_t q_room_create =
    DB_STMT("chat_room_create_capped",
            "INSERT INTO chatrooms AS c (user_id, title) SELECT $1, $2 "
            "WHERE (SELECT count(*) FROM chatrooms WHERE user_id = $1) < $3::bigint RETURNING " ROOM_COLS,
            3);

/* One page of the list, newest activity first: $3 rooms after the room $2 in that order (NULL: from the
 * start). A $2 that is not one of the user's rooms gives an empty page. */
static db_stmt_t q_room_list = DB_STMT(
    "chat_room_page",
    "SELECT " ROOM_COLS " FROM chatrooms c WHERE c.user_id = $1 AND ($2::bigint IS NULL OR (c.updated_at, c.id) < "
    "(SELECT p.updated_at, p.id FROM chatrooms p WHERE p.id = $2::bigint AND p.user_id = $1)) "
    "ORDER BY c.updated_at DESC, c.id DESC LIMIT $3",
    3);

/* One round trip: the room (no row: not found / not the caller's) and its latest messages, oldest first.
 * A room without messages gives one row with NULL message columns. */
static db_stmt_t q_room_get =
    DB_STMT("chat_room_get",
            "SELECT " ROOM_COLS ", " MSG_COLS " FROM chatrooms c LEFT JOIN LATERAL ("
            "SELECT * FROM messages mm WHERE mm.chatroom_id = c.id ORDER BY mm.id DESC LIMIT $3) m ON true "
            "WHERE c.id = $1 AND c.user_id = $2 ORDER BY m.id",
            3);

/* One row per reply of the room still pending (its id; one row with NULL when none), none when the room is not
 * the user's. The SELECT reads the statement's snapshot, taken before the cascade. */
static db_stmt_t q_room_delete =
    DB_STMT("chat_room_delete",
            "WITH del AS (DELETE FROM chatrooms WHERE id = $1 AND user_id = $2 RETURNING id) "
            "SELECT m.id FROM del LEFT JOIN messages m ON m.chatroom_id = del.id AND m.role = 'model' "
            "AND m.status = 'pending'",
            2);

/* A page: messages with id < $3, newest $4 of them, returned oldest first. */
static db_stmt_t q_messages_page = DB_STMT("chat_messages_page",
                                           "SELECT c.id, " MSG_COLS " FROM chatrooms c LEFT JOIN LATERAL ("
                                           "SELECT * FROM messages mm WHERE mm.chatroom_id = c.id AND mm.id < $3 "
                                           "ORDER BY mm.id DESC LIMIT $4) m ON true "
                                           "WHERE c.id = $1 AND c.user_id = $2 ORDER BY m.id",
                                           4);

static db_stmt_t q_message_one = DB_STMT("chat_message_one",
                                         "SELECT " MSG_COLS " FROM messages m JOIN chatrooms c ON c.id = m.chatroom_id "
                                         "WHERE m.id = $3 AND m.chatroom_id = $1 AND c.user_id = $2",
                                         3);

static db_stmt_t q_usage = DB_STMT(
    "chat_usage",
    "SELECT u.tier, COALESCE((SELECT d.used FROM daily_usage d WHERE d.user_id = u.id AND d.day = $2::date), 0) "
    "FROM users u WHERE u.id = $1",
    2);

/* The whole post (schema.sql steps 7 and 10). $6/$7 NULL without an Idempotency-Key. */
static db_stmt_t q_post = DB_STMT("chat_post",
                                  "SELECT outcome, status, body, reply_id FROM "
                                  "chat_post($1::bigint, $2::bigint, $3, $4::date, $5::int, $6, decode($7, 'hex'))",
                                  7);

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

/* message {"id","chatroom_id","role","content","status","error","created_at"} from MSG_COLS at col
 * (schema.sql's chat_message_json renders the same shape for the post). */
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

/* ---- chatrooms and messages ----------------------------------------------------------------------------- */

int chat_store_room_create(long long user_id, const char *title, long max_rooms, json_object **room)
{
    char uid[24], cap[24];
    snprintf(uid, sizeof uid, "%lld", user_id);
    snprintf(cap, sizeof cap, "%ld", max_rooms);
    const char *lp[] = {uid};
    const char *params[] = {uid, title, cap};
    PGresult *res = NULL;
    int rc = -1;

    *room = NULL;
    if (db_begin() != 0 || !(res = db_query(&q_room_create_lock, lp)))
        goto out;
    if (PQntuples(res) != 1) {
        rc = CHAT_STORE_NOT_FOUND; /* no such user */
        goto out;
    }
    PQclear(res);
    if (!(res = db_query(&q_room_create, params)))
        goto out;
    if (PQntuples(res) != 1) {
        rc = CHAT_STORE_FULL;
        goto out;
    }
    if (db_commit() != 0)
        goto out;
    *room = room_json(res, 0, 0);
    rc = 0;
out:
    db_rollback();
    PQclear(res);
    return rc;
}

int chat_store_room_list(long long user_id, long long before, long limit, json_object **list)
{
    char uid[24], bef[24], lim[24];
    snprintf(uid, sizeof uid, "%lld", user_id);
    snprintf(bef, sizeof bef, "%lld", before);
    snprintf(lim, sizeof lim, "%ld", limit + 1); /* one more tells whether another page follows */
    const char *params[] = {uid, before > 0 ? bef : NULL, lim};
    PGresult *res = db_query(&q_room_list, params);
    json_object *arr;

    *list = NULL;
    if (!res)
        return -1;
    int n = PQntuples(res) > limit ? (int)limit : PQntuples(res);
    *list = json_object_new_object();
    arr = json_object_new_array_ext(n);
    json_object_object_add(*list, "chatrooms", arr);
    for (int i = 0; i < n; i++)
        json_object_array_add(arr, room_json(res, i, 0));
    json_object_object_add(*list, "next_before",
                           PQntuples(res) > limit ? json_object_new_int64(strtoll(PQgetvalue(res, n - 1, 0), NULL, 10))
                                                  : NULL);
    PQclear(res);
    return 0;
}

int chat_store_room_get(long long user_id, long long room_id, int max_messages, json_object **room)
{
    char uid[24], rid[24], lim[24];
    snprintf(uid, sizeof uid, "%lld", user_id);
    snprintf(rid, sizeof rid, "%lld", room_id);
    snprintf(lim, sizeof lim, "%d", max_messages);
    const char *params[] = {rid, uid, lim};
    PGresult *res = db_query(&q_room_get, params);
    json_object *arr;
    int rc = -1;

    *room = NULL;
    if (!res)
        goto out;
    rc = CHAT_STORE_NOT_FOUND;
    if (PQntuples(res) == 0)
        goto out;
    *room = room_json(res, 0, 0);
    arr = json_object_new_array_ext(PQntuples(res));
    for (int i = 0; i < PQntuples(res); i++)
        if (!PQgetisnull(res, i, ROOM_NCOLS))
            json_object_array_add(arr, msg_json(res, i, ROOM_NCOLS));
    json_object_object_add(*room, "messages", arr);
    rc = 0;
out:
    PQclear(res);
    return rc;
}

int chat_store_room_delete(long long user_id, long long room_id, long long *pending, int max_pending, int *npending)
{
    char uid[24], rid[24];
    snprintf(uid, sizeof uid, "%lld", user_id);
    snprintf(rid, sizeof rid, "%lld", room_id);
    const char *params[] = {rid, uid};
    PGresult *res = db_query(&q_room_delete, params);
    int rc = -1;

    *npending = 0;
    if (res) {
        rc = PQntuples(res) > 0 ? 0 : CHAT_STORE_NOT_FOUND;
        for (int i = 0; i < PQntuples(res) && *npending < max_pending; i++)
            if (!PQgetisnull(res, i, 0))
                pending[(*npending)++] = strtoll(PQgetvalue(res, i, 0), NULL, 10);
    }
    PQclear(res);
    return rc;
}

int chat_store_messages_page(long long user_id, long long room_id, long limit, long long before, json_object **page)
{
    char uid[24], rid[24], bef[24], lim[24];
    snprintf(uid, sizeof uid, "%lld", user_id);
    snprintf(rid, sizeof rid, "%lld", room_id);
    snprintf(bef, sizeof bef, "%lld", before);
    snprintf(lim, sizeof lim, "%ld", limit + 1); /* one more tells whether older messages exist */
    const char *params[] = {rid, uid, bef, lim};
    PGresult *res = db_query(&q_messages_page, params);
    json_object *arr;
    int n, first = 0, rc = -1;

    *page = NULL;
    if (!res)
        goto out;
    rc = CHAT_STORE_NOT_FOUND;
    if (PQntuples(res) == 0)
        goto out;
    n = PQntuples(res);
    if (PQgetisnull(res, 0, 1))
        n = 0; /* the room has no messages in range: one row of NULLs */
    if (n > limit)
        first = n - (int)limit; /* rows are oldest first: drop the extra oldest one */
    *page = json_object_new_object();
    arr = json_object_new_array_ext(n - first);
    for (int i = first; i < n; i++)
        json_object_array_add(arr, msg_json(res, i, 1));
    json_object_object_add(*page, "messages", arr);
    json_object_object_add(*page, "next_before", first > 0 ? json_object_new_int64(ll_at(res, first, 1)) : NULL);
    rc = 0;
out:
    PQclear(res);
    return rc;
}

int chat_store_usage(long long user_id, const char *day, int *pro, long long *used)
{
    char uid[24];
    snprintf(uid, sizeof uid, "%lld", user_id);
    const char *params[] = {uid, day};
    PGresult *res = db_query(&q_usage, params);
    int rc = -1;

    if (!res)
        goto out;
    rc = CHAT_STORE_NOT_FOUND;
    if (PQntuples(res) != 1)
        goto out;
    *pro = strcmp(PQgetvalue(res, 0, 0), "pro") == 0;
    *used = ll_at(res, 0, 1);
    rc = 0;
out:
    PQclear(res);
    return rc;
}

/* ---- the post ------------------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    chat_post_outcome_t outcome;
} outcomes[] = {
    {"created", CHAT_POST_CREATED}, {"replayed", CHAT_POST_REPLAYED},         {"not_found", CHAT_POST_NOT_FOUND},
    {"limit", CHAT_POST_LIMIT},     {"key_conflict", CHAT_POST_KEY_CONFLICT}, {"key_busy", CHAT_POST_KEY_BUSY},
};

int chat_store_post(const chat_post_in_t *in, chat_post_out_t *out)
{
    char uid[24], rid[24], lim[24];
    snprintf(uid, sizeof uid, "%lld", in->user_id);
    snprintf(rid, sizeof rid, "%lld", in->room_id);
    snprintf(lim, sizeof lim, "%ld", in->daily_limit);
    const char *params[] = {uid, rid, in->content, in->day, lim, in->idem_key, in->idem_key ? in->fingerprint : NULL};
    PGresult *res = db_query_once(&q_post, params);
    size_t i;

    memset(out, 0, sizeof *out);
    /* A unique violation is the key: a request with the same key committed first and this one rolled back
     * (schema.sql step 10). Run once more: it now answers with that request's result. */
    if (!res && in->idem_key && db_unique_violation()) {
        res = db_query_once(&q_post, params);
        if (!res && db_unique_violation()) { /* taken twice in a row: a key renewed or purged meanwhile */
            out->outcome = CHAT_POST_KEY_BUSY;
            return 0;
        }
    }
    if (!res)
        return -1;
    if (PQntuples(res) != 1 || PQnfields(res) != 4) {
        log_error("chat: chat_post returned %d rows", PQntuples(res));
        PQclear(res);
        return -1;
    }
    for (i = 0; i < sizeof outcomes / sizeof outcomes[0]; i++)
        if (strcmp(PQgetvalue(res, 0, 0), outcomes[i].name) == 0)
            break;
    if (i == sizeof outcomes / sizeof outcomes[0]) {
        log_error("chat: chat_post returned an unknown outcome");
        PQclear(res);
        return -1;
    }
    out->outcome = outcomes[i].outcome;
    out->status = (int)ll_at(res, 0, 1);
    out->body = PQgetvalue(res, 0, 2);
    out->body_len = (size_t)PQgetlength(res, 0, 2);
    out->reply_id = PQgetisnull(res, 0, 3) ? 0 : ll_at(res, 0, 3);
    out->res = res;
    return 0;
}

void chat_store_post_free(chat_post_out_t *out)
{
    if (!out)
        return;
    PQclear(out->res);
    memset(out, 0, sizeof *out);
}

int chat_store_message_get(long long user_id, long long room_id, long long message_id, json_object **msg, int *pending)
{
    char uid[24], rid[24], mid[24];
    snprintf(uid, sizeof uid, "%lld", user_id);
    snprintf(rid, sizeof rid, "%lld", room_id);
    snprintf(mid, sizeof mid, "%lld", message_id);
    const char *p[] = {rid, uid, mid};
    PGresult *res = db_query(&q_message_one, p);
    *msg = NULL;
    *pending = 0;
    if (!res) {
        if (!db_unavailable())
            log_error("chat: message load failed (sqlstate %s)", db_sqlstate());
        return -1;
    }
    int rc = CHAT_STORE_NOT_FOUND;
    if (PQntuples(res) == 1) {
        *msg = msg_json(res, 0, 0);
        *pending = strcmp(PQgetvalue(res, 0, 4), "pending") == 0;
        rc = 0;
    }
    PQclear(res);
    return rc;
}
