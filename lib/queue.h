/* queue: the AI reply job queue. PostgreSQL is the source of truth (a reply row with status 'pending');
 * Redis Streams carries the job ids to the workers (stream QUEUE_STREAM, consumer group QUEUE_GROUP,
 * one entry {"reply_id": "<id>"} per job). A job lost in Redis is found again from PostgreSQL by the
 * worker's recovery sweep, so an enqueue failure is not an error for the caller. */
#ifndef GB_QUEUE_H
#define GB_QUEUE_H

#include "keys.h"

#define QUEUE_STREAM KEYS_REPLY_STREAM
#define QUEUE_GROUP "workers"
#define QUEUE_MAXLEN "100000" /* approximate cap on the stream length (XADD MAXLEN ~) */

/* Queue reply_id for the workers (XADD). 0 ok, -1 Redis down (the recovery sweep will pick it up). */
int queue_enqueue(long long reply_id);

/* ---- consumer side (the worker) ---- */

#define QUEUE_ID_MAX 48    /* a stream entry id "<ms>-<seq>" fits with room */
#define QUEUE_NOGROUP (-2) /* the group (or the stream) is gone, e.g. after FLUSHALL: call queue_group_create */

/* One delivered stream entry. reply_id is 0 when the entry carries no valid reply_id (ack and drop it). */
typedef struct queue_entry {
    char id[QUEUE_ID_MAX];
    long long reply_id;
} queue_entry_t;

struct redisReply;

/* XGROUP CREATE QUEUE_STREAM QUEUE_GROUP 0 MKSTREAM. 0 when created or already there (BUSYGROUP), -1 when
 * Redis is down or refuses. */
int queue_group_create(void);

/* XREADGROUP GROUP QUEUE_GROUP consumer COUNT max [BLOCK block_ms] STREAMS QUEUE_STREAM >: new entries for this
 * consumer (they stay in its pending list until queue_ack). block_ms 0: no BLOCK (answer at once); keep it
 * below the cache connection's 1 s command timeout. Fills out[0..n) and returns n (0: nothing new), -1 when
 * Redis is down, QUEUE_NOGROUP when the group does not exist (or the stream vanished during BLOCK). */
int queue_read(const char *consumer, int max, long block_ms, queue_entry_t *out);

/* XAUTOCLAIM QUEUE_STREAM QUEUE_GROUP consumer min_idle_ms cursor COUNT max: take over entries some consumer
 * received more than min_idle_ms ago without acking them (a crashed worker). cursor is in/out: start with
 * "0-0"; it is "0-0" again when the scan is complete. Returns n like queue_read. */
int queue_claim_stale(const char *consumer, long min_idle_ms, char cursor[QUEUE_ID_MAX], int max, queue_entry_t *out);

/* XACK then XDEL the given entry ids in one round trip (the entry has done its job: the result is stored).
 * 0 ok, -1 Redis down (the entries stay pending and come back through queue_claim_stale; harmless). */
int queue_ack(const char *const *ids, int n);

/* At a clean exit: XGROUP DELCONSUMER, so dead consumers do not pile up in XINFO, but only when the consumer
 * has no pending entries left (those stay with it for queue_claim_stale). 0 deleted, 1 kept, -1 Redis down. */
int queue_consumer_delete(const char *consumer);

/* Housekeeping: delete the consumers of QUEUE_GROUP that have no pending entries and have been idle for more
 * than min_idle_ms (workers that were killed and never came back), never self; each is deleted through
 * queue_consumer_delete, which checks again that it holds nothing. Returns the number deleted, -1 when Redis
 * is down, QUEUE_NOGROUP when there is no group. */
int queue_reap_consumers(const char *self, long long min_idle_ms);

/* Pure: the consumers of an XINFO CONSUMERS reply (an array of flat name/value arrays: "name", "pending",
 * "idle", and in Redis 7.2 "inactive") with pending 0 and idle > min_idle_ms, except self and entries
 * without a name or those fields. Fills names[0..max) with pointers into the reply; returns the count. */
int queue_select_dead_consumers(const struct redisReply *xinfo, const char *self, long long min_idle_ms,
                                const char **names, int max);

/* Pure: parse a list of stream entries ([[id, [field, value, ...]], ...], as in XRANGE / XREADGROUP /
 * XAUTOCLAIM replies) into out[0..max). Entries without a body (deleted) are skipped; entries whose
 * reply_id is missing or not a positive integer get reply_id 0. Returns the number filled. */
int queue_parse_entries(const struct redisReply *entries, int max, queue_entry_t *out);

#endif
