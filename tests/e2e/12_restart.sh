#!/usr/bin/env bash
# Restarting PostgreSQL or Redis under the running stack: 503 while down, the next request after it is back
# succeeds without restarting the FastCGI processes.
source "$(dirname "$0")/../lib.sh"

signup_and_login
req GET /healthz
check_eq "$STATUS/$(jget .status)" "200/ok" "healthy before the restarts"

stack_pg_stop
auth_req "$TOKEN" GET /user/me
check_eq "$STATUS/$(jget .error.code)" "503/unavailable" "PostgreSQL down: /user/me is 503 unavailable"
req GET /healthz
check_eq "$STATUS/$(jget .postgres)/$(jget .redis)" "503/down/ok" "healthz names PostgreSQL as down"
req POST /auth/signup "{\"mobile\":\"$(rand_mobile)\"}"
check_status 503 "PostgreSQL down: signup is 503"
stack_pg_start
for i in 1 2 3 4 5 6; do # each FastCGI process must reconnect on its own next request
    auth_req "$TOKEN" GET /user/me
    check_status 200 "PostgreSQL back: request $i succeeds"
done
req GET /healthz
check_status 200 "healthz ok after the PostgreSQL restart"

stack_redis_stop
req GET /healthz
check_eq "$STATUS/$(jget .status)/$(jget .postgres)/$(jget .redis)" "200/degraded/ok/down" \
    "healthz names Redis as down (degraded: requests are still served)"
auth_req "$TOKEN" GET /user/me
check_status 200 "Redis down: authentication falls back to PostgreSQL"
stack_redis_start
for i in 1 2 3 4; do
    req GET /healthz
    check_status 200 "Redis back: healthz $i ok"
done
auth_req "$TOKEN" GET /user/me
check_status 200 "Redis back: /user/me ok"
