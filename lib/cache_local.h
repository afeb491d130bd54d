/* cache_local: this process's own copies of the keys it reads most (the token version mirror, the epoch, the
 * cached list and user), kept true by Redis's server-assisted client-side caching, so that a hot read needs no
 * Redis round trip at all. Used by cache.c only (cache_mget); callers never see it.
 *
 * How the copies stay true:
 * - The main connection runs CLIENT TRACKING with REDIRECT to a second connection of the process, subscribed to
 *   __redis__:invalidate: every key the main connection reads is tracked, and its next change (a write, a
 *   DEL, an expiry, FLUSHALL) sends that connection an invalidation. Before a copy is served, the process reads
 *   every invalidation waiting on that socket (one non-blocking recv when there is none).
 * - Every write to a key that processes may hold a copy of (an invalidation, a reader's fill of a cached copy,
 *   a new epoch) is followed by one more round trip before the client is answered (cache_note_invalidation,
 *   cache_settle): Redis has then put the invalidation into every tracker's socket. A revocation is never
 *   served from an older copy, and a fill is served by every process from the client's next request on. Over
 *   a unix socket that is the reader's receive queue at once, so copies are only used when REDIS_URL is a unix
 *   socket (Redis on this host).
 * - A lease: the process sends PING on the invalidation connection every LEASE_MS / 2 and serves copies only
 *   while it holds the answer to a PING sent less than LEASE_MS ago. An invalidation travels on the same socket
 *   ahead of any later PING's answer, and a writer whose write failed waits out its 1 s command timeout before it
 *   answers, so a Redis that hangs (SIGSTOP, a long script, a full output buffer) stops the copies being served
 *   before the writer's client can act on the failed write.
 * - Any doubt empties every copy: the invalidation connection closed or erred, a flush (an invalidation with no
 *   key list), more waiting than a socket holds without Redis having to buffer (the order above would not hold),
 *   a new main connection. Copies also age out after MAX_AGE_MS whatever happens.
 * - Bounded memory: SLOTS entries, direct-mapped, and VALUE_BUDGET bytes of values. */
#ifndef GB_CACHE_LOCAL_H
#define GB_CACHE_LOCAL_H

#include <stddef.h>
#include <hiredis.h>

/* Ask for local copies (a persistent FastCGI process; only honoured for a unix socket Redis). */
void cache_local_want(int on);
/* Whether to attach now: wanted, not attached, and no failed attempt in the last ATTACH_BACKOFF_MS. */
int cache_local_attach_due(void);
/* Track what the main connection c (AUTH, SELECT done) reads from now on: open the invalidation connection and
 * turn tracking on, each step within ATTACH_TIMEOUT_MS (c's command timeout is left at that: the caller sets its
 * own again). 0 done; -1 failed (c may still be used unless c->err; nothing is kept locally for it). */
int cache_local_attach(redisContext *c);
/* The main connection is gone: close the invalidation connection and forget every copy. */
void cache_local_detach(void);
/* Read what waits on the invalidation connection and keep the lease alive. 1: copies may be served now; 0: not
 * now (no tracking, no fresh lease); -1: the tracking broke (the caller drops the main connection). */
int cache_local_sync(void);
/* Whether what the main connection reads now is tracked (attached, not broken since). */
int cache_local_tracking(void);
/* Look key up: 1 hit (*val NULL when Redis had no such key; else valid until the next cache_local call),
 * 0 miss. */
int cache_local_get(const char *key, const char **val, size_t *len);
/* Keep what the tracked main connection read for key (val NULL: no such key). */
void cache_local_put(const char *key, const char *val, size_t len);
/* Forget every copy. */
void cache_local_flush(void);

#endif
