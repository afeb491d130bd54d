/* private_redis.h: a redis-server of a unit test's own, on a unix socket in a new temporary directory, without
 * persistence; shared by the tests that need a real Redis (test_cache_local, test_replystream). Header-only
 * (static functions), for test programs only. */
#ifndef GB_PRIVATE_REDIS_H
#define GB_PRIVATE_REDIS_H

#include <hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

/* Start it in a directory made from the mkdtemp template dir; its socket path goes to sock. SIGPIPE is ignored
 * from here on, as in every program of ours (a closed connection is an error, not the end). Returns its pid once
 * it accepts connections, -1 when it did not within 5 s. */
static pid_t private_redis_start(char *dir, char *sock, size_t socklen)
{
    signal(SIGPIPE, SIG_IGN);
    if (!mkdtemp(dir))
        return -1;
    snprintf(sock, socklen, "%s/redis.sock", dir);
    pid_t pid = fork();
    if (pid == 0) {
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no",
               "--daemonize", "no", "--logfile", "/dev/null", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; pid > 0 && i < 200; i++) {
        redisContext *c = redisConnectUnix(sock);
        int up = c && !c->err;
        redisFree(c);
        if (up)
            return pid;
        sleep_ms(25);
    }
    return -1;
}

static void private_redis_stop(pid_t pid, char *dir, const char *sock)
{
    if (pid > 0) {
        kill(pid, SIGCONT); /* a test may have stopped it */
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
    unlink(sock);
    rmdir(dir);
}

#endif
