/* reply: the statements that lease, finish, reschedule and release AI reply rows (see reply.h). */
#include "reply.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "util.h"

#define CLAIM_SET                                                                                                      \
    "lease_until = now() + $2::bigint * interval '1 millisecond', lease_owner = $3, attempts = m.attempts + 1"
#define CLAIMABLE                                                                                                      \
    "status = 'pending' AND role = 'model' AND (lease_until IS NULL OR lease_until < now()) "                          \
    "AND (next_attempt_at IS NULL OR next_attempt_at <= now())"

/* Lease the given replies ($1 an array literal) that nobody else holds. SKIP LOCKED: a row another worker is
 * claiming right now is theirs. */
static db_stmt_t q_claim = DB_STMT("reply_claim",
                                   "UPDATE messages m SET " CLAIM_SET " FROM (SELECT id FROM messages WHERE id = "
                                   "ANY($1::bigint[]) AND " CLAIMABLE " FOR UPDATE SKIP LOCKED) c "
                                   "WHERE m.id = c.id RETURNING m.id, m.chatroom_id, m.user_id, m.attempts",
                                   3);

/* The recovery sweep: pending replies older than $1 seconds or with a retry due, unleased, oldest first. */
static db_stmt_t q_sweep =
    DB_STMT("reply_sweep",
            "UPDATE messages m SET " CLAIM_SET " FROM (SELECT id FROM messages WHERE " CLAIMABLE
            " AND (created_at < now() - $1::bigint * interval '1 second' OR next_attempt_at IS NOT NULL) "
            "ORDER BY created_at LIMIT $4 FOR UPDATE SKIP LOCKED) c "
            "WHERE m.id = c.id RETURNING m.id, m.chatroom_id, m.user_id, m.attempts",
            4);

static db_stmt_t q_complete = DB_STMT("reply_complete",
                                      "UPDATE messages SET status = 'completed', content = $2, error = NULL, "
                                      "completed_at = now(), next_attempt_at = NULL, lease_until = NULL, "
                                      "lease_owner = NULL WHERE id = $1 AND status = 'pending' AND lease_owner = $3",
                                      3);

static db_stmt_t q_fail = DB_STMT("reply_fail",
                                  "UPDATE messages SET status = 'failed', error = $2, completed_at = now(), "
                                  "next_attempt_at = NULL, lease_until = NULL, lease_owner = NULL "
                                  "WHERE id = $1 AND status = 'pending' AND lease_owner = $3",
                                  3);

static db_stmt_t q_retry = DB_STMT("reply_retry",
                                   "UPDATE messages SET next_attempt_at = now() + $2::bigint * interval "
                                   "'1 millisecond', lease_until = NULL, lease_owner = NULL "
                                   "WHERE id = $1 AND status = 'pending' AND lease_owner = $3",
                                   3);

static db_stmt_t q_release = DB_STMT("reply_release",
                                     "UPDATE messages SET lease_until = NULL, lease_owner = NULL, "
                                     "attempts = greatest(attempts - $3::int, 0) "
                                     "WHERE id = $1 AND status = 'pending' AND lease_owner = $2",
                                     3);

/* The leased rows of a claim or sweep result (id, chatroom_id, user_id, attempts). A row that does not parse
 * (it cannot happen with our schema) is skipped. */
static int leases_of(PGresult *res, reply_lease_t **out)
{
    int rows = PQntuples(res), n = 0;
    *out = NULL;
    if (!rows)
        return 0;
    reply_lease_t *l = xcalloc((size_t)rows, sizeof *l);
    for (int i = 0; i < rows; i++) {
        long long id = 0, room = 0, user = 0, attempts = 0;
        if (parse_ll(PQgetvalue(res, i, 0), 1, INT64_MAX, &id) != 0 ||
            parse_ll(PQgetvalue(res, i, 1), 1, INT64_MAX, &room) != 0 ||
            parse_ll(PQgetvalue(res, i, 2), 1, INT64_MAX, &user) != 0 ||
            parse_ll(PQgetvalue(res, i, 3), 0, INT32_MAX, &attempts) != 0)
            continue;
        l[n].reply_id = id;
        l[n].chatroom_id = room;
        l[n].user_id = user;
        l[n].attempt = (long)attempts;
        n++;
    }
    if (!n) {
        free(l);
        return 0;
    }
    *out = l;
    return n;
}

int reply_claim(const long long *ids, int n, long lease_ms, const char *owner, reply_lease_t **out)
{
    *out = NULL;
    if (n <= 0)
        return 0;
    buf_t arr = {0};
    buf_puts(&arr, "{");
    for (int i = 0; i < n; i++)
        buf_printf(&arr, "%s%lld", i ? "," : "", ids[i]);
    buf_puts(&arr, "}");
    char lease[24];
    snprintf(lease, sizeof lease, "%ld", lease_ms);
    const char *params[] = {arr.data, lease, owner};
    PGresult *res = db_query(&q_claim, params);
    buf_free(&arr);
    if (!res)
        return -1;
    int got = leases_of(res, out);
    PQclear(res);
    return got;
}

int reply_sweep(long older_than_s, long lease_ms, const char *owner, long limit, reply_lease_t **out)
{
    *out = NULL;
    char secs[24], lease[24], lim[24];
    snprintf(secs, sizeof secs, "%ld", older_than_s);
    snprintf(lease, sizeof lease, "%ld", lease_ms);
    snprintf(lim, sizeof lim, "%ld", limit);
    const char *params[] = {secs, lease, owner, lim};
    PGresult *res = db_query(&q_sweep, params);
    if (!res)
        return -1;
    int got = leases_of(res, out);
    PQclear(res);
    return got;
}

int reply_store(long long reply_id, const char *owner, int ok, const char *text)
{
    char id[24];
    snprintf(id, sizeof id, "%lld", reply_id);
    const char *params[] = {id, text, owner};
    PGresult *res = db_query(ok ? &q_complete : &q_fail, params);
    if (!res)
        return db_unavailable() ? REPLY_DB_DOWN : REPLY_DB_ERROR;
    int changed = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    return changed ? REPLY_STORED : REPLY_NOT_PENDING;
}

int reply_retry(long long reply_id, long delay_ms, const char *owner)
{
    char id[24], delay[24];
    snprintf(id, sizeof id, "%lld", reply_id);
    snprintf(delay, sizeof delay, "%ld", delay_ms);
    const char *params[] = {id, delay, owner};
    PGresult *res = db_query(&q_retry, params);
    if (!res)
        return -1;
    PQclear(res);
    return 0;
}

int reply_release(long long reply_id, const char *owner, int uncount)
{
    char id[24];
    snprintf(id, sizeof id, "%lld", reply_id);
    const char *params[] = {id, owner, uncount ? "1" : "0"};
    PGresult *res = db_query(&q_release, params);
    if (!res)
        return -1;
    PQclear(res);
    return 0;
}
