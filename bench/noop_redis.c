/* The second benchmark baseline: the do-nothing FastCGI handler plus one synchronous Redis GET per request,
 * the least any cached read that checks shared state must pay. Comparing the cached GET /chatroom with both
 * baselines shows how much of the gap to the do-nothing rate is the Redis round trip itself.
 * REDIS_URL must be unix:///path (what the bench stack uses). */
#include "fcgi_finish.h"
#include <fcgiapp.h>
#include <hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    static const char resp[] = "Status: 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
                               "Content-Length: 16\r\n\r\n{\"chatrooms\":[]}";
    const char *url = getenv("REDIS_URL");
    FCGX_Request req;
    redisContext *c;

    if (!url || strncmp(url, "unix://", 7) != 0) {
        fprintf(stderr, "noop_redis: REDIS_URL must be unix:///path\n");
        return 2;
    }
    c = redisConnectUnix(url + 7);
    if (!c || c->err) {
        fprintf(stderr, "noop_redis: cannot connect to %s\n", url);
        return 1;
    }
    if (FCGX_Init() != 0)
        return 1;
    FCGX_InitRequest(&req, 0, FCGI_FAIL_ACCEPT_ON_INTR);
    while (FCGX_Accept_r(&req) >= 0) {
        redisReply *r = redisCommand(c, "GET bench:noop");
        if (!r)
            return 1;
        freeReplyObject(r);
        FCGX_PutStr(resp, (int)strlen(resp), req.out);
        bench_finish(&req);
    }
    redisFree(c);
    return 0;
}
