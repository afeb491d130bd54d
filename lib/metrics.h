/* metrics: Prometheus counters shared by every process of the suite without a network round trip.
 * A long-lived process maps a file of its own, <dir>/<prog>.<pid>.metrics (a fixed-layout table), and is its
 * only writer; readers (GET /metrics, any process) sum every *.metrics file of the directory. Files of
 * processes that ended stay, so every counter only ever grows (a new process with a recycled pid continues the
 * old file). Updating a counter is a few memory writes: no lock, no system call. A process that serves one
 * request or one run (plain CGI, worker --once) shares <dir>/<prog>.shared.metrics with the others of its
 * program instead, so the directory does not gain a file per request: its counters are atomic adds too, and
 * the first use of a series takes the file's lock (flock) to claim its slot.
 * Everything here is best effort: when the directory cannot be used metrics are off and nothing fails. */
#ifndef GB_METRICS_H
#define GB_METRICS_H

#include "util.h"

#define METRICS_SLOTS 128    /* distinct (route, method, status) series one process can record */
#define METRICS_ROUTE_MAX 48 /* bytes of a route label, NUL included (route patterns, e.g. /chatroom/{id}) */
#define METRICS_NBUCKETS 11  /* latency histogram buckets, see metrics.c (le 0.005 .. 10 s, then +Inf) */

/* Worker counters (the worker process records them). */
enum metrics_counter { METRICS_REPLIES_COMPLETED, METRICS_REPLIES_FAILED, METRICS_REPLIES_RETRIED, METRICS_NCOUNTERS };

/* Open (create if needed, mode 0600, the directory 0700) this process's file under dir, or with shared set the
 * program's shared file. 0 ok, -1 metrics off (the reason is logged once). Call once at start; calling again
 * is a no-op. */
int metrics_open(const char *dir, const char *prog, int shared);

/* One answered HTTP request: route is the matched route's pattern ("unmatched" for none), ms its duration. */
void metrics_request(const char *route, const char *method, int status, double ms);
/* One upstream (model) call that got an answer or failed, with its duration. */
void metrics_upstream(double ms);
/* Add n to a worker counter. */
void metrics_add(enum metrics_counter c, long long n);

/* Extra gauges a scrape adds (the caller measures them; a negative value leaves the gauge out). */
typedef struct metrics_gauges {
    long long queue_depth;       /* replies still pending */
    double worker_heartbeat_age; /* seconds since the worker's last heartbeat */
} metrics_gauges_t;

/* The Prometheus text exposition (version 0.0.4) of the sum of every file under dir, plus the gauges, into
 * out. 0 ok, -1 the directory cannot be read (out then holds the gauges only). */
int metrics_render(const char *dir, const metrics_gauges_t *g, buf_t *out);

#endif
