#!/usr/bin/env bash
# /healthz: answers within 1 s whatever is down or paused; Redis down is 200 "degraded" (requests are still
# served from PostgreSQL), PostgreSQL down is 503; it reports the worker's heartbeat (a PostgreSQL row, so it
# keeps beating while Redis is down) and the queue depth.
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# A paused server must never outlive this script.
trap resume_all EXIT

# health: GET /healthz, with its time in TIME (seconds).
health() {
    local t0 t1
    t0=$(date +%s%N)
    req GET /healthz
    t1=$(date +%s%N)
    TIME=$(((t1 - t0) / 1000000))
}
fast() { ((TIME < 1000)); }

# Wait for a fresh heartbeat: the worker beats every 2 s, but after the PostgreSQL restart of 12_restart its
# next attempt may be up to 5 s away (worker/upkeep.c backoff).
for _ in $(seq 1 30); do
    health
    [[ $(jget .worker) == ok && $(jget '.worker_heartbeat_age // 99') -le 5 ]] && break
    sleep 0.5
done
check_eq "$STATUS/$(jget .status)/$(jget .worker)" "200/ok/ok" "all up: 200 ok, the worker beats"
check "the heartbeat is an RFC 3339 UTC time" grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$' \
    <<<"$(jget .worker_heartbeat)"
check "the heartbeat age is a few seconds" test "$(jget .worker_heartbeat_age)" -le 5
depth=$(psql_q "SELECT count(*) FROM messages WHERE status = 'pending' AND role = 'model'")
check_eq "$(jget '.queue_depth | type')/$(jget .queue_depth)" "number/$depth" "queue_depth is the pending replies"

# ---- every auth process stopped, as a login flood keeps them all busy hashing: /healthz and /metrics are the
# chatroom program's and still answer (under plain CGI there are no standing processes to stop) ----
mapfile -t auth_pids < <(stack_program_pids auth)
if ((${#auth_pids[@]} > 0)); then
    pause "${auth_pids[@]}"
    req GET /healthz --max-time 5
    check_eq "$STATUS/$(jget .postgres)" "200/ok" "with every auth process stopped (${#auth_pids[@]}), /healthz answers"
    req GET /metrics --max-time 5
    check "... and so does /metrics" grep -q '^# TYPE gemini_http_requests_total counter$' <<<"$BODY"
    resume_all
fi

# ---- Redis paused: connections hang instead of failing ----
redis_pid=$(_stack_pid redis)
pause "$redis_pid"
health
check_eq "$STATUS/$(jget .status)/$(jget .postgres)/$(jget .redis)" "200/degraded/ok/down" \
    "Redis paused: 200 degraded, Redis named"
check "Redis paused: answered in under 1 s (${TIME} ms)" fast
health
check "Redis paused: the next one too (${TIME} ms)" fast
resume_all
health
check_eq "$STATUS/$(jget .status)" "200/ok" "Redis resumed: ok again"

# ---- Redis stopped ----
stack_redis_stop
health
check_eq "$STATUS/$(jget .status)/$(jget .redis)" "200/degraded/down" "Redis stopped: 200 degraded"
check "Redis stopped: answered in under 1 s (${TIME} ms)" fast
signup_and_login
auth_req "$TOKEN" GET /chatroom
check_status 200 "Redis stopped: requests are still served (what degraded promises)"
before=$(psql_q "SELECT max(beat_at) FROM worker_heartbeats")
sleep 3
after=$(psql_q "SELECT max(beat_at) FROM worker_heartbeats")
check "the worker keeps beating while Redis is down" test "$before" != "$after"
health
check_eq "$(jget .worker)" ok "Redis stopped: the worker is reported ok"
stack_redis_start

# ---- Redis restarted while the processes sat idle: their connections are closed, Redis is not down ----
burst_redis() { # 16 /healthz at once (so that every chatroom process answers some): their "redis" fields
    local i
    for i in $(seq 1 16); do curl -s --max-time 5 "$BASE_URL/healthz" | jq -r .redis & done
    wait
}
for _ in 1 2 3 4 5 6 7 8 9 10; do
    [[ $(burst_redis | sort -u) == ok ]] && break # every process has its connection to Redis again
    sleep 0.3
done
stack_redis_stop
stack_redis_start
check_eq "$(burst_redis | sort | uniq -c | awk '{ printf "%s%s=%s", (NR > 1 ? " " : ""), $2, $1 }')" "ok=16" \
    "Redis restarted while idle: no process reports it down (each replaces its closed connection)"

# ---- PostgreSQL paused (the postmaster and every backend): the ping times out ----
pause_pg
health
check_eq "$STATUS/$(jget .status)/$(jget .postgres)" "503/unavailable/down" "PostgreSQL paused: 503, PostgreSQL named"
check "PostgreSQL paused: answered in under 1 s (${TIME} ms)" fast
check_eq "$(jget .worker)/$(jget .queue_depth)" "unknown/null" "PostgreSQL paused: worker and queue unknown"
resume_all
for _ in 1 2 3 4 5; do
    health
    [[ $STATUS == 200 ]] && break
    sleep 0.2
done
check_eq "$STATUS/$(jget .status)" "200/ok" "PostgreSQL resumed: ok again"

# ---- PostgreSQL stopped ----
stack_pg_stop
health
check_eq "$STATUS/$(jget .status)/$(jget .postgres)" "503/unavailable/down" "PostgreSQL stopped: 503"
check "PostgreSQL stopped: answered in under 1 s (${TIME} ms)" fast
stack_pg_start
# The programs notice the restarted server on their next probe (each process holds its own connection).
for _ in $(seq 1 20); do
    health
    [[ $STATUS == 200 ]] && break
    sleep 0.25
done
check_status 200 "PostgreSQL started again: 200 within 5 s"

# ---- the worker: stale and none ----
stack_worker_stop TERM
psql_q "UPDATE worker_heartbeats SET beat_at = now() - interval '1 minute'" >/dev/null
health
check_eq "$STATUS/$(jget .status)/$(jget .worker)" "200/ok/stale" "a worker silent for a minute is stale (status stays ok)"
check "the stale age is reported" test "$(jget .worker_heartbeat_age)" -ge 60
psql_q "DELETE FROM worker_heartbeats" >/dev/null
health
check_eq "$(jget .worker)/$(jget .worker_heartbeat)" "none/null" "no heartbeat at all: none"
stack_worker_start
for _ in $(seq 1 20); do
    health
    [[ $(jget .worker) == ok ]] && break
    sleep 0.5
done
check_eq "$(jget .worker)" ok "a restarted worker is ok again"
