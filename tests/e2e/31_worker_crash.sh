#!/usr/bin/env bash
# e2e: core
# Worker crashes and stops: a worker killed (SIGKILL) in the middle of its upstream calls loses nothing and
# finishes every reply exactly once after a restart; SIGTERM lets in-flight calls finish, and what outlives the
# grace period is handed back (lease released, attempt not counted) and finished by the next worker. A worker
# whose reply was leased by another meanwhile drops its answer.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../worker_lib.sh"

tag=$(uniq_tag)
worker_user
new_room

# A short upstream timeout keeps the lease short (AI_TIMEOUT_MS + 3 s): a killed worker's replies are taken
# again about 7 s after their call started.
settings=(AI_TIMEOUT_MS=4000 WORKER_RECOVER_SECONDS=2)
worker_restart "${settings[@]}"

# ---- SIGKILL mid-call ----
ids=() texts=()
for i in 1 2 3; do
    texts+=("[[delay:3000]] crash $i $tag")
    post_msg "$ROOM" "${texts[-1]}"
    ids+=("$REPLY_ID")
done
sel="select((.body.contents[-1].parts[-1].text? // \"\") | test(\"crash [0-9] $tag\"))"
check "all three calls reached upstream" wait_fake_count 20 3 "$sel"
stack_worker_stop KILL
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE id IN ($(
    IFS=,
    echo "${ids[*]}"
)) AND status = 'pending' AND lease_until > now()")" 3 "killed mid-call: the replies are pending and leased"
(
    for kv in "${settings[@]}"; do export "${kv?}"; done
    stack_worker_start
)
check "a restarted worker finishes all three within 30 s" wait_replies 30 "${ids[@]}"
for i in 0 1 2; do
    check_eq "$(reply_field "${ids[$i]}" status)/$(reply_field "${ids[$i]}" content)" \
        "completed/fake-gemini: ${texts[$i]}" "crash reply $((i + 1)) completed with its own answer"
    one="select(.body.contents[-1].parts[-1].text == \"${texts[$i]}\")"
    check_eq "$(fake_count "$one | select(.status == 200)")" 1 "crash reply $((i + 1)): exactly one answer delivered"
done
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE id IN ($(
    IFS=,
    echo "${ids[*]}"
)) AND lease_until IS NULL AND lease_owner IS NULL")" 3 "no lease left behind"

# ---- SIGTERM: in-flight calls finish within the grace period ----
ids=()
for i in 1 2; do
    post_msg "$ROOM" "[[delay:2000]] graceful $i $tag"
    ids+=("$REPLY_ID")
done
sel="select((.body.contents[-1].parts[-1].text? // \"\") | test(\"graceful [0-9] $tag\"))"
check "both graceful calls reached upstream" wait_fake_count 20 2 "$sel"
consumer="$(hostname):$(cat "$STACK_DIR/worker.pid")"
check "the worker is a consumer of the group" is_consumer "$consumer"
stack_worker_stop TERM
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE id IN ($(
    IFS=,
    echo "${ids[*]}"
)) AND status = 'completed'")" 2 "SIGTERM: the worker finished its in-flight calls before exiting"
check "the worker said goodbye" grep -q "exiting: " "$STACK_DIR/worker.log"
check "a cleanly stopped worker with nothing pending leaves the consumer group" not is_consumer "$consumer"

# ---- SIGTERM: a call longer than the grace period (WORKER_GRACE_SECONDS=3 here) is handed back ----
settings=(AI_TIMEOUT_MS=20000 WORKER_RECOVER_SECONDS=2 WORKER_GRACE_SECONDS=3)
(
    for kv in "${settings[@]}"; do export "${kv?}"; done
    stack_worker_start
)
slow="[[delay:8000]] slow $tag"
post_msg "$ROOM" "$slow"
rs=$REPLY_ID
sel="select(.body.contents[-1].parts[-1].text == \"$slow\")"
check "the slow call reached upstream" wait_fake_count 20 1 "$sel"
t0=$SECONDS
stack_worker_stop TERM
check "the worker stopped after its grace period ($((SECONDS - t0)) s, the call needed 8)" test $((SECONDS - t0)) -le 5
check_eq "$(reply_field "$rs" status)/$(reply_field "$rs" "coalesce(lease_owner, 'none')")/$(reply_field "$rs" attempts)" \
    "pending/none/0" "handed back: still pending, lease released, the aborted call not counted"
(
    for kv in "${settings[@]}"; do export "${kv?}"; done
    stack_worker_start
)
check "the next worker finishes the handed-back reply within 30 s" wait_replies 30 "$rs"
check_eq "$(reply_field "$rs" status)/$(reply_field "$rs" content)" "completed/fake-gemini: $slow" \
    "handed-back reply completed"

# ---- a lease taken over: while a worker waits on its call, its reply is leased by another worker (its own lease
# ran out: a stalled PostgreSQL, a paused process). The other worker's answer is the one its event stream shows
# (after a restart), so the first one's must not be stored over it ----
over="[[delay:2500]] taken over $tag"
post_msg "$ROOM" "$over"
rt=$REPLY_ID
check "the call reached upstream" wait_fake_count 20 1 "select(.body.contents[-1].parts[-1].text == \"$over\")"
psql_q "UPDATE messages SET lease_owner = 'another-worker', lease_until = now() + interval '1 minute'
        WHERE id = $rt" >/dev/null
dropped() { grep -q "reply $rt is no longer ours" "$STACK_DIR/worker.log"; }
check "the worker drops its answer when it comes" wait_for 15 dropped
check_eq "$(reply_field "$rt" status)/$(reply_field "$rt" "coalesce(lease_owner, 'none')")/$(reply_field "$rt" content)" \
    "pending/another-worker/" "... and leaves the reply to the worker holding it"
psql_q "UPDATE messages SET lease_owner = NULL, lease_until = NULL WHERE id = $rt" >/dev/null
check "given back, it is finished by the sweep" wait_replies 30 "$rt"
