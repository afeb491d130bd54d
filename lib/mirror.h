/* mirror: when a Redis copy of PostgreSQL state (the token version mirror "authv:<uid>", the cached chatroom list
 * "chatrooms:<uid>") may be trusted, whatever happened to Redis (FLUSHALL, a restart, a restart from an older
 * snapshot).
 *
 * Redis holds an epoch, key "gb:epoch" (keys.h): the run_id of the Redis instance (new at every start), a dot and
 * random hex. Every copy is stored stamped "<epoch>|<payload>" and is trusted only while the epoch it carries is
 * the one in Redis and that epoch names the instance the process is talking to. So:
 *  - a restart (with or without an older dump.rdb) changes the run_id: everything written before is ignored,
 *    the first request that notices installs a new epoch;
 *  - FLUSHALL deletes the epoch with everything else: nothing is trusted until a new epoch is installed;
 *  - a reader stores what it read from PostgreSQL only under the epoch it saw before it read (a compare-and-set
 *    inside the storing script), so a copy read before a flush or restart can never land in the new epoch.
 * A writer that just committed a change stores under whatever epoch is in force (its copy is the newest).
 *
 * Per request: auth's one MGET fetches the epoch with the copies and calls mirror_observe; the stores use
 * mirror_epoch(). State is per process (one request at a time). */
#ifndef GB_MIRROR_H
#define GB_MIRROR_H

#include <stddef.h>

#define MIRROR_EPOCH_MAX 96 /* an epoch plus its NUL */

/* After a read of "gb:epoch" (val/len, NULL when absent) in this request: 1 when it is a valid epoch of the
 * connected instance (the copies read with it are trusted, mirror_epoch() returns it), else 0: nothing read is
 * trusted, and a new epoch is installed (one more round trip; mirror_epoch() returns it for the stores of this
 * request, NULL when Redis is down). */
int mirror_observe(const char *val, size_t len);

/* The epoch that this request's stores of PostgreSQL reads must be made under, or NULL (store nothing). */
const char *mirror_epoch(void);

/* Whether val (len bytes) is stamped with the trusted epoch of this request: 1 with *payload and *plen pointing
 * into val after the "<epoch>|", else 0. */
int mirror_unwrap(const char *val, size_t len, const char **payload, size_t *plen);

/* Store payload (plen bytes) under key as "<epoch>|<payload>" for ttl seconds, with this request's epoch, only if
 * that epoch is still in force and the key still holds seen (seenlen bytes: what the reader found before it
 * read PostgreSQL; NULL or "" for nothing). Writers replace such keys by unique tombstones after they commit
 * (outbox.h), so a copy read before a change can never land after its invalidation. Best effort: nothing is
 * stored without an epoch, when Redis is down, or when the key changed meanwhile. */
void mirror_fill(const char *key, const char *seen, size_t seenlen, const char *payload, size_t plen, int ttl);

/* Pure: whether val is stamped with epoch (val starts with epoch then '|'). For unit tests and mirror_unwrap. */
int mirror_stamped(const char *epoch, const char *val, size_t len);
/* Pure: whether epoch (len bytes) belongs to the instance with run_id ("<run_id>.<hex>", run_id not empty). */
int mirror_epoch_of(const char *run_id, const char *epoch, size_t len);

/* Forget the epoch of the previous request (called by mirror_observe's callers at the start of a check). */
void mirror_reset(void);

#endif
