/* chat_cache: the per-user chatroom list cached in Redis ("chatrooms:<uid>", keys.h) for KEYS_CHATROOMS_TTL
 * seconds. The value is the list body (a JSON object) stamped with the epoch it was read under
 * ("<epoch>|{...}", mirror.h), or an invalidation tombstone (outbox.h); auth reads it in the same round trip as
 * the token check (auth_require_cached), chat_list serves a body as a HIT and fills a miss here. A body stamped
 * with another epoch (written before a Redis restart, a restored snapshot, a flush) is never served. */
#ifndef GB_CHAT_CACHE_H
#define GB_CHAT_CACHE_H

#include <stddef.h>

/* Whether a cached value is a list body (a JSON object) rather than an invalidation tombstone. */
int chat_cache_is_body(const char *val, size_t len);

/* Whether val (len bytes, what auth_require_cached read) is a list body valid now: 1 with *body and *blen
 * pointing into val at the JSON, else 0 (a miss: a tombstone, nothing, or a body of another epoch). */
int chat_cache_hit(const char *val, size_t len, const char **body, size_t *blen);

/* Store body (len bytes) as user_id's cached list, stamped with mirror_epoch(), only if the key still holds seen
 * (seenlen bytes: what the reader found before it read PostgreSQL; "" for nothing) and that epoch is still in
 * force (nothing is stored without one). Writers replace the key by a unique tombstone after
 * they commit, so a list read before a change can never land after its invalidation. Best effort: Redis down
 * or a refused fill only logs. */
void chat_cache_fill(long long user_id, const char *seen, size_t seenlen, const char *body, size_t len);

#endif
