#!/usr/bin/env bash
# e2e: core
# A quiet room's messages are read through messages_room, whatever the other rooms hold (schema step 11). In a
# database of its own: one user with a quiet room (61 messages, the last a prompt) and then a busy one (20,000,
# all newer). The app's own statements, taken from the built programs (a room with its messages, a page of them,
# the worker's history), are planned generic and custom and run for the quiet room: none may filter out more
# than a handful of rows. Without step 11 they walk messages_pkey through the busy room's rows (20,001 filtered
# for 50; the history's "next message of the room" for the last prompt, in its generic plan), counted by EXPLAIN
# ANALYZE: rows, not time.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

read -r -a first <<<"${DEPLOYMENTS:-lighttpd}"
[[ $DEPLOYMENT == "${first[0]:-lighttpd}" ]] || exit 0 # the database alone: once a run
if [[ $DATABASE_URL != postgresql:///gemini\?* ]]; then
    echo "# 21_message_plans: DATABASE_URL is not the stack's local cluster; skipped"
    exit 0
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$(_stack_abs "$BUILD_DIR")
url=$(scratch_db gb_plans_test)
trap 'scratch_db_drop gb_plans_test || true' EXIT
pq() { psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$url" "$@"; }

check "plans: schema.sql applies to a database of its own" pq -1 -f "$root/schema.sql"
check_eq "$(pq -c "SELECT attoptions::text FROM pg_attribute
                   WHERE attrelid = 'messages'::regclass AND attname = 'chatroom_id'")" "{n_distinct=-0.01}" \
    "plans: messages.chatroom_id has its distinct count fixed (step 11)"
uid=$(pq -c "INSERT INTO users (mobile) VALUES ('+15550000001') RETURNING id")
quiet=$(pq -c "INSERT INTO chatrooms (user_id, title) VALUES ($uid, 'quiet') RETURNING id")
busy=$(pq -c "INSERT INTO chatrooms (user_id, title) VALUES ($uid, 'busy') RETURNING id")
pq -c "INSERT INTO messages (chatroom_id, user_id, role, content, status)
       SELECT $quiet, $uid, CASE WHEN g % 2 = 1 THEN 'user' ELSE 'model' END, 'old', 'completed'
       FROM generate_series(1, 61) g" \
    -c "INSERT INTO messages (chatroom_id, user_id, role, content, status)
       SELECT $busy, $uid, CASE WHEN g % 2 = 1 THEN 'user' ELSE 'model' END, 'new', 'completed'
       FROM generate_series(1, 20000) g" -c "ANALYZE" >/dev/null

# plan NAME PROGRAM FRAGMENT ARGS WANT_ROWS: the statement of PROGRAM's binary that contains FRAGMENT, prepared
# and run as EXECUTE (ARGS) with a generic and with a custom plan: WANT_ROWS rows back, and the rows its scans
# filtered out in all (chatrooms' seq scan drops the other room) at most 10.
plan() {
    local name=$1 prog=$2 fragment=$3 exec_args=$4 want=$5 sql mode out removed rows
    sql=$(strings -n 30 "$build/$prog" | { grep -F -- "$fragment" || true; } | sed -n 1p)
    check "plans: $name: the statement is in $prog" test -n "$sql"
    for mode in force_generic_plan force_custom_plan; do
        out=$(pq -c "SET plan_cache_mode = $mode" -c "PREPARE p AS $sql" \
            -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE p($exec_args)" 2>&1) || true
        removed=$(awk '/Rows Removed by Filter:/ {s += $NF} END {print s + 0}' <<<"$out")
        rows=$(sed -n '1s/.*(actual rows=\([0-9]*\).*/\1/p' <<<"$out")
        check_eq "$rows" "$want" "plans: $name ($mode) gives $want rows"
        check "plans: $name ($mode) filters out at most 10 rows (it did $removed)" test "$removed" -le 10
        [[ $removed -le 10 ]] || printf '%s\n' "$out" | sed 's/^/#   /'
    done
}
plan "a room with its messages" cgi-bin/chatroom 'FROM messages mm WHERE mm.chatroom_id = c.id ORDER BY' \
    "$quiet, $uid, 50" 50
plan "a page of messages" cgi-bin/chatroom 'FROM messages mm WHERE mm.chatroom_id = c.id AND mm.id <' \
    "$quiet, $uid, 9223372036854775807, 50" 50
plan "the worker's history" worker/worker "FROM messages m WHERE m.chatroom_id = \$1 AND m.id < \$2" \
    "$quiet, 9223372036854775807, 20, 524288" 20
# Its byte cap (a running sum over the newest first) must not read the whole room: in a room of 20,000 messages
# no step of the plan handles more than a few rows past the 20 it returns.
hsql=$(strings -n 30 "$build/worker/worker" | grep -F -- "FROM messages m WHERE m.chatroom_id = \$1 AND m.id < \$2" | sed -n 1p)
hout=$(pq -c "PREPARE h AS $hsql" -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE h($busy, 9223372036854775807, 20, 524288)" 2>&1) || true
hmax=$(grep -o 'actual rows=[0-9]*' <<<"$hout" | cut -d= -f2 | sort -n | tail -n 1)
check "plans: the worker's history in a room of 20,000 reads at most 25 rows in any step (${hmax:-none})" \
    test "${hmax:-99999}" -le 25
