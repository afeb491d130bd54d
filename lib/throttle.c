#include "throttle.h"

#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "util.h"

/* The first key of the Argon2 slots' advisory locks (the second is the slot number, 1..N). The two-integer
 * key space does not overlap the one-bigint space schema.sql's lock uses. */
#define HASH_LOCK_CLASS "7240016"
/* About one count in this many (at random, so that it also happens under CGI, one request per process) deletes
 * the rows whose window and block are over. */
#define PURGE_ONE_IN 100

long throttle_block_seconds(const throttle_rule_t *rule, long count, long window_left)
{
    if (count < rule->max)
        return 0;
    if (rule->backoff <= 0)
        return window_left > 0 ? window_left : 1;
    long over = count - rule->max, s = rule->backoff;
    for (long i = 0; i < over && s < rule->backoff_max; i++)
        s *= 2; /* stops at backoff_max, so no overflow */
    return s < rule->backoff_max ? s : rule->backoff_max;
}

long throttle_take(const throttle_rule_t *rule, const char *subject, throttle_claim_t *claim)
{
    /* Counts the event unless the subject is blocked; the first event after a window is over starts a new one.
     * A blocked subject's row is not updated (no row returned), but ON CONFLICT DO UPDATE locks it all the same.
     * Returns the window's count, the seconds it still has to run and its start. */
    static db_stmt_t up = DB_STMT(
        "throttle_take",
        "INSERT INTO auth_throttle AS t (scope, subject, count, window_start) VALUES ($1, $2, 1, now()) "
        "ON CONFLICT (scope, subject) DO UPDATE SET "
        "count = CASE WHEN t.window_start <= now() - make_interval(secs => $3::float8) THEN 1 ELSE t.count + 1 END, "
        "window_start = CASE WHEN t.window_start <= now() - make_interval(secs => $3::float8) THEN now() "
        "ELSE t.window_start END "
        "WHERE t.blocked_until IS NULL OR t.blocked_until <= now() "
        "RETURNING count, GREATEST(1, ceil(extract(epoch FROM t.window_start + make_interval(secs => $3::float8) "
        "- now())))::bigint, window_start::text",
        3);
    static db_stmt_t wait = DB_STMT("throttle_wait",
                                    "SELECT GREATEST(1, ceil(extract(epoch FROM blocked_until - now())))::bigint "
                                    "FROM auth_throttle WHERE scope = $1 AND subject = $2",
                                    2);
    static db_stmt_t block = DB_STMT("throttle_block",
                                     "UPDATE auth_throttle SET blocked_until = now() + make_interval(secs => "
                                     "$3::float8) WHERE scope = $1 AND subject = $2 RETURNING blocked_until::text",
                                     3);
    /* Rows another transaction holds are skipped, not waited for: the caller's transaction holds rows of its
     * own, and two purges each waiting on the other's would be a deadlock. */
    static db_stmt_t purge = DB_STMT("throttle_purge_skip_locked",
                                     "DELETE FROM auth_throttle WHERE (scope, subject) IN (SELECT scope, subject FROM "
                                     "auth_throttle WHERE window_start < now() - make_interval(secs => $1::float8) "
                                     "AND (blocked_until IS NULL OR blocked_until < now()) FOR UPDATE SKIP LOCKED)",
                                     1);
    throttle_claim_t c = {"", ""};
    unsigned int dice = 0;
    char win[24], secs[24];
    PGresult *res = NULL;
    long rc = -1, n, left, s;

    snprintf(win, sizeof win, "%ld", rule->window);
    const char *p[] = {rule->scope, subject, win};
    if (!(res = db_query(&up, p)))
        goto out;
    if (PQntuples(res) != 1) { /* blocked: the row exists, locked */
        PQclear(res);
        if ((res = db_query(&wait, p)) && PQntuples(res) == 1)
            rc = strtol(PQgetvalue(res, 0, 0), NULL, 10);
        goto out;
    }
    n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    left = strtol(PQgetvalue(res, 0, 1), NULL, 10);
    snprintf(c.window_start, sizeof c.window_start, "%s", PQgetvalue(res, 0, 2));
    PQclear(res);
    res = NULL;
    s = throttle_block_seconds(rule, n, left);
    if (s > 0) {
        snprintf(secs, sizeof secs, "%ld", s);
        const char *pb[] = {rule->scope, subject, secs};
        if (!(res = db_query(&block, pb)) || PQntuples(res) != 1)
            goto out;
        snprintf(c.blocked_until, sizeof c.blocked_until, "%s", PQgetvalue(res, 0, 0));
        log_warn("throttle: %s cap reached for %s (%ld in %ld s, limit %ld): blocked for %ld s", rule->scope, subject,
                 n, rule->window, rule->max, s);
    }
    if (random_bytes(&dice, sizeof dice) == 0 && dice % PURGE_ONE_IN == 0) {
        /* Two days: longer than any window (a day at most) plus any block (LOGIN_BACKOFF_MAX_SECONDS <= a day). */
        const char *pp[] = {"172800"};
        PQclear(res);
        if (!(res = db_query(&purge, pp)))
            goto out;
    }
    *claim = c;
    rc = 0;
out:
    PQclear(res);
    return rc;
}

int throttle_release(const throttle_rule_t *rule, const char *subject, const throttle_claim_t *claim)
{
    /* Nothing when the window has restarted since (the event is no longer in the count). */
    static db_stmt_t q = DB_STMT("throttle_release",
                                 "UPDATE auth_throttle SET count = GREATEST(count - 1, 0), blocked_until = CASE WHEN "
                                 "blocked_until = $4::timestamptz THEN NULL ELSE blocked_until END "
                                 "WHERE scope = $1 AND subject = $2 AND window_start = $3::timestamptz",
                                 4);
    const char *p[] = {rule->scope, subject, claim->window_start,
                       claim->blocked_until[0] ? claim->blocked_until : NULL};
    PGresult *res = db_query(&q, p);
    int rc = res ? 0 : -1;

    PQclear(res);
    return rc;
}

int throttle_reset(const throttle_rule_t *rule, const char *subject)
{
    static db_stmt_t q = DB_STMT("throttle_reset", "DELETE FROM auth_throttle WHERE scope = $1 AND subject = $2", 2);
    const char *p[] = {rule->scope, subject};
    PGresult *res = db_query(&q, p);
    int rc = res ? 0 : -1;

    PQclear(res);
    return rc;
}

/* The slot this process holds (its connection holds the lock), 0 none. */
static long held_slot;

#define HASH_WAIT_MS 500
#define HASH_WAIT_STEP_MS 25

int throttle_hash_acquire(void)
{
    /* The Limit stops at the first slot that could be taken, so no second lock is taken by the same query. */
    static db_stmt_t q = DB_STMT(
        "throttle_hash_acquire",
        "SELECT s FROM generate_series(1, $1::int) s WHERE pg_try_advisory_lock(" HASH_LOCK_CLASS ", s) LIMIT 1", 1);
    char n[24];
    PGresult *res;
    int rc = -1;

    if (held_slot > 0)
        return 1;
    snprintf(n, sizeof n, "%ld", g_config.password_hash_concurrency);
    const char *p[] = {n};
    /* A slot freed within HASH_WAIT_MS is taken (a hash lasts ~75 ms): simultaneous logins queue briefly instead
     * of failing; a flood still gets 0 within that bound. */
    for (int tries = 0;; tries++) {
        if (!(res = db_query(&q, p)))
            return -1;
        if (PQntuples(res) == 1) {
            held_slot = strtol(PQgetvalue(res, 0, 0), NULL, 10);
            rc = 1;
        } else {
            rc = 0;
        }
        PQclear(res);
        if (rc == 1 || tries * HASH_WAIT_STEP_MS >= HASH_WAIT_MS)
            return rc;
        sleep_ms(HASH_WAIT_STEP_MS);
    }
}

void throttle_hash_release(void)
{
    static db_stmt_t q = DB_STMT("throttle_hash_release", "SELECT pg_advisory_unlock(" HASH_LOCK_CLASS ", $1::int)", 1);
    char s[24];

    if (held_slot <= 0)
        return;
    snprintf(s, sizeof s, "%ld", held_slot);
    held_slot = 0;
    const char *p[] = {s};
    /* A lost connection released the lock with it; nothing to do then. */
    PQclear(db_query(&q, p));
}
