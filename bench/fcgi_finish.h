/* How the benchmark baselines end a request: as the app does (lib/http.c, finish_fcgi), so that the ceiling
 * every rate is divided by is the fastest a do-nothing handler can be, not one slowed by libfcgi's lingering
 * close. A request without a body (all the baselines serve) has its end-of-stream record right behind its
 * parameters; once it is read and nothing is left in the socket, FCGX_Detach makes FCGX_Finish_r close at
 * once instead of waiting (up to 2 s) for the web server to close its end. Built with -DBENCH_LINGER, the
 * handler keeps libfcgi's own close (the "noop-linger" row of make bench). */
#ifndef BENCH_FCGI_FINISH_H
#define BENCH_FCGI_FINISH_H

#include <fcgiapp.h>
#include <sys/ioctl.h>

static inline void bench_finish(FCGX_Request *req)
{
#ifndef BENCH_LINGER
    int avail = 1;
    char c;

    if (!FCGX_HasSeenEOF(req->in))
        (void)FCGX_GetStr(&c, 1, req->in);
    if (FCGX_HasSeenEOF(req->in) && !FCGX_GetError(req->in) && ioctl(req->ipcFd, FIONREAD, &avail) == 0 && avail == 0)
        FCGX_Detach(req);
#endif
    FCGX_Finish_r(req);
}

#endif
