#include "cache_local.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cache.h"
#include "keys.h"
#include "log.h"
#include "util.h"

#define SLOTS 256                 /* direct-mapped: a colliding key replaces the older */
#define VALUE_BUDGET (128 * 1024) /* bytes of values kept at most (the process budget is 2 MB private) */
#define MAX_AGE_MS 60000.0        /* a copy is read from Redis again after this, invalidated or not */
#define LEASE_MS 250.0            /* well under the 1 s command timeout of a failing writer (cache.c) */
#define DRAIN_MAX_BYTES 8192      /* more waiting than this: Redis may have had to buffer (see sync) */
#define DRAIN_MAX_MESSAGES 64
#define ATTACH_TIMEOUT_MS 250 /* a hung Redis costs a request this much more, at most once a second */
#define ATTACH_BACKOFF_MS 1000.0

typedef struct {
    char key[KEYS_USER_MAX];
    char *val; /* NULL: Redis had no such key */
    size_t len;
    double at; /* when it was read */
    int used;
} slot_t;

static slot_t slots[SLOTS];
static size_t value_bytes;
static int wanted;
static redisContext *inv;   /* the invalidation connection; NULL when not attached */
static int broken;          /* the tracking is no longer to be trusted: the caller drops the main connection */
static double ping_sent;    /* when the PING in flight on inv was sent; 0 none */
static double lease_at;     /* when the last answered PING was sent; 0 none */
static double attach_after; /* no attempt before this (after a failed one) */

static unsigned slot_of(const char *key, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 16777619u;
    return h % SLOTS;
}

static void slot_clear(slot_t *s)
{
    if (s->val)
        value_bytes -= s->len;
    free(s->val);
    memset(s, 0, sizeof *s);
}

void cache_local_flush(void)
{
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].used)
            slot_clear(&slots[i]);
}

void cache_local_want(int on)
{
    wanted = on;
}

void cache_local_detach(void)
{
    if (inv)
        redisFree(inv);
    inv = NULL;
    broken = 0;
    ping_sent = lease_at = 0;
    cache_local_flush();
}

int cache_local_attach_due(void)
{
    return wanted && !inv && now_ms() >= attach_after;
}

int cache_local_attach(redisContext *c)
{
    static const struct timeval short_tv = {0, ATTACH_TIMEOUT_MS * 1000};
    redisReply *r = NULL;
    long long id;
    const char *why = "out of memory";

    cache_local_detach();
    redisContext *i = cache_connect_new();
    if (!i) {
        why = cache_last_error();
        goto fail;
    }
    redisSetTimeout(i, short_tv);
    r = redisCommand(i, "CLIENT ID");
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        why = "CLIENT ID";
        goto fail;
    }
    id = r->integer;
    freeReplyObject(r);
    r = redisCommand(i, "SUBSCRIBE __redis__:invalidate");
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        why = "SUBSCRIBE";
        goto fail;
    }
    freeReplyObject(r);
    redisSetTimeout(c, short_tv); /* the caller sets its own back */
    r = redisCommand(c, "CLIENT TRACKING on REDIRECT %lld", id);
    if (!r || r->type != REDIS_REPLY_STATUS) {
        why = r && r->type == REDIS_REPLY_ERROR ? r->str : "CLIENT TRACKING";
        goto fail;
    }
    freeReplyObject(r);
    inv = i;
    return 0;
fail:
    log_warn("redis: no local copies on this connection: %s", why);
    attach_after = now_ms() + ATTACH_BACKOFF_MS;
    if (r)
        freeReplyObject(r);
    if (i)
        redisFree(i);
    return -1;
}

int cache_local_tracking(void)
{
    return inv && !broken;
}

static int fail(const char *why)
{
    log_info("redis: local copies dropped: %s", why);
    broken = 1;
    cache_local_flush();
    return -1;
}

static void invalidate(const char *key, size_t len)
{
    slot_t *s = &slots[slot_of(key, len)];
    if (s->used && strlen(s->key) == len && memcmp(s->key, key, len) == 0)
        slot_clear(s);
}

static int is_str(const redisReply *r, const char *s)
{
    return r->type == REDIS_REPLY_STRING && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

/* One message of the invalidation connection (RESP2 Pub/Sub). 0 when it is not one we know. */
static int handle(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2)
        return 0;
    if (r->elements == 3 && is_str(r->element[0], "message")) {
        const redisReply *keys = r->element[2];
        if (keys->type == REDIS_REPLY_NIL) { /* FLUSHALL, FLUSHDB: everything */
            cache_local_flush();
            return 1;
        }
        if (keys->type != REDIS_REPLY_ARRAY)
            return 0;
        for (size_t k = 0; k < keys->elements; k++) {
            if (keys->element[k]->type != REDIS_REPLY_STRING)
                return 0;
            invalidate(keys->element[k]->str, keys->element[k]->len);
        }
        return 1;
    }
    if (!is_str(r->element[0], "pong") || !ping_sent)
        return 0;
    lease_at = ping_sent;
    ping_sent = 0;
    return 1;
}

/* Everything waiting, read until the socket is empty. Redis only buffers what a socket cannot take, and a unix
 * socket takes a few hundred small writes; reading more than DRAIN_MAX_* at once means Redis may hold more
 * behind it that a writer's barrier did not wait for, so the copies go. */
int cache_local_sync(void)
{
    char buf[2048];
    size_t bytes = 0;
    int msgs = 0, rc;

    if (!inv)
        return 0;
    if (broken)
        return -1;
    for (;;) {
        ssize_t n = recv(inv->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            void *r = NULL;
            bytes += (size_t)n;
            if (bytes > DRAIN_MAX_BYTES)
                return fail("too many invalidations waiting");
            if (redisReaderFeed(inv->reader, buf, (size_t)n) != REDIS_OK)
                return fail("out of memory");
            while ((rc = redisReaderGetReply(inv->reader, &r)) == REDIS_OK && r) {
                int ok = handle(r);
                freeReplyObject(r);
                r = NULL;
                if (!ok)
                    return fail("unexpected message");
                if (++msgs > DRAIN_MAX_MESSAGES)
                    return fail("too many invalidations waiting");
            }
            if (rc != REDIS_OK)
                return fail("protocol error");
            continue;
        }
        if (n == 0)
            return fail("invalidation connection closed");
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        return fail("invalidation connection failed");
    }
    double now = now_ms();
    if (!ping_sent && now - lease_at >= LEASE_MS / 2) {
        static const char ping[] = "*1\r\n$4\r\nPING\r\n";
        if (send(inv->fd, ping, sizeof ping - 1, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)(sizeof ping - 1))
            return fail("cannot send PING");
        ping_sent = now;
    }
    return lease_at > 0 && now - lease_at < LEASE_MS;
}

int cache_local_get(const char *key, const char **val, size_t *len)
{
    size_t n = strlen(key);
    slot_t *s = &slots[slot_of(key, n)];

    if (!cache_local_tracking() || !s->used || strcmp(s->key, key) != 0)
        return 0;
    if (now_ms() - s->at >= MAX_AGE_MS) {
        slot_clear(s);
        return 0;
    }
    *val = s->val;
    *len = s->len;
    return 1;
}

void cache_local_put(const char *key, const char *val, size_t len)
{
    size_t n = strlen(key);
    slot_t *s = &slots[slot_of(key, n)];

    if (!cache_local_tracking() || n >= sizeof s->key)
        return;
    slot_clear(s);
    if (val && value_bytes + len > VALUE_BUDGET)
        return; /* full: read from Redis until invalidations make room */
    memcpy(s->key, key, n + 1);
    s->val = val ? xstrndup(val, len) : NULL;
    s->len = val ? len : 0;
    if (val)
        value_bytes += len;
    s->at = now_ms();
    s->used = 1;
}
