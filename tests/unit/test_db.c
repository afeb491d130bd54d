/* Unit tests for db.c's fault classification: which failures are "PostgreSQL unavailable" (503) and which
 * failed statements may be sent again on a new connection without doing a write twice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "db.h"

static void test_sqlstate_unavailable(void **state)
{
    (void)state;
    assert_true(db_sqlstate_unavailable("57P01"));  /* admin_shutdown: fast stop */
    assert_true(db_sqlstate_unavailable("57P02"));  /* crash_shutdown: SIGQUIT, another backend crashed */
    assert_true(db_sqlstate_unavailable("57P03"));  /* cannot_connect_now: recovery, shutting down */
    assert_true(db_sqlstate_unavailable("08006"));  /* connection_failure */
    assert_true(db_sqlstate_unavailable("08000"));  /* connection_exception */
    assert_true(db_sqlstate_unavailable("53300"));  /* too_many_connections */
    assert_false(db_sqlstate_unavailable("23503")); /* foreign key: the user was deleted, not an outage */
    assert_false(db_sqlstate_unavailable("23505"));
    assert_false(db_sqlstate_unavailable("57014")); /* query_canceled (statement_timeout): not an outage */
    assert_false(db_sqlstate_unavailable("40001"));
    assert_false(db_sqlstate_unavailable(""));
    assert_false(db_sqlstate_unavailable(NULL));
}

static void test_statement_may_repeat(void **state)
{
    (void)state;
    /* reads and BEGIN: nothing can have committed */
    assert_true(db_statement_may_repeat("SELECT 1", ""));
    assert_true(db_statement_may_repeat("  select token_version FROM users", ""));
    assert_true(db_statement_may_repeat("BEGIN", ""));
    /* a write whose connection went mid-flight may have committed: never twice */
    assert_false(db_statement_may_repeat("INSERT INTO chatrooms (user_id, title) VALUES ($1, $2)", ""));
    assert_false(db_statement_may_repeat("DELETE FROM chatrooms WHERE id = $1", ""));
    assert_false(db_statement_may_repeat("WITH room AS (UPDATE chatrooms SET x = 1) INSERT INTO messages", ""));
    assert_false(db_statement_may_repeat("COMMIT", ""));
    assert_false(db_statement_may_repeat(NULL, ""));
    /* the server terminated the statement (fast stop, crash): it did not commit, whatever it was */
    assert_true(db_statement_may_repeat("INSERT INTO chatrooms (user_id) VALUES ($1)", "57P01"));
    assert_true(db_statement_may_repeat("UPDATE users SET x = 1", "57P02"));
    assert_false(db_statement_may_repeat("UPDATE users SET x = 1", "08006"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sqlstate_unavailable),
        cmocka_unit_test(test_statement_may_repeat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
