/* worker: drains the AI reply queue.
 *
 *   worker          run as a daemon until SIGTERM/SIGINT
 *   worker --once   drain what is queued (and what the recovery sweep finds), exit 0 when nothing is left
 *
 * PostgreSQL is the source of truth: a reply is a messages row with status 'pending' (lib/reply). Redis Streams
 * only says "look at reply N soon" (intake.c). A worker leases a reply before it calls upstream (upstream.c),
 * stores the outcome exactly once and only then acks the stream entry (jobs.c). Transient failures are retried
 * with backoff through the database, so a crash loses nothing; recovery (XAUTOCLAIM, the PostgreSQL sweep)
 * runs at start-up and then periodically. Each loop turn also replays chatroom-list invalidations the FastCGI
 * programs could not write to Redis, and housekeeping removes old rows and dead stream consumers (upkeep.c).
 *
 * This file: arguments, signals, setup, and the main loop. The periodic work is a table of timers; the loop
 * runs each one that is due (and whose store is not backing off), then sleeps in curl_multi_poll until the
 * next is due, a transfer needs attention, or MAX_POLL_MS pass (signals are noticed within that).
 */
#include <malloc.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "config.h"
#include "db.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "util.h"
#include "worker.h"

#define LEASE_MARGIN_MS 3000     /* a lease outlives the upstream timeout by this much */
#define MAX_POLL_MS 250          /* longest sleep in curl_multi_poll (signals are noticed within this) */
#define ONCE_DB_GIVE_UP_MS 30000 /* --once: exit 1 when PostgreSQL stays down this long */
#define ONCE_CHECK_MS 200        /* --once: look at the owed retries this often */

struct worker_conf g_worker;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop++;
}

/* ---- the timer table ---- */

#define NEEDS_REDIS 1u /* not while Redis is backing off */
#define NEEDS_GROUP 2u /* only once the consumer group is known to exist */
#define WAKES 4u       /* the loop wakes up for it (while there is room for more jobs) */

struct timer {
    const char *name;
    double interval_ms; /* TIMER_INTERVAL: the next run is this long after this one */
    double next_at;     /* now_ms clock; 0 = due now */
    int (*run)(void);   /* returns an enum timer_next */
    unsigned needs;
};

/* In the order they run each loop turn. All of them wait while PostgreSQL is backing off. */
static struct timer timers[] = {
    {"housekeeping", 60000, 0, upkeep_housekeeping, 0},
    {"recovery sweep", 1000, 0, intake_sweep, WAKES},
    {"stale entries", 0 /* main: from WORKER_RECOVER_SECONDS */, 0, intake_claim_stale,
     NEEDS_REDIS | NEEDS_GROUP | WAKES},
    /* with calls in flight, look for new entries this often; idle, the read blocks in Redis instead */
    {"stream read", 20, 0, intake_read, NEEDS_REDIS | WAKES},
    {"outbox", 100, 0, upkeep_drain_outbox, NEEDS_REDIS},
};
#define NTIMERS (sizeof timers / sizeof timers[0])

static int timer_gated(const struct timer *t, double now)
{
    return ((t->needs & NEEDS_REDIS) && !upkeep_redis_ready(now)) || ((t->needs & NEEDS_GROUP) && !intake_group_ok());
}

static void run_timers(void)
{
    for (size_t i = 0; i < NTIMERS; i++) {
        struct timer *t = &timers[i];
        double now = now_ms();
        if (now < t->next_at || timer_gated(t, now))
            continue;
        switch (t->run()) {
        case TIMER_INTERVAL: t->next_at = now_ms() + t->interval_ms; break;
        case TIMER_AGAIN: t->next_at = 0; break;
        default: break;
        }
    }
}

static double earlier(double a, double b)
{
    return a < b ? a : b;
}

static double later(double a, double b)
{
    return a > b ? a : b;
}

/* When the loop must wake up next (at most MAX_POLL_MS from now). */
static double next_wake(double now, int stopping)
{
    double wake = now + MAX_POLL_MS;
    if (!stopping && jobs_count() < g_worker.concurrency) {
        double redis_gate = upkeep_redis_gate(), db_gate = upkeep_db_gate();
        for (size_t i = 0; i < NTIMERS; i++) {
            const struct timer *t = &timers[i];
            if (!(t->needs & WAKES) || ((t->needs & NEEDS_GROUP) && !intake_group_ok()))
                continue;
            double at = later(t->next_at, db_gate);
            if (t->needs & NEEDS_REDIS)
                at = later(at, redis_gate);
            wake = earlier(wake, at);
        }
    }
    return jobs_next_store_at(wake);
}

/* ---- setup ---- */

static int usage(void)
{
    fprintf(stderr, "usage: worker [--once]\n");
    return 2;
}

static void setup_signals(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

static void setup_identity(void)
{
    char host[64] = "";
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "host");
    snprintf(g_worker.consumer, sizeof g_worker.consumer, "%s:%d", host, (int)getpid());
    g_worker.concurrency = g_config.worker_concurrency;
    g_worker.lease_ms = g_config.ai_timeout_ms + LEASE_MARGIN_MS;
    long claim_interval = g_config.worker_recover_seconds * 500; /* half the recover time, 1..5 s */
    claim_interval = claim_interval < 1000 ? 1000 : claim_interval > 5000 ? 5000 : claim_interval;
    for (size_t i = 0; i < NTIMERS; i++)
        if (timers[i].run == intake_claim_stale)
            timers[i].interval_ms = (double)claim_interval;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--once") == 0)
            g_worker.once = 1;
        else
            return usage();
    }
    config_load_or_die("worker");
    /* A fixed mmap threshold: every block of 128 KiB or more (a long answer, its request, its stream pieces, its
     * row) is mapped and unmapped on free. glibc's default raises the threshold past the largest block freed (up
     * to 32 MiB) and the heap's trim threshold to twice that, so after one 2 MiB answer the next ones came from
     * the heap, and up to 4 MiB of free heap stayed with the daemon whenever no call freed a big buffer last. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    setup_signals();
    setup_identity();
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "worker: curl_global_init failed\n");
        return 1;
    }
    if (upstream_init() != 0)
        return 2;
    db_init(g_config.database_url);
    if (cache_init(g_config.redis_url) != 0) {
        fprintf(stderr, "worker: REDIS_URL is not a valid redis:// or unix:// URL\n");
        return 2;
    }
    intake_init();
    metrics_open(g_config.metrics_dir, "worker", g_worker.once); /* cron runs share one file */
    log_info("worker %s started: concurrency %ld, lease %ld ms, recover after %ld s%s", g_worker.consumer,
             g_worker.concurrency, g_worker.lease_ms, g_config.worker_recover_seconds, g_worker.once ? ", --once" : "");

    int rc = 0;
    double stop_deadline = 0;
    int stopping = 0;
    double last_once_check = 0;
    for (;;) {
        if (upkeep_db_ready(now_ms()))
            health_worker_beat();
        if (g_stop && !stopping) {
            stopping = 1;
            stop_deadline = now_ms() + (double)g_config.worker_grace_seconds * 1000.0;
            log_info("stopping: no new work, %ld replies in flight get %ld s to finish (WORKER_GRACE_SECONDS)",
                     jobs_count(), g_config.worker_grace_seconds);
        }
        if (g_stop > 1)
            stop_deadline = 0; /* a second signal: hand back at once */
        if (stopping && (jobs_count() == 0 || now_ms() >= stop_deadline))
            break;

        upstream_perform();
        jobs_retry_stores();

        if (!stopping) {
            if (g_worker.once && upkeep_db_down_for(now_ms()) > ONCE_DB_GIVE_UP_MS) {
                log_error("--once: PostgreSQL down for %d s; giving up", ONCE_DB_GIVE_UP_MS / 1000);
                rc = 1;
                break;
            }
            if (upkeep_db_ready(now_ms()))
                run_timers();
            jobs_flush_acks();
            if (g_worker.once && jobs_count() == 0 && intake_exhausted() && !upkeep_db_down_now() &&
                now_ms() - last_once_check >= ONCE_CHECK_MS) {
                last_once_check = now_ms();
                if (intake_owed_pending() == 0)
                    break;
            }
        }
        jobs_flush_acks();
        /* A long answer (up to 2 MiB: its response, its stream pieces, its history, the row stored) grows the heap
         * and holes it, and glibc kept all of that: the daemon stayed at 5.6-9.5 MB private after a few hundred
         * replies of 200 KB to 1 MB. libpq's buffers go with the connection that carried such a row (db_trim),
         * the rest back to the system. Only after such a call: malloc_trim walks the whole heap. */
        if (upstream_big_freed() | db_trim())
            malloc_trim(0);

        double now = now_ms();
        double wake = next_wake(now, stopping);
        long timeout = wake > now ? (long)(wake - now) : 0;
        if (timeout > 0 || jobs_count() > 0)
            upstream_wait(timeout);
    }

    jobs_hand_back();
    jobs_flush_acks();
    if (!upkeep_redis_down_now())
        queue_consumer_delete(g_worker.consumer);
    long long completed, failed, retried;
    jobs_totals(&completed, &failed, &retried);
    log_info("worker %s exiting: %lld completed, %lld failed, %lld retries scheduled", g_worker.consumer, completed,
             failed, retried);
    upstream_cleanup();
    curl_global_cleanup();
    jobs_cleanup();
    intake_cleanup();
    db_close();
    cache_close();
    return rc;
}
