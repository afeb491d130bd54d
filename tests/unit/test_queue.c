/* Unit tests for the pure part of lib/queue.c: parsing stream entries out of hiredis reply trees (built by hand
 * here in the shapes Redis 7 sends for XREADGROUP and XAUTOCLAIM). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

/* A tiny arena of replies, freed at the end of each test. */
static redisReply pool[256];
static redisReply *ptrs[256][8];
static int used;

static redisReply *str(const char *s)
{
    redisReply *r = &pool[used++];
    memset(r, 0, sizeof *r);
    r->type = REDIS_REPLY_STRING;
    r->str = (char *)s;
    r->len = strlen(s);
    return r;
}

static redisReply *nil(void)
{
    redisReply *r = &pool[used++];
    memset(r, 0, sizeof *r);
    r->type = REDIS_REPLY_NIL;
    return r;
}

static redisReply *integer(long long v)
{
    redisReply *r = &pool[used++];
    memset(r, 0, sizeof *r);
    r->type = REDIS_REPLY_INTEGER;
    r->integer = v;
    return r;
}

static redisReply *arr(int n, ...)
{
    int slot = used;
    redisReply *r = &pool[used++];
    memset(r, 0, sizeof *r);
    r->type = REDIS_REPLY_ARRAY;
    r->elements = (size_t)n;
    r->element = ptrs[slot];
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        r->element[i] = va_arg(ap, redisReply *);
    va_end(ap);
    return r;
}

static int reset(void **state)
{
    (void)state;
    used = 0;
    return 0;
}

static redisReply *entry(const char *id, const char *reply_id)
{
    return arr(2, str(id), arr(2, str("reply_id"), str(reply_id)));
}

static void test_parse_entries(void **state)
{
    (void)state;
    redisReply *entries = arr(
        3, entry("1700000000000-0", "42"), entry("1700000000000-1", "7"),
        arr(2, str("1700000000001-0"), arr(4, str("other"), str("x"), str("reply_id"), str("9223372036854775807"))));
    queue_entry_t out[8];
    assert_int_equal(queue_parse_entries(entries, 8, out), 3);
    assert_string_equal(out[0].id, "1700000000000-0");
    assert_int_equal(out[0].reply_id, 42);
    assert_string_equal(out[1].id, "1700000000000-1");
    assert_int_equal(out[1].reply_id, 7);
    assert_int_equal(out[2].reply_id, INT64_MAX);
}

static void test_parse_respects_max(void **state)
{
    (void)state;
    redisReply *entries = arr(3, entry("1-0", "1"), entry("2-0", "2"), entry("3-0", "3"));
    queue_entry_t out[2];
    assert_int_equal(queue_parse_entries(entries, 2, out), 2);
    assert_string_equal(out[1].id, "2-0");
    assert_int_equal(queue_parse_entries(entries, 0, out), 0);
}

static void test_bad_reply_ids(void **state)
{
    (void)state;
    /* kept (so they can be acked and dropped) but with reply_id 0 */
    const char *bad[] = {"", "0", "-5", "12abc", " 12", "99999999999999999999999", "1.5"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        used = 0;
        redisReply *entries = arr(1, entry("5-0", bad[i]));
        queue_entry_t out[1];
        assert_int_equal(queue_parse_entries(entries, 1, out), 1);
        assert_string_equal(out[0].id, "5-0");
        assert_int_equal(out[0].reply_id, 0);
    }
    used = 0;
    redisReply *no_field = arr(1, arr(2, str("6-0"), arr(2, str("reply"), str("12"))));
    queue_entry_t out[1];
    assert_int_equal(queue_parse_entries(no_field, 1, out), 1);
    assert_int_equal(out[0].reply_id, 0);
    used = 0;
    redisReply *wrong_type = arr(1, arr(2, str("7-0"), arr(2, str("reply_id"), integer(12))));
    assert_int_equal(queue_parse_entries(wrong_type, 1, out), 1);
    assert_int_equal(out[0].reply_id, 0);
    used = 0;
    redisReply *odd_fields = arr(1, arr(2, str("8-0"), arr(1, str("reply_id"))));
    assert_int_equal(queue_parse_entries(odd_fields, 1, out), 1);
    assert_int_equal(out[0].reply_id, 0);
}

static void test_malformed_entries_skipped(void **state)
{
    (void)state;
    char long_id[QUEUE_ID_MAX + 10];
    memset(long_id, '1', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    redisReply *entries = arr(8, arr(2, str("9-0"), nil()), /* deleted while pending: no body */
                              str("not-an-entry"),          /* wrong shape */
                              arr(1, str("10-0")),          /* too short */
                              arr(2, integer(11), arr(0)),  /* id not a string */
                              arr(2, str(""), arr(0)),      /* empty id */
                              arr(2, str(long_id), arr(0)), /* id too long */
                              NULL,                         /* hostile NULL element */
                              entry("12-0", "12"));
    queue_entry_t out[8];
    assert_int_equal(queue_parse_entries(entries, 8, out), 1);
    assert_string_equal(out[0].id, "12-0");
    assert_int_equal(out[0].reply_id, 12);
    assert_int_equal(queue_parse_entries(NULL, 8, out), 0);
    assert_int_equal(queue_parse_entries(nil(), 8, out), 0);
    assert_int_equal(queue_parse_entries(str("x"), 8, out), 0);
}

/* The shape of an XAUTOCLAIM reply: [cursor, entries, deleted ids]; the entries part parses like XRANGE. */
static void test_autoclaim_shape(void **state)
{
    (void)state;
    redisReply *reply = arr(3, str("0-0"), arr(2, entry("20-0", "200"), entry("21-0", "201")), arr(1, str("19-0")));
    queue_entry_t out[4];
    assert_int_equal(queue_parse_entries(reply->element[1], 4, out), 2);
    assert_int_equal(out[0].reply_id, 200);
    assert_int_equal(out[1].reply_id, 201);
}

/* One consumer of an XINFO CONSUMERS reply as Redis 7.0 sends it. */
static redisReply *consumer(const char *name, long long pending, long long idle)
{
    return arr(6, str("name"), str(name), str("pending"), integer(pending), str("idle"), integer(idle));
}

#define HOUR 3600000LL

/* Dead consumers: nothing pending, idle for more than the threshold, never the worker itself. */
static void test_dead_consumers(void **state)
{
    (void)state;
    redisReply *xinfo = arr(7, consumer("host:1", 0, HOUR + 1), /* dead: selected */
                            consumer("host:2", 3, 10 * HOUR),   /* holds entries: kept for XAUTOCLAIM */
                            consumer("host:3", 0, 1000),        /* alive */
                            consumer("host:4", 0, HOUR),        /* exactly the threshold: not yet */
                            consumer("me:9", 0, 5 * HOUR),      /* the worker itself */
                            arr(8, str("name"), str("other:7"), str("pending"), integer(0), str("idle"),
                                integer(2 * HOUR), str("inactive"), integer(2 * HOUR)), /* Redis 7.2 shape */
                            consumer("host:5", 0, 48 * HOUR));
    const char *names[8];
    assert_int_equal(queue_select_dead_consumers(xinfo, "me:9", HOUR, names, 8), 3);
    assert_string_equal(names[0], "host:1");
    assert_string_equal(names[1], "other:7");
    assert_string_equal(names[2], "host:5");
    /* max is respected */
    assert_int_equal(queue_select_dead_consumers(xinfo, "me:9", HOUR, names, 2), 2);
    assert_int_equal(queue_select_dead_consumers(xinfo, "me:9", HOUR, names, 0), 0);
    /* a shorter threshold takes the idle ones too, still not the busy one nor self */
    assert_int_equal(queue_select_dead_consumers(xinfo, "me:9", 500, names, 8), 5);
    /* without a self name every dead one is selected */
    assert_int_equal(queue_select_dead_consumers(xinfo, NULL, HOUR, names, 8), 4);
}

static void test_dead_consumers_malformed(void **state)
{
    (void)state;
    const char *names[8];
    redisReply *xinfo = arr(7, NULL, str("x"), arr(0),                                   /* not consumers */
                            arr(4, str("name"), str("a:1"), str("pending"), integer(0)), /* no idle */
                            arr(6, str("name"), str("b:1"), str("pending"), str("0"), str("idle"),
                                integer(2 * HOUR)), /* pending not an integer */
                            arr(6, str("name"), integer(5), str("pending"), integer(0), str("idle"),
                                integer(2 * HOUR)), /* name not a string */
                            arr(5, str("pending"), integer(0), str("idle"), integer(2 * HOUR), str("name")));
    assert_int_equal(queue_select_dead_consumers(xinfo, "me", HOUR, names, 8), 0);
    assert_int_equal(queue_select_dead_consumers(NULL, "me", HOUR, names, 8), 0);
    assert_int_equal(queue_select_dead_consumers(nil(), "me", HOUR, names, 8), 0);
    used = 0;
    assert_int_equal(queue_select_dead_consumers(arr(0), "me", HOUR, names, 8), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_parse_entries, reset),
        cmocka_unit_test_setup(test_parse_respects_max, reset),
        cmocka_unit_test_setup(test_bad_reply_ids, reset),
        cmocka_unit_test_setup(test_malformed_entries_skipped, reset),
        cmocka_unit_test_setup(test_autoclaim_shape, reset),
        cmocka_unit_test_setup(test_dead_consumers, reset),
        cmocka_unit_test_setup(test_dead_consumers_malformed, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
