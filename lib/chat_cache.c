#include "chat_cache.h"

#include <stdio.h>
#include <string.h>

#include "cache.h"
#include "keys.h"
#include "log.h"
#include "mirror.h"

int chat_cache_is_body(const char *val, size_t len)
{
    return val && len > 0 && val[0] == '{';
}

int chat_cache_hit(const char *val, size_t len, const char **body, size_t *blen)
{
    return mirror_unwrap(val, len, body, blen) && chat_cache_is_body(*body, *blen);
}

/* KEYS[1]: the list key, KEYS[2]: the epoch key. ARGV[1]: the epoch the reader saw before it read PostgreSQL,
 * ARGV[2]: what the key held then ('' for none), ARGV[3]: the body, ARGV[4]: the TTL. */
static const char fill_lua[] = "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end "
                               "local v = redis.call('GET', KEYS[1]) "
                               "if (v == false and ARGV[2] == '') or v == ARGV[2] then "
                               "redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[3], 'EX', ARGV[4]) return 1 end "
                               "return 0";

void chat_cache_fill(long long user_id, const char *seen, size_t seenlen, const char *body, size_t len)
{
    char key[KEYS_USER_MAX], ttl[16];
    const char *epoch = mirror_epoch();
    if (!epoch)
        return; /* Redis down, or no epoch to store under */
    keys_chatrooms(user_id, key);
    int n = snprintf(ttl, sizeof ttl, "%d", KEYS_CHATROOMS_TTL);
    const char *argv[] = {"EVAL", fill_lua, "2", key, KEYS_EPOCH, epoch, seen, body, ttl};
    size_t lens[] = {4,        sizeof fill_lua - 1, 1, strlen(key), strlen(KEYS_EPOCH), strlen(epoch), seenlen, len,
                     (size_t)n};
    redisReply *r = cache_cmd(9, argv, lens);

    if (r && r->type == REDIS_REPLY_ERROR)
        log_warn("chat: cache fill of %s refused: %.*s", key, (int)(r->len < 200 ? r->len : 200), r->str);
    freeReplyObject(r); /* NULL: Redis down, the list was served from PostgreSQL anyway */
}
