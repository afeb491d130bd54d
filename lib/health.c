#include "health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "config.h"
#include "db.h"
#include "metrics.h"
#include "util.h"

/* The newest heartbeat, its age and the pending replies, in one round trip. */
static db_stmt_t q_health = DB_STMT(
    "health_read",
    "SELECT " DB_RFC3339("max(beat_at)") ", "
                                         "floor(extract(epoch FROM now() - max(beat_at)))::bigint, "
                                         "(SELECT count(*) FROM messages WHERE status = 'pending' AND role = 'model') "
                                         "FROM worker_heartbeats",
    0);

static db_stmt_t q_beat =
    DB_STMT("health_beat",
            "WITH gone AS (DELETE FROM worker_heartbeats WHERE beat_at < now() - interval '1 day' "
            "AND worker <> $1) "
            "INSERT INTO worker_heartbeats (worker, beat_at) VALUES ($1, now()) "
            "ON CONFLICT (worker) DO UPDATE SET beat_at = excluded.beat_at",
            1);

void health_probe(health_t *h)
{
    memset(h, 0, sizeof *h);
    h->worker = HEALTH_WORKER_UNKNOWN;
    h->worker_age = -1;
    h->queue_depth = -1;
    h->redis_ok = cache_ping_within(HEALTH_REDIS_MS) == 0;
    h->postgres_ok = db_ping_within(HEALTH_PG_MS) == 0;
    if (!h->postgres_ok)
        return;
    PGresult *res = db_query(&q_health, NULL);
    if (!res) /* schema not applied yet, or the server went away just now: report what is known */
        return;
    long long v;
    if (!PQgetisnull(res, 0, 2) && parse_ll(PQgetvalue(res, 0, 2), 0, INT64_MAX, &v) == 0)
        h->queue_depth = v;
    if (PQgetisnull(res, 0, 0)) {
        h->worker = HEALTH_WORKER_NONE;
    } else {
        snprintf(h->worker_heartbeat, sizeof h->worker_heartbeat, "%s", PQgetvalue(res, 0, 0));
        if (parse_ll(PQgetvalue(res, 0, 1), INT64_MIN, INT64_MAX, &v) == 0)
            h->worker_age = v < 0 ? 0 : v; /* clocks of two machines may disagree a little */
        h->worker =
            h->worker_age >= 0 && h->worker_age <= HEALTH_STALE_SECONDS ? HEALTH_WORKER_OK : HEALTH_WORKER_STALE;
    }
    PQclear(res);
}

int health_http_status(const health_t *h)
{
    return h->postgres_ok ? 200 : 503;
}

json_object *health_json(const health_t *h)
{
    static const char *const worker_names[] = {"unknown", "ok", "stale", "none"};
    const char *status = !h->postgres_ok ? "unavailable" : !h->redis_ok ? "degraded" : "ok";
    json_object *o = json_object_new_object();
    json_object_object_add(o, "status", json_object_new_string(status));
    json_object_object_add(o, "postgres", json_object_new_string(h->postgres_ok ? "ok" : "down"));
    json_object_object_add(o, "redis", json_object_new_string(h->redis_ok ? "ok" : "down"));
    json_object_object_add(o, "worker", json_object_new_string(worker_names[h->worker]));
    json_object_object_add(o, "worker_heartbeat",
                           h->worker_heartbeat[0] ? json_object_new_string(h->worker_heartbeat) : NULL);
    json_object_object_add(o, "worker_heartbeat_age", h->worker_age >= 0 ? json_object_new_int64(h->worker_age) : NULL);
    json_object_object_add(o, "queue_depth", h->queue_depth >= 0 ? json_object_new_int64(h->queue_depth) : NULL);
    return o;
}

void health_respond(http_req_t *req)
{
    health_t h;
    health_probe(&h);
    http_json(req, health_http_status(&h), health_json(&h));
}

/* Is addr one of the comma-separated addresses of list ("any" admits every address)? */
int health_metrics_allowed(const char *list, const char *addr)
{
    if (!list || !addr || !*addr)
        return 0;
    size_t alen = strlen(addr);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ')
            e++;
        size_t n = (size_t)(e - p);
        if ((n == 3 && strncmp(p, "any", 3) == 0) || (n == alen && n && strncmp(p, addr, n) == 0))
            return 1;
        p = e;
    }
    return 0;
}

void health_metrics_respond(http_req_t *req)
{
    /* A request relayed by a proxy on this host (X-Forwarded-For, Forwarded, X-Real-IP) arrives from a loopback
     * address but comes from elsewhere: only "any" admits it. Others get the 404 of a path that does not exist. */
    const char *list = g_config.metrics_allow_from, *addr = http_param(req, "REMOTE_ADDR");
    int relayed = http_header(req, "X-Forwarded-For") || http_header(req, "Forwarded") || http_header(req, "X-Real-IP");
    if (!health_metrics_allowed(list, relayed ? "any" : addr)) {
        http_not_found(req);
        return;
    }
    health_t h;
    health_probe(&h);
    metrics_gauges_t g = {.queue_depth = h.queue_depth,
                          .worker_heartbeat_age = h.worker_age >= 0 ? (double)h.worker_age : -1};
    buf_t out = {0};
    metrics_render(g_config.metrics_dir, &g, &out);
    http_raw(req, 200, "text/plain; version=0.0.4; charset=utf-8", out.data ? out.data : "", out.len);
    buf_free(&out);
}

void health_worker_beat(void)
{
    static double next_at;
    static char me[128];
    double now = now_ms();
    if (now < next_at)
        return;
    if (!me[0]) {
        char host[64] = "";
        if (gethostname(host, sizeof host - 1) != 0)
            snprintf(host, sizeof host, "host");
        snprintf(me, sizeof me, "%s:%d", host, (int)getpid());
    }
    const char *params[] = {me};
    PGresult *res = db_query(&q_beat, params);
    /* down: the worker notices and logs that itself; try again a little later than usual */
    next_at = now_ms() + (res ? HEALTH_BEAT_MS : 2 * HEALTH_BEAT_MS);
    PQclear(res);
}
