/* worker: drains the AI reply queue.
 *
 *   worker          run as a daemon until SIGTERM/SIGINT
 *   worker --once   drain what is queued (and what the recovery sweep finds), exit 0 when nothing is left
 *
 * PostgreSQL is the source of truth: a reply is a messages row with status 'pending'. Redis Streams only says
 * "look at reply N soon". To work on a reply a worker first takes a lease on the row (lease_until, lease_owner,
 * attempts + 1) with a conditional UPDATE, so two workers do not both call upstream for one reply; the answer
 * is stored with UPDATE ... WHERE status = 'pending', so a second result changes nothing (exactly-once effect).
 * The stream entry is acked (XACK + XDEL) only once the outcome is stored.
 *
 * Upstream calls run concurrently (up to WORKER_CONCURRENCY) on one libcurl multi handle in a single thread.
 * Transient failures are retried with backoff through the database (next_attempt_at, lease released), so a
 * crash loses nothing. Recovery, at start-up and then periodically:
 *   - XAUTOCLAIM takes over stream entries another consumer received and never acked (a killed worker);
 *   - the sweep takes (leases) pending replies older than WORKER_RECOVER_SECONDS, or whose retry is due, that
 *     nobody holds a live lease on: lost enqueues, a flushed or restarted Redis, a killed worker's calls
 *     (their lease ends AI_TIMEOUT_MS + LEASE_MARGIN_MS after it was taken). While Redis is unreachable the
 *     sweep takes every pending reply at once (no job can arrive through the stream).
 * Each loop turn also replays chatroom-list invalidations the FastCGI programs could not write to Redis
 * (the PostgreSQL outbox cache_invalidations, see chat_cache_outbox_drain), and housekeeping removes the
 * stream consumers of workers that died without a clean exit.
 */
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "ai.h"
#include "cache.h"
#include "chat.h"
#include "config.h"
#include "db.h"
#include "health.h"
#include "log.h"
#include "queue.h"
#include "util.h"

#define GRACE_MS 10000         /* SIGTERM: in-flight calls get this long to finish */
#define LEASE_MARGIN_MS 3000   /* a lease outlives the upstream timeout by this much */
#define SWEEP_INTERVAL_MS 1000 /* PostgreSQL recovery sweep */
#define IDLE_BLOCK_MS 400      /* XREADGROUP BLOCK when idle; below cache.c's 1 s command timeout */
#define BUSY_READ_MS 20        /* with calls in flight, look for new entries this often */
#define MAX_POLL_MS 250        /* longest sleep in curl_multi_poll (signals are noticed within this) */
#define STORE_RETRY_MS 1000    /* the database was down when an answer came back: try again this often */
#define DOWN_BACKOFF_MIN_MS 500
#define DOWN_BACKOFF_MAX_MS 5000 /* PostgreSQL */
#define REDIS_BACKOFF_MAX_MS                                                                                           \
    1000                       /* Redis is probed at least this often, so lost invalidations are replayed              \
                                  (and the stream is read again) about 1 s after it answers again */
#define OUTBOX_INTERVAL_MS 100 /* lost list-cache invalidations: look at the outbox this often at most */
#define OUTBOX_BATCH 256
#define CONSUMER_IDLE_MS 3600000LL /* housekeeping: a consumer idle this long with nothing pending is dead */
#define ONCE_DB_GIVE_UP_MS 30000   /* --once: exit 1 when PostgreSQL stays down this long */
#define CONNECT_TIMEOUT_MS 10000

enum job_state { JOB_RUNNING, JOB_STORING };

typedef struct job {
    long long reply_id, chatroom_id, user_id;
    long attempt;                 /* this call's number (attempts after the lease) */
    char stream_id[QUEUE_ID_MAX]; /* "" when the sweep took the reply */
    enum job_state state;
    CURL *easy;
    struct curl_slist *headers;
    buf_t body, resp;
    char errbuf[CURL_ERROR_SIZE];
    char retry_after[32];
    double started_ms, lease_end_ms, next_store_ms;
    int outcome; /* JOB_STORING: AI_OK (complete) or AI_PERMANENT (fail) */
    char *text;  /* JOB_STORING: the content or the error to store */
    struct job *next;
} job_t;

static struct {
    enum ai_provider provider;
    const char *model, *key;
    buf_t url, auth;
    char consumer[128]; /* stream consumer and lease owner: host:pid */
    long lease_ms;
    long concurrency;
    int once;
    CURLM *multi;
    job_t *jobs;
    long njobs;
    /* stream entries to ack at the end of this loop turn */
    char (*acks)[QUEUE_ID_MAX];
    int nacks, capacks;
    /* --once: replies this process scheduled for a retry; it waits for them */
    long long *owed;
    size_t nowed, capowed;
    /* Redis / PostgreSQL health, for backing off while one is down */
    double redis_retry_at, db_retry_at;
    long redis_backoff, db_backoff;
    double db_down_since;
    int group_ok;
    double next_read_at, next_sweep_at, next_claim_at, next_housekeeping_at, next_outbox_at;
    char claim_cursor[QUEUE_ID_MAX];
    /* --once bookkeeping: did the last look at each source find anything? */
    int read_empty, claim_empty, sweep_empty;
    long long completed, failed, retried;
} W;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop++;
}

static uint64_t random64(void)
{
    uint64_t r;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) == (ssize_t)sizeof r)
        return r;
    return (uint64_t)now_ms() * 2654435761u ^ (uint64_t)getpid();
}

static void llstr(char out[24], long long v)
{
    snprintf(out, 24, "%lld", v);
}

/* ---- health of the two stores ---- */

static void redis_down(void)
{
    if (!W.redis_backoff)
        log_warn("redis unavailable: taking pending replies from PostgreSQL at once until it is back");
    W.redis_backoff = W.redis_backoff ? W.redis_backoff * 2 : DOWN_BACKOFF_MIN_MS;
    if (W.redis_backoff > REDIS_BACKOFF_MAX_MS)
        W.redis_backoff = REDIS_BACKOFF_MAX_MS;
    W.redis_retry_at = now_ms() + (double)W.redis_backoff;
    W.group_ok = 0;
    W.read_empty = W.claim_empty = 1; /* --once: nothing to get from Redis now; PostgreSQL is still swept */
}

static void redis_up(void)
{
    if (W.redis_backoff)
        log_info("redis is back");
    W.redis_backoff = 0;
}

static void db_down(void)
{
    if (!W.db_backoff) {
        log_warn("postgres unavailable: pausing new work until it is back");
        W.db_down_since = now_ms();
    }
    W.db_backoff = W.db_backoff ? W.db_backoff * 2 : DOWN_BACKOFF_MIN_MS;
    if (W.db_backoff > DOWN_BACKOFF_MAX_MS)
        W.db_backoff = DOWN_BACKOFF_MAX_MS;
    W.db_retry_at = now_ms() + (double)W.db_backoff;
}

static void db_up(void)
{
    if (W.db_backoff)
        log_info("postgres is back");
    W.db_backoff = 0;
    W.db_down_since = 0;
}

/* A NULL result from db_query: note an outage, log anything else. */
static void db_failed(const char *what)
{
    if (db_unavailable())
        db_down();
    else
        log_error("%s failed (sqlstate %s)", what, db_sqlstate());
}

/* ---- acks ---- */

static void ack_later(const char *id)
{
    if (!id || !*id)
        return;
    if (W.nacks == W.capacks) {
        W.capacks = W.capacks ? W.capacks * 2 : 64;
        W.acks = xrealloc(W.acks, (size_t)W.capacks * sizeof *W.acks);
    }
    snprintf(W.acks[W.nacks++], QUEUE_ID_MAX, "%s", id);
}

static void flush_acks(void)
{
    if (!W.nacks)
        return;
    if (W.redis_backoff && now_ms() < W.redis_retry_at) {
        W.nacks = 0; /* left pending: XAUTOCLAIM brings them back, the lease check acks them then */
        return;
    }
    const char **ids = xcalloc((size_t)W.nacks, sizeof *ids);
    for (int i = 0; i < W.nacks; i++)
        ids[i] = W.acks[i];
    if (queue_ack(ids, W.nacks) != 0)
        redis_down();
    else
        redis_up();
    free(ids);
    W.nacks = 0;
}

/* ---- SQL ---- */

#define CLAIM_SET                                                                                                      \
    "lease_until = now() + $2::bigint * interval '1 millisecond', lease_owner = $3, attempts = m.attempts + 1"
#define CLAIMABLE                                                                                                      \
    "status = 'pending' AND role = 'model' AND (lease_until IS NULL OR lease_until < now()) "                          \
    "AND (next_attempt_at IS NULL OR next_attempt_at <= now())"

/* Lease the given replies ($1 an array literal) that nobody else holds. SKIP LOCKED: a row another worker is
 * claiming right now is theirs. */
static db_stmt_t q_claim = DB_STMT("worker_claim",
                                   "UPDATE messages m SET " CLAIM_SET " FROM (SELECT id FROM messages WHERE id = "
                                   "ANY($1::bigint[]) AND " CLAIMABLE " FOR UPDATE SKIP LOCKED) c "
                                   "WHERE m.id = c.id RETURNING m.id, m.chatroom_id, m.user_id, m.attempts",
                                   3);

/* The recovery sweep: pending replies older than $1 seconds or with a retry due, unleased, oldest first. $1 is
 * 0 while Redis is down: then no job can come through the stream, so every pending reply is taken at once
 * (still under a lease, so two workers never take the same reply). */
static db_stmt_t q_sweep =
    DB_STMT("worker_sweep",
            "UPDATE messages m SET " CLAIM_SET " FROM (SELECT id FROM messages WHERE " CLAIMABLE
            " AND (created_at < now() - $1::bigint * interval '1 second' OR next_attempt_at IS NOT NULL) "
            "ORDER BY created_at LIMIT $4 FOR UPDATE SKIP LOCKED) c "
            "WHERE m.id = c.id RETURNING m.id, m.chatroom_id, m.user_id, m.attempts",
            4);

/* The conversation up to the reply: the last $3 finished messages before it, oldest first. A user message
 * whose own reply (the next message of the room: the API inserts the two together under the room's lock)
 * failed is left out with it, so one refused or blocked prompt is not sent again with every later one. */
static db_stmt_t q_history =
    DB_STMT("worker_history",
            "SELECT role, content FROM (SELECT m.id, m.role, m.content FROM messages m "
            "WHERE m.chatroom_id = $1 AND m.id < $2 AND m.status = 'completed' AND (m.role <> 'user' OR "
            "(SELECT n.status FROM messages n WHERE n.chatroom_id = $1 AND n.id > m.id ORDER BY n.id LIMIT 1) "
            "IS DISTINCT FROM 'failed') "
            "ORDER BY m.id DESC LIMIT $3) h ORDER BY id",
            3);

static db_stmt_t q_complete = DB_STMT("worker_complete",
                                      "UPDATE messages SET status = 'completed', content = $2, error = NULL, "
                                      "completed_at = now(), next_attempt_at = NULL, lease_until = NULL, "
                                      "lease_owner = NULL WHERE id = $1 AND status = 'pending'",
                                      2);

static db_stmt_t q_fail = DB_STMT("worker_fail",
                                  "UPDATE messages SET status = 'failed', error = $2, completed_at = now(), "
                                  "next_attempt_at = NULL, lease_until = NULL, lease_owner = NULL "
                                  "WHERE id = $1 AND status = 'pending'",
                                  2);

/* Transient failure: hand the reply back to the database with its retry time. */
static db_stmt_t q_retry = DB_STMT("worker_retry",
                                   "UPDATE messages SET next_attempt_at = now() + $2::bigint * interval "
                                   "'1 millisecond', lease_until = NULL, lease_owner = NULL "
                                   "WHERE id = $1 AND status = 'pending' AND lease_owner = $3",
                                   3);

/* Shutdown: give the lease back; an aborted call does not count as an attempt ($3 = 1). */
static db_stmt_t q_release = DB_STMT("worker_release",
                                     "UPDATE messages SET lease_until = NULL, lease_owner = NULL, "
                                     "attempts = greatest(attempts - $3::int, 0) "
                                     "WHERE id = $1 AND status = 'pending' AND lease_owner = $2",
                                     3);

static db_stmt_t q_owed =
    DB_STMT("worker_owed", "SELECT count(*) FROM messages WHERE id = ANY($1::bigint[]) AND status = 'pending'", 1);

/* ---- jobs ---- */

static job_t *find_job(long long reply_id)
{
    for (job_t *j = W.jobs; j; j = j->next)
        if (j->reply_id == reply_id)
            return j;
    return NULL;
}

static void job_free(job_t *j)
{
    if (!j)
        return;
    if (j->easy) {
        curl_multi_remove_handle(W.multi, j->easy);
        curl_easy_cleanup(j->easy);
    }
    curl_slist_free_all(j->headers);
    buf_free(&j->body);
    buf_free(&j->resp);
    free(j->text);
    free(j);
}

static void job_unlink(job_t *j)
{
    for (job_t **p = &W.jobs; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            W.njobs--;
            return;
        }
}

static void job_done(job_t *j)
{
    job_unlink(j);
    job_free(j);
}

static void owe(long long reply_id)
{
    if (!W.once)
        return;
    if (W.nowed == W.capowed) {
        W.capowed = W.capowed ? W.capowed * 2 : 64;
        W.owed = xrealloc(W.owed, W.capowed * sizeof *W.owed);
    }
    W.owed[W.nowed++] = reply_id;
}

/* Store the outcome held in j (JOB_STORING). 0 stored (or nothing left to store), -1 the database is down. */
static int store(job_t *j)
{
    char id[24];
    llstr(id, j->reply_id);
    const char *params[] = {id, j->text};
    PGresult *res = db_query(j->outcome == AI_OK ? &q_complete : &q_fail, params);
    if (!res) {
        if (db_unavailable()) {
            db_down();
            return -1;
        }
        /* not an outage: a statement error would repeat; record the reply as failed instead */
        db_failed("storing a reply");
        if (j->outcome == AI_OK) {
            const char *fp[] = {id, "could not store the answer"};
            res = db_query(&q_fail, fp);
        }
        if (!res)
            return 0; /* give up here; the lease ends and the sweep takes the reply again */
    }
    db_up();
    int changed = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    double ms = now_ms() - j->started_ms;
    if (!changed)
        log_info("reply %lld is no longer pending (finished elsewhere or deleted); result dropped", j->reply_id);
    else if (j->outcome == AI_OK) {
        W.completed++;
        log_info("reply %lld completed (attempt %ld, %.0f ms)", j->reply_id, j->attempt, ms);
    } else {
        W.failed++;
        log_warn("reply %lld failed (attempt %ld): %s", j->reply_id, j->attempt, j->text);
    }
    /* The chatroom list shows id, title, timestamps and message_count: the message endpoint already moved
     * updated_at and message_count when it queued this reply, and storing the answer changes none of them,
     * so the cached list ("chatrooms:<user_id>") stays valid and is not deleted here. */
    ack_later(j->stream_id);
    return 0;
}

/* Record the final outcome of j and store it now, or keep it for a retry while the database is down. */
static void finish(job_t *j, int outcome, const char *text, size_t len)
{
    if (j->easy) {
        curl_multi_remove_handle(W.multi, j->easy);
        curl_easy_cleanup(j->easy);
        j->easy = NULL;
    }
    buf_free(&j->body);
    buf_free(&j->resp);
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
    char id[24], delay[24];
    long wait = ai_backoff_ms(j->attempt, r->retry_after_ms, random64());
    llstr(id, j->reply_id);
    snprintf(delay, sizeof delay, "%ld", wait);
    const char *params[] = {id, delay, W.consumer};
    PGresult *res = db_query(&q_retry, params);
    if (!res) {
        /* the lease runs out by itself and the sweep retries then */
        db_failed("scheduling a retry");
    } else {
        db_up();
        PQclear(res);
        ack_later(j->stream_id);
        owe(j->reply_id);
    }
    W.retried++;
    log_info("reply %lld: %s (attempt %ld of %ld); retry in %ld ms", j->reply_id, r->error, j->attempt,
             g_config.ai_max_attempts, wait);
    job_done(j);
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    job_t *j = arg;
    size_t len = size * n;
    if (len > AI_MAX_RESPONSE_BYTES - j->resp.len)
        return 0; /* over the ceiling: curl stops with CURLE_WRITE_ERROR */
    buf_append(&j->resp, data, len);
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    job_t *j = arg;
    size_t len = size * n;
    if (len >= 12 && strncasecmp(data, "retry-after:", 12) == 0) {
        size_t v = len - 12;
        if (v >= sizeof j->retry_after)
            v = sizeof j->retry_after - 1;
        memcpy(j->retry_after, data + 12, v);
        j->retry_after[v] = '\0';
    } else if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        j->retry_after[0] = '\0'; /* a new response (after a 100 Continue) */
    }
    return len;
}

static int start_call(job_t *j)
{
    CURL *e = curl_easy_init();
    if (!e)
        return -1;
    j->easy = e;
    j->headers = curl_slist_append(j->headers, "Content-Type: application/json");
    j->headers = curl_slist_append(j->headers, "Expect:");
    if (W.auth.len)
        j->headers = curl_slist_append(j->headers, W.auth.data);
    curl_easy_setopt(e, CURLOPT_URL, W.url.data);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->body.data);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->body.len);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, g_config.ai_timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     g_config.ai_timeout_ms < CONNECT_TIMEOUT_MS ? g_config.ai_timeout_ms : CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, j);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* gzip etc.; the ceiling applies to the decoded body */
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "gemini-backend-worker/1");
    curl_easy_setopt(e, CURLOPT_PRIVATE, j);
    j->errbuf[0] = '\0';
    if (curl_multi_add_handle(W.multi, e) != CURLM_OK)
        return -1;
    return 0;
}

/* Load the history of a leased reply and start its upstream call (or answer offline at once). */
static void start_job(long long reply_id, long long chatroom_id, long long user_id, long attempt, const char *stream_id)
{
    job_t *j = xcalloc(1, sizeof *j);
    j->reply_id = reply_id;
    j->chatroom_id = chatroom_id;
    j->user_id = user_id;
    j->attempt = attempt;
    snprintf(j->stream_id, sizeof j->stream_id, "%s", stream_id ? stream_id : "");
    j->started_ms = now_ms();
    j->lease_end_ms = j->started_ms + (double)W.lease_ms;
    j->state = JOB_RUNNING;
    j->next = W.jobs;
    W.jobs = j;
    W.njobs++;

    ai_turn_t *turns = NULL;
    PGresult *res = NULL;
    buf_t offline = {0};

    if (attempt > g_config.ai_max_attempts) { /* earlier attempts died with their worker */
        char msg[96];
        snprintf(msg, sizeof msg, "gave up after %ld attempts", attempt - 1);
        fail_job(j, msg);
        goto out;
    }
    char room[24], rid[24], lim[24];
    llstr(room, chatroom_id);
    llstr(rid, reply_id);
    snprintf(lim, sizeof lim, "%ld", g_config.ai_history_messages);
    const char *params[] = {room, rid, lim};
    res = db_query(&q_history, params);
    if (!res) {
        db_failed("loading the history");
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
    if (W.provider == AI_PROVIDER_OFFLINE) {
        ai_turn_t *norm = xcalloc((size_t)(n ? n : 1), sizeof *norm);
        size_t k = 0;
        if (ai_normalise(turns, (size_t)n, norm, &k) == 0) {
            ai_offline_reply(norm, k, &offline);
            finish(j, AI_OK, offline.data, offline.len);
        } else {
            fail_job(j, "no user message to answer");
        }
        free(norm);
        goto out;
    }
    if (ai_build_request(W.provider, turns, (size_t)n, g_config.ai_system_prompt, W.model, &j->body) != 0) {
        fail_job(j, "no user message to answer");
        goto out;
    }
    if (start_call(j) != 0) {
        log_error("reply %lld: cannot start the upstream call", reply_id);
        job_done(j); /* lease runs out; retried later */
        goto out;
    }
    log_debug("reply %lld: calling %s (attempt %ld, %d history messages)", reply_id, ai_provider_name(W.provider),
              attempt, n);
out:
    PQclear(res);
    free(turns);
    buf_free(&offline);
}

/* Start every leased row of a claim/sweep result. For stream entries (entries != NULL), each row gets its
 * entry's id, and claimed[k] is set for the entries that were leased. */
static void start_claimed(PGresult *res, const queue_entry_t *entries, int *claimed, int nentries)
{
    for (int i = 0; i < PQntuples(res); i++) {
        long long id = 0, room = 0, user = 0, attempts = 0;
        if (parse_ll(PQgetvalue(res, i, 0), 1, INT64_MAX, &id) != 0 ||
            parse_ll(PQgetvalue(res, i, 1), 1, INT64_MAX, &room) != 0 ||
            parse_ll(PQgetvalue(res, i, 2), 1, INT64_MAX, &user) != 0 ||
            parse_ll(PQgetvalue(res, i, 3), 0, INT32_MAX, &attempts) != 0)
            continue;
        const char *sid = NULL;
        for (int k = 0; entries && k < nentries; k++)
            if (entries[k].reply_id == id && !claimed[k]) {
                claimed[k] = 1;
                sid = entries[k].id;
                break;
            }
        start_job(id, room, user, (long)attempts, sid);
    }
}

/* Entries from the stream: lease what can be leased and start it. The others are acked: finished, deleted,
 * already running here, held by another worker's live lease, or waiting for a scheduled retry (the database
 * brings those back by itself through the sweep). */
static void take_entries(queue_entry_t *e, int n)
{
    if (n <= 0)
        return;
    int *wanted = xcalloc((size_t)n, sizeof *wanted);
    int *claimed = xcalloc((size_t)n, sizeof *claimed);
    buf_t arr = {0};
    int want = 0;
    PGresult *res = NULL;
    buf_puts(&arr, "{");
    for (int i = 0; i < n; i++) {
        if (e[i].reply_id <= 0) {
            log_warn("queue entry %s has no valid reply_id; dropped", e[i].id);
            ack_later(e[i].id);
            continue;
        }
        int dup = find_job(e[i].reply_id) != NULL;
        for (int k = 0; k < i && !dup; k++)
            dup = wanted[k] && e[k].reply_id == e[i].reply_id;
        if (dup) { /* already being worked on here: that job acks its own entry */
            ack_later(e[i].id);
            continue;
        }
        wanted[i] = 1;
        buf_printf(&arr, "%s%lld", want ? "," : "", e[i].reply_id);
        want++;
    }
    buf_puts(&arr, "}");
    if (!want)
        goto out;
    char lease[24];
    snprintf(lease, sizeof lease, "%ld", W.lease_ms);
    const char *params[] = {arr.data, lease, W.consumer};
    res = db_query(&q_claim, params);
    if (!res) {
        db_failed("claiming replies");
        goto out; /* not acked: they stay pending in the stream and come back through XAUTOCLAIM */
    }
    db_up();
    start_claimed(res, e, claimed, n);
    for (int i = 0; i < n; i++)
        if (wanted[i] && !claimed[i])
            ack_later(e[i].id);
out:
    PQclear(res);
    buf_free(&arr);
    free(wanted);
    free(claimed);
}

static long free_slots(void)
{
    return W.concurrency - W.njobs;
}

static void read_stream(int allow_block)
{
    double now = now_ms();
    long room = free_slots();
    if (room <= 0 || now < W.next_read_at || (W.redis_backoff && now < W.redis_retry_at))
        return;
    if (!W.group_ok) {
        if (queue_group_create() != 0) {
            redis_down();
            return;
        }
        W.group_ok = 1;
        redis_up();
    }
    int max = room > 512 ? 512 : (int)room;
    queue_entry_t *e = xcalloc((size_t)max, sizeof *e);
    int n = queue_read(W.consumer, max, allow_block ? IDLE_BLOCK_MS : 0, e);
    if (n == QUEUE_NOGROUP) {
        log_warn("queue: consumer group missing (Redis flushed or restarted?); recreating it");
        W.group_ok = 0;
        W.next_read_at = 0;
    } else if (n < 0) {
        redis_down();
        W.read_empty = 1; /* --once: nothing readable; PostgreSQL still gets swept */
    } else {
        redis_up();
        W.read_empty = n == 0;
        take_entries(e, n);
        /* a full batch: more may be waiting, read again at once */
        W.next_read_at = n == max ? 0 : now_ms() + (W.njobs || !allow_block ? BUSY_READ_MS : 0);
    }
    free(e);
}

static void claim_stale(void)
{
    double now = now_ms();
    long room = free_slots();
    if (room <= 0 || now < W.next_claim_at || (W.redis_backoff && now < W.redis_retry_at) || !W.group_ok)
        return;
    long interval = g_config.worker_recover_seconds * 500; /* half the recover time, 1..5 s */
    interval = interval < 1000 ? 1000 : interval > 5000 ? 5000 : interval;
    int max = room > 256 ? 256 : (int)room;
    queue_entry_t *e = xcalloc((size_t)max, sizeof *e);
    int n = queue_claim_stale(W.consumer, g_config.worker_recover_seconds * 1000, W.claim_cursor, max, e);
    if (n == QUEUE_NOGROUP) {
        W.group_ok = 0;
    } else if (n < 0) {
        redis_down();
        W.claim_empty = 1;
    } else {
        redis_up();
        if (n)
            log_info("took over %d unacknowledged queue entries", n);
        take_entries(e, n);
        int done = strcmp(W.claim_cursor, "0-0") == 0;
        W.claim_empty = n == 0 && done;
        /* more to scan: continue next turn; else wait for the next round */
        W.next_claim_at = done ? now_ms() + (double)interval : 0;
    }
    if (n < 0 || n == QUEUE_NOGROUP)
        W.next_claim_at = now_ms() + (double)interval;
    free(e);
}

/* Housekeeping, once a minute: rows that only matter for a bounded time. Idempotency keys are replayed
 * for 24 h, OTP sends count for an hour; Stripe event ids are kept 30 days, far past Stripe's 3-day retries.
 * And the stream consumers of workers that died without a clean exit (SIGKILL, a lost machine): idle for over
 * an hour with nothing pending (a live worker reads every second; entries a dead one held are taken over by
 * XAUTOCLAIM first, and until then it keeps them and is kept). */
#define HOUSEKEEPING_INTERVAL_MS 60000.0
static db_stmt_t q_housekeeping =
    DB_STMT("worker_housekeeping",
            "WITH idem AS (DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours' RETURNING 1), "
            "sends AS (DELETE FROM otp_sends WHERE sent_at < now() - interval '1 day' RETURNING 1), "
            "events AS (DELETE FROM stripe_events WHERE received_at < now() - interval '30 days' RETURNING 1) "
            "SELECT (SELECT count(*) FROM idem), (SELECT count(*) FROM sends), (SELECT count(*) FROM events)",
            0);

static void housekeeping(void)
{
    double now = now_ms();
    if (now < W.next_housekeeping_at)
        return;
    W.next_housekeeping_at = now + HOUSEKEEPING_INTERVAL_MS;
    if (!W.redis_backoff || now >= W.redis_retry_at) {
        int n = queue_reap_consumers(W.consumer, CONSUMER_IDLE_MS);
        if (n == -1)
            redis_down();
        else if (n > 0)
            log_info("housekeeping removed %d dead stream consumers", n);
    }
    PGresult *res = db_query(&q_housekeeping, NULL);
    if (!res) {
        db_failed("housekeeping");
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "0") || strcmp(PQgetvalue(res, 0, 1), "0") || strcmp(PQgetvalue(res, 0, 2), "0"))
        log_info("housekeeping removed %s idempotency keys, %s OTP send records, %s Stripe event ids",
                 PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
    PQclear(res);
}

/* Lost list-cache invalidations (a FastCGI program could not reach Redis after a change): replay them from the
 * PostgreSQL outbox as soon as Redis answers. Rows stay while Redis is down. */
static void drain_outbox(void)
{
    double now = now_ms();
    if (now < W.next_outbox_at || (W.redis_backoff && now < W.redis_retry_at))
        return;
    W.next_outbox_at = now + OUTBOX_INTERVAL_MS;
    int n = chat_cache_outbox_drain(OUTBOX_BATCH);
    if (n == CHAT_OUTBOX_REDIS_DOWN) {
        redis_down();
    } else if (n == CHAT_OUTBOX_DB_FAILED) {
        db_failed("replaying lost cache invalidations");
    } else if (n > 0) {
        redis_up();
        log_info("replayed %d lost chatroom-list invalidations", n);
        if (n == OUTBOX_BATCH)
            W.next_outbox_at = 0; /* there may be more */
    }
}

static void sweep(void)
{
    double now = now_ms();
    long room = free_slots();
    if (room <= 0 || now < W.next_sweep_at)
        return;
    W.next_sweep_at = now + SWEEP_INTERVAL_MS;
    char secs[24], lease[24], lim[24];
    snprintf(secs, sizeof secs, "%ld", W.redis_backoff ? 0L : g_config.worker_recover_seconds);
    snprintf(lease, sizeof lease, "%ld", W.lease_ms);
    snprintf(lim, sizeof lim, "%ld", room > 512 ? 512L : room);
    const char *params[] = {secs, lease, W.consumer, lim};
    PGresult *res = db_query(&q_sweep, params);
    if (!res) {
        db_failed("the recovery sweep");
        W.sweep_empty = 0;
        return;
    }
    db_up();
    int n = PQntuples(res);
    W.sweep_empty = n == 0;
    if (n) {
        log_info("recovery sweep took %d pending replies", n);
        W.next_sweep_at = 0; /* there may be more */
    }
    start_claimed(res, NULL, NULL, 0);
    PQclear(res);
}

/* An upstream call finished: classify, then complete, fail or schedule a retry. */
static void call_done(job_t *j, CURLcode code)
{
    ai_result_t r;
    if (code != CURLE_OK) {
        ai_transport_error((int)code, &r);
        log_warn("reply %lld: %s: %s", j->reply_id, r.error, j->errbuf[0] ? j->errbuf : r.detail);
    } else {
        long status = 0;
        curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
        ai_parse_response(W.provider, status, j->resp.data, j->resp.len, j->retry_after[0] ? j->retry_after : NULL, &r);
        if (r.status != AI_OK)
            log_warn("reply %lld: %s%s%s", j->reply_id, r.error, r.detail[0] ? ": " : "", r.detail);
    }
    if (r.status == AI_OK) {
        if (r.truncated)
            log_info("reply %lld: answer cut at the model's token limit", j->reply_id);
        finish(j, AI_OK, r.text, r.text_len);
    } else if (r.status == AI_PERMANENT) {
        fail_job(j, r.error);
    } else if (j->attempt >= g_config.ai_max_attempts) {
        char msg[AI_ERROR_MAX + 1];
        snprintf(msg, sizeof msg, "%.150s (gave up after %ld attempts)", r.error, j->attempt);
        fail_job(j, msg);
    } else {
        retry_later(j, &r);
    }
    ai_result_free(&r);
}

static void reap_calls(void)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(W.multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        job_t *j = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
        if (j)
            call_done(j, m->data.result);
    }
}

/* Answers that could not be stored because PostgreSQL was down: try again; past the lease, give up (the
 * reply is still pending, so the sweep takes it again later). */
static void retry_stores(void)
{
    double now = now_ms();
    job_t *j = W.jobs;
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

/* Shutdown past the grace period: abort what is still running and give the leases back. */
static void hand_back(void)
{
    int n = 0;
    while (W.jobs) {
        job_t *j = W.jobs;
        if (j->state == JOB_STORING) {
            if (store(j) != 0)
                log_warn("reply %lld: answer dropped at shutdown (database down); it will be redone", j->reply_id);
        } else {
            char id[24];
            llstr(id, j->reply_id);
            const char *params[] = {id, W.consumer, "1"};
            PGresult *res = db_query(&q_release, params);
            PQclear(res);
            n++;
        }
        job_done(j);
    }
    if (n)
        log_info("handed back %d unfinished replies", n);
}

/* --once: are retries this process scheduled still pending? 1 yes, 0 no, -1 unknown (database down). */
static int owed_pending(void)
{
    if (!W.nowed)
        return 0;
    buf_t arr = {0};
    buf_puts(&arr, "{");
    for (size_t i = 0; i < W.nowed; i++)
        buf_printf(&arr, "%s%lld", i ? "," : "", W.owed[i]);
    buf_puts(&arr, "}");
    const char *params[] = {arr.data};
    PGresult *res = db_query(&q_owed, params);
    buf_free(&arr);
    if (!res) {
        db_failed("checking scheduled retries");
        return -1;
    }
    int pending = strcmp(PQgetvalue(res, 0, 0), "0") != 0;
    PQclear(res);
    if (!pending)
        W.nowed = 0;
    return pending;
}

static void setup_provider(void)
{
    int p = ai_provider_parse(g_config.ai_provider);
    if (p < 0) {
        fprintf(stderr, "worker: AI_PROVIDER must be gemini, openai or offline\n");
        exit(2);
    }
    W.provider = (enum ai_provider)p;
    if (W.provider == AI_PROVIDER_OFFLINE) {
        log_info("AI provider: offline (answers are a labelled local stand-in)");
        return;
    }
    const char *base = W.provider == AI_PROVIDER_GEMINI ? g_config.gemini_api_base : g_config.openai_api_base;
    W.model = W.provider == AI_PROVIDER_GEMINI ? g_config.gemini_model : g_config.openai_model;
    W.key = W.provider == AI_PROVIDER_GEMINI ? g_config.gemini_api_key : g_config.openai_api_key;
    if (W.provider == AI_PROVIDER_OPENAI && !W.model) {
        /* Chat completions servers (OpenAI, Groq, Ollama) refuse a request without "model": every reply would
         * fail with a 400. */
        fprintf(stderr, "worker: configuration error: AI_PROVIDER=openai needs OPENAI_MODEL (the model every "
                        "request names, e.g. gpt-4o-mini or llama-3.1-8b-instant)\n");
        exit(2);
    }
    if (ai_build_url(W.provider, base, W.model, &W.url) != 0) {
        fprintf(stderr, "worker: cannot build the %s URL: check %s and the model name\n", ai_provider_name(W.provider),
                W.provider == AI_PROVIDER_GEMINI ? "GEMINI_API_BASE" : "OPENAI_API_BASE");
        exit(2);
    }
    if (ai_auth_header(W.provider, W.key, &W.auth) < 0) {
        fprintf(stderr, "worker: the %s API key holds spaces or control characters\n", ai_provider_name(W.provider));
        exit(2);
    }
    log_info("AI provider: %s at %s (model %s)", ai_provider_name(W.provider), W.url.data, W.model ? W.model : "-");
}

static double earlier(double a, double b)
{
    return a < b ? a : b;
}

static double later(double a, double b)
{
    return a > b ? a : b;
}

static int usage(void)
{
    fprintf(stderr, "usage: worker [--once]\n");
    return 2;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--once") == 0)
            W.once = 1;
        else
            return usage();
    }
    config_load_or_die("worker");
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "worker: curl_global_init failed\n");
        return 1;
    }
    setup_provider();
    db_init(g_config.database_url);
    if (cache_init(g_config.redis_url) != 0) {
        fprintf(stderr, "worker: REDIS_URL is not a valid redis:// or unix:// URL\n");
        return 2;
    }
    char host[64] = "";
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "host");
    snprintf(W.consumer, sizeof W.consumer, "%s:%d", host, (int)getpid());
    W.concurrency = g_config.worker_concurrency;
    W.lease_ms = g_config.ai_timeout_ms + LEASE_MARGIN_MS;
    snprintf(W.claim_cursor, sizeof W.claim_cursor, "0-0");
    W.multi = curl_multi_init();
    curl_multi_setopt(W.multi, CURLMOPT_MAXCONNECTS, W.concurrency);
    log_info("worker %s started: concurrency %ld, lease %ld ms, recover after %ld s%s", W.consumer, W.concurrency,
             W.lease_ms, g_config.worker_recover_seconds, W.once ? ", --once" : "");

    int rc = 0;
    double stop_deadline = 0;
    int stopping = 0;
    double last_once_check = 0;
    for (;;) {
        health_worker_beat();
        if (g_stop && !stopping) {
            stopping = 1;
            stop_deadline = now_ms() + GRACE_MS;
            log_info("stopping: no new work, %ld replies in flight get %d s to finish", W.njobs, GRACE_MS / 1000);
        }
        if (g_stop > 1)
            stop_deadline = 0; /* a second signal: hand back at once */
        if (stopping && (W.njobs == 0 || now_ms() >= stop_deadline))
            break;

        int running = 0;
        curl_multi_perform(W.multi, &running);
        reap_calls();
        retry_stores();

        if (!stopping) {
            int db_ok = !W.db_backoff || now_ms() >= W.db_retry_at;
            if (W.once && W.db_backoff && now_ms() - W.db_down_since > ONCE_DB_GIVE_UP_MS) {
                log_error("--once: PostgreSQL down for %d s; giving up", ONCE_DB_GIVE_UP_MS / 1000);
                rc = 1;
                break;
            }
            if (db_ok) {
                housekeeping();
                sweep();
                claim_stale();
                /* block in Redis only when there is nothing else to wait for */
                read_stream(!W.once && W.njobs == 0);
                drain_outbox();
            }
            flush_acks();
            if (W.once && W.njobs == 0 && W.read_empty && W.claim_empty && W.sweep_empty && !W.db_backoff &&
                now_ms() - last_once_check >= 200) {
                last_once_check = now_ms();
                if (owed_pending() == 0)
                    break;
            }
        }
        flush_acks();

        double now = now_ms();
        double wake = now + MAX_POLL_MS;
        if (!stopping && W.njobs < W.concurrency) {
            double redis_gate = W.redis_backoff ? W.redis_retry_at : 0;
            double db_gate = W.db_backoff ? W.db_retry_at : 0;
            wake = earlier(wake, later(later(W.next_read_at, redis_gate), db_gate));
            wake = earlier(wake, later(W.next_sweep_at, db_gate));
            if (W.group_ok)
                wake = earlier(wake, later(later(W.next_claim_at, redis_gate), db_gate));
        }
        for (job_t *j = W.jobs; j; j = j->next)
            if (j->state == JOB_STORING && j->next_store_ms < wake)
                wake = j->next_store_ms;
        long timeout = wake > now ? (long)(wake - now) : 0;
        if (timeout > 0 || W.njobs > 0)
            curl_multi_poll(W.multi, NULL, 0, (int)timeout, NULL);
    }

    hand_back();
    flush_acks();
    if (!W.redis_backoff)
        queue_consumer_delete(W.consumer);
    log_info("worker %s exiting: %lld completed, %lld failed, %lld retries scheduled", W.consumer, W.completed,
             W.failed, W.retried);
    curl_multi_cleanup(W.multi);
    curl_global_cleanup();
    buf_free(&W.url);
    buf_free(&W.auth);
    free(W.acks);
    free(W.owed);
    db_close();
    cache_close();
    return rc;
}
