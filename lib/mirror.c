#include "mirror.h"

#include <stdio.h>
#include <string.h>

#include "cache.h"
#include "keys.h"
#include "log.h"
#include "util.h"

static char epoch[MIRROR_EPOCH_MAX]; /* this request's epoch; "" none */
static int trusted;                  /* epoch was read with this request's copies */

int mirror_stamped(const char *ep, const char *val, size_t len)
{
    size_t n = ep ? strlen(ep) : 0;
    return n > 0 && val && len > n && memcmp(val, ep, n) == 0 && val[n] == '|';
}

int mirror_epoch_of(const char *run_id, const char *ep, size_t len)
{
    size_t n = run_id ? strlen(run_id) : 0;
    return n > 0 && ep && len > n + 1 && len < MIRROR_EPOCH_MAX && memcmp(ep, run_id, n) == 0 && ep[n] == '.' &&
           memchr(ep, '|', len) == NULL;
}

void mirror_reset(void)
{
    epoch[0] = '\0';
    trusted = 0;
}

/* Keep the stored epoch if it belongs to this instance life (ARGV[1]: "<run_id>."), else install ARGV[2].
 * Returns the epoch in force. */
static const char install_lua[] = "local e = redis.call('GET', KEYS[1]) "
                                  "if e and string.sub(e, 1, #ARGV[1]) == ARGV[1] then return e end "
                                  "redis.call('SET', KEYS[1], ARGV[2]) return ARGV[2]";

static void install(void)
{
    char prefix[MIRROR_EPOCH_MAX], fresh[MIRROR_EPOCH_MAX], rnd[33];
    const char *rid;
    redisReply *r;

    if (cache_ping() != 0)
        return; /* Redis down: store nothing */
    rid = cache_run_id();
    int n = snprintf(prefix, sizeof prefix, "%s.", rid);
    if (!*rid || n <= 1 || (size_t)n >= sizeof prefix - 33 || random_hex(rnd, 16) != 0)
        return;
    memcpy(fresh, prefix, (size_t)n);
    memcpy(fresh + n, rnd, sizeof rnd); /* fits: n < sizeof prefix - 33 */
    const char *argv[] = {"EVAL", install_lua, "1", KEYS_EPOCH, prefix, fresh};
    size_t lens[] = {4, sizeof install_lua - 1, 1, strlen(KEYS_EPOCH), (size_t)n, strlen(fresh)};
    r = cache_cmd(6, argv, lens);
    /* The reply must come from the instance whose run_id went into the script (no reconnect in between). */
    if (r && r->type == REDIS_REPLY_STRING && mirror_epoch_of(cache_run_id(), r->str, r->len) &&
        strncmp(r->str, prefix, (size_t)n) == 0) {
        memcpy(epoch, r->str, r->len);
        epoch[r->len] = '\0';
        if (strcmp(epoch, fresh) == 0)
            cache_note_invalidation(); /* ours replaced a stale one: other processes drop their copy of it */
    } else if (r && r->type == REDIS_REPLY_ERROR) {
        log_warn("redis: epoch install refused: %.*s", (int)(r->len < 200 ? r->len : 200), r->str);
    }
    freeReplyObject(r);
}

int mirror_observe(const char *val, size_t len)
{
    mirror_reset();
    if (val && mirror_epoch_of(cache_run_id(), val, len)) {
        memcpy(epoch, val, len);
        epoch[len] = '\0';
        trusted = 1;
        return 1;
    }
    install();
    return 0;
}

const char *mirror_epoch(void)
{
    return epoch[0] ? epoch : NULL;
}

int mirror_unwrap(const char *val, size_t len, const char **payload, size_t *plen)
{
    size_t n = strlen(epoch);
    if (!trusted || !mirror_stamped(epoch, val, len))
        return 0;
    *payload = val + n + 1;
    *plen = len - n - 1;
    return 1;
}

/* KEYS[1]: the key, KEYS[2]: the epoch key. ARGV[1]: the epoch the reader saw before it read PostgreSQL,
 * ARGV[2]: what the key held then ('' for none), ARGV[3]: the payload, ARGV[4]: the TTL. */
static const char fill_lua[] = "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end "
                               "local v = redis.call('GET', KEYS[1]) "
                               "if (v == false and ARGV[2] == '') or v == ARGV[2] then "
                               "redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[3], 'EX', ARGV[4]) return 1 end "
                               "return 0";

void mirror_fill(const char *key, const char *seen, size_t seenlen, const char *payload, size_t plen, int ttl)
{
    char ttls[16];
    if (!epoch[0])
        return; /* Redis down, or no epoch to store under */
    int n = snprintf(ttls, sizeof ttls, "%d", ttl);
    const char *argv[] = {"EVAL", fill_lua, "2", key, KEYS_EPOCH, epoch, seen ? seen : "", payload, ttls};
    size_t lens[] = {
        4, sizeof fill_lua - 1, 1, strlen(key), strlen(KEYS_EPOCH), strlen(epoch), seen ? seenlen : 0, plen, (size_t)n};
    redisReply *r = cache_cmd(9, argv, lens);

    if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 1)
        cache_note_invalidation(); /* no process serves its older copy of key (a miss) once the client has this */
    else if (r && r->type == REDIS_REPLY_ERROR)
        log_warn("redis: fill of %s refused: %.*s", key, (int)(r->len < 200 ? r->len : 200), r->str);
    freeReplyObject(r); /* NULL: Redis down, the answer came from PostgreSQL anyway */
}
