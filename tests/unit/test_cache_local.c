/* Unit tests for lib/cache_local.c through cache_mget, against a real Redis the test starts on a unix socket of
 * its own (redis-server from the test packages): copies are served without a round trip once the lease is held;
 * a change made by another client, a FLUSHALL, a killed invalidation connection, a flood of invalidations and
 * a silent Redis (no lease) each make the next read right; a unix socket URL may carry Redis's password; a
 * command is sent again on a new connection only when Redis cannot have run it; a reader's store (a new epoch,
 * a fill) is settled by a round trip like a writer's invalidation. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis.h>

#include "cache.h"
#include "keys.h"
#include "mirror.h"
#include "private_redis.h"
#include "util.h"

static char dir[] = "/tmp/gb-cache-local.XXXXXX";
static char sock[64];
static pid_t redis_pid;
static redisContext *other; /* another client: the writer */

static long long mget_calls(void)
{
    redisReply *r = redisCommand(other, "INFO commandstats");
    const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "cmdstat_mget:calls=") : NULL;
    long long n = p ? strtoll(p + 19, NULL, 10) : 0;
    freeReplyObject(r);
    return n;
}

static void cmd(const char *c)
{
    redisReply *r = redisCommand(other, c);
    assert_non_null(r);
    freeReplyObject(r);
}

/* A write by the other client and its barrier (cache.h): the invalidation is then in our socket. */
static void write_settled(const char *c)
{
    cmd(c);
    cmd("PING");
}

/* cache_mget of one key: its value ("" for none) into out. */
static void get1(const char *key, char *out, size_t cap)
{
    const char *keys[] = {key};
    char *v[1];
    size_t l[1];
    assert_int_equal(cache_mget(1, keys, v, l), 0);
    snprintf(out, cap, "%s", v[0] ? v[0] : "");
    free(v[0]);
}

/* Read key until the lease is held and the copy is served: 0 MGET for the last 3 reads. */
static void warm(const char *key)
{
    char v[64];
    for (int i = 0; i < 50; i++) {
        long long before = mget_calls();
        get1(key, v, sizeof v);
        get1(key, v, sizeof v);
        get1(key, v, sizeof v);
        if (mget_calls() == before)
            return;
        sleep_ms(10);
    }
    fail_msg("the copy of %s was never served locally", key);
}

/* The last command of our tracked main connection (CLIENT LIST: the client with flag 't'), into out. */
static void main_last_cmd(char *out, size_t cap)
{
    redisReply *r = redisCommand(other, "CLIENT LIST");
    assert_true(r && r->type == REDIS_REPLY_STRING);
    out[0] = '\0';
    for (char *line = strtok(r->str, "\n"); line; line = strtok(NULL, "\n")) {
        char flags[32] = "", last[32] = "";
        const char *f = strstr(line, " flags="), *c = strstr(line, " cmd=");
        if (f && c && sscanf(f, " flags=%31s", flags) == 1 && strchr(flags, 't') && sscanf(c, " cmd=%31s", last) == 1)
            snprintf(out, cap, "%s", last);
    }
    freeReplyObject(r);
    assert_true(out[0] != '\0');
}

static int setup(void **state)
{
    (void)state;
    redis_pid = private_redis_start(dir, sock, sizeof sock);
    other = redis_pid > 0 ? redisConnectUnix(sock) : NULL;
    if (!other || other->err)
        return -1;
    char url[96];
    snprintf(url, sizeof url, "unix://%s", sock);
    if (cache_init(url) != 0)
        return -1;
    cache_use_local_copies(1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cache_close();
    redisFree(other);
    private_redis_stop(redis_pid, dir, sock);
    return 0;
}

static void test_copies_are_served_and_invalidated(void **state)
{
    char v[64];
    (void)state;
    write_settled("SET k1 one");
    warm("k1");
    get1("k1", v, sizeof v);
    assert_string_equal(v, "one");

    write_settled("SET k1 two");
    get1("k1", v, sizeof v);
    assert_string_equal(v, "two");

    warm("k1");
    write_settled("DEL k1");
    get1("k1", v, sizeof v);
    assert_string_equal(v, "");

    warm("k1"); /* a missing key is kept too ... */
    write_settled("SET k1 three");
    get1("k1", v, sizeof v); /* ... and invalidated when it appears */
    assert_string_equal(v, "three");
}

static void test_flushall_empties_every_copy(void **state)
{
    char v[64];
    (void)state;
    write_settled("SET k2 x");
    warm("k2");
    write_settled("FLUSHALL");
    get1("k2", v, sizeof v);
    assert_string_equal(v, "");
}

static void test_killed_invalidation_connection(void **state)
{
    char v[64];
    (void)state;
    write_settled("SET k3 before");
    warm("k3");
    write_settled("CLIENT KILL TYPE pubsub"); /* what it would carry next is lost ... */
    write_settled("SET k3 after");
    get1("k3", v, sizeof v); /* ... so the copies go with it */
    assert_string_equal(v, "after");
    warm("k3"); /* and a new one is made */
}

static void test_flood_of_invalidations(void **state)
{
    char key[32], v[64], c[64];
    (void)state;
    for (int i = 0; i < 300; i++) { /* 300 tracked keys ... */
        snprintf(key, sizeof key, "f%d", i);
        get1(key, v, sizeof v);
    }
    write_settled("SET k4 old");
    warm("k4");
    for (int i = 0; i < 300; i++) { /* ... all changed: more invalidations than a drain takes */
        snprintf(c, sizeof c, "SET f%d x", i);
        cmd(c);
    }
    write_settled("SET k4 new");
    get1("k4", v, sizeof v);
    assert_string_equal(v, "new");
    warm("k4");
}

static void test_no_lease_no_copies(void **state)
{
    char v[64];
    (void)state;
    write_settled("SET k5 v");
    warm("k5");
    sleep_ms(300); /* no PING answered for longer than the lease */
    long long before = mget_calls();
    get1("k5", v, sizeof v);
    assert_true(mget_calls() > before);
    assert_string_equal(v, "v");
}

/* Point the cache at url (closing the current connection) with local copies on. */
static void use_url(const char *fmt)
{
    char url[160];
    cache_close();
    snprintf(url, sizeof url, fmt, sock);
    assert_int_equal(cache_init(url), 0);
    cache_use_local_copies(1);
}

static void test_password_in_unix_url(void **state)
{
    char v[64];
    (void)state;
    assert_int_equal(cache_init("unix://:pw@relative.sock"), -1); /* the path stays absolute */
    assert_int_equal(cache_init("unix://pw@/x.sock"), -1);        /* [user]:password, as in redis:// */
    redisReply *r = redisCommand(other, "CONFIG SET requirepass %s", "s3cret");
    assert_true(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);

    use_url("unix://%s"); /* no password: refused */
    assert_int_not_equal(cache_ping(), 0);
    use_url("unix://:wrong@%s");
    assert_int_not_equal(cache_ping(), 0);

    use_url("unix://:s3cret@%s"); /* both connections authenticate: copies and their invalidations work */
    write_settled("SET k6 one");
    warm("k6");
    write_settled("SET k6 two");
    get1("k6", v, sizeof v);
    assert_string_equal(v, "two");
    use_url("unix://user:s3cret@%s?db=0");
    assert_int_equal(cache_ping(), 0);

    r = redisCommand(other, "CONFIG SET requirepass %s", "");
    assert_true(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    use_url("unix://%s");
}

static long long incr(const char *key)
{
    const char *argv[] = {"INCR", key};
    size_t lens[] = {4, strlen(key)};
    redisReply *r = cache_cmd(2, argv, lens);
    long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    return n;
}

static long long other_get(const char *key)
{
    redisReply *r = redisCommand(other, "GET %s", key);
    long long n = r && r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
    if (r)
        freeReplyObject(r);
    return n;
}

/* A connection Redis closed (a restart while it sat idle) is replaced and the command sent again; a command
 * that timed out is not (Redis may have run it: an XADD or INCR would happen twice), and for a second after it
 * no command waits on Redis again (a hung Redis costs one timeout a second, not one per command). */
static void test_retry_only_when_not_run(void **state)
{
    (void)state;
    assert_int_equal(incr("k7"), 1);
    redisReply *r = redisCommand(other, "CLIENT KILL TYPE normal SKIPME yes");
    assert_true(r && r->type == REDIS_REPLY_INTEGER && r->integer >= 1);
    freeReplyObject(r);
    assert_int_equal(incr("k7"), 2); /* the closed connection was replaced */

    kill(redis_pid, SIGSTOP);
    assert_int_equal(incr("k7"), -1); /* the 1 s command timeout */
    kill(redis_pid, SIGCONT);
    for (int i = 0; i < 100 && other_get("k7") < 3; i++)
        sleep_ms(10);
    sleep_ms(100);
    assert_int_equal(other_get("k7"), 3); /* it ran once, when Redis woke up */
    double t0 = now_ms();
    assert_int_equal(incr("k7"), -1); /* within the second after the timeout: refused at once */
    assert_true(now_ms() - t0 < 100);
    assert_int_equal(other_get("k7"), 3);
    assert_int_equal(cache_ping_within(500), 0); /* /healthz's PING still probes: Redis is back, and used again */
    assert_int_equal(incr("k7"), 4);
}

/* Another process may hold a copy of what a reader stores (a fill of a cached document, a new epoch): like a
 * writer's invalidation, the store is followed by a round trip before the answer (cache_settle sends a PING), so
 * that the invalidation is in every process's socket when the client asks again (lib/cache_local.h). A refused
 * store changes nothing and needs none. */
static void test_reader_stores_are_settled(void **state)
{
    char last[32], v[160];
    (void)state;
    write_settled("FLUSHALL");
    warm(KEYS_EPOCH);                             /* attached, lease held; the copy says: no epoch */
    assert_int_equal(mirror_observe(NULL, 0), 0); /* installs one */
    assert_non_null(mirror_epoch());
    main_last_cmd(last, sizeof last);
    assert_string_equal(last, "eval");
    cache_settle();
    main_last_cmd(last, sizeof last);
    assert_string_equal(last, "ping");

    const char *list = "{\"chatrooms\":[]}", *other_tomb = "~not what it holds";
    mirror_fill("chatrooms:77", NULL, 0, list, strlen(list), 60);
    main_last_cmd(last, sizeof last);
    assert_string_equal(last, "eval");
    cache_settle();
    main_last_cmd(last, sizeof last);
    assert_string_equal(last, "ping");
    get1("chatrooms:77", v, sizeof v);
    assert_true(mirror_stamped(mirror_epoch(), v, strlen(v)));

    mirror_fill("chatrooms:77", other_tomb, strlen(other_tomb), list, strlen(list), 60); /* refused: it changed */
    cache_settle();
    main_last_cmd(last, sizeof last);
    assert_string_equal(last, "eval");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copies_are_served_and_invalidated),
        cmocka_unit_test(test_flushall_empties_every_copy),
        cmocka_unit_test(test_killed_invalidation_connection),
        cmocka_unit_test(test_flood_of_invalidations),
        cmocka_unit_test(test_no_lease_no_copies),
        cmocka_unit_test(test_password_in_unix_url),
        cmocka_unit_test(test_retry_only_when_not_run),
        cmocka_unit_test(test_reader_stores_are_settled),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
