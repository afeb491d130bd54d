/* chat_cache: the per-user chatroom list cached in Redis ("chatrooms:<uid>", keys.h) for KEYS_CHATROOMS_TTL
 * seconds. The value is the list body (a JSON object) or an invalidation tombstone (outbox.h); auth reads it in
 * the same round trip as the token check (auth_require_cached), chat_list serves a body as a HIT and fills a
 * miss here. */
#ifndef GB_CHAT_CACHE_H
#define GB_CHAT_CACHE_H

#include <stddef.h>

/* Whether a cached value is a list body (a JSON object) rather than an invalidation tombstone. */
int chat_cache_is_body(const char *val, size_t len);

/* Store body (len bytes) as user_id's cached list, only if the key still holds seen (seenlen bytes: what the
 * reader found before it read PostgreSQL; "" for nothing). Writers replace the key by a unique tombstone after
 * they commit, so a list read before a change can never land after its invalidation. Best effort: Redis down
 * or a refused fill only logs. */
void chat_cache_fill(long long user_id, const char *seen, size_t seenlen, const char *body, size_t len);

#endif
