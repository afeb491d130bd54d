/* chat: chatrooms, messages, the per-user chatroom list cache and the basic tier's daily message limit.
 * The request functions (chat_create ... chat_usage) answer the request themselves; they expect
 * req->user_id to be set (auth_require / auth_require_cached ran before) and every error they answer is
 * the contract's JSON error (400 validation_error, 404 not_found, 409 conflict, 429 daily_limit_reached, 503,
 * 500).
 * The pure helpers at the bottom are exposed for unit tests. */
#ifndef GB_CHAT_H
#define GB_CHAT_H

#include <stddef.h>
#include <time.h>

#include "http.h"

#define CHAT_TITLE_DEFAULT "New chat"
#define CHAT_TITLE_MAX 200    /* characters after trimming */
#define CHAT_CONTENT_MAX 8000 /* characters after trimming */
#define CHAT_ROOM_MESSAGES 50 /* messages embedded in GET /chatroom/{id} */
#define CHAT_PAGE_DEFAULT 50
#define CHAT_PAGE_MAX 100
#define CHAT_IDEM_KEY_MAX 255
#define CHAT_LIST_TTL 600              /* seconds the cached chatroom list lives */
#define CHAT_CACHE_PREFIX "chatrooms:" /* + user id: the cached list (auth_require_cached reads it) */
#define CHAT_CACHE_KEY_MAX 48          /* "chatrooms:<uid>" fits */

/* POST /chatroom: 201 chatroom. Body optional (empty = {}); "title" absent/null -> "New chat". */
void chat_create(http_req_t *req);

/* GET /chatroom. cached/len: the value auth_require_cached found under CHAT_CACHE_PREFIX<uid> (NULL on a miss or
 * when Redis is down); it is not freed here. A cached list body is served as is (X-Cache: HIT); anything
 * else is a miss: the list is read from PostgreSQL (X-Cache: MISS) and stored back with a compare-and-set
 * against what was read, so a list read before an invalidation can never overwrite it. */
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

/* The Redis key of user_id's cached chatroom list ("chatrooms:<uid>") into out. */
void chat_cache_key(long long user_id, char out[CHAT_CACHE_KEY_MAX]);

/* Invalidate user_id's cached chatroom list. Call after the change committed (outside a transaction), from
 * anything that changes what the list shows (a chatroom's title, message_count or updated_at, a chatroom
 * created or deleted, the user's tier). It replaces the entry by a unique tombstone (not a plain DEL) so that
 * a reader that read PostgreSQL before the change cannot store its stale list afterwards. When Redis cannot
 * be written the invalidation is not lost: the user id is recorded in PostgreSQL (cache_invalidations, replayed
 * by the worker through chat_cache_outbox_drain) and retried by this process at its next chat request (and
 * its next invalidation); until then this process does not serve that user's cached list. Never fails. */
void chat_cache_invalidate(long long user_id);

/* Record in the outbox (cache_invalidations) that user_id's state in Redis (the cached list, the token version
 * mirror) could not be updated after a commit; chat_cache_outbox_drain replays it. Call outside a
 * transaction. Never fails (a failed insert is logged). */
void chat_cache_outbox_note(long long user_id);

#define CHAT_OUTBOX_REDIS_DOWN (-1) /* chat_cache_outbox_drain: Redis did not take (all) tombstones */
#define CHAT_OUTBOX_DB_FAILED (-2)  /* chat_cache_outbox_drain: a PostgreSQL statement failed */
/* Replay up to max lost invalidations from cache_invalidations, oldest first: write each user's tombstone and
 * drop the user's token version mirror (authv:<uid>), then delete the rows whose tombstone was written (a row re-stamped meanwhile stays). Returns the number
 * replayed (0: the outbox is empty), CHAT_OUTBOX_REDIS_DOWN (the rows stay; those that were written are
 * still removed) or CHAT_OUTBOX_DB_FAILED (see db_unavailable). For the worker, once per loop turn. */
int chat_cache_outbox_drain(int max);

/* ---- pure helpers (unit-tested) ---- */

/* Parse the ?limit= value: NULL -> CHAT_PAGE_DEFAULT; else an integer 1..CHAT_PAGE_MAX. 0 ok, -1 invalid. */
int chat_parse_limit(const char *s, long *out);
/* Parse the ?before= value: NULL -> no bound (LLONG_MAX); else a positive message id. 0 ok, -1 invalid. */
int chat_parse_before(const char *s, long long *out);
/* Idempotency-Key: 1..CHAT_IDEM_KEY_MAX bytes, each visible ASCII (0x21..0x7e). 1 valid, 0 not. */
int chat_idem_key_valid(const char *key);
/* The fingerprint stored with an Idempotency-Key: SHA-256 over the room id in decimal, a NUL byte and the
 * trimmed content, as 64 lowercase hex digits (+ NUL) into out. A replay with another fingerprint is 409. */
#define CHAT_FINGERPRINT_HEX 65
void chat_idem_fingerprint(long long room_id, const char *content, size_t len, char out[CHAT_FINGERPRINT_HEX]);
/* Seconds from now to the next UTC midnight, 1..86400. */
long chat_seconds_to_midnight(time_t now);
/* The UTC date of now, "YYYY-MM-DD", into out. */
void chat_utc_day(time_t now, char out[11]);
/* Whether a cached value is a list body (a JSON object) rather than an invalidation tombstone. */
int chat_cache_is_body(const char *val, size_t len);

#endif
