#include "queue.h"

#include <stdio.h>
#include <string.h>

#include "cache.h"

int queue_enqueue(long long reply_id)
{
    char id[24];
    int n = snprintf(id, sizeof id, "%lld", reply_id);
    const char *argv[] = {"XADD", QUEUE_STREAM, "MAXLEN", "~", QUEUE_MAXLEN, "*", "reply_id", id};
    size_t lens[] = {4, strlen(QUEUE_STREAM), 6, 1, strlen(QUEUE_MAXLEN), 1, 8, (size_t)n};
    redisReply *r = cache_cmd(8, argv, lens);
    int rc = (r && r->type == REDIS_REPLY_STRING) ? 0 : -1;
    freeReplyObject(r);
    return rc;
}
