#include "db.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

static char *db_conninfo;
static PGconn *conn;
static unsigned long conn_gen; /* bumped on every new connection; statements re-prepare when it moves */
static int in_tx;              /* a transaction is open on conn */
static int last_unavailable;
static char last_sqlstate[6];

void db_init(const char *conninfo)
{
    free(db_conninfo);
    db_conninfo = xstrdup(conninfo ? conninfo : "");
}

static void drop_conn(void)
{
    PQfinish(conn);
    conn = NULL;
    in_tx = 0;
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
        log_warn("postgres: cannot connect: %s", msg);
        drop_conn();
        return -1;
    }
    conn_gen++;
    return 0;
}

static int result_ok(const PGresult *res)
{
    if (!res)
        return 0;
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
}

/* Note a failed result: keep the SQLSTATE, log, and say whether the connection itself is gone. */
static int note_failure(PGresult *res, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(last_sqlstate, sizeof last_sqlstate, "%s", state ? state : "");
    if (!conn || PQstatus(conn) == CONNECTION_BAD) {
        log_warn("postgres: connection lost during %s", what);
        return 1;
    }
    /* unique violations are an expected outcome for callers that race on purpose */
    if (strcmp(last_sqlstate, "23505") != 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
        log_error("postgres: %s failed (%s): %s", what, last_sqlstate, msg);
    }
    return 0;
}

static PGresult *run(db_stmt_t *st, const char *sql, int nparams, const char *const *params)
{
    const char *what = st ? st->name : "statement";
    for (int attempt = 0; attempt < 2; attempt++) {
        int was_tx = in_tx;
        last_unavailable = 0;
        last_sqlstate[0] = '\0';
        if (ensure_conn() != 0) {
            last_unavailable = 1;
            return NULL;
        }
        PGresult *res = NULL;
        if (st && st->prepared_gen != conn_gen) {
            res = PQprepare(conn, st->name, st->sql, st->nparams, NULL);
            if (result_ok(res)) {
                st->prepared_gen = conn_gen;
                PQclear(res);
                res = NULL;
            }
        }
        if (!res)
            res = st ? PQexecPrepared(conn, st->name, st->nparams, params, NULL, NULL, 0)
                     : PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
        if (result_ok(res))
            return res;
        int lost = note_failure(res, what);
        PQclear(res);
        if (!lost)
            return NULL;
        drop_conn();
        last_unavailable = 1;
        if (was_tx) /* the transaction is gone with the connection: the caller must start over */
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

int db_begin(void)
{
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
    if (!conn || PQtransactionStatus(conn) == PQTRANS_IDLE) {
        in_tx = 0;
        return;
    }
    PGresult *res = PQexec(conn, "ROLLBACK");
    PQclear(res);
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

int db_ping(void)
{
    PGresult *res = run(NULL, "SELECT 1", 0, NULL);
    if (!res)
        return -1;
    PQclear(res);
    return 0;
}

void db_close(void)
{
    drop_conn();
    free(db_conninfo);
    db_conninfo = NULL;
}
