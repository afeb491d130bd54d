/* Unit tests for the pure parts of lib/outbox.c and lib/keys.h: the Redis key builders and the tombstone
 * that replaces an invalidated chatroom list. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "chat.h"
#include "keys.h"
#include "outbox.h"

static void test_keys(void **state)
{
    char k[KEYS_USER_MAX];
    (void)state;

    keys_chatrooms(42, k);
    assert_string_equal(k, "chatrooms:42");
    keys_chatrooms(LLONG_MAX, k);
    assert_string_equal(k, "chatrooms:9223372036854775807");
    keys_authv(7, k);
    assert_string_equal(k, "authv:7");
    keys_authv(LLONG_MAX, k);
    assert_string_equal(k, "authv:9223372036854775807");
    /* chat's cached-read prefix is the builder's, so auth_require_cached reads what the outbox invalidates */
    assert_string_equal(CHAT_CACHE_PREFIX, "chatrooms:");
}

static void test_tombstone_shape(void **state)
{
    char t[OUTBOX_TOMB_SIZE];
    (void)state;

    memset(t, 'x', sizeof t);
    assert_int_equal(outbox_tombstone(t), 0);
    assert_int_equal(strlen(t), OUTBOX_TOMB_SIZE - 1);
    assert_int_equal(t[0], '~');
    assert_int_equal(strspn(t + 1, "0123456789abcdef"), OUTBOX_TOMB_SIZE - 2);
    /* a reader must never take a tombstone for a list body */
    assert_false(chat_cache_is_body(t, strlen(t)));
}

static void test_tombstones_unique(void **state)
{
    char a[OUTBOX_TOMB_SIZE], b[OUTBOX_TOMB_SIZE];
    (void)state;

    assert_int_equal(outbox_tombstone(a), 0);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(outbox_tombstone(b), 0);
        assert_string_not_equal(a, b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_tombstone_shape),
        cmocka_unit_test(test_tombstones_unique),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
