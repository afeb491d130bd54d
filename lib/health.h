/* health: the readiness probe. */
#ifndef GB_HEALTH_H
#define GB_HEALTH_H

#include "http.h"

/* GET /healthz: pings PostgreSQL and Redis (reconnecting if needed) and answers 200
 * {"status":"ok","postgres":"ok","redis":"ok"}, or 503 with "status":"unavailable" and "down" for each store
 * that did not answer. */
void health_check(http_req_t *req);

#endif
