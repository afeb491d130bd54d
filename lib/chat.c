#include "chat.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/sha2.h>

#include "auth.h"
#include "chat_store.h"
#include "config.h"
#include "db.h"
#include "jsonv.h"
#include "log.h"
#include "outbox.h"
#include "queue.h"
#include "replystream.h"
#include "util.h"

#define CT_JSON "application/json; charset=utf-8"

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
    /* nettle, not OpenSSL's EVP: that would load OpenSSL 3's provider tables into every chatroom process
     * (token.c) */
    struct sha256_ctx ctx;
    uint8_t md[SHA256_DIGEST_SIZE];
    char rid[24];
    int n = snprintf(rid, sizeof rid, "%lld", room_id);

    sha256_init(&ctx);
    sha256_update(&ctx, (size_t)n + 1, (const uint8_t *)rid);
    sha256_update(&ctx, len, (const uint8_t *)content);
    sha256_digest(&ctx, sizeof md, md);
    hex_encode(md, sizeof md, out);
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
    json_object *body = NULL, *room = NULL;
    char *title = NULL;
    int rc;

    outbox_retry(0, NULL);

    if (req->body_len > 0) {
        body = http_json_body(req);
        if (!body)
            goto out;
        if (body_string(req, body, "title", 0, CHAT_TITLE_MAX, &title) < 0)
            goto out;
    }
    rc =
        chat_store_room_create(req->user_id, title ? title : CHAT_TITLE_DEFAULT, g_config.chatroom_max_per_user, &room);
    if (rc == CHAT_STORE_NOT_FOUND) { /* no user row: deleted after the token was checked */
        if (!auth_user_gone(req))
            db_fail(req, "chatroom insert");
        goto out;
    }
    if (rc == CHAT_STORE_FULL) {
        http_error(req, 409, "conflict",
                   pool_printf(req->pool, "You have the maximum of %ld chatrooms; delete one to create another.",
                               g_config.chatroom_max_per_user));
        goto out;
    }
    if (rc != 0) {
        db_fail(req, "chatroom insert");
        goto out;
    }
    outbox_invalidate_list(req->user_id);
    http_json(req, 201, room);
out:
    json_object_put(body);
}

void chat_list(http_req_t *req, const char *cached, size_t len)
{
    json_object *obj = NULL;
    char tomb[OUTBOX_TOMB_SIZE];
    const char *s, *before_s = http_query(req, "before");
    size_t slen = 0;
    long limit;
    long long before = 0;
    int lost, first_page;

    if (chat_parse_limit(http_query(req, "limit"), &limit) < 0) {
        http_error(req, 400, "validation_error", "limit must be an integer from 1 to 100.");
        return;
    }
    if (chat_parse_before(before_s, &before) < 0) {
        http_error(req, 400, "validation_error", "before must be a chatroom id (a positive integer).");
        return;
    }
    /* Only the first page of the default size is cached: the one every client reads, and at most
     * CHAT_PAGE_DEFAULT rooms long, so the cached value stays small whatever the number of rooms. */
    first_page = !before_s && limit == CHAT_PAGE_DEFAULT;
    lost = outbox_retry(req->user_id, tomb);
    if (lost != 0) {
        /* This process lost an invalidation of this user: what the cache held is stale. Once the tombstone is
         * written (lost == 1) it is what a fill may replace; while Redis is still down nothing is stored. */
        cached = lost > 0 ? tomb : NULL;
        len = lost > 0 ? strlen(tomb) : 0;
    }
    if (first_page && chat_cache_hit(cached, len, &s, &slen)) {
        http_set_header(req, "X-Cache", "HIT");
        http_raw(req, 200, CT_JSON, s, slen);
        return;
    }
    if (chat_store_room_list(req->user_id, before_s ? before : 0, limit, &obj) != 0) {
        db_fail(req, "chatroom list");
        goto out;
    }
    if (json_object_array_length(json_object_object_get(obj, "chatrooms")) == 0 && auth_user_gone(req))
        goto out; /* nothing: perhaps because the user was deleted after the token was checked */
    s = jsonv_dump(obj, &slen);
    if (first_page && lost >= 0)
        chat_cache_fill(req->user_id, cached ? cached : "", cached ? len : 0, s, slen);
    http_set_header(req, "X-Cache", "MISS");
    http_raw(req, 200, CT_JSON, s, slen);
out:
    json_object_put(obj);
}

void chat_get(http_req_t *req, long long room_id)
{
    json_object *room = NULL;
    int rc;

    outbox_retry(0, NULL);

    if (room_id <= 0) {
        not_found(req);
        return;
    }
    rc = chat_store_room_get(req->user_id, room_id, CHAT_ROOM_MESSAGES, &room);
    if (rc < 0)
        db_fail(req, "chatroom get");
    else if (rc == CHAT_STORE_NOT_FOUND)
        not_found(req);
    else
        http_json(req, 200, room);
}

void chat_delete(http_req_t *req, long long room_id)
{
    int rc;

    outbox_retry(0, NULL);

    if (room_id <= 0) {
        not_found(req);
        return;
    }
    long long pending[16];
    int npending = 0;
    rc = chat_store_room_delete(req->user_id, room_id, pending, (int)(sizeof pending / sizeof pending[0]), &npending);
    if (rc < 0) {
        db_fail(req, "chatroom delete");
        return;
    }
    if (rc == CHAT_STORE_NOT_FOUND) {
        not_found(req);
        return;
    }
    outbox_invalidate_list(req->user_id);
    /* Whoever waits on a reply that went with the room (a stream, a long-poll) hears of it now: the end entry makes
     * the stream program read the reply, find it gone and end them (a stream closes, a long-poll gets 404).
     * Without Redis, or past the first 16, they find out with their next PostgreSQL read (10 s). */
    for (int i = 0; i < npending; i++)
        if (replystream_end(pending[i], 0) != 0)
            break;
    http_empty(req, 204);
}

void chat_messages(http_req_t *req, long long room_id)
{
    json_object *page = NULL;
    long limit;
    long long before;
    int rc;

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
    rc = chat_store_messages_page(req->user_id, room_id, limit, before, &page);
    if (rc < 0)
        db_fail(req, "messages page");
    else if (rc == CHAT_STORE_NOT_FOUND)
        not_found(req);
    else
        http_json(req, 200, page);
}

void chat_usage(http_req_t *req)
{
    json_object *o;
    char day[11], resets[32];
    time_t now = time(NULL);
    long long used = 0;
    int pro = 0, rc;

    outbox_retry(0, NULL);

    chat_utc_day(now, day);
    rc = chat_store_usage(req->user_id, day, &pro, &used);
    if (rc < 0) {
        db_fail(req, "usage");
        return;
    }
    if (rc == CHAT_STORE_NOT_FOUND) {
        not_found(req);
        return;
    }
    fmt_rfc3339((int64_t)now + chat_seconds_to_midnight(now), resets);

    o = json_object_new_object();
    json_object_object_add(o, "tier", json_object_new_string(pro ? "pro" : "basic"));
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
}

/* ---- POST /chatroom/{id}/message, in named steps --------------------------------------------------------- */

/* One post in flight: what post_parse read, what post_store got back. */
typedef struct {
    json_object *body;
    chat_post_in_t in;
    chat_post_out_t out;
    char day[11];
    char fingerprint[CHAT_FINGERPRINT_HEX];
} post_t;

/* Step 1: the room id, the Idempotency-Key and the body ({"content"}), checked in the contract's order (a
 * malformed id is 404 before any key is looked at). 0 ok, -1 answered (404 / 400 / 413). */
static int post_parse(http_req_t *req, long long room_id, post_t *p)
{
    const char *idem;
    char *content = NULL;
    time_t now = time(NULL);

    if (room_id <= 0) {
        not_found(req);
        return -1;
    }
    if (http_idem_key(req, &idem) != 0)
        return -1;
    p->body = http_json_body(req);
    if (!p->body)
        return -1;
    if (body_string(req, p->body, "content", 1, CHAT_CONTENT_MAX, &content) != 0)
        return -1;
    chat_utc_day(now, p->day);
    p->in.user_id = req->user_id;
    p->in.room_id = room_id;
    p->in.content = content;
    p->in.day = p->day;
    p->in.daily_limit = g_config.basic_daily_limit;
    p->in.idem_key = idem;
    if (idem) {
        chat_idem_fingerprint(room_id, content, strlen(content), p->fingerprint);
        p->in.fingerprint = p->fingerprint;
    }
    return 0;
}

/* Step 2: the one statement (chat_store_post). 0 when the post was created (p->out has the 202 body and the
 * reply to queue); 1 when it was answered without a new message (a replay, 404, 409, 429); -1 answered
 * 503/500 (a lost connection may have committed: the Idempotency-Key replay tells). */
static int post_store(http_req_t *req, post_t *p)
{
    char retry[24];

    if (chat_store_post(&p->in, &p->out) != 0) {
        /* a foreign key violation: a row the post names was deleted meanwhile (the room is locked first, so
         * a user deleted after the token was checked is a 404 turned 401 by not_found; this is the fallback) */
        if (!(db_foreign_key_violation() && auth_user_gone(req)))
            db_fail(req, "post message");
        return -1;
    }
    switch (p->out.outcome) {
    case CHAT_POST_CREATED: return 0;
    case CHAT_POST_REPLAYED:
        http_set_header(req, "Idempotent-Replayed", "true");
        http_raw(req, p->out.status, CT_JSON, p->out.body, p->out.body_len);
        break;
    case CHAT_POST_NOT_FOUND: not_found(req); break;
    case CHAT_POST_LIMIT:
        snprintf(retry, sizeof retry, "%ld", chat_seconds_to_midnight(time(NULL)));
        http_set_header(req, "Retry-After", retry);
        http_error(req, 429, "daily_limit_reached",
                   pool_printf(req->pool, "The daily limit of %ld messages is reached; it resets at midnight UTC.",
                               p->in.daily_limit));
        break;
    case CHAT_POST_KEY_CONFLICT:
        http_error(req, 409, "conflict", "This Idempotency-Key was used with a different request.");
        break;
    case CHAT_POST_KEY_BUSY:
        /* Only a committed response is ever visible; this is a key replaced or purged just now. */
        http_error(req, 409, "conflict", "A request with this Idempotency-Key is in progress; retry later.");
        break;
    }
    return 1;
}

/* Step 4: hand the pending reply to the workers. A failed XADD loses nothing: the worker's recovery sweep
 * finds every pending reply in PostgreSQL. */
static void post_queue(const post_t *p)
{
    if (queue_enqueue(p->out.reply_id) < 0)
        log_warn("chat: enqueue of reply %lld failed; the recovery sweep will pick it up", p->out.reply_id);
}

void chat_post_message(http_req_t *req, long long room_id)
{
    post_t p;

    memset(&p, 0, sizeof p);
    outbox_retry(0, NULL);
    if (post_parse(req, room_id, &p) == 0 && post_store(req, &p) == 0) {
        outbox_invalidate_list(req->user_id); /* step 3: the list shows the room's new activity */
        post_queue(&p);                       /* step 4; its round trip settles step 3's (cache.h) */
        http_raw(req, 202, CT_JSON, p.out.body, p.out.body_len);
    }
    chat_store_post_free(&p.out);
    json_object_put(p.body);
}

/* ---- one message (the stream program's GET /chatroom/{id}/messages/{message_id}) ---------------------------- */

int chat_message_load(long long user_id, long long room_id, long long message_id, json_object **msg, int *pending)
{
    *msg = NULL;
    *pending = 0;
    if (room_id <= 0 || message_id <= 0)
        return 0;
    int rc = chat_store_message_get(user_id, room_id, message_id, msg, pending);
    return rc < 0 ? -1 : rc == 0;
}
