/* chat: the chatroom and message endpoints (API.md "Chatrooms and messages"). The SQL is chat_store.h's, the
 * cached list chat_cache.h's; this module checks input and answers. The request functions (chat_create ... chat_usage)
 * answer the request themselves; they expect req->user_id to be set (auth_require / auth_require_cached ran before) and
 * every error they answer is the contract's JSON error (400 validation_error, 404 not_found, 409 conflict, 429
 * daily_limit_reached, 503, 500). The pure helpers at the bottom are exposed for unit tests. */
#ifndef GB_CHAT_H
#define GB_CHAT_H

#include <stddef.h>
#include <time.h>

#include "chat_cache.h"
#include "http.h"
#include "keys.h"

#define CHAT_TITLE_DEFAULT "New chat"
#define CHAT_TITLE_MAX 200    /* characters after trimming */
#define CHAT_CONTENT_MAX 8000 /* characters after trimming */
#define CHAT_ROOM_MESSAGES 50 /* messages embedded in GET /chatroom/{id} */
#define CHAT_PAGE_DEFAULT 50
#define CHAT_PAGE_MAX 100
/* The cached list: key names and lifetime are keys.h's; invalidation (tombstones) is outbox.h's. */
#define CHAT_LIST_TTL KEYS_CHATROOMS_TTL        /* seconds the cached chatroom list lives */
#define CHAT_CACHE_PREFIX KEYS_CHATROOMS_PREFIX /* + user id: the cached list (auth_require_cached reads it) */
#define CHAT_CACHE_KEY_MAX KEYS_USER_MAX        /* "chatrooms:<uid>" fits */

/* POST /chatroom: 201 chatroom. Body optional (empty = {}); "title" absent/null -> "New chat". 409 conflict when
 * the user already has CHATROOM_MAX_PER_USER rooms (exact under concurrent creates). */
void chat_create(http_req_t *req);

/* GET /chatroom?limit=&before=: {"chatrooms":[...], "next_before": id or null}, newest activity first, limit
 * 1..CHAT_PAGE_MAX (default CHAT_PAGE_DEFAULT), before = the last chatroom id of the previous page. cached/len:
 * the value auth_require_cached found under CHAT_CACHE_PREFIX<uid> (NULL on a miss or when Redis is down); it is
 * not freed here. Only the first page of the default size is cached: a cached body is served as is (X-Cache:
 * HIT); anything else is a miss: the page is read from PostgreSQL (X-Cache: MISS) and, for that first page,
 * stored back with a compare-and-set against what was read, so a list read before an invalidation can never
 * overwrite it. */
void chat_list(http_req_t *req, const char *cached, size_t len);

/* GET /chatroom/{id}: chatroom plus its latest CHAT_ROOM_MESSAGES messages, oldest first. */
void chat_get(http_req_t *req, long long room_id);
/* DELETE /chatroom/{id}: 204; messages cascade. */
void chat_delete(http_req_t *req, long long room_id);
/* POST /chatroom/{id}/message: 202 {"message","reply"}; Idempotency-Key (a retry of the same request replays
 * the first 202; the key reused for another chatroom or content is 409 and stores nothing), daily limit,
 * queueing. */
void chat_post_message(http_req_t *req, long long room_id);
/* GET /chatroom/{id}/messages?limit=&before=. */
void chat_messages(http_req_t *req, long long room_id);
/* GET /chatroom/usage. */
void chat_usage(http_req_t *req);

/* One message of the caller's chatroom (not an answer: for cgi-bin/stream.c, which answers itself). 1 found:
 * *msg is its JSON (the message shape; the caller json_object_put's it) and *pending says whether its status
 * is still pending; 0 no such message in user_id's room room_id (ids <= 0 included); -1 the database failed
 * (db_unavailable() says whether it is down). */
int chat_message_load(long long user_id, long long room_id, long long message_id, json_object **msg, int *pending);

/* ---- pure helpers (unit-tested) ---- */

/* Parse the ?limit= value: NULL -> CHAT_PAGE_DEFAULT; else an integer 1..CHAT_PAGE_MAX. 0 ok, -1 invalid. */
int chat_parse_limit(const char *s, long *out);
/* Parse the ?before= value: NULL -> no bound (LLONG_MAX); else a positive message id. 0 ok, -1 invalid. */
int chat_parse_before(const char *s, long long *out);
/* The fingerprint stored with an Idempotency-Key: SHA-256 over the room id in decimal, a NUL byte and the
 * trimmed content, as 64 lowercase hex digits (+ NUL) into out. A replay with another fingerprint is 409. */
#define CHAT_FINGERPRINT_HEX 65
void chat_idem_fingerprint(long long room_id, const char *content, size_t len, char out[CHAT_FINGERPRINT_HEX]);
/* Seconds from now to the next UTC midnight, 1..86400. */
long chat_seconds_to_midnight(time_t now);
/* The UTC date of now, "YYYY-MM-DD", into out. */
void chat_utc_day(time_t now, char out[11]);

#endif
