#include "chat_cache.h"

#include <string.h>

#include "keys.h"
#include "mirror.h"

int chat_cache_is_body(const char *val, size_t len)
{
    return val && len > 0 && val[0] == '{';
}

int chat_cache_hit(const char *val, size_t len, const char **body, size_t *blen)
{
    return mirror_unwrap(val, len, body, blen) && chat_cache_is_body(*body, *blen);
}

void chat_cache_fill(long long user_id, const char *seen, size_t seenlen, const char *body, size_t len)
{
    char key[KEYS_USER_MAX];
    keys_chatrooms(user_id, key);
    mirror_fill(key, seen, seenlen, body, len, KEYS_CHATROOMS_TTL);
}
