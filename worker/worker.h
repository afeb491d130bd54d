/* worker: the internal interface between the worker's files. Each file owns its own state; what is shared by
 * all of them is the small, read-mostly g_worker set up once by main.c.
 *
 *   main.c      arguments, signals, setup, the main loop and its timer table
 *   intake.c    where work comes from: the Redis stream, stale entries (XAUTOCLAIM), the PostgreSQL recovery
 *               sweep; --once bookkeeping (what is still owed)
 *   jobs.c      the job table and a job's life: history, start, finish, retry later, fail, stream acks
 *   upstream.c  the AI provider and its libcurl multi calls
 *   upkeep.c    Redis / PostgreSQL down/up state and backoff, housekeeping, the outbox drain
 */
#ifndef GB_WORKER_H
#define GB_WORKER_H

#include "ai.h"
#include "queue.h"
#include "reply.h"

/* ---- main.c ---- */

struct worker_conf {
    char consumer[128]; /* stream consumer and lease owner: host:pid */
    long lease_ms;      /* AI_TIMEOUT_MS + a margin */
    long concurrency;   /* WORKER_CONCURRENCY: jobs held at once */
    int once;           /* --once */
};
extern struct worker_conf g_worker;

/* What a timer's function tells the main loop about its next run (see main.c's timer table). */
enum timer_next {
    TIMER_KEEP,     /* leave next_at as it is (it did not run, or will be gated by a backoff) */
    TIMER_INTERVAL, /* next run one interval from now */
    TIMER_AGAIN,    /* more work is waiting: run again on the next loop turn */
};

/* ---- intake.c ---- */

void intake_init(void);
void intake_cleanup(void);
/* The timer functions: read new stream entries, take over stale ones (XAUTOCLAIM), sweep PostgreSQL. Each
 * leases what it finds and starts jobs for it; each returns an enum timer_next. */
int intake_read(void);
int intake_claim_stale(void);
int intake_sweep(void);
/* 1 once the consumer group is known to exist (XAUTOCLAIM needs it). */
int intake_group_ok(void);
/* Redis stopped answering: the group must be checked again; --once: nothing more to expect from the stream. */
void intake_redis_lost(void);
/* --once: the last look at every source found nothing. */
int intake_exhausted(void);
/* --once: remember a reply this process scheduled a retry for (it waits for it); no-op without --once. */
void intake_owe(long long reply_id);
/* --once: are the owed retries still pending? 1 yes, 0 no, -1 unknown (database down). */
int intake_owed_pending(void);

/* ---- jobs.c ---- */

typedef struct job job_t;

/* Load the history of a leased reply and start its upstream call (or answer offline at once). stream_id is
 * the entry to ack once the outcome is stored, NULL when the sweep took the reply. */
void job_start(const reply_lease_t *lease, const char *stream_id);
/* The upstream call of j ended with r (upstream.c calls this; r stays the caller's). The job is finished,
 * failed or rescheduled, and may be freed. */
void job_call_done(job_t *j, const ai_result_t *r);
long jobs_count(void);
/* 1 when a job for reply_id is held here. */
int jobs_has(long long reply_id);
/* Answers held back while PostgreSQL was down: try to store them again when due. */
void jobs_retry_stores(void);
/* When the next held-back answer is due (ms, now_ms clock), or `until` when none is due earlier. */
double jobs_next_store_at(double until);
/* Shutdown: store what can be stored, give the other leases back, free every job. */
void jobs_hand_back(void);
/* The stream entry id (NULL or "" ignored) is done with: XACK + XDEL it at the next jobs_flush_acks. */
void jobs_ack_later(const char *id);
void jobs_flush_acks(void);
/* Totals for the exit line. */
void jobs_totals(long long *completed, long long *failed, long long *retried);
void jobs_cleanup(void);

/* ---- upstream.c ---- */

typedef struct upstream_call upstream_call_t;

/* Read the provider settings from g_config and set up the multi handle (after curl_global_init and
 * g_worker). Prints the reason and returns -1 on a configuration error. */
int upstream_init(void);
void upstream_cleanup(void);
/* upstream_start results */
#define UPSTREAM_STARTED 0
#define UPSTREAM_ANSWERED 1   /* offline: the answer is in *answer at once, no call */
#define UPSTREAM_NOTHING (-2) /* the history holds no user message to answer */
#define UPSTREAM_FAILED (-1)  /* the call could not be started */
/* Start the call for reply_id of job j over the history turns[0..n) (oldest first); retry: not the reply's
 * first attempt. UPSTREAM_STARTED: *call is set; when it ends job_call_done(j, ...) is called from
 * upstream_reap. UPSTREAM_ANSWERED: answer holds the offline stand-in's text (the caller frees it). */
int upstream_start(job_t *j, long long reply_id, int retry, const ai_turn_t *turns, size_t n, upstream_call_t **call,
                   buf_t *answer);
/* Abort (if still running) and free a call; accepts NULL. */
void upstream_call_free(upstream_call_t *c);
/* 1 when a call freed since the last time asked had a buffer over BUF_KEEP (a long answer, a long history). */
int upstream_big_freed(void);
/* Drive the transfers, then hand every finished call to job_call_done. */
void upstream_perform(void);
/* Sleep until a transfer needs attention or timeout_ms pass. */
void upstream_wait(long timeout_ms);
/* The provider, for log lines. */
const char *upstream_name(void);

/* ---- upkeep.c ---- */

void upkeep_redis_down(void);
void upkeep_redis_up(void);
void upkeep_db_down(void);
void upkeep_db_up(void);
/* A NULL result from db_query (or a -1 from reply_*): note an outage, log anything else. */
void upkeep_db_failed(const char *what);
/* 1 when Redis may be tried now (up, or its backoff has run out). */
int upkeep_redis_ready(double now);
/* 1 while Redis is considered down (backing off). */
int upkeep_redis_down_now(void);
/* When Redis / PostgreSQL may be tried again: 0 while it is up. */
double upkeep_redis_gate(void);
double upkeep_db_gate(void);
/* 1 while PostgreSQL is considered down (backing off). */
int upkeep_db_down_now(void);
/* 1 when PostgreSQL may be tried now. */
int upkeep_db_ready(double now);
/* How long PostgreSQL has been down (ms), 0 while it is up. */
double upkeep_db_down_for(double now);
/* Timer functions: housekeeping (old rows, dead stream consumers) and the lost-invalidation outbox. */
int upkeep_housekeeping(void);
int upkeep_drain_outbox(void);

#endif
