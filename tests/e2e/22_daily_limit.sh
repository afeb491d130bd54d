#!/usr/bin/env bash
# e2e: core
# The basic tier's daily limit: usage numbers, the refused message (429, Retry-After, nothing stored),
# atomicity under 20 parallel posts, and the pro tier (unlimited, still counted).
. "$(dirname "$0")/../lib.sh"

user_msgs() { psql_q "SELECT count(*) FROM messages WHERE user_id = $1 AND role = 'user'"; }
TODAY=$(date -u +%F)
TOMORROW=$(date -u -d tomorrow +%FT00:00:00Z)

# --- usage of a fresh basic user ---
signup_and_login
U_TOKEN=$TOKEN U_ID=$USER_ID
auth_req "$U_TOKEN" GET /chatroom/usage
check_status 200 "usage"
check_eq "$(jget '[keys[]] | join(",")')" "date,limit,remaining,resets_at,tier,used" "usage shape"
check_eq "$(jget .tier)" basic "usage: tier basic"
check_eq "$(jget .date)" "$TODAY" "usage: date is today (UTC)"
check_eq "$(jget .used)" 0 "usage: nothing used"
LIMIT=$(jget .limit)
check "usage: limit is a positive integer" test "$(jget '.limit | type')" = number -a "$LIMIT" -gt 0
check_eq "$(jget .remaining)" "$LIMIT" "usage: remaining = limit"
check_eq "$(jget .resets_at)" "$TOMORROW" "usage: resets at the next UTC midnight"

# --- up to the limit, then 429 ---
auth_req "$U_TOKEN" POST /chatroom '{}'
ROOM=$(jget .id)
ok=1
for i in $(seq 1 "$LIMIT"); do
    auth_req "$U_TOKEN" POST "/chatroom/$ROOM/message" "{\"content\":\"n$i\"}"
    [ "$STATUS" = 202 ] || ok=0
    if [ "$i" = 2 ]; then
        auth_req "$U_TOKEN" GET /chatroom/usage
        check_eq "$(jget .used),$(jget .remaining)" "2,$((LIMIT - 2))" "usage after 2 messages"
    fi
done
check_eq "$ok" 1 "the first $LIMIT messages are accepted"
auth_req "$U_TOKEN" POST "/chatroom/$ROOM/message" '{"content":"one too many"}'
check_status 429 "message $((LIMIT + 1)) is refused"
check_eq "$(jget .error.code)" daily_limit_reached "429 code daily_limit_reached"
RA=$(header Retry-After)
NOW=$(date -u +%s)
EXPECT=$((86400 - NOW % 86400))
check "Retry-After is the seconds to the next UTC midnight" \
    test -n "$RA" -a "$RA" -ge $((EXPECT - 5)) -a "$RA" -le $((EXPECT + 5)) -a "$RA" -le 86400 -a "$RA" -ge 1
check_eq "$(user_msgs "$U_ID")" "$LIMIT" "the refused message is not stored"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE content = 'one too many' AND user_id = $U_ID")" 0 \
    "no trace of the refused content"
check_eq "$(psql_q "SELECT message_count FROM chatrooms WHERE id = $ROOM")" $((2 * LIMIT)) \
    "message_count unchanged by the refusal"
check_eq "$(psql_q "SELECT used FROM daily_usage WHERE user_id = $U_ID AND day = '$TODAY'")" "$LIMIT" \
    "daily_usage.used stays at the limit"
auth_req "$U_TOKEN" GET /chatroom/usage
check_eq "$(jget .used),$(jget .remaining)" "$LIMIT,0" "usage at the limit"
# Over the limit, an Idempotency-Key does not get a stored 429: the key stays free.
auth_req "$U_TOKEN" POST "/chatroom/$ROOM/message" '{"content":"again"}' -H "Idempotency-Key: lim-$RANDOM-$$"
check_status 429 "over the limit with an Idempotency-Key: 429"
check_eq "$(psql_q "SELECT count(*) FROM idempotency_keys WHERE user_id = $U_ID")" 0 "no key stored for a 429"
# Validation comes before the limit.
auth_req "$U_TOKEN" POST "/chatroom/$ROOM/message" '{"content":""}'
check_status 400 "over the limit, an invalid message is still 400"

# --- 20 parallel posts by a fresh basic user: exactly LIMIT stored ---
signup_and_login
C_TOKEN=$TOKEN C_ID=$USER_ID
auth_req "$C_TOKEN" POST /chatroom '{"title":"race"}'
CROOM=$(jget .id)
TMP=$(mktemp -d)
for i in $(seq 1 20); do
    curl -s -o "$TMP/body$i" -D "$TMP/hdr$i" -w '%{http_code}\n' -X POST -H "Authorization: Bearer $C_TOKEN" \
        -H 'Content-Type: application/json' -d "{\"content\":\"race $i\"}" \
        "$BASE_URL/chatroom/$CROOM/message" >"$TMP/code$i" &
done
wait
N202=$(cat "$TMP"/code* | grep -c '^202$')
N429=$(cat "$TMP"/code* | grep -c '^429$')
check_eq "$N202" "$LIMIT" "20 parallel posts: exactly $LIMIT accepted"
check_eq "$N429" $((20 - LIMIT)) "20 parallel posts: the rest get 429"
check_eq "$(user_msgs "$C_ID")" "$LIMIT" "20 parallel posts: exactly $LIMIT user messages stored"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE user_id = $C_ID AND role = 'model'")" "$LIMIT" \
    "20 parallel posts: exactly $LIMIT replies stored"
check_eq "$(psql_q "SELECT message_count FROM chatrooms WHERE id = $CROOM")" $((2 * LIMIT)) \
    "20 parallel posts: message_count matches"
check_eq "$(psql_q "SELECT used FROM daily_usage WHERE user_id = $C_ID AND day = '$TODAY'")" "$LIMIT" \
    "20 parallel posts: used = limit"
check "every 429 of the race carries Retry-After" \
    bash -c "for i in \$(seq 1 20); do grep -q '^429' $TMP/code\$i || continue; grep -qi '^Retry-After: [0-9]' $TMP/hdr\$i || exit 1; done"
rm -rf "$TMP"

# --- pro: unlimited, still counted, limit/remaining null ---
signup_and_login
P_TOKEN=$TOKEN P_ID=$USER_ID
auth_req "$P_TOKEN" POST /chatroom '{}'
PROOM=$(jget .id)
auth_req "$P_TOKEN" POST "/chatroom/$PROOM/message" '{"content":"as basic"}'
check_status 202 "a message sent as basic"
psql_q "UPDATE users SET tier = 'pro' WHERE id = $P_ID" >/dev/null
auth_req "$P_TOKEN" GET /chatroom/usage
check_eq "$(jget .tier)" pro "usage: tier pro"
check_eq "$(jget .limit)" null "usage: limit null for pro"
check_eq "$(jget .remaining)" null "usage: remaining null for pro"
check_eq "$(jget .used)" 1 "usage: the message sent as basic still counts"
ok=1
for i in $(seq 1 $((LIMIT + 3))); do
    auth_req "$P_TOKEN" POST "/chatroom/$PROOM/message" "{\"content\":\"pro $i\"}"
    [ "$STATUS" = 202 ] || ok=0
done
check_eq "$ok" 1 "pro user sends $((LIMIT + 3)) more messages"
check_eq "$(user_msgs "$P_ID")" $((LIMIT + 4)) "all of the pro user's messages are stored"
auth_req "$P_TOKEN" GET /chatroom/usage
check_eq "$(jget .used)" $((LIMIT + 4)) "usage: pro messages are counted"
# Back to basic over the limit: refused, remaining 0.
psql_q "UPDATE users SET tier = 'basic' WHERE id = $P_ID" >/dev/null
auth_req "$P_TOKEN" GET /chatroom/usage
check_eq "$(jget .limit),$(jget .remaining)" "$LIMIT,0" "back to basic over the limit: remaining 0"
auth_req "$P_TOKEN" POST "/chatroom/$PROOM/message" '{"content":"basic again"}'
check_status 429 "back to basic over the limit: 429"
