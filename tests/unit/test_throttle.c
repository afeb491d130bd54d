/* Unit tests for lib/throttle.c: the block a count earns (the database side is covered by
 * tests/e2e/17_abuse.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "throttle.h"

static void test_backoff_doubles_up_to_the_cap(void **state)
{
    (void)state;
    const throttle_rule_t r = {"login_user", 3600, 5, 30, 900};
    for (long n = 0; n < 5; n++)
        assert_int_equal(throttle_block_seconds(&r, n, 3600), 0); /* under the limit: free */
    assert_int_equal(throttle_block_seconds(&r, 5, 3600), 30);    /* the max-th failure starts the backoff */
    assert_int_equal(throttle_block_seconds(&r, 6, 3600), 60);
    assert_int_equal(throttle_block_seconds(&r, 7, 3600), 120);
    assert_int_equal(throttle_block_seconds(&r, 9, 3600), 480);
    assert_int_equal(throttle_block_seconds(&r, 10, 3600), 900); /* 960 capped */
    assert_int_equal(throttle_block_seconds(&r, 11, 3600), 900);
    /* a huge count neither overflows nor loops long */
    assert_int_equal(throttle_block_seconds(&r, 2000000000L, 3600), 900);
    /* a cap below the first step still caps */
    const throttle_rule_t low = {"x", 60, 1, 100, 40};
    assert_int_equal(throttle_block_seconds(&low, 1, 60), 40);
}

static void test_daily_cap_blocks_until_the_window_ends(void **state)
{
    (void)state;
    const throttle_rule_t r = {"otp_user", 86400, 20, 0, 0};
    assert_int_equal(throttle_block_seconds(&r, 19, 5000), 0);
    assert_int_equal(throttle_block_seconds(&r, 20, 5000), 5000);
    assert_int_equal(throttle_block_seconds(&r, 21, 17), 17);
    assert_int_equal(throttle_block_seconds(&r, 20, 0), 1); /* never a zero-second block once over */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_doubles_up_to_the_cap),
        cmocka_unit_test(test_daily_cap_blocks_until_the_window_ends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
