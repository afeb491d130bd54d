/* intake: where the worker's work comes from.
 *   - the Redis stream: new entries (XREADGROUP), and entries another consumer received and never acked, a
 *     killed worker's (XAUTOCLAIM);
 *   - the PostgreSQL recovery sweep: pending replies older than WORKER_RECOVER_SECONDS, or whose retry is due,
 *     that nobody holds a live lease on: lost enqueues, a flushed or restarted Redis, a killed worker's calls
 *     (their lease ends AI_TIMEOUT_MS + a margin after it was taken). While Redis is unreachable the sweep takes
 *     every pending reply at once (no job can arrive through the stream).
 * Everything found is leased (lib/reply) before a job starts, so two workers never work on one reply.
 * --once bookkeeping lives here too: did the last look at each source find anything, and which retries this
 * process scheduled (it waits for them before it exits). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "util.h"
#include "worker.h"

#define IDLE_BLOCK_MS 400 /* XREADGROUP BLOCK when idle; below cache.c's 1 s command timeout */

static struct {
    int group_ok;
    char claim_cursor[QUEUE_ID_MAX];
    /* --once: did the last look at each source find anything? */
    int read_empty, claim_empty, sweep_empty;
    /* --once: replies this process scheduled for a retry */
    long long *owed;
    size_t nowed, capowed;
} I;

static db_stmt_t q_owed =
    DB_STMT("worker_owed", "SELECT count(*) FROM messages WHERE id = ANY($1::bigint[]) AND status = 'pending'", 1);

void intake_init(void)
{
    snprintf(I.claim_cursor, sizeof I.claim_cursor, "0-0");
}

void intake_cleanup(void)
{
    free(I.owed);
    I.owed = NULL;
    I.nowed = I.capowed = 0;
}

int intake_group_ok(void)
{
    return I.group_ok;
}

void intake_redis_lost(void)
{
    I.group_ok = 0;
    I.read_empty = I.claim_empty = 1; /* --once: nothing to get from Redis now; PostgreSQL is still swept */
}

int intake_exhausted(void)
{
    return I.read_empty && I.claim_empty && I.sweep_empty;
}

static long free_slots(void)
{
    return g_worker.concurrency - jobs_count();
}

/* Start a job for every lease. For stream entries (entries != NULL), each lease gets its entry's id, and
 * claimed[k] is set for the entries that were leased. */
static void start_leased(const reply_lease_t *l, int nl, const queue_entry_t *entries, int *claimed, int nentries)
{
    for (int i = 0; i < nl; i++) {
        const char *sid = NULL;
        for (int k = 0; entries && k < nentries; k++)
            if (entries[k].reply_id == l[i].reply_id && !claimed[k]) {
                claimed[k] = 1;
                sid = entries[k].id;
                break;
            }
        job_start(&l[i], sid);
    }
}

/* Entries from the stream: lease what can be leased and start it. The others are acked: finished, deleted,
 * already running here, held by another worker's live lease, or waiting for a scheduled retry (the database
 * brings those back by itself through the sweep). */
static void take_entries(const queue_entry_t *e, int n)
{
    if (n <= 0)
        return;
    int *wanted = xcalloc((size_t)n, sizeof *wanted);
    int *claimed = xcalloc((size_t)n, sizeof *claimed);
    long long *ids = xcalloc((size_t)n, sizeof *ids);
    reply_lease_t *leases = NULL;
    int want = 0;
    for (int i = 0; i < n; i++) {
        if (e[i].reply_id <= 0) {
            log_warn("queue entry %s has no valid reply_id; dropped", e[i].id);
            jobs_ack_later(e[i].id);
            continue;
        }
        int dup = jobs_has(e[i].reply_id);
        for (int k = 0; k < i && !dup; k++)
            dup = wanted[k] && e[k].reply_id == e[i].reply_id;
        if (dup) { /* already being worked on here: that job acks its own entry */
            jobs_ack_later(e[i].id);
            continue;
        }
        wanted[i] = 1;
        ids[want++] = e[i].reply_id;
    }
    if (!want)
        goto out;
    int got = reply_claim(ids, want, g_worker.lease_ms, g_worker.consumer, &leases);
    if (got < 0) {
        upkeep_db_failed("claiming replies");
        goto out; /* not acked: they stay pending in the stream and come back through XAUTOCLAIM */
    }
    upkeep_db_up();
    start_leased(leases, got, e, claimed, n);
    for (int i = 0; i < n; i++)
        if (wanted[i] && !claimed[i])
            jobs_ack_later(e[i].id);
out:
    free(leases);
    free(ids);
    free(wanted);
    free(claimed);
}

int intake_read(void)
{
    long room = free_slots();
    if (room <= 0)
        return TIMER_KEEP;
    if (!I.group_ok) {
        if (queue_group_create() != 0) {
            upkeep_redis_down();
            return TIMER_KEEP;
        }
        I.group_ok = 1;
        upkeep_redis_up();
    }
    /* block in Redis only when there is nothing else to wait for */
    int allow_block = !g_worker.once && jobs_count() == 0;
    int max = room > 512 ? 512 : (int)room;
    queue_entry_t *e = xcalloc((size_t)max, sizeof *e);
    int n = queue_read(g_worker.consumer, max, allow_block ? IDLE_BLOCK_MS : 0, e);
    int next = TIMER_KEEP;
    if (n == QUEUE_NOGROUP) {
        log_warn("queue: consumer group missing (Redis flushed or restarted?); recreating it");
        I.group_ok = 0;
        next = TIMER_AGAIN;
    } else if (n < 0) {
        upkeep_redis_down();
        I.read_empty = 1; /* --once: nothing readable; PostgreSQL still gets swept */
    } else {
        upkeep_redis_up();
        I.read_empty = n == 0;
        take_entries(e, n);
        /* a full batch: more may be waiting, read again at once; after an idle BLOCK, at once too */
        next = n == max || (!jobs_count() && allow_block) ? TIMER_AGAIN : TIMER_INTERVAL;
    }
    free(e);
    return next;
}

int intake_claim_stale(void)
{
    long room = free_slots();
    if (room <= 0 || !I.group_ok)
        return TIMER_KEEP;
    int max = room > 256 ? 256 : (int)room;
    queue_entry_t *e = xcalloc((size_t)max, sizeof *e);
    int n = queue_claim_stale(g_worker.consumer, g_config.worker_recover_seconds * 1000, I.claim_cursor, max, e);
    int next = TIMER_INTERVAL;
    if (n == QUEUE_NOGROUP) {
        I.group_ok = 0;
    } else if (n < 0) {
        upkeep_redis_down();
        I.claim_empty = 1;
    } else {
        upkeep_redis_up();
        if (n)
            log_info("took over %d unacknowledged queue entries", n);
        take_entries(e, n);
        int done = strcmp(I.claim_cursor, "0-0") == 0;
        I.claim_empty = n == 0 && done;
        /* more to scan: continue next turn; else wait for the next round */
        next = done ? TIMER_INTERVAL : TIMER_AGAIN;
    }
    free(e);
    return next;
}

int intake_sweep(void)
{
    long room = free_slots();
    if (room <= 0)
        return TIMER_KEEP;
    reply_lease_t *leases = NULL;
    long older = upkeep_redis_down_now() ? 0L : g_config.worker_recover_seconds;
    int n = reply_sweep(older, g_worker.lease_ms, g_worker.consumer, room > 512 ? 512L : room, &leases);
    if (n < 0) {
        upkeep_db_failed("the recovery sweep");
        I.sweep_empty = 0;
        return TIMER_INTERVAL;
    }
    upkeep_db_up();
    I.sweep_empty = n == 0;
    if (n)
        log_info("recovery sweep took %d pending replies", n);
    start_leased(leases, n, NULL, NULL, 0);
    free(leases);
    return n ? TIMER_AGAIN : TIMER_INTERVAL; /* there may be more */
}

void intake_owe(long long reply_id)
{
    if (!g_worker.once)
        return;
    if (I.nowed == I.capowed) {
        I.capowed = I.capowed ? I.capowed * 2 : 64;
        I.owed = xrealloc(I.owed, I.capowed * sizeof *I.owed);
    }
    I.owed[I.nowed++] = reply_id;
}

int intake_owed_pending(void)
{
    if (!I.nowed)
        return 0;
    buf_t arr = {0};
    buf_puts(&arr, "{");
    for (size_t i = 0; i < I.nowed; i++)
        buf_printf(&arr, "%s%lld", i ? "," : "", I.owed[i]);
    buf_puts(&arr, "}");
    const char *params[] = {arr.data};
    PGresult *res = db_query(&q_owed, params);
    buf_free(&arr);
    if (!res) {
        upkeep_db_failed("checking scheduled retries");
        return -1;
    }
    int pending = strcmp(PQgetvalue(res, 0, 0), "0") != 0;
    PQclear(res);
    if (!pending)
        I.nowed = 0;
    return pending;
}
