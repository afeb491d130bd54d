#include "health.h"

#include <json-c/json.h>

#include "cache.h"
#include "db.h"

void health_check(http_req_t *req)
{
    int pg = db_ping() == 0, rd = cache_ping() == 0;
    json_object *o = json_object_new_object();

    json_object_object_add(o, "status", json_object_new_string(pg && rd ? "ok" : "unavailable"));
    json_object_object_add(o, "postgres", json_object_new_string(pg ? "ok" : "down"));
    json_object_object_add(o, "redis", json_object_new_string(rd ? "ok" : "down"));
    http_json(req, pg && rd ? 200 : 503, o);
}
