#include "db.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "util.h"

static char *db_conninfo;
static PGconn *conn;
static unsigned long conn_gen; /* bumped on every new connection; statements re-prepare when it moves */
static int in_tx;              /* a transaction is open on conn */
static int tx_lost;            /* the connection of an open transaction was lost: every statement and COMMIT
                                * fails (unavailable) until db_rollback or db_begin, so nothing after it runs
                                * outside the transaction on a new connection and reports success */
static int no_retry;           /* db_query_once: a statement sent is never sent again */
static int last_unavailable;
static char last_sqlstate[6];
static char last_error[256];                  /* why the last connect or ping failed, one line */
static long answer_ms = DB_ANSWER_MS_DEFAULT; /* the longest wait for the server's answer to one statement */
static int conn_big; /* conn carried a message over DB_BIG_MESSAGE: db_trim closes it (libpq kept the buffer) */

/* libpq grows a connection's input buffer to the longest message it received (one row) and its output buffer to
 * the longest it sent (one statement's parameters), doubling, and frees them only with the connection. A row of a
 * 600 KB message left a process 1 MiB bigger for as long as the connection lived. */
#define DB_BIG_MESSAGE (128 * 1024)

static void note_error(const char *msg)
{
    snprintf(last_error, sizeof last_error, "%s", msg && *msg ? msg : "unknown error");
    for (char *p = last_error; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = p[1] ? ' ' : '\0';
}

void db_init(const char *conninfo)
{
    free(db_conninfo);
    db_conninfo = xstrdup(conninfo ? conninfo : "");
}

void db_set_answer_timeout(long ms)
{
    answer_ms = ms > 0 ? ms : DB_ANSWER_MS_DEFAULT;
}

static void drop_conn(void)
{
    PQfinish(conn);
    conn = NULL;
    conn_big = 0;
    if (in_tx)
        tx_lost = 1;
    in_tx = 0;
}

/* Wait until the connection's socket is ready for ev, or the deadline (now_ms() clock) passes. 0 ready. */
static int wait_socket(short ev, double deadline)
{
    int fd = PQsocket(conn);
    if (fd < 0)
        return -1;
    for (;;) {
        double left = deadline - now_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = {.fd = fd, .events = ev};
        int n = poll(&p, 1, (int)left + 1);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

/* The answer to the statement just sent with PQsend* (sent: what that returned), waiting until deadline (now_ms()
 * clock): its result (the caller clears it), or NULL when sending failed or the connection broke. A server that
 * does not answer in time (paused, or unreachable with no reset: libpq alone would wait for ever) counts as
 * gone: the connection is dropped, *late set and the reason noted, and the caller answers 503 rather than hold
 * the request. The server aborts the statement once it sees the connection closed
 * (client_connection_check_interval, set by conn_made), unless it already ran it, or, paused, runs it when it
 * resumes before it looks (the statement is in its socket): a 503 after a timeout may hide a commit, which
 * only an Idempotency-Key's replay tells. */
static PGresult *await_answer(int sent, double deadline, int *late)
{
    PGresult *last = NULL, *r;
    *late = 0;
    if (!sent)
        return NULL;
    for (;;) {
        while (PQisBusy(conn) && PQstatus(conn) != CONNECTION_BAD) {
            if (wait_socket(POLLIN, deadline) != 0) {
                PQclear(last);
                note_error("no answer in time");
                drop_conn();
                *late = 1;
                return NULL;
            }
            if (!PQconsumeInput(conn))
                break;
        }
        if (!(r = PQgetResult(conn)))
            break;
        PQclear(last);
        last = r;
        if (PQstatus(conn) == CONNECTION_BAD)
            break;
    }
    return last;
}

/* await_answer within answer_ms for a statement of a request (what names it in the log). */
static PGresult *answer(int sent, const char *what, int *late)
{
    PGresult *res = await_answer(sent, now_ms() + (double)answer_ms, late);
    if (*late)
        log_warn("postgres: no answer to %s within %ld ms; dropping the connection", what, answer_ms);
    return res;
}

/* A new connection is up (by ensure_conn or db_ping_within): statements re-prepare on it, and its session is
 * set. The server aborts a statement whose client is gone (a process killed, or one that gave up waiting) at
 * the next check rather than run it to its end and commit it (a statement that has not started by then may
 * still run: see await_answer). PostgreSQL 14 and later; an older server refuses the setting, which changes
 * nothing else. 0 ok, -1 no answer by deadline (the connection is dropped). */
static int conn_made(double deadline)
{
    int late;
    conn_gen++;
    PQclear(await_answer(PQsendQuery(conn, "SET client_connection_check_interval = 1000"), deadline, &late));
    return late ? -1 : 0;
}

static int ensure_conn(void)
{
    if (conn && PQstatus(conn) == CONNECTION_OK)
        return 0;
    drop_conn();
    /* connect_timeout first so a value in the URL wins; dbname is expanded as a full conninfo/URI */
    const char *keys[] = {"connect_timeout", "dbname", NULL};
    const char *vals[] = {"3", db_conninfo, NULL};
    conn = PQconnectdbParams(keys, vals, 1);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", conn ? PQerrorMessage(conn) : "out of memory");
        note_error(msg);
        log_warn("postgres: cannot connect (DATABASE_URL): %s", last_error);
        drop_conn();
        return -1;
    }
    if (conn_made(now_ms() + (double)answer_ms) != 0) {
        log_warn("postgres: no answer within %ld ms on a new connection", answer_ms);
        return -1;
    }
    return 0;
}

static int result_ok(const PGresult *res)
{
    if (!res)
        return 0;
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
}

int db_sqlstate_unavailable(const char *state)
{
    if (!state)
        return 0;
    /* class 08: connection exception; 57P01 admin_shutdown (fast stop), 57P02 crash_shutdown (a crash of
     * another backend, SIGQUIT), 57P03 cannot_connect_now (starting up, recovering, shutting down), 57P04
     * database_dropped, 57P05 idle_session_timeout; 53300 too_many_connections */
    return strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0 || strcmp(state, "53300") == 0;
}

int db_statement_may_repeat(const char *sql, const char *sqlstate)
{
    /* The server terminated the statement (fast stop, crash of another backend): it did not commit. */
    if (sqlstate && strncmp(sqlstate, "57P0", 4) == 0)
        return 1;
    if (!sql)
        return 0;
    while (*sql == ' ' || *sql == '\t' || *sql == '\n' || *sql == '(')
        sql++;
    /* A read has nothing to commit; BEGIN opens nothing yet. Anything else may have committed before the
     * connection went: repeating it could do it twice (a second chatroom), so the caller answers 503. */
    return strncasecmp(sql, "SELECT", 6) == 0 || strcasecmp(sql, "BEGIN") == 0;
}

/* Note a failed result: keep the SQLSTATE, log, and say whether the connection itself is gone (or the server
 * is going away: a fast stop or a crash answers with a 57P0x error before it closes the connection). */
static int note_failure(PGresult *res, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(last_sqlstate, sizeof last_sqlstate, "%s", state ? state : "");
    if (!conn || PQstatus(conn) == CONNECTION_BAD || db_sqlstate_unavailable(last_sqlstate)) {
        log_warn("postgres: connection lost during %s (%s)", what, last_sqlstate[0] ? last_sqlstate : "closed");
        return 1;
    }
    /* Unique violations are an expected outcome for callers that race on purpose. A foreign key violation
     * mostly means that a row the statement names was deleted meanwhile (a user deleted in SQL while a token
     * of theirs is still in use): the caller tells, and logs its own error when it is not that. */
    if (strcmp(last_sqlstate, "23505") != 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
        log_msg(strcmp(last_sqlstate, "23503") == 0 ? LOG_WARN : LOG_ERROR, "postgres: %s failed (%s): %s", what,
                last_sqlstate, msg);
    }
    return 0;
}

/* An idle connection whose socket is readable has been told something by the server: after a restart or a
 * crash that is its termination message or the end of the stream. Find out before sending a statement, so
 * that a dead connection is replaced without sending anything on it. */
static void drop_if_dead(void)
{
    if (!conn || PQstatus(conn) != CONNECTION_OK || PQtransactionStatus(conn) != PQTRANS_IDLE)
        return;
    /* The termination message and the end of the stream may come in two reads: read while there is more. */
    for (int i = 0; i < 4; i++) {
        int fd = PQsocket(conn);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (fd < 0 || poll(&p, 1, 0) <= 0)
            return;
        if (!PQconsumeInput(conn) || PQstatus(conn) == CONNECTION_BAD) {
            log_info("postgres: the server closed the idle connection; reconnecting");
            drop_conn();
            return;
        }
    }
}

/* The bytes of res's longest row (its values' lengths). */
static size_t largest_row(const PGresult *res)
{
    size_t most = 0;
    int rows = PQntuples(res), cols = PQnfields(res);
    for (int r = 0; r < rows; r++) {
        size_t n = 0;
        for (int c = 0; c < cols; c++)
            n += (size_t)PQgetlength(res, r, c);
        if (n > most)
            most = n;
    }
    return most;
}

static PGresult *run(db_stmt_t *st, const char *sql, int nparams, const char *const *params)
{
    const char *what = st ? st->name : "statement";
    if (tx_lost) {
        last_unavailable = 1;
        snprintf(last_sqlstate, sizeof last_sqlstate, "08006"); /* connection_failure */
        return NULL;
    }
    size_t sent = 0;
    for (int i = 0; params && i < (st ? st->nparams : nparams); i++)
        sent += params[i] ? strlen(params[i]) : 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        int was_tx = in_tx;
        last_unavailable = 0;
        last_sqlstate[0] = '\0';
        if (!in_tx)
            drop_if_dead();
        if (ensure_conn() != 0) {
            last_unavailable = 1;
            return NULL;
        }
        if (sent > DB_BIG_MESSAGE)
            conn_big = 1;
        PGresult *res = NULL;
        int late = 0;
        if (st && st->prepared_gen != conn_gen) {
            res = answer(PQsendPrepare(conn, st->name, st->sql, st->nparams, NULL), what, &late);
            if (result_ok(res)) {
                st->prepared_gen = conn_gen;
                PQclear(res);
                res = NULL;
            }
        }
        if (!res && !late)
            res = answer(st ? PQsendQueryPrepared(conn, st->name, st->nparams, params, NULL, NULL, 0)
                            : PQsendQueryParams(conn, sql, nparams, NULL, params, NULL, NULL, 0),
                         what, &late);
        if (late) { /* the server may still run it: like a lost connection, but not tried again (it is stuck) */
            last_unavailable = 1;
            return NULL;
        }
        if (result_ok(res)) {
            if (!conn_big)
                conn_big = largest_row(res) > DB_BIG_MESSAGE;
            return res;
        }
        int lost = note_failure(res, what);
        PQclear(res);
        if (!lost)
            return NULL;
        drop_conn();
        last_unavailable = 1;
        if (was_tx || no_retry) /* gone with the connection: the caller must start over (or answer 503) */
            return NULL;
        if (!db_statement_may_repeat(st ? st->sql : sql, last_sqlstate))
            return NULL;
    }
    return NULL;
}

PGresult *db_query(db_stmt_t *stmt, const char *const *params)
{
    return run(stmt, NULL, 0, params);
}

PGresult *db_exec(const char *sql, int nparams, const char *const *params)
{
    return run(NULL, sql, nparams, params);
}

PGresult *db_query_once(db_stmt_t *stmt, const char *const *params)
{
    /* A connection the server closed meanwhile (a restart, a crash) is found by run()'s drop_if_dead() before
     * anything is sent, so the statement goes out on a fresh connection instead of failing. Once sent, a lost
     * connection is not retried: it may have committed. */
    no_retry = 1;
    PGresult *res = run(stmt, NULL, 0, params);
    no_retry = 0;
    return res;
}

int db_begin(void)
{
    tx_lost = 0;
    PGresult *res = run(NULL, "BEGIN", 0, NULL);
    if (!res)
        return -1;
    PQclear(res);
    in_tx = 1;
    return 0;
}

int db_commit(void)
{
    PGresult *res = run(NULL, "COMMIT", 0, NULL);
    in_tx = 0;
    if (!res)
        return -1;
    PQclear(res);
    return 0;
}

void db_rollback(void)
{
    tx_lost = 0;
    if (!conn || PQtransactionStatus(conn) == PQTRANS_IDLE) {
        in_tx = 0;
        return;
    }
    int late;
    PQclear(answer(PQsendQuery(conn, "ROLLBACK"), "ROLLBACK", &late));
    in_tx = 0;
}

int db_unavailable(void)
{
    return last_unavailable;
}

const char *db_sqlstate(void)
{
    return last_sqlstate;
}

int db_unique_violation(void)
{
    return strcmp(last_sqlstate, "23505") == 0;
}

int db_foreign_key_violation(void)
{
    return strcmp(last_sqlstate, "23503") == 0;
}

int db_conflict(void)
{
    return strncmp(last_sqlstate, "40", 2) == 0 || strcmp(last_sqlstate, "55P03") == 0;
}

int db_ping(void)
{
    PGresult *res = run(NULL, "SELECT 1", 0, NULL);
    if (!res)
        return -1;
    PQclear(res);
    return 0;
}

const char *db_last_error(void)
{
    return last_error;
}

int db_ping_within(long timeout_ms)
{
    double deadline = now_ms() + (double)timeout_ms;
    if (in_tx)
        return -1;  /* never disturb an open transaction */
    drop_if_dead(); /* closed by a restart since this process last used it: reconnect, PostgreSQL is not down */
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        drop_conn();
        const char *keys[] = {"connect_timeout", "dbname", NULL};
        const char *vals[] = {"3", db_conninfo ? db_conninfo : "", NULL};
        conn = PQconnectStartParams(keys, vals, 1);
        if (!conn || PQstatus(conn) == CONNECTION_BAD)
            goto out;
        PostgresPollingStatusType st = PGRES_POLLING_WRITING;
        while (st != PGRES_POLLING_OK) {
            if (st == PGRES_POLLING_FAILED)
                goto out;
            if (wait_socket(st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline) != 0) {
                note_error("no answer in time");
                goto out_noted;
            }
            st = PQconnectPoll(conn);
        }
        if (conn_made(deadline) != 0)
            goto out_noted;
    }
    int late;
    PGresult *res = await_answer(PQsendQuery(conn, "SELECT 1"), deadline, &late);
    if (late)
        goto out_noted;
    int ok = result_ok(res);
    PQclear(res);
    if (ok)
        return 0;
out:
    note_error(conn ? PQerrorMessage(conn) : "out of memory");
out_noted:
    /* a connection left mid-query (a paused server) cannot be reused: the next statement reconnects */
    drop_conn();
    return -1;
}

int db_trim(void)
{
    if (!conn_big || in_tx || tx_lost)
        return 0;
    drop_conn();
    return 1;
}

void db_close(void)
{
    drop_conn();
    free(db_conninfo);
    db_conninfo = NULL;
}
