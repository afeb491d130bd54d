#!/usr/bin/env bash
# e2e: core
# The post path (one statement, chat_post of schema steps 7 and 10) under races: N parallel posts at the daily
# limit across two rooms give exactly the limit; N parallel retries of one Idempotency-Key give one message and
# N identical answers; one key raced with two different contents gives one message, the rest 409 or the
# replay; a room deleted while posts race gives only 202s for messages that exist and 404s for the rest; and
# the same key with the posts held at a lock (the room's, the day's count) past the key's lookup, so that all
# but the first find the key taken when they write it (schema step 10).
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

# --- the same key, with the posts held at a lock until all of them are past the key's lookup (schema step 10:
# --- the key is written last; a request that finds it taken then rolls back and answers with its result) ---
waiters() {
    psql_q "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%chat_post%'"
}
wait_waiters() { # N: until N posts wait on a lock (10 s at most)
    for _ in $(seq 1 200); do
        [[ $(waiters) -ge $1 ]] && return 0
        sleep 0.05
    done
    return 1
}
M=2 # posts in flight at once: the test deployments under spawn-fcgi run 2 processes per program

# one room: all M answers are the first one's (M-1 of them rolled back at the key and ran again)
hold_lock "the room's lock is held" "SELECT 1 FROM chatrooms WHERE id = $PR FOR UPDATE"
KEY3="held-$RANDOM-$$"
for i in $(seq 1 "$M"); do post_bg "$P_TOKEN" "$PR" "held" "$TMP/held$i" "$KEY3"; done
check "$M posts with one key wait for the room's lock" wait_waiters "$M"
USED0=$(psql_q "SELECT used FROM daily_usage WHERE user_id = $P_ID AND day = '$TODAY'")
release_lock
wait # the posts
check_eq "$(count_codes held 202)" "$M" "$M held posts of one key: all 202"
check_eq "$(cat "$TMP"/held*.body | sort -u | wc -l)" 1 "$M held posts of one key: one identical body"
check_eq "$(grep -li '^Idempotent-Replayed: true' "$TMP"/held*.hdr | wc -l)" $((M - 1)) \
    "$((M - 1)) of them replayed"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE chatroom_id = $PR AND content = 'held'")" 1 \
    "held posts of one key: one message"
check_eq "$(psql_q "SELECT used FROM daily_usage WHERE user_id = $P_ID AND day = '$TODAY'")" $((USED0 + 1)) \
    "held posts of one key: counted once"

# the same after the key expired: one renews it, the others answer with the renewal
psql_q "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'
        WHERE user_id = $P_ID AND key = '$KEY3'" >/dev/null
hold_lock "the room's lock is held again" "SELECT 1 FROM chatrooms WHERE id = $PR FOR UPDATE"
for i in $(seq 1 "$M"); do post_bg "$P_TOKEN" "$PR" "held" "$TMP/renew$i" "$KEY3"; done
check "$M posts with an expired key wait for the room's lock" wait_waiters "$M"
release_lock
wait # the posts
check_eq "$(count_codes renew 202)/$(cat "$TMP"/renew*.body | sort -u | wc -l)" "$M/1" \
    "$M held posts of an expired key: all 202, one body"
check "and it is a new message, not the expired key's" bash -c "! cmp -s '$TMP/renew1.body' '$TMP/held1.body'"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE chatroom_id = $PR AND content = 'held'")" 2 \
    "the expired key made one more message"
check_eq "$(psql_q "SELECT count(*) FROM idempotency_keys WHERE user_id = $P_ID AND key = '$KEY3'
                    AND created_at > now() - interval '1 hour'")" 1 "the key is renewed"

# two rooms, held at the day's count: the first is stored, the other is a 409 (another request)
auth_req "$P_TOKEN" POST /chatroom '{}'
PR2=$(jget .id)
hold_lock "the day's count is held" "SELECT 1 FROM daily_usage WHERE user_id = $P_ID AND day = '$TODAY' FOR UPDATE"
KEY4="held2-$RANDOM-$$"
post_bg "$P_TOKEN" "$PR" "two rooms" "$TMP/two1" "$KEY4"
post_bg "$P_TOKEN" "$PR2" "two rooms" "$TMP/two2" "$KEY4"
check "2 posts with one key in two rooms wait for the day's count" wait_waiters 2
release_lock
wait # the posts
check_eq "$(count_codes two 202)/$(count_codes two 409)" 1/1 "one key in two rooms: one 202, one 409"
check_eq "$(cat "$TMP"/two*.body | jq -r 'select(.error) | .error.message')" \
    "This Idempotency-Key was used with a different request." "the 409 names the other request"
check_eq "$(psql_q "SELECT count(*) FROM messages m JOIN chatrooms c ON c.id = m.chatroom_id
                    WHERE c.user_id = $P_ID AND m.content = 'two rooms'")" 1 "one key in two rooms: one message"

# a basic user's last message of the day: the first takes it, the others replay it (never 429)
signup_and_login
L_TOKEN=$TOKEN L_ID=$USER_ID
auth_req "$L_TOKEN" POST /chatroom '{}'
LR=$(jget .id)
psql_q "INSERT INTO daily_usage (user_id, day, used) VALUES ($L_ID, '$TODAY', $((LIMIT - 1)))" >/dev/null
hold_lock "the room's lock is held (last message)" "SELECT 1 FROM chatrooms WHERE id = $LR FOR UPDATE"
KEY5="held3-$RANDOM-$$"
for i in $(seq 1 "$M"); do post_bg "$L_TOKEN" "$LR" "last" "$TMP/last$i" "$KEY5"; done
check "$M posts of the day's last message wait for the room's lock" wait_waiters "$M"
release_lock
wait # the posts
check_eq "$(count_codes last 202)/$(cat "$TMP"/last*.body | sort -u | wc -l)" "$M/1" \
    "$M held posts of the day's last message, one key: all 202, one body"
check_eq "$(psql_q "SELECT used FROM daily_usage WHERE user_id = $L_ID AND day = '$TODAY'")" "$LIMIT" \
    "the last message is counted once"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE chatroom_id = $LR")" 2 "one message and its reply"
check_eq "$(waiters)" 0 "no post is left waiting"

# a post that PostgreSQL aborts as a deadlock (another session holds the day's count and then waits for the
# room the post holds) is a transient conflict: 503 with Retry-After, nothing stored, never a 500
signup_and_login
D_TOKEN=$TOKEN D_ID=$USER_ID
auth_req "$D_TOKEN" POST /chatroom '{}'
DR=$(jget .id)
psql_q "INSERT INTO daily_usage (user_id, day, used) VALUES ($D_ID, '$TODAY', 0)" >/dev/null
mkfifo "$TMP/dl.in"
# the other session waits 30 s before its own deadlock check, so the post's backend (1 s) is the one aborted
PGAPPNAME=gb-deadlock psql -X -q -d "$DATABASE_URL" <"$TMP/dl.in" >/dev/null 2>&1 &
dl_psql=$!
exec 7>"$TMP/dl.in"
echo "BEGIN; SET LOCAL deadlock_timeout = '30s';
      SELECT 1 FROM daily_usage WHERE user_id = $D_ID AND day = '$TODAY' FOR UPDATE;" >&7
for _ in $(seq 1 100); do
    [[ $(psql_q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gb-deadlock'
                 AND state = 'idle in transaction'") == 1 ]] && break
    sleep 0.05
done
post_bg "$D_TOKEN" "$DR" "deadlocked" "$TMP/dead"
check "the post holds the room and waits for the day's count" wait_waiters 1
echo "SELECT 1 FROM chatrooms WHERE id = $DR FOR UPDATE;" >&7
wait "$(jobs -p | grep -vx "$dl_psql" | tail -n 1)" 2>/dev/null || true
sleep 0.2
echo "ROLLBACK;" >&7
exec 7>&-
wait "$dl_psql" 2>/dev/null || true
check_eq "$(cat "$TMP/dead.code")/$(jq -r .error.code "$TMP/dead.body")" 503/unavailable \
    "a post aborted as a deadlock: 503 unavailable"
check "... with Retry-After: 1" grep -qi '^retry-after: 1' "$TMP/dead.hdr"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE chatroom_id = $DR")" 0 "... and nothing stored"
