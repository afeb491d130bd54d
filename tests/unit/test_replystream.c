/* Unit tests for lib/replystream.c: entry parsing (hiredis reply trees built by hand in the shape XRANGE /
 * XREAD answer) and stream id parsing and ordering; then the writers against a real Redis (a private
 * redis-server on a unix socket): what a reader from the start sees after begin, delta, resume and end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include <hiredis.h>
#include <string.h>

#include "cache.h"
#include "private_redis.h"
#include "replystream.h"

static redisReply nodes[64];
static redisReply *kids[16][8];
static int used, kused;

static redisReply *str(const char *s)
{
    redisReply *r = &nodes[used++];
    memset(r, 0, sizeof *r);
    r->type = REDIS_REPLY_STRING;
    r->str = (char *)s;
    r->len = strlen(s);
    return r;
}

static redisReply *arr(int n, redisReply *a, redisReply *b, redisReply *c, redisReply *d)
{
    redisReply *r = &nodes[used++];
    redisReply **k = kids[kused++];
    memset(r, 0, sizeof *r);
    r->type = REDIS_REPLY_ARRAY;
    k[0] = a, k[1] = b, k[2] = c, k[3] = d;
    r->elements = (size_t)n;
    r->element = k;
    return r;
}

static void reset(void)
{
    used = kused = 0;
}

static void test_parse_entries(void **state)
{
    (void)state;
    replystream_event_t ev;
    reset();
    redisReply *e = arr(2, str("1733290000000-3"), arr(4, str("e"), str("delta"), str("t"), str("Hel")), NULL, NULL);
    assert_int_equal(replystream_parse_entry(e, &ev), 0);
    assert_string_equal(ev.id, "1733290000000-3");
    assert_int_equal(ev.type, REPLYSTREAM_DELTA);
    assert_int_equal(ev.len, 3);
    assert_memory_equal(ev.text, "Hel", 3);

    e = arr(2, str("5-0"), arr(2, str("e"), str("restart"), NULL, NULL), NULL, NULL);
    assert_int_equal(replystream_parse_entry(e, &ev), 0);
    assert_int_equal(ev.type, REPLYSTREAM_RESTART);
    assert_null(ev.text);

    e = arr(2, str("5-1"), arr(4, str("e"), str("done"), str("t"), str("ignored")), NULL, NULL);
    assert_int_equal(replystream_parse_entry(e, &ev), 0);
    assert_int_equal(ev.type, REPLYSTREAM_DONE);
    assert_null(ev.text);

    e = arr(2, str("5-2"), arr(2, str("e"), str("error"), NULL, NULL), NULL, NULL);
    assert_int_equal(replystream_parse_entry(e, &ev), 0);
    assert_int_equal(ev.type, REPLYSTREAM_ERROR);

    e = arr(2, str("5-3"), arr(2, str("e"), str("bogus"), NULL, NULL), NULL, NULL);
    assert_int_equal(replystream_parse_entry(e, &ev), 0);
    assert_int_equal(ev.type, REPLYSTREAM_UNKNOWN);

    /* a delta without text is an empty delta */
    e = arr(2, str("5-4"), arr(2, str("e"), str("delta"), NULL, NULL), NULL, NULL);
    assert_int_equal(replystream_parse_entry(e, &ev), 0);
    assert_int_equal(ev.len, 0);

    assert_int_equal(replystream_parse_entry(str("5-5"), &ev), -1);
    assert_int_equal(replystream_parse_entry(arr(1, str("5-5"), NULL, NULL, NULL), &ev), -1);
    assert_int_equal(replystream_parse_entry(NULL, &ev), -1);
}

static void test_ids(void **state)
{
    (void)state;
    unsigned long long ms, seq;
    assert_int_equal(replystream_id_parse("1733290000000-12", &ms, &seq), 0);
    assert_true(ms == 1733290000000ULL && seq == 12);
    assert_int_equal(replystream_id_parse("0-0", &ms, &seq), 0);
    const char *bad[] = {"", "1", "1-", "-1", "a-1", "1-1x", "1--1", " 1-1", "12345678901234567890-1", "done"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(replystream_id_parse(bad[i], &ms, &seq), -1);
    assert_int_equal(replystream_id_parse(NULL, &ms, &seq), -1);
    assert_true(replystream_id_cmp("10-0", "9-5") > 0);
    assert_true(replystream_id_cmp("10-1", "10-2") < 0);
    assert_int_equal(replystream_id_cmp("10-2", "10-2"), 0);
    assert_int_equal(replystream_id_cmp("junk", "0-0"), 0);
    assert_true(replystream_id_cmp("junk", "0-1") < 0);
    assert_string_equal(replystream_type_name(REPLYSTREAM_RESTART), "restart");
    assert_string_equal(replystream_type_name(REPLYSTREAM_UNKNOWN), "");
}

/* ---- the writers, against a real Redis ---- */

static char dir[] = "/tmp/gb-replystream.XXXXXX";
static char sock[64];
static pid_t redis_pid;

static int redis_setup(void **state)
{
    (void)state;
    redis_pid = private_redis_start(dir, sock, sizeof sock);
    if (redis_pid < 0)
        return -1;
    char url[96];
    snprintf(url, sizeof url, "unix://%s", sock);
    return cache_init(url) == 0 ? 0 : -1;
}

static int redis_teardown(void **state)
{
    (void)state;
    cache_close();
    private_redis_stop(redis_pid, dir, sock);
    return 0;
}

/* The events a reader from the start sees, as "type:text" joined by "|" ("restart", "delta:ab", "done"). */
static const char *seen(long long reply_id)
{
    static char out[512];
    redisReply *r = NULL;
    out[0] = '\0';
    assert_int_equal(replystream_range(reply_id, NULL, 100, &r), 0);
    for (size_t i = 0; i < r->elements; i++) {
        replystream_event_t ev;
        assert_int_equal(replystream_parse_entry(r->element[i], &ev), 0);
        size_t n = strlen(out);
        snprintf(out + n, sizeof out - n, "%s%s%s%.*s", n ? "|" : "", replystream_type_name(ev.type),
                 ev.type == REPLYSTREAM_DELTA ? ":" : "", ev.type == REPLYSTREAM_DELTA ? (int)ev.len : 0,
                 ev.type == REPLYSTREAM_DELTA ? ev.text : "");
    }
    freeReplyObject(r);
    return out;
}

static void test_begin_and_pieces(void **state)
{
    (void)state;
    assert_int_equal(replystream_begin(1, 0), 0);
    assert_string_equal(seen(1), ""); /* a first attempt: nothing to restart */
    assert_int_equal(replystream_delta(1, "ab", 2), 0);
    assert_int_equal(replystream_delta(1, "", 0), 0); /* nothing to add */
    assert_int_equal(replystream_delta(1, "c", 1), 0);
    assert_string_equal(seen(1), "delta:ab|delta:c");
    assert_int_equal(replystream_begin(1, 1), 0); /* a second attempt drops the first one's pieces */
    assert_string_equal(seen(1), "restart");
    assert_int_equal(replystream_delta(1, "x", 1), 0);
    assert_int_equal(replystream_end(1, 1), 0);
    assert_string_equal(seen(1), "restart|delta:x|done");
    assert_int_equal(replystream_end(1, 0), 0);
    assert_string_equal(seen(1), "restart|delta:x|done|error");
    /* a retry whose stream is gone (Redis flushed since the first attempt): the restart still comes, for
     * readers holding the first attempt's pieces */
    assert_int_equal(replystream_begin(5, 1), 0);
    assert_string_equal(seen(5), "restart");
}

static void test_resume(void **state)
{
    (void)state;
    /* publishing stopped after some pieces: the stream starts over with the whole text so far */
    assert_int_equal(replystream_delta(2, "one ", 4), 0);
    assert_int_equal(replystream_resume(2, "one two ", 8), 0);
    assert_string_equal(seen(2), "restart|delta:one two ");
    assert_int_equal(replystream_delta(2, "three", 5), 0);
    assert_string_equal(seen(2), "restart|delta:one two |delta:three");
    /* the stream is gone (Redis restarted empty): the restart still comes, for readers holding pieces */
    assert_int_equal(replystream_resume(3, "so far", 6), 0);
    assert_string_equal(seen(3), "restart|delta:so far");
    /* nothing written yet */
    assert_int_equal(replystream_resume(4, "", 0), 0);
    assert_string_equal(seen(4), "restart");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_entries),
        cmocka_unit_test(test_ids),
    };
    const struct CMUnitTest redis_tests[] = {
        cmocka_unit_test(test_begin_and_pieces),
        cmocka_unit_test(test_resume),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return failed + cmocka_run_group_tests_name("redis", redis_tests, redis_setup, redis_teardown);
}
