#!/usr/bin/env bash
# e2e: core
# The post path (one statement, schema step 7's chat_post) under races: N parallel posts at the daily limit
# across two rooms give exactly the limit; N parallel retries of one Idempotency-Key give one message and N
# identical answers; one key raced with two different contents gives one message, the rest 409 or the replay;
# a room deleted while posts race gives only 202s for messages that exist and 404s for the rest.
. "$(dirname "$0")/../lib.sh"

N=${RACE_N:-24}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
TODAY=$(date -u +%F)

post_bg() { # TOKEN ROOM CONTENT OUTPREFIX [KEY]
    curl -s -o "$4.body" -D "$4.hdr" -w '%{http_code}\n' -X POST -H "Authorization: Bearer $1" \
        -H 'Content-Type: application/json' ${5:+-H "Idempotency-Key: $5"} -d "{\"content\":\"$3\"}" \
        "$BASE_URL/chatroom/$2/message" >"$4.code" &
}
count_codes() { cat "$TMP/$1"*.code | grep -c "^$2\$" || true; }

# --- N parallel posts of a basic user over two rooms: exactly the limit accepted, counters consistent ---
signup_and_login
B_TOKEN=$TOKEN B_ID=$USER_ID
auth_req "$B_TOKEN" GET /chatroom/usage
LIMIT=$(jget .limit)
auth_req "$B_TOKEN" POST /chatroom '{"title":"r1"}'
RA=$(jget .id)
auth_req "$B_TOKEN" POST /chatroom '{"title":"r2"}'
RB=$(jget .id)
for i in $(seq 1 "$N"); do
    room=$RA
    ((i % 2)) && room=$RB
    post_bg "$B_TOKEN" "$room" "lim $i" "$TMP/lim$i"
done
wait
check_eq "$(count_codes lim 202)/$(count_codes lim 429)" "$LIMIT/$((N - LIMIT))" \
    "$N parallel posts at the limit: exactly $LIMIT accepted, the rest 429"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE user_id = $B_ID AND role = 'user'")" "$LIMIT" \
    "exactly $LIMIT user messages stored"
check_eq "$(psql_q "SELECT used FROM daily_usage WHERE user_id = $B_ID AND day = '$TODAY'")" "$LIMIT" "used = limit"
check_eq "$(psql_q "SELECT sum(message_count) FROM chatrooms WHERE user_id = $B_ID")" $((2 * LIMIT)) \
    "message_count of both rooms adds up"
check_eq "$(psql_q "SELECT count(*) FROM chatrooms c WHERE user_id = $B_ID AND message_count <>
    (SELECT count(*) FROM messages m WHERE m.chatroom_id = c.id)")" 0 "each room's message_count matches its rows"
check "every accepted body is a message and its pending reply" bash -c '
    for f in '"$TMP"'/lim*.code; do
        grep -q "^202" "$f" || continue
        jq -e ".message.role == \"user\" and .reply.status == \"pending\" and .reply.id > .message.id" \
            "${f%.code}.body" >/dev/null || exit 1
    done'

# --- N parallel retries of one Idempotency-Key (pro user): one message, N identical 202s ---
signup_and_login
P_TOKEN=$TOKEN P_ID=$USER_ID
psql_q "UPDATE users SET tier = 'pro' WHERE id = $P_ID" >/dev/null
auth_req "$P_TOKEN" POST /chatroom '{}'
PR=$(jget .id)
KEY="race-$RANDOM-$$"
for i in $(seq 1 "$N"); do post_bg "$P_TOKEN" "$PR" "same" "$TMP/idem$i" "$KEY"; done
wait
check_eq "$(count_codes idem 202)" "$N" "$N parallel retries of one key: all 202"
check_eq "$(cat "$TMP"/idem*.body | sort -u | wc -l)" 1 "$N parallel retries: one identical body"
check_eq "$(grep -li '^Idempotent-Replayed: true' "$TMP"/idem*.hdr | wc -l)" $((N - 1)) \
    "all but the first are marked Idempotent-Replayed"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE chatroom_id = $PR")" 2 "one message and one reply stored"
check_eq "$(psql_q "SELECT used FROM daily_usage WHERE user_id = $P_ID AND day = '$TODAY'")" 1 "counted once"

# --- one key raced with two contents: exactly one message; the other content gets 409 ---
KEY2="race2-$RANDOM-$$"
for i in $(seq 1 "$N"); do post_bg "$P_TOKEN" "$PR" "c$((i % 2))" "$TMP/mix$i" "$KEY2"; done
wait
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE chatroom_id = $PR AND content IN ('c0', 'c1')")" 1 \
    "one key, two contents in parallel: one message"
WIN=$(psql_q "SELECT content FROM messages WHERE chatroom_id = $PR AND content IN ('c0', 'c1')")
check "the winner's content got 202s, the other content 409s" bash -c '
    for i in $(seq 1 '"$N"'); do
        c=c$((i % 2)); code=$(cat '"$TMP"'/mix$i.code)
        if [ "$c" = '"$WIN"' ]; then [ "$code" = 202 ] || exit 1; else [ "$code" = 409 ] || exit 1; fi
    done'

# --- posts racing a DELETE of their room: every 202 names a stored message or one deleted with the room,
# --- nothing is left behind, the usage counts only what was accepted ---
auth_req "$P_TOKEN" POST /chatroom '{}'
DR=$(jget .id)
for i in $(seq 1 "$N"); do post_bg "$P_TOKEN" "$DR" "del $i" "$TMP/del$i"; done
curl -s -o /dev/null -X DELETE -H "Authorization: Bearer $P_TOKEN" "$BASE_URL/chatroom/$DR" &
wait
check_eq "$(($(count_codes del 202) + $(count_codes del 404)))" "$N" "posts racing a DELETE: each 202 or 404"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE chatroom_id = $DR")" 0 "no message outlives its room"
check_eq "$(psql_q "SELECT used FROM daily_usage WHERE user_id = $P_ID AND day = '$TODAY'")" \
    $((1 + 1 + $(count_codes del 202))) "usage counts exactly the accepted posts"
