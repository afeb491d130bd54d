#include "chat_cache.h"

#include <stdio.h>
#include <string.h>

#include "cache.h"
#include "keys.h"
#include "log.h"

int chat_cache_is_body(const char *val, size_t len)
{
    return val && len > 0 && val[0] == '{';
}

/* ARGV[1]: what the reader saw ('' for none), ARGV[2]: the body, ARGV[3]: the TTL. */
static const char fill_lua[] = "local v = redis.call('GET', KEYS[1]) "
                               "if (v == false and ARGV[1] == '') or v == ARGV[1] then "
                               "redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1 end "
                               "return 0";

void chat_cache_fill(long long user_id, const char *seen, size_t seenlen, const char *body, size_t len)
{
    char key[KEYS_USER_MAX], ttl[16];
    keys_chatrooms(user_id, key);
    int n = snprintf(ttl, sizeof ttl, "%d", KEYS_CHATROOMS_TTL);
    const char *argv[] = {"EVAL", fill_lua, "1", key, seen, body, ttl};
    size_t lens[] = {4, sizeof fill_lua - 1, 1, strlen(key), seenlen, len, (size_t)n};
    redisReply *r = cache_cmd(7, argv, lens);

    if (r && r->type == REDIS_REPLY_ERROR)
        log_warn("chat: cache fill of %s refused: %.*s", key, (int)(r->len < 200 ? r->len : 200), r->str);
    freeReplyObject(r); /* NULL: Redis down, the list was served from PostgreSQL anyway */
}
