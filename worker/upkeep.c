/* upkeep: is Redis / PostgreSQL answering? Each store has a backoff while it is down (work that needs it
 * waits; Redis is probed at least every REDIS_BACKOFF_MAX_MS so lost invalidations are replayed and the
 * stream is read again about 1 s after it answers). Also the periodic chores: housekeeping (rows that only
 * matter for a bounded time, the stream consumers of dead workers) and replaying the invalidation outbox. */
#include <string.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "outbox.h"
#include "queue.h"
#include "util.h"
#include "worker.h"

#define DOWN_BACKOFF_MIN_MS 500
#define DOWN_BACKOFF_MAX_MS 5000  /* PostgreSQL */
#define REDIS_BACKOFF_MAX_MS 1000 /* Redis */
#define OUTBOX_BATCH 256
#define CONSUMER_IDLE_MS 3600000LL    /* housekeeping: a consumer idle this long with nothing pending is dead */
#define HOUSEKEEPING_ANSWER_MS 60000L /* housekeeping's deletes: the longest wait for their answer */

static struct {
    double redis_retry_at, db_retry_at;
    long redis_backoff, db_backoff; /* 0 while up */
    double db_down_since;
} H;

void upkeep_redis_down(void)
{
    if (!H.redis_backoff)
        log_warn("redis unavailable: taking pending replies from PostgreSQL at once until it is back");
    H.redis_backoff = H.redis_backoff ? H.redis_backoff * 2 : DOWN_BACKOFF_MIN_MS;
    if (H.redis_backoff > REDIS_BACKOFF_MAX_MS)
        H.redis_backoff = REDIS_BACKOFF_MAX_MS;
    H.redis_retry_at = now_ms() + (double)H.redis_backoff;
    intake_redis_lost();
}

void upkeep_redis_up(void)
{
    if (H.redis_backoff)
        log_info("redis is back");
    H.redis_backoff = 0;
}

void upkeep_db_down(void)
{
    if (!H.db_backoff) {
        log_warn("postgres unavailable: pausing new work until it is back");
        H.db_down_since = now_ms();
    }
    H.db_backoff = H.db_backoff ? H.db_backoff * 2 : DOWN_BACKOFF_MIN_MS;
    if (H.db_backoff > DOWN_BACKOFF_MAX_MS)
        H.db_backoff = DOWN_BACKOFF_MAX_MS;
    H.db_retry_at = now_ms() + (double)H.db_backoff;
}

void upkeep_db_up(void)
{
    if (H.db_backoff)
        log_info("postgres is back");
    H.db_backoff = 0;
    H.db_down_since = 0;
}

void upkeep_db_failed(const char *what)
{
    if (db_unavailable())
        upkeep_db_down();
    else
        log_error("%s failed (sqlstate %s)", what, db_sqlstate());
}

int upkeep_redis_ready(double now)
{
    return !H.redis_backoff || now >= H.redis_retry_at;
}

int upkeep_redis_down_now(void)
{
    return H.redis_backoff != 0;
}

double upkeep_redis_gate(void)
{
    return H.redis_backoff ? H.redis_retry_at : 0;
}

double upkeep_db_gate(void)
{
    return H.db_backoff ? H.db_retry_at : 0;
}

int upkeep_db_down_now(void)
{
    return H.db_backoff != 0;
}

int upkeep_db_ready(double now)
{
    return !H.db_backoff || now >= H.db_retry_at;
}

double upkeep_db_down_for(double now)
{
    return H.db_backoff ? now - H.db_down_since : 0;
}

/* Housekeeping, once a minute: rows that only matter for a bounded time. Idempotency keys are replayed
 * for idempotency_ttl() (24 h, schema.sql step 10), OTP sends count for an hour; Stripe event ids are kept
 * 30 days, far past Stripe's 3-day retries. And the stream consumers of workers that died without a clean
 * exit (SIGKILL, a lost machine): idle for over an hour with nothing pending (a live worker reads every
 * second; entries a dead one held are taken over by XAUTOCLAIM first, and until then it keeps them and is
 * kept). */
static db_stmt_t q_housekeeping =
    DB_STMT("worker_housekeeping",
            "WITH idem AS (DELETE FROM idempotency_keys WHERE created_at < now() - idempotency_ttl() RETURNING 1), "
            "sends AS (DELETE FROM otp_sends WHERE sent_at < now() - interval '1 day' RETURNING 1), "
            "events AS (DELETE FROM stripe_events WHERE received_at < now() - interval '30 days' RETURNING 1) "
            "SELECT (SELECT count(*) FROM idem), (SELECT count(*) FROM sends), (SELECT count(*) FROM events)",
            0);

int upkeep_housekeeping(void)
{
    if (upkeep_redis_ready(now_ms())) {
        int n = queue_reap_consumers(g_worker.consumer, CONSUMER_IDLE_MS);
        if (n == -1)
            upkeep_redis_down();
        else if (n > 0)
            log_info("housekeeping removed %d dead stream consumers", n);
    }
    /* Its deletes may take long on a large backlog (a scan of 24 h of idempotency keys), so they may wait
     * HOUSEKEEPING_ANSWER_MS for an answer; every other statement keeps the 5 s limit, so a hung PostgreSQL holds
     * the loop (transfers, SIGTERM) at most that long. Never the probe of a PostgreSQL that was down. */
    if (upkeep_db_down_now())
        return TIMER_INTERVAL;
    db_set_answer_timeout(HOUSEKEEPING_ANSWER_MS);
    PGresult *res = db_query(&q_housekeeping, NULL);
    db_set_answer_timeout(DB_ANSWER_MS_DEFAULT);
    if (!res) {
        upkeep_db_failed("housekeeping");
        return TIMER_INTERVAL;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "0") || strcmp(PQgetvalue(res, 0, 1), "0") || strcmp(PQgetvalue(res, 0, 2), "0"))
        log_info("housekeeping removed %s idempotency keys, %s OTP send records, %s Stripe event ids",
                 PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
    PQclear(res);
    return TIMER_INTERVAL;
}

/* Lost list-cache invalidations (a FastCGI program could not reach Redis after a change): replay them from the
 * PostgreSQL outbox as soon as Redis answers. Rows stay while Redis is down. The one call into the outbox. */
int upkeep_drain_outbox(void)
{
    int n = outbox_drain(OUTBOX_BATCH);
    if (n == OUTBOX_REDIS_DOWN) {
        upkeep_redis_down();
    } else if (n == OUTBOX_DB_FAILED) {
        upkeep_db_failed("replaying lost cache invalidations");
    } else if (n > 0) {
        upkeep_redis_up();
        log_info("replayed %d lost chatroom-list invalidations", n);
        if (n == OUTBOX_BATCH)
            return TIMER_AGAIN; /* there may be more */
    }
    return TIMER_INTERVAL;
}
