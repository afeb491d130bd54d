/* jobs: the replies this worker holds a lease on, and each one's life.
 *
 *   job_start      load the conversation, start the upstream call (or answer offline at once)
 *   job_call_done  the call ended: finish (store the answer), fail (store the error) or retry later
 *   store          the outcome goes to PostgreSQL (lib/reply); while it is down the job keeps the outcome
 *                  and tries again every STORE_RETRY_MS until its lease ends
 *   retry later    a transient failure: the next attempt is scheduled in the database (next_attempt_at) and
 *                  the lease released, so a crash loses nothing; the sweep takes the reply again when due
 *
 * The stream entry a job came from is acked (XACK + XDEL) only once its outcome is stored. Readers of the
 * reply's event stream (lib/replystream) get its pieces from upstream.c and its end (done / error) from store(),
 * after the outcome is in PostgreSQL. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "metrics.h"
#include "replystream.h"
#include "util.h"
#include "worker.h"

#define STORE_RETRY_MS 1000 /* the database was down when an answer came back: try again this often */

enum job_state { JOB_RUNNING, JOB_STORING };

struct job {
    long long reply_id, chatroom_id, user_id;
    long attempt;                 /* this call's number (attempts after the lease) */
    char stream_id[QUEUE_ID_MAX]; /* "" when the sweep took the reply */
    enum job_state state;
    upstream_call_t *call; /* JOB_RUNNING: the upstream call */
    double started_ms, lease_end_ms, next_store_ms;
    int outcome; /* JOB_STORING: AI_OK (complete) or AI_PERMANENT (fail) */
    char *text;  /* JOB_STORING: the content or the error to store */
    struct job *next;
};

static struct {
    job_t *list;
    long n;
    /* stream entries to ack at the end of this loop turn */
    char (*acks)[QUEUE_ID_MAX];
    int nacks, capacks;
    long long completed, failed, retried;
} J;

/* The conversation up to the reply: the last $3 finished messages before it, oldest first, cut where the
 * newest ones reach $4 bytes (a model turn may hold 2 MiB: twenty of them would make a 40 MB request, held
 * for the whole call by each of WORKER_CONCURRENCY calls). The newest user message, at most 8000 characters,
 * always fits. A user message whose own reply (the next message of the room: the API inserts the two
 * together under the room's lock) failed is left out with it, so one refused or blocked prompt is not sent
 * again with every later one. */
static db_stmt_t q_history =
    DB_STMT("worker_history_capped",
            "SELECT role, content FROM (SELECT m.id, m.role, m.content, "
            "sum(octet_length(m.content)) OVER (ORDER BY m.id DESC ROWS UNBOUNDED PRECEDING) AS upto FROM messages m "
            "WHERE m.chatroom_id = $1 AND m.id < $2 AND m.status = 'completed' AND (m.role <> 'user' OR "
            "(SELECT n.status FROM messages n WHERE n.chatroom_id = $1 AND n.id > m.id ORDER BY n.id LIMIT 1) "
            "IS DISTINCT FROM 'failed') "
            "ORDER BY m.id DESC LIMIT $3) h WHERE upto <= $4::bigint ORDER BY id",
            4);

static uint64_t random64(void)
{
    uint64_t r;
    if (random_bytes(&r, sizeof r) == 0)
        return r;
    return (uint64_t)now_ms() * 2654435761u ^ (uint64_t)getpid();
}

/* ---- acks ---- */

void jobs_ack_later(const char *id)
{
    if (!id || !*id)
        return;
    if (J.nacks == J.capacks) {
        J.capacks = J.capacks ? J.capacks * 2 : 64;
        J.acks = xrealloc(J.acks, (size_t)J.capacks * sizeof *J.acks);
    }
    snprintf(J.acks[J.nacks++], QUEUE_ID_MAX, "%s", id);
}

void jobs_flush_acks(void)
{
    if (!J.nacks)
        return;
    if (!upkeep_redis_ready(now_ms())) {
        J.nacks = 0; /* left pending: XAUTOCLAIM brings them back, the lease check acks them then */
        return;
    }
    const char **ids = xcalloc((size_t)J.nacks, sizeof *ids);
    for (int i = 0; i < J.nacks; i++)
        ids[i] = J.acks[i];
    if (queue_ack(ids, J.nacks) != 0)
        upkeep_redis_down();
    else
        upkeep_redis_up();
    free(ids);
    J.nacks = 0;
}

/* ---- the table ---- */

long jobs_count(void)
{
    return J.n;
}

int jobs_has(long long reply_id)
{
    for (job_t *j = J.list; j; j = j->next)
        if (j->reply_id == reply_id)
            return 1;
    return 0;
}

static void job_free(job_t *j)
{
    if (!j)
        return;
    upstream_call_free(j->call);
    free(j->text);
    free(j);
}

/* Take j out of the table and free it. */
static void job_done(job_t *j)
{
    for (job_t **p = &J.list; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            J.n--;
            break;
        }
    job_free(j);
}

/* ---- outcomes ---- */

/* Store the outcome held in j (JOB_STORING). 0 stored (or nothing left to store), -1 the database is down. */
static int store(job_t *j)
{
    int ok = j->outcome == AI_OK;
    const char *text = j->text;
    int rc = reply_store(j->reply_id, g_worker.consumer, ok, text);
    if (rc == REPLY_DB_DOWN) {
        upkeep_db_down();
        return -1;
    }
    if (rc == REPLY_DB_ERROR) {
        /* not an outage: a statement error would repeat; record the reply as failed instead */
        upkeep_db_failed("storing a reply");
        if (ok) {
            ok = 0;
            text = "could not store the answer";
            rc = reply_store(j->reply_id, g_worker.consumer, 0, text);
        }
        if (rc < 0)
            return 0; /* give up here; the lease ends and the sweep takes the reply again */
    }
    upkeep_db_up();
    /* Readers of the reply's event stream learn that it is stored (they read it from PostgreSQL). Without
     * Redis they find out by reading PostgreSQL themselves. */
    if (rc == REPLY_STORED && upkeep_redis_ready(now_ms()) && replystream_end(j->reply_id, ok) != 0) {
        log_warn("reply %lld: cannot publish its end to its event stream (Redis)", j->reply_id);
        upkeep_redis_down(); /* the next ends and pieces do not wait on it too */
    }
    double ms = now_ms() - j->started_ms;
    if (rc == REPLY_NOT_PENDING)
        log_info("reply %lld is no longer ours (finished elsewhere, deleted, or leased by another worker after "
                 "ours ran out); result dropped",
                 j->reply_id);
    else if (ok) {
        J.completed++;
        metrics_add(METRICS_REPLIES_COMPLETED, 1);
        log_info("reply %lld completed (attempt %ld, %.0f ms)", j->reply_id, j->attempt, ms);
    } else {
        J.failed++;
        metrics_add(METRICS_REPLIES_FAILED, 1);
        log_warn("reply %lld failed (attempt %ld): %s", j->reply_id, j->attempt, text);
    }
    /* The chatroom list shows id, title, timestamps and message_count: the message endpoint already moved
     * updated_at and message_count when it queued this reply, and storing the answer changes none of them,
     * so the cached list ("chatrooms:<user_id>") stays valid and is not deleted here. */
    jobs_ack_later(j->stream_id);
    return 0;
}

/* Record the final outcome of j and store it now, or keep it for a retry while the database is down. */
static void finish(job_t *j, int outcome, const char *text, size_t len)
{
    upstream_call_free(j->call);
    j->call = NULL;
    free(j->text);
    j->text = xstrndup(text, len);
    j->outcome = outcome;
    j->state = JOB_STORING;
    if (store(j) == 0) {
        job_done(j);
        return;
    }
    j->next_store_ms = now_ms() + STORE_RETRY_MS;
}

static void fail_job(job_t *j, const char *error)
{
    finish(j, AI_PERMANENT, error, strlen(error));
}

/* A transient failure: schedule the next attempt in the database and let go of the reply. */
static void retry_later(job_t *j, const ai_result_t *r)
{
    long wait = ai_backoff_ms(j->attempt, r->retry_after_ms, random64());
    if (reply_retry(j->reply_id, wait, g_worker.consumer) != 0) {
        /* the lease runs out by itself and the sweep retries then */
        upkeep_db_failed("scheduling a retry");
    } else {
        upkeep_db_up();
        jobs_ack_later(j->stream_id);
        intake_owe(j->reply_id);
    }
    J.retried++;
    metrics_add(METRICS_REPLIES_RETRIED, 1);
    log_info("reply %lld: %s (attempt %ld of %ld); retry in %ld ms", j->reply_id, r->error, j->attempt,
             g_config.ai_max_attempts, wait);
    job_done(j);
}

void job_call_done(job_t *j, const ai_result_t *r)
{
    if (r->status == AI_OK) {
        if (r->truncated)
            log_info("reply %lld: answer cut at the model's token limit", j->reply_id);
        finish(j, AI_OK, r->text, r->text_len);
    } else if (r->status == AI_PERMANENT) {
        fail_job(j, r->error);
    } else if (j->attempt >= g_config.ai_max_attempts) {
        char msg[AI_ERROR_MAX + 1];
        snprintf(msg, sizeof msg, "%.150s (gave up after %ld attempts)", r->error, j->attempt);
        fail_job(j, msg);
    } else {
        retry_later(j, r);
    }
}

/* ---- start ---- */

void job_start(const reply_lease_t *lease, const char *stream_id)
{
    job_t *j = xcalloc(1, sizeof *j);
    j->reply_id = lease->reply_id;
    j->chatroom_id = lease->chatroom_id;
    j->user_id = lease->user_id;
    j->attempt = lease->attempt;
    snprintf(j->stream_id, sizeof j->stream_id, "%s", stream_id ? stream_id : "");
    j->started_ms = now_ms();
    j->lease_end_ms = j->started_ms + (double)g_worker.lease_ms;
    j->state = JOB_RUNNING;
    j->next = J.list;
    J.list = j;
    J.n++;

    ai_turn_t *turns = NULL;
    PGresult *res = NULL;
    buf_t answer = {0};

    if (j->attempt > g_config.ai_max_attempts) { /* earlier attempts died with their worker */
        char msg[96];
        snprintf(msg, sizeof msg, "gave up after %ld attempts", j->attempt - 1);
        fail_job(j, msg);
        goto out;
    }
    char room[24], rid[24], lim[24];
    snprintf(room, sizeof room, "%lld", j->chatroom_id);
    snprintf(rid, sizeof rid, "%lld", j->reply_id);
    snprintf(lim, sizeof lim, "%ld", g_config.ai_history_messages);
    const char *params[] = {room, rid, lim, AI_HISTORY_MAX_BYTES_S};
    res = db_query(&q_history, params);
    if (!res) {
        upkeep_db_failed("loading the history");
        job_done(j); /* not acked: the lease ends and the sweep (or XAUTOCLAIM) brings it back */
        goto out;
    }
    int n = PQntuples(res);
    turns = xcalloc((size_t)(n ? n : 1), sizeof *turns);
    for (int i = 0; i < n; i++) {
        turns[i].role = strcmp(PQgetvalue(res, i, 0), "model") == 0 ? AI_ROLE_MODEL : AI_ROLE_USER;
        turns[i].text = PQgetvalue(res, i, 1);
        turns[i].len = (size_t)PQgetlength(res, i, 1);
    }
    long long reply_id = j->reply_id;
    switch (upstream_start(j, reply_id, j->attempt > 1, turns, (size_t)n, &j->call, &answer)) {
    case UPSTREAM_STARTED:
        log_debug("reply %lld: calling %s (attempt %ld, %d history messages)", reply_id, upstream_name(), j->attempt,
                  n);
        break;
    case UPSTREAM_ANSWERED: finish(j, AI_OK, answer.data, answer.len); break;
    case UPSTREAM_NOTHING: fail_job(j, "no user message to answer"); break;
    default:
        log_error("reply %lld: cannot start the upstream call", reply_id);
        job_done(j); /* lease runs out; retried later */
        break;
    }
out:
    PQclear(res);
    free(turns);
    buf_free(&answer);
}

/* ---- held-back answers, shutdown ---- */

/* Answers that could not be stored because PostgreSQL was down: try again; past the lease, give up (the
 * reply is still pending, so the sweep takes it again later). */
void jobs_retry_stores(void)
{
    double now = now_ms();
    job_t *j = J.list;
    while (j) {
        job_t *next = j->next;
        if (j->state == JOB_STORING && now >= j->next_store_ms) {
            if (store(j) == 0)
                job_done(j);
            else if (now > j->lease_end_ms) {
                log_warn("reply %lld: answer dropped, database down past the lease; it will be redone", j->reply_id);
                job_done(j);
            } else
                j->next_store_ms = now + STORE_RETRY_MS;
        }
        j = next;
    }
}

double jobs_next_store_at(double until)
{
    for (job_t *j = J.list; j; j = j->next)
        if (j->state == JOB_STORING && j->next_store_ms < until)
            until = j->next_store_ms;
    return until;
}

void jobs_hand_back(void)
{
    int n = 0;
    while (J.list) {
        job_t *j = J.list;
        if (j->state == JOB_STORING) {
            if (store(j) != 0)
                log_warn("reply %lld: answer dropped at shutdown (database down); it will be redone", j->reply_id);
        } else {
            /* an aborted call does not count as an attempt */
            reply_release(j->reply_id, g_worker.consumer, 1);
            n++;
        }
        job_done(j);
    }
    if (n)
        log_info("handed back %d unfinished replies", n);
}

void jobs_totals(long long *completed, long long *failed, long long *retried)
{
    *completed = J.completed;
    *failed = J.failed;
    *retried = J.retried;
}

void jobs_cleanup(void)
{
    free(J.acks);
    J.acks = NULL;
    J.nacks = J.capacks = 0;
}
