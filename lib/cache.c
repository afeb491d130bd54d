#include "cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cache_local.h"
#include "log.h"
#include "util.h"

static struct {
    char *host; /* NULL for a unix socket */
    int port;
    char *path; /* unix socket path */
    char *password;
    int db;
} target;
static redisContext *ctx;
/* After a connect that failed slowly (a timeout: host unreachable), no new attempt before this time, so a
 * request does not pay the connect timeout once per Redis call. Fast failures (refused, no socket file) are
 * retried at once, so a restarted Redis is used by the very next request. */
static double retry_after_ms;
#define SLOW_FAILURE_MS 50.0
#define BACKOFF_MS 1000.0

static const struct timeval connect_tv = {0, 250000};
static const struct timeval command_tv = {1, 0};
static char last_error[160];     /* why the last connect or command failed */
static char run_id[48];          /* INFO server run_id of the instance ctx is connected to; "" unknown */
static unsigned long run_id_gen; /* the connection run_id was read on */
static unsigned long conn_gen;   /* bumped on every new connection */
static int unsettled;            /* an invalidation was written and no round trip followed it yet */

static void note_error(const char *what, const char *msg)
{
    snprintf(last_error, sizeof last_error, "%s%s", what, msg ? msg : "out of memory");
}

int cache_init(const char *url)
{
    free(target.host);
    free(target.path);
    free(target.password);
    memset(&target, 0, sizeof target);
    target.port = 6379;
    if (!url)
        return -1;
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7;
        if (*p != '/') { /* [user]:password@ before the absolute path, as in redis:// */
            const char *at = strstr(p, "@/");
            const char *colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;
            if (!colon)
                return -1;
            if (at > colon + 1)
                target.password = xstrndup(colon + 1, (size_t)(at - colon - 1));
            p = at + 1;
        }
        size_t n = strcspn(p, "?");
        if (n == 0)
            return -1;
        target.path = xstrndup(p, n);
        const char *q = strstr(p + n, "db=");
        long long db = 0;
        if (q && parse_ll(q + 3, 0, 1000, &db) != 0)
            return -1;
        target.db = (int)db;
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return -1;
    const char *p = url + 8;
    const char *at = strrchr(p, '@'); /* the last: a password may hold '@' (host, port and db never do) */
    if (at) {                         /* [user]:password@ */
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        if (at > pw)
            target.password = xstrndup(pw, (size_t)(at - pw));
        p = at + 1;
    }
    size_t hl = strcspn(p, ":/");
    target.host = hl ? xstrndup(p, hl) : xstrdup("127.0.0.1");
    p += hl;
    if (*p == ':') {
        char port[8];
        size_t pl = strcspn(p + 1, "/");
        long long v;
        if (pl == 0 || pl >= sizeof port)
            return -1;
        memcpy(port, p + 1, pl);
        port[pl] = '\0';
        if (parse_ll(port, 1, 65535, &v) != 0)
            return -1;
        target.port = (int)v;
        p += 1 + pl;
    }
    if (*p == '/' && p[1]) {
        long long db;
        if (parse_ll(p + 1, 0, 1000, &db) != 0)
            return -1;
        target.db = (int)db;
    }
    return 0;
}

static void drop(void)
{
    if (ctx)
        redisFree(ctx);
    ctx = NULL;
    cache_local_detach();
}

static int simple(const char *fmt, const char *arg)
{
    redisReply *r = redisCommand(ctx, fmt, arg);
    int ok = r && r->type != REDIS_REPLY_ERROR;
    if (r)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

/* The run_id of the connected instance (a new one on every Redis start, so a restored snapshot is told from the
 * life that wrote it), read once per connection, when first asked for (not at connect: a health check must not
 * wait for it). Left "" when INFO fails: then nothing in Redis is trusted (mirror.h). */
const char *cache_run_id(void)
{
    if (!ctx || ctx->err)
        return "";
    if (run_id_gen == conn_gen)
        return run_id;
    redisReply *r = redisCommand(ctx, "INFO server");
    const char *p = r && r->type == REDIS_REPLY_STRING ? r->str : NULL;

    run_id[0] = '\0';
    p = p ? strstr(p, "run_id:") : NULL;
    if (p) {
        size_t n = strspn(p + 7, "0123456789abcdef");
        if (n > 0 && n < sizeof run_id) {
            memcpy(run_id, p + 7, n);
            run_id[n] = '\0';
            run_id_gen = conn_gen;
        }
    }
    if (r)
        freeReplyObject(r);
    else
        drop(); /* a late reply would answer the next command */
    return run_id;
}

unsigned long cache_generation(void)
{
    return conn_gen;
}

/* A connection to use: 0 ok, -1 none (Redis unreachable, or within the back-off after a slow connect or a
 * timeout, unless probe: a PING is how a process learns that Redis is back). */
static int ensure_for(int probe)
{
    if (ctx && !ctx->err)
        return 0;
    drop();
    double t0 = now_ms();
    if (t0 < retry_after_ms && !probe)
        return -1;
    ctx = target.path ? redisConnectUnixWithTimeout(target.path, connect_tv)
                      : redisConnectWithTimeout(target.host ? target.host : "127.0.0.1", target.port, connect_tv);
    if (!ctx || ctx->err) {
        note_error("cannot connect: ", ctx ? ctx->errstr : NULL);
        log_warn("redis: cannot connect (REDIS_URL): %s", ctx ? ctx->errstr : "out of memory");
        drop();
        if (now_ms() - t0 > SLOW_FAILURE_MS)
            retry_after_ms = now_ms() + BACKOFF_MS;
        return -1;
    }
    redisSetTimeout(ctx, command_tv);
    if (target.password && simple("AUTH %s", target.password) != 0) {
        note_error("AUTH failed (check the password in REDIS_URL)", "");
        log_warn("redis: AUTH failed");
        drop();
        return -1;
    }
    if (target.db) {
        char db[8];
        snprintf(db, sizeof db, "%d", target.db);
        if (simple("SELECT %s", db) != 0) {
            log_warn("redis: SELECT failed");
            drop();
            return -1;
        }
    }
    conn_gen++;
    return 0;
}

static int ensure(void)
{
    return ensure_for(0);
}

/* After a failed command: may it be sent again on a new connection? Yes when the connection was found closed
 * (Redis restarted while it sat idle: the command never ran), not after a timeout, when Redis may well have
 * run it (an XADD sent twice would append a reply's piece twice). A timeout also holds off new connections for
 * BACKOFF_MS, as a slow connect does: a Redis that accepts connections but answers nothing (paused, its host
 * gone without a reset) would otherwise cost every command of every request its whole timeout (the worker's
 * loop and the stream program's, which serve many clients, a second per command). */
static int worth_retrying(void)
{
    int timed_out = ctx->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ETIMEDOUT);
    if (timed_out)
        retry_after_ms = now_ms() + BACKOFF_MS;
    return !timed_out;
}

redisReply *cache_cmd(int argc, const char **argv, const size_t *argvlen)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (ensure() != 0)
            return NULL;
        redisReply *r = redisCommandArgv(ctx, argc, argv, argvlen);
        if (r) {
            unsettled = 0; /* sent after the last write's answer: a barrier for it */
            return r;
        }
        int again = worth_retrying(); /* before anything else touches errno */
        log_warn("redis: %s failed: %s", argv[0], ctx->errstr);
        drop();
        if (!again)
            break;
    }
    return NULL;
}

int cache_pipeline(int n, const int *argc, const char ***argv, const size_t **argvlen, redisReply **replies)
{
    for (int i = 0; i < n; i++)
        replies[i] = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (ensure() != 0)
            return -1;
        int ok = 1;
        for (int i = 0; i < n && ok; i++)
            ok = redisAppendCommandArgv(ctx, argc[i], argv[i], argvlen[i]) == REDIS_OK;
        for (int i = 0; i < n && ok; i++) {
            void *r = NULL;
            ok = redisGetReply(ctx, &r) == REDIS_OK && r;
            replies[i] = r;
        }
        if (ok) {
            unsettled = 0;
            return 0;
        }
        int again = worth_retrying(); /* before anything else touches errno */
        log_warn("redis: pipeline failed: %s", ctx->errstr);
        for (int i = 0; i < n; i++) {
            if (replies[i])
                freeReplyObject(replies[i]);
            replies[i] = NULL;
        }
        drop();
        if (!again)
            break;
    }
    return -1;
}

void cache_use_local_copies(int on)
{
    cache_local_want(on && target.path != NULL);
    drop(); /* the next connection is made with tracking (or without) */
}

/* MGET, as a script Redis refuses whenever it refuses writes (cache.h). */
static const char read_lua[] = "#!lua\nreturn redis.call('MGET', unpack(KEYS))";
static double writable_at; /* when the last read_lua Redis ran was sent (now_ms clock); 0 never */

int cache_mget(int n, const char *const *keys, char **vals, size_t *lens)
{
    const char *argv[3 + CACHE_MGET_MAX];
    size_t argvlen[3 + CACHE_MGET_MAX];
    char nkeys[8];
    int hits = 0, sync = cache_local_sync();

    if (n < 1 || n > CACHE_MGET_MAX)
        return -1;
    if (sync < 0)
        drop(); /* the tracking broke: the next connection is tracked afresh */
    /* Tracking starts here, not at connect: a health check or a write never waits for it. */
    if (sync <= 0 && cache_local_attach_due() && ensure() == 0) {
        int rc = cache_local_attach(ctx);
        redisSetTimeout(ctx, command_tv);
        if (rc != 0 && ctx->err)
            drop();
    }
    if (now_ms() - writable_at >= CACHE_WRITABLE_MS)
        sync = 0; /* Redis may refuse writes since: read from it */
    for (int i = 0; i < n; i++) {
        const char *v;
        vals[i] = NULL;
        lens[i] = 0;
        if (sync > 0 && cache_local_get(keys[i], &v, &lens[i]) == 1) {
            vals[i] = v ? xstrndup(v, lens[i]) : NULL;
            hits++;
        }
    }
    if (hits == n)
        return 0;
    for (int i = 0; i < n; i++) {
        free(vals[i]);
        vals[i] = NULL;
        lens[i] = 0;
        argv[3 + i] = keys[i];
        argvlen[3 + i] = strlen(keys[i]);
    }
    snprintf(nkeys, sizeof nkeys, "%d", n);
    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = read_lua;
    argvlen[1] = sizeof read_lua - 1;
    argv[2] = nkeys;
    argvlen[2] = strlen(nkeys);
    double sent = now_ms();
    redisReply *r = cache_cmd(n + 3, argv, argvlen);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)n) {
        if (r && r->type == REDIS_REPLY_ERROR)
            log_warn("redis: read refused: %.*s", (int)(r->len < 200 ? r->len : 200), r->str);
        freeReplyObject(r);
        return -1;
    }
    writable_at = sent;
    for (int i = 0; i < n; i++) {
        const redisReply *e = r->element[i];
        int str = e->type == REDIS_REPLY_STRING;
        if (str) {
            vals[i] = xstrndup(e->str, e->len);
            lens[i] = e->len;
        }
        cache_local_put(keys[i], str ? e->str : NULL, str ? e->len : 0); /* kept only when tracked */
    }
    freeReplyObject(r);
    return 0;
}

void cache_wait_out_copies(void)
{
    sleep_ms((long)CACHE_WRITABLE_MS + 50);
}

void cache_note_invalidation(void)
{
    unsettled = 1;
}

void cache_settle(void)
{
    if (unsettled)
        cache_ping(); /* up or down, nothing more to wait for */
    unsettled = 0;
}

int cache_get(const char *key, char **val, size_t *len)
{
    const char *argv[] = {"GET", key};
    size_t lens[] = {3, strlen(key)};
    *val = NULL;
    redisReply *r = cache_cmd(2, argv, lens);
    if (!r)
        return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_STRING) {
        *val = xstrndup(r->str, r->len);
        if (len)
            *len = r->len;
        rc = 1;
    } else if (r->type == REDIS_REPLY_ERROR)
        rc = -1;
    freeReplyObject(r);
    return rc;
}

int cache_set(const char *key, const char *val, size_t len, long ttl)
{
    char ttls[24];
    snprintf(ttls, sizeof ttls, "%ld", ttl);
    const char *argv[] = {"SET", key, val, "EX", ttls};
    size_t lens[] = {3, strlen(key), len, 2, strlen(ttls)};
    redisReply *r = cache_cmd(ttl > 0 ? 5 : 3, argv, lens);
    int rc = r && r->type == REDIS_REPLY_STATUS ? 0 : -1;
    if (r)
        freeReplyObject(r);
    return rc;
}

int cache_del(const char *key)
{
    const char *argv[] = {"DEL", key};
    size_t lens[] = {3, strlen(key)};
    redisReply *r = cache_cmd(2, argv, lens);
    int rc = r && r->type == REDIS_REPLY_INTEGER ? 0 : -1;
    if (r)
        freeReplyObject(r);
    return rc;
}

int cache_ping(void)
{
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    redisReply *r = cache_cmd(1, argv, lens);
    int rc = r && r->type == REDIS_REPLY_STATUS ? 0 : -1;
    if (r)
        freeReplyObject(r);
    return rc;
}

int cache_ping_within(long timeout_ms)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    /* As cache_cmd: a connection that Redis closed (a restart since this process last used it) is replaced and
     * the PING sent again, so a Redis that is back is not reported down; a timeout is not retried. */
    for (int attempt = 0; attempt < 2; attempt++) {
        if (ensure_for(1) != 0)
            return -1;
        redisSetTimeout(ctx, tv);
        redisReply *r = redisCommand(ctx, "PING");
        if (r) {
            int rc = r->type == REDIS_REPLY_STATUS ? 0 : -1;
            freeReplyObject(r);
            redisSetTimeout(ctx, command_tv);
            return rc;
        }
        int again = worth_retrying(); /* before anything else touches errno */
        note_error("PING: ", ctx->errstr);
        drop(); /* a late reply would answer the next command */
        if (!again)
            break;
    }
    return -1;
}

redisContext *cache_connect_new(void)
{
    redisContext *c = target.path
                          ? redisConnectUnixWithTimeout(target.path, connect_tv)
                          : redisConnectWithTimeout(target.host ? target.host : "127.0.0.1", target.port, connect_tv);
    if (!c || c->err) {
        note_error("cannot connect: ", c ? c->errstr : NULL);
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, command_tv);
    redisReply *r = NULL;
    if (target.password) {
        r = redisCommand(c, "AUTH %s", target.password);
        if (!r || r->type == REDIS_REPLY_ERROR)
            goto fail;
        freeReplyObject(r);
    }
    if (target.db) {
        char db[8];
        snprintf(db, sizeof db, "%d", target.db);
        r = redisCommand(c, "SELECT %s", db);
        if (!r || r->type == REDIS_REPLY_ERROR)
            goto fail;
        freeReplyObject(r);
    }
    return c;
fail:
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return NULL;
}

const char *cache_last_error(void)
{
    return last_error;
}

void cache_close(void)
{
    drop();
}
