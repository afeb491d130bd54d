#!/usr/bin/env bash
# e2e: core
# The worker through store outages: FLUSHALL while replies are pending loses none (the recovery sweep finds them
# in PostgreSQL and the consumer group is recreated), Redis down keeps replies flowing from PostgreSQL, and the
# worker survives a PostgreSQL restart.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../worker_lib.sh"

tag=$(uniq_tag)
worker_user
new_room

# Replies whose queue entry is lost are found again once older than WORKER_RECOVER_SECONDS (the sweep runs
# every second): with 3 s here, within about 4 s of being posted.
settings=(WORKER_RECOVER_SECONDS=3)
start_worker() {
    (
        for kv in "${settings[@]}"; do export "${kv?}"; done
        stack_worker_start
    )
}
worker_restart "${settings[@]}"

# ---- FLUSHALL while replies wait in the stream (no worker running) ----
stack_worker_stop TERM
ids=() texts=()
for i in 1 2 3 4 5; do
    texts+=("flushed $i $tag")
    post_msg "$ROOM" "${texts[-1]}"
    ids+=("$REPLY_ID")
done
check "the five replies are queued" test "$(redis_cli XLEN gb:replies)" -ge 5
redis_cli FLUSHALL >/dev/null
check_eq "$(redis_cli EXISTS gb:replies)" 0 "FLUSHALL emptied Redis"
start_worker
check "all five replies complete within 30 s after FLUSHALL" wait_replies 30 "${ids[@]}"
for i in 0 1 2 3 4; do
    check_eq "$(reply_field "${ids[$i]}" content)" "fake-gemini: ${texts[$i]}" "flushed reply $((i + 1)) completed"
done

# the group is back: a new message goes through the stream (faster than the 3 s recover time)
post_msg "$ROOM" "after the flush $tag"
t0=$(date +%s%N)
check "a new reply completes within 30 s" wait_replies 30 "$REPLY_ID"
ms=$((($(date +%s%N) - t0) / 1000000))
check "... through the stream, not the sweep (${ms} ms < 2500 ms)" test "$ms" -lt 2500
check "the consumer group exists again" group_exists

# ---- FLUSHALL under a running, idle worker ----
redis_cli FLUSHALL >/dev/null
sleep 1
post_msg "$ROOM" "flushed under a running worker $tag"
check "a reply posted after FLUSHALL under a running worker completes within 30 s" wait_replies 30 "$REPLY_ID"
check_eq "$(reply_field "$REPLY_ID" status)" completed "completed after the flush"

# ---- a reply row whose enqueue never happened (e.g. Redis failed right after the commit) ----
sql_pending "$ROOM" "never enqueued $tag"
lost=$REPLY_ID
check "a reply that was never enqueued completes within 30 s" wait_replies 30 "$lost"
check_eq "$(reply_field "$lost" content)" "fake-gemini: never enqueued $tag" "the sweep found it in PostgreSQL"

# ---- Redis down: replies still complete, from PostgreSQL ----
stack_redis_stop
post_msg "$ROOM" "redis is down $tag" || true
if [[ $STATUS == 202 ]]; then
    rd=$REPLY_ID
else # the API may refuse while Redis is down; the row is then made like the API would have made it
    sql_pending "$ROOM" "redis is down $tag"
    rd=$REPLY_ID
fi
check "with Redis down a pending reply still completes within 30 s" wait_replies 30 "$rd"
check_eq "$(reply_field "$rd" content)" "fake-gemini: redis is down $tag" "completed while Redis was down"
check "the worker kept running while Redis was down" _stack_alive worker
stack_redis_start
post_msg "$ROOM" "redis is back $tag"
check "after Redis is back a reply completes within 30 s" wait_replies 30 "$REPLY_ID"

# ---- Redis hung (SIGSTOP: it accepts connections, answers nothing) while replies stream: the first command
# that times out tells the whole worker (and the process's Redis client backs off), so the calls in flight
# finish and are stored at once. Each publish used to wait out its own 1 s timeout, every loop turn, for every
# call: 8 streaming replies stalled the worker until Redis came back. ----
trap resume_all EXIT
hung=()
for i in 1 2 3 4 5 6 7 8; do
    post_msg "$ROOM" "[[delay:300]] [[chunks:6]] [[chunkms:250]] redis hung $i $tag"
    hung+=("$REPLY_ID")
done
sleep 0.5
pause "$(cat "$STACK_DIR/redis.pid")"
check "with Redis hung, 8 streaming replies complete within 8 s (it stays hung for 12)" wait_replies 8 "${hung[@]}"
for i in 0 7; do
    check_eq "$(reply_field "${hung[$i]}" content)" "fake-gemini: [[delay:300]] [[chunks:6]] [[chunkms:250]] redis hung $((i + 1)) $tag" \
        "hung reply $((i + 1)): the whole answer"
done
sleep $((12 - 8))
resume_all
trap - EXIT
post_msg "$ROOM" "redis answers again $tag"
check "after Redis answers again a reply completes within 30 s" wait_replies 30 "$REPLY_ID"

# ---- PostgreSQL restart under the worker ----
stack_pg_stop
sleep 2
check "the worker kept running while PostgreSQL was down" _stack_alive worker
stack_pg_start
post_msg "$ROOM" "postgres is back $tag"
check "after PostgreSQL is back a reply completes within 30 s" wait_replies 30 "$REPLY_ID"
check_eq "$(reply_field "$REPLY_ID" content)" "fake-gemini: postgres is back $tag" "completed after the restart"

# ---- PostgreSQL hung (paused): SIGTERM still stops the worker soon. A statement waits at most 5 s for its
# answer (DB_ANSWER_MS_DEFAULT; only housekeeping's deletes longer), not 60 s for each ----
trap 'resume_all; worker_restore' EXIT
sleep 1.5 # the heartbeat of a second ago is answered; the next one meets the pause
pause_pg
sleep 1.5
wpid=$(_stack_pid worker)
t0=$(date +%s%3N)
kill -TERM "$wpid"
_stack_wait_gone 70 "$wpid" || true
ms=$(($(date +%s%3N) - t0))
resume_all
check "SIGTERM stopped the worker within 12 s while PostgreSQL hung (${ms} ms)" test "$ms" -lt 12000
rm -f "$STACK_DIR/worker.pid"
stack_worker_start
trap worker_restore EXIT

# ---- PostgreSQL down while a call is in flight: the answer is stored when it comes back ----
post_msg "$ROOM" "[[delay:1500]] answer while postgres is down $tag"
rp=$REPLY_ID
sel="select(.body.contents[-1].parts[-1].text == \"[[delay:1500]] answer while postgres is down $tag\")"
check "the call reached upstream" wait_fake_count 20 1 "$sel"
stack_pg_stop
sleep 3
stack_pg_start
check "the answer that came back during the outage is stored within 30 s" wait_replies 30 "$rp"
check_eq "$(reply_field "$rp" status)" completed "completed despite the outage"
check_eq "$(fake_count "$sel")" 1 "... without calling upstream again"
check "the worker is still running" _stack_alive worker

# ---- Redis down with the default recover time (30 s): replies do not wait for it ----
# With no stream to wait for, the sweep takes pending replies at once (under a lease), about once a second.
# shellcheck disable=SC2119 # no settings: the stack's own (WORKER_RECOVER_SECONDS unset: 30 s)
worker_restart
sleep 1
stack_redis_stop
post_msg "$ROOM" "redis down, no waiting $tag" || true
if [[ $STATUS == 202 ]]; then
    rq=$REPLY_ID
else
    sql_pending "$ROOM" "redis down, no waiting $tag"
    rq=$REPLY_ID
fi
t0=$(date +%s%N)
check "with Redis down a new reply completes within 5 s, not after the 30 s recover time" wait_replies 5 "$rq"
ms=$((($(date +%s%N) - t0) / 1000000))
check_eq "$(reply_field "$rq" status)/$(reply_field "$rq" attempts)/$(reply_field "$rq" "coalesce(lease_owner, 'none')")" \
    completed/1/none "... in ${ms} ms, one attempt, its lease released"
post_msg "$ROOM" "redis still down $tag" || true
if [[ $STATUS == 202 ]]; then
    check "a second one too" wait_replies 5 "$REPLY_ID"
fi
stack_redis_start
post_msg "$ROOM" "redis is back again $tag"
check "after Redis is back a reply completes within 30 s" wait_replies 30 "$REPLY_ID"
check "the worker is still running" _stack_alive worker
