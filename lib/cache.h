/* cache: the process's one Redis connection (hiredis). Lazy connect with short timeouts, reconnect after a
 * failure; a command that failed on a closed connection is retried once on a fresh connection (not one that
 * timed out: Redis may have run it). NULL/-1 returns mean Redis is down: callers degrade (PostgreSQL fallback)
 * or answer 503. Replies are owned by the caller: freeReplyObject. */
#ifndef GB_CACHE_H
#define GB_CACHE_H

#include <stddef.h>
#include <hiredis.h>

/* Remember REDIS_URL: redis://[:password@]host[:port][/db] or unix://[:password@]/path/to/sock[?db=N]. 0 ok,
 * -1 bad URL. */
int cache_init(const char *url);

/* argv command. NULL when Redis is unreachable. An ERROR reply is returned as a reply (type REDIS_REPLY_ERROR). */
redisReply *cache_cmd(int argc, const char **argv, const size_t *argvlen);
/* Pipeline n argv commands in one round trip; fills replies[0..n). 0 ok, -1 down (all replies NULL). */
int cache_pipeline(int n, const int *argc, const char ***argv, const size_t **argvlen, redisReply **replies);

/* Keep local copies of what cache_mget reads (cache_local.h): for a persistent process, and only when Redis is
 * reached through a unix socket. Call before the first command. */
void cache_use_local_copies(int on);

/* MGET of n keys (1 <= n <= CACHE_MGET_MAX), served from the process's local copies when every key has a
 * valid one (cache_local.h), else by one round trip. 0: vals[i] is a malloc'd, NUL-terminated copy (the caller
 * frees each) or NULL for a missing key, lens[i] its length; -1 Redis down or refusing (all NULL).
 * What is read may be trusted only while Redis takes writes: a writer whose invalidation Redis refuses (out of
 * memory, a failed save, a read-only replica) leaves the old copies there. So the read is a script Redis runs
 * only when it would run a write (a "#!lua" script without flags), and local copies are served only within
 * CACHE_WRITABLE_MS of such a read that succeeded; a writer whose write was refused waits that long
 * (cache_wait_out_copies) before its client may act on it. */
#define CACHE_MGET_MAX 8
#define CACHE_WRITABLE_MS 1000.0
int cache_mget(int n, const char *const *keys, char **vals, size_t *lens);
/* Wait until no process serves a local copy read before now (CACHE_WRITABLE_MS and a margin). */
void cache_wait_out_copies(void);

/* The caller just wrote something other processes may hold a local copy of (a revocation, an invalidation)
 * and will answer its client: cache_settle, before the answer, makes one more round trip unless another
 * command already followed the write. Redis has then delivered the invalidations the write caused to every
 * process's socket. */
void cache_note_invalidation(void);
void cache_settle(void);

/* GET: 1 hit (*val malloc'd, NUL-terminated, caller frees), 0 miss, -1 down. */
int cache_get(const char *key, char **val, size_t *len);
/* SET key val EX ttl (ttl 0: no expiry). 0 ok, -1 down. */
int cache_set(const char *key, const char *val, size_t len, long ttl);
/* DEL key. 0 ok, -1 down. */
int cache_del(const char *key);
/* PING: 0 ok, -1 down. */
int cache_ping(void);
/* PING with a command timeout of timeout_ms (connect: the usual 250 ms), one attempt: 0 ok, -1 down, paused or
 * slow (the connection is dropped then). For health checks that must answer in bounded time. */
int cache_ping_within(long timeout_ms);

/* The run_id (INFO server) of the Redis instance of the current connection: different after every Redis start.
 * Read with one INFO on the first call after each (re)connect. "" when not connected or INFO failed (the
 * connection is dropped then). Static storage. */
const char *cache_run_id(void);
/* A number that changes whenever a new connection is made (0: never connected). */
unsigned long cache_generation(void);
/* A new connection of its own to the same Redis (AUTH and SELECT done, 1 s command timeout), for a caller that
 * needs one beside the process's (a blocking XREAD driven by poll). NULL when Redis is unreachable. The caller
 * owns it: redisFree. */
redisContext *cache_connect_new(void);

/* Why the last connect or command failed, one line; "" if nothing failed yet. Static storage. */
const char *cache_last_error(void);

/* Close the connection. */
void cache_close(void);

#endif
