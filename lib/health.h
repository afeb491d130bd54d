/* health: what GET /healthz answers, and the worker heartbeat it reports.
 *
 * The probe is bounded in time whatever is down, paused or unreachable (PostgreSQL HEALTH_PG_MS, Redis
 * HEALTH_REDIS_MS, both well under a second together), so a load balancer never waits on it.
 *   status "ok"          200  PostgreSQL and Redis answer
 *   status "degraded"    200  Redis does not: requests are still served from PostgreSQL (slower, no cache)
 *   status "unavailable" 503  PostgreSQL does not: requests cannot be served
 * The worker is reported beside it ("worker": "ok", "stale" past HEALTH_STALE_SECONDS, "none" when no worker
 * ever beat, "unknown" while PostgreSQL is down) without changing the status: the API still answers without
 * one, replies just stay pending. The heartbeat is a PostgreSQL row (worker_heartbeats), so it is written
 * while Redis is down. queue_depth is the number of pending replies (PostgreSQL is the queue's truth). */
#ifndef GB_HEALTH_H
#define GB_HEALTH_H

#include <json-c/json.h>

#include "http.h"

#define HEALTH_PG_MS 350
#define HEALTH_REDIS_MS 250
#define HEALTH_BEAT_MS 2000      /* the worker writes its heartbeat this often */
#define HEALTH_STALE_SECONDS 15L /* an older heartbeat is "stale" */

enum health_worker { HEALTH_WORKER_UNKNOWN = 0, HEALTH_WORKER_OK, HEALTH_WORKER_STALE, HEALTH_WORKER_NONE };

typedef struct health {
    int postgres_ok, redis_ok;
    enum health_worker worker;
    char worker_heartbeat[32]; /* RFC 3339 of the newest heartbeat, "" if none or unknown */
    long long worker_age;      /* seconds since it, -1 if none or unknown */
    long long queue_depth;     /* pending replies, -1 if unknown */
} health_t;

/* Probe PostgreSQL and Redis on the process connections (bounded as above) and read the heartbeat and queue
 * depth. Always fills *h. */
void health_probe(health_t *h);

/* The HTTP status for h: 200, or 503 when PostgreSQL is down. */
int health_http_status(const health_t *h);

/* The /healthz body for h (pure). The caller owns it (json_object_put). */
json_object *health_json(const health_t *h);

/* The whole GET /healthz handler: probe, then answer. */
void health_respond(http_req_t *req);

/* GET /metrics: the Prometheus text of every process's counters (lib/metrics.h) under METRICS_DIR, plus the
 * queue depth and the worker heartbeat's age, for clients whose REMOTE_ADDR is in METRICS_ALLOW_FROM (default
 * loopback only); a request relayed by a proxy (X-Forwarded-For or Forwarded) only with "any". Others: 404. */
void health_metrics_respond(http_req_t *req);
/* Is addr in the comma-separated list ("any" admits all)? (pure, for tests) */
int health_metrics_allowed(const char *list, const char *addr);

/* Worker side: write this process's heartbeat (host:pid) when the last one is HEALTH_BEAT_MS old; call it
 * on every turn of the worker loop. Cheap otherwise; never blocks longer than one statement; a failure (the
 * database is down) is retried a few seconds later and never reported to the caller. Also drops heartbeats
 * older than a day (workers that are gone). */
void health_worker_beat(void);

#endif
