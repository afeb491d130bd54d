/* db: the process's one PostgreSQL connection. Lazy connect, reconnect after a server restart (a failed
 * statement outside a transaction is retried once on a fresh connection), parameterised and prepared
 * statements only, each answered within a time limit (db_set_answer_timeout). Results are PGresult owned by the
 * caller: always PQclear. */
#ifndef GB_DB_H
#define GB_DB_H

#include <libpq-fe.h>

/* A prepared statement, declared static by its user: static db_stmt_t q = DB_STMT("name", "SQL", 2);
 * Prepared lazily on each new connection. */
typedef struct db_stmt {
    const char *name;
    const char *sql;
    int nparams;
    unsigned long prepared_gen; /* connection generation it was prepared on; 0 = never */
} db_stmt_t;
#define DB_STMT(name, sql, n)                                                                                          \
    {                                                                                                                  \
        (name), (sql), (n), 0                                                                                          \
    }

/* SQL for the contract's timestamp (RFC 3339 UTC, "2026-11-22T10:15:00Z") of a timestamptz column expression.
 * The one place this format is written in SQL. */
#define DB_RFC3339(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* Remember the connection string (no connection yet). */
void db_init(const char *conninfo);
/* The longest wait for the server's answer to one statement (default DB_ANSWER_MS_DEFAULT; ms <= 0: the
 * default). Past it the connection is dropped and the statement fails as if the connection were lost (NULL,
 * db_unavailable() set, not retried): a paused or unreachable server gives 503s, never requests that hang. */
#define DB_ANSWER_MS_DEFAULT 5000
void db_set_answer_timeout(long ms);

/* Run a prepared statement with text parameters (NULL = SQL NULL). Returns a result with status
 * PGRES_TUPLES_OK or PGRES_COMMAND_OK, or NULL on failure (then see db_unavailable / db_sqlstate). An idle
 * connection the server closed (restart, crash) is replaced before sending; a statement that fails because the
 * connection went is sent again once on a new connection only when db_statement_may_repeat says so. */
PGresult *db_query(db_stmt_t *stmt, const char *const *params);
/* db_query for a write that must not run twice: a statement whose connection is lost after it was sent is not
 * retried on a new connection (it may have committed); NULL with db_unavailable() set, the caller answers 503
 * (and an idempotent retry finds out). A connection the server closed before (a restart) is replaced first. */
PGresult *db_query_once(db_stmt_t *stmt, const char *const *params);
/* Same for an ad-hoc statement (unprepared, still parameterised). */
PGresult *db_exec(const char *sql, int nparams, const char *const *params);

/* Transactions on the process connection. 0 ok, -1 failure. db_rollback is safe to call at any time
 * (no-op without an open transaction). A lost connection inside a transaction is not retried, and until
 * db_rollback (or the next db_begin) every statement and db_commit fails as unavailable: nothing a caller runs
 * after the loss lands outside the transaction on a new connection. */
int db_begin(void);
int db_commit(void);
void db_rollback(void);

/* After a NULL result: 1 when the failure was the database being unreachable (answer 503), else 0. */
int db_unavailable(void);
/* After a NULL result: the SQLSTATE ("23505" unique violation), or "" if none. */
const char *db_sqlstate(void);
/* 1 if the last failure was a unique violation. */
int db_unique_violation(void);
/* 1 if the last failure was a foreign key violation (23503): e.g. the user a row points to was deleted. */
int db_foreign_key_violation(void);
/* 1 if the last failure was a conflict with concurrent work that a retry may not meet again (class 40:
 * serialization failure, deadlock detected; 55P03 lock not available): 503, not a defect. */
int db_conflict(void);

/* Exposed for unit tests: 1 when SQLSTATE state says the server is unreachable or going away (class 08, 57P0x:
 * fast stop, crash, starting up or recovering; 53300 too many connections), so the answer is 503, else 0. */
int db_sqlstate_unavailable(const char *state);
/* Exposed for unit tests: 1 when a statement that failed with a lost connection (sqlstate: its SQLSTATE, "" if
 * none) may be sent again on a new connection because it cannot have committed: the server terminated it
 * (57P0x), or it is a SELECT or BEGIN. A write outside a transaction may have committed before the connection
 * went, so it is not repeated (the caller answers 503 and the client can look). */
int db_statement_may_repeat(const char *sql, const char *sqlstate);

/* SELECT 1 on the connection (reconnecting if needed): 0 ok, -1 down. */
int db_ping(void);
/* SELECT 1 within timeout_ms whatever the server does (down, paused, unreachable), connecting without
 * blocking if needed (also when the server closed this process's idle connection, as a restart does): 0 ok, -1
 * not answered in time or failed (the connection is dropped then; the next statement reconnects). -1 at once
 * inside a transaction. For health checks. */
int db_ping_within(long timeout_ms);

/* Why the last connect or db_ping_within failed, as one line (libpq's message: host and user, never the
 * password); "" if nothing failed yet. Static storage. */
const char *db_last_error(void);

/* At the end of a request (outside a transaction): close the connection if it carried a row or parameters over
 * 128 KiB, so that libpq's buffers, grown to that message and kept for the connection's life, are freed; the
 * next statement connects again. 1 when it closed one (the caller may malloc_trim), else 0. */
int db_trim(void);

/* Close the connection (end of process). */
void db_close(void);

#endif
