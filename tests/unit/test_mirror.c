/* Unit tests for the pure parts of lib/mirror.c: which epochs belong to the connected Redis instance and which
 * values carry an epoch's stamp; and that nothing is trusted before an epoch was observed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "chat_cache.h"
#include "mirror.h"

#define RID "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"

static void test_epoch_of(void **state)
{
    (void)state;
    const char *ok = RID ".00ff";
    assert_true(mirror_epoch_of(RID, ok, strlen(ok)));
    /* another instance, a restored snapshot's epoch */
    const char *other = "ffffffffffffffffffffffffffffffffffffffff.00ff";
    assert_false(mirror_epoch_of(RID, other, strlen(other)));
    /* no run id known: nothing belongs */
    assert_false(mirror_epoch_of("", ok, strlen(ok)));
    assert_false(mirror_epoch_of(NULL, ok, strlen(ok)));
    /* the run id alone, without the dot and the random part */
    assert_false(mirror_epoch_of(RID, RID, strlen(RID)));
    assert_false(mirror_epoch_of(RID, RID ".", strlen(RID) + 1));
    /* a prefix of the run id, a '|' inside (it would break the stamp) */
    assert_false(mirror_epoch_of(RID, "0a1b.00", 7));
    const char *bar = RID ".00|ff";
    assert_false(mirror_epoch_of(RID, bar, strlen(bar)));
    assert_false(mirror_epoch_of(RID, NULL, 0));
}

static void test_stamped(void **state)
{
    (void)state;
    const char *ep = RID ".00ff";
    const char *v = RID ".00ff|7";
    assert_true(mirror_stamped(ep, v, strlen(v)));
    assert_false(mirror_stamped(ep, "7", 1));                                 /* unstamped (older versions) */
    assert_false(mirror_stamped(ep, RID ".00fe|7", strlen(RID ".00fe|7")));   /* another epoch */
    assert_false(mirror_stamped(ep, RID ".00ff0|7", strlen(RID ".00ff0|7"))); /* a longer epoch */
    assert_false(mirror_stamped(ep, RID ".00ff", strlen(RID ".00ff")));       /* no '|' */
    assert_false(mirror_stamped("", "|7", 2));
    assert_false(mirror_stamped(NULL, v, strlen(v)));
}

static void test_nothing_trusted_without_an_epoch(void **state)
{
    (void)state;
    const char *v = RID ".00ff|{\"chatrooms\":[]}", *body = NULL;
    size_t blen = 0;
    mirror_reset();
    assert_null(mirror_epoch());
    assert_false(mirror_unwrap(v, strlen(v), &body, &blen));
    assert_false(chat_cache_hit(v, strlen(v), &body, &blen));
    assert_false(chat_cache_hit("{\"chatrooms\":[]}", 16, &body, &blen)); /* an unstamped body */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_epoch_of),
        cmocka_unit_test(test_stamped),
        cmocka_unit_test(test_nothing_trusted_without_an_epoch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
