/* outbox: keeping a user's derived state in Redis (the cached chatroom list "chatrooms:<uid>", the token
 * version mirror "authv:<uid>", see keys.h) in step with PostgreSQL after a commit, even while Redis is down.
 *
 * A list is invalidated by replacing it with a unique tombstone (not a plain DEL), so that a reader that read
 * PostgreSQL before the change cannot store its stale list afterwards (chat's fill is a compare-and-set
 * against what it saw). A write that cannot reach Redis is not dropped: the user id goes into the PostgreSQL
 * outbox (table cache_invalidations, drained by the worker through outbox_drain) and, for a list, into this
 * process's own short pending list, retried at its next request (outbox_retry).
 *
 * A row is (re)stamped on every lost write, and the drain deletes a row only if its stamp is still the one it
 * read before writing, so a write lost while a drain runs is never deleted unreplayed.
 *
 * Depends on cache, db and keys only; auth and chat both use it. Every function here is called outside a
 * transaction, after the change committed. */
#ifndef GB_OUTBOX_H
#define GB_OUTBOX_H

/* A tombstone: '~' then 24 lower-case hex digits, NUL-terminated. It never starts with '{', so a reader tells
 * it from a cached list body (chat_cache_is_body). */
#define OUTBOX_TOMB_SIZE 26

/* Write a fresh unique tombstone into tomb. 0 ok, -1 no randomness available. Exposed for unit tests. */
int outbox_tombstone(char tomb[OUTBOX_TOMB_SIZE]);

/* Invalidate user_id's cached chatroom list. Call from anything that changes what the list shows but not the
 * user (a chatroom's title, message_count or updated_at, a chatroom created or deleted). When Redis cannot be
 * written the user goes into the outbox (outbox_note) and into this process's pending list, and until it is
 * written this process does not serve that user's cached list (outbox_retry; a retry writes both tombstones).
 * Never fails. */
void outbox_invalidate_list(long long user_id);

/* The same for a change of the user that the list shows too (the tier): the cached list and the cached user
 * (me:<uid>, GET /user/me), in the same round trip. */
void outbox_invalidate_user(long long user_id);

/* The token version mirror (authv:<uid>) of a user who no longer exists: above any version a token carries. */
#define OUTBOX_AUTHV_GONE 2147483647

/* Raise user_id's token version mirror to token_version, stamped with epoch (the epoch a reader saw before it
 * read PostgreSQL; NULL for a writer that just committed: whichever is in force), unless it already holds a
 * newer one under that epoch: the mirror only ever moves up and is never deleted. 1 stored, 0 a newer one is
 * there, -1 Redis down or no epoch to store under (then no copy is trusted anyway). */
int outbox_authv_raise(long long user_id, int token_version, const char *epoch);

/* Record in the outbox that user_id's state in Redis (the cached list, the token version mirror) could not be
 * updated after a commit; outbox_drain replays it. Never fails (a failed insert is logged). */
void outbox_note(long long user_id);

/* At the start of a request: retry this process's pending invalidations once Redis may answer again. self is
 * the user whose cached list the request is about to read (0: none); it is retried at every call, the others
 * at most once a second while Redis stays down. Returns 0 when self was not pending, 1 when self was pending
 * and its tombstone is now written (copied into self_tomb, which may then be what a fill replaces), -1 when
 * self is still pending (Redis still down: what the cache holds for self is stale, store nothing). self_tomb
 * may be NULL when self is 0. */
int outbox_retry(long long self, char self_tomb[OUTBOX_TOMB_SIZE]);

#define OUTBOX_REDIS_DOWN (-1) /* outbox_drain: Redis did not take (all) the writes */
#define OUTBOX_DB_FAILED (-2)  /* outbox_drain: a PostgreSQL statement failed */
/* Replay up to max lost writes from cache_invalidations, oldest first, in one pipelined round trip: write each
 * user's list and user tombstones and raise the user's token version mirror to what PostgreSQL holds now
 * (OUTBOX_AUTHV_GONE for a user who is gone), then delete the rows whose writes went through (a row re-stamped
 * meanwhile stays). Returns the number replayed (0: the outbox is empty), OUTBOX_REDIS_DOWN (the rows stay; those that
 * were written are still removed) or OUTBOX_DB_FAILED (see db_unavailable). For the worker, once per loop turn. */
int outbox_drain(int max);

#endif
