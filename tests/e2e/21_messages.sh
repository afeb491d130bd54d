#!/usr/bin/env bash
# Messages: posting, shapes, validation, message_count, Idempotency-Key, pagination, the latest 50.
# Replies may or may not be completed by a worker while this runs: only their creation is asserted here.
. "$(dirname "$0")/../lib.sh"

RFC3339='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$'
MSG_KEYS="chatroom_id,content,created_at,error,id,role,status"

signup_and_login
A_TOKEN=$TOKEN A_ID=$USER_ID
auth_req "$A_TOKEN" POST /chatroom '{"title":"talk"}'
ROOM=$(jget .id)
user_msgs() { psql_q "SELECT count(*) FROM messages WHERE user_id = $1 AND role = 'user'"; }

# --- one message ---
auth_req "$A_TOKEN" GET /chatroom
auth_req "$A_TOKEN" GET /chatroom
check_eq "$(header X-Cache)" HIT "list cached before the message"
auth_req "$A_TOKEN" GET /user/me
auth_req "$A_TOKEN" GET /user/me
check_eq "$(header X-Cache)" HIT "GET /user/me cached before the message"
auth_req "$A_TOKEN" POST "/chatroom/$ROOM/message" '{"content":"  Hello there  "}'
check_status 202 "post a message"
MID=$(jget .message.id) RID=$(jget .reply.id)
check_eq "$(jget '.message | [keys[]] | join(",")')" "$MSG_KEYS" "message shape"
check_eq "$(jget '.reply | [keys[]] | join(",")')" "$MSG_KEYS" "reply shape"
check_eq "$(jget .message.content)" "Hello there" "content is trimmed"
check_eq "$(jget .message.role)" user "message role user"
check_eq "$(jget .message.status)" completed "message is completed at once"
check_eq "$(jget .message.error)" null "message error is null"
check_eq "$(jget .message.chatroom_id)" "$ROOM" "message chatroom_id"
check_eq "$(jget '.message.id | type')" number "message id is an integer"
check "message created_at is RFC 3339 UTC" grep -Eq "$RFC3339" <<<"$(jget .message.created_at)"
check_eq "$(jget .reply.role)" model "reply role model"
check_eq "$(jget .reply.status)" pending "reply is pending"
check_eq "$(jget .reply.content)" "" "reply content is empty"
check_eq "$(jget .reply.error)" null "reply error is null"
check_eq "$(jget .reply.chatroom_id)" "$ROOM" "reply chatroom_id"
check "reply id is after the message id" test "$RID" -gt "$MID"
check_eq "$(psql_q "SELECT content FROM messages WHERE id = $MID")" "Hello there" "trimmed content stored"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE id = $RID AND role = 'model' AND chatroom_id = $ROOM")" 1 \
    "reply row stored"

auth_req "$A_TOKEN" GET /chatroom
check_eq "$(header X-Cache)" MISS "list after a message is a MISS"
check_eq "$(jget '.chatrooms[0].message_count')" 2 "message_count counts the reply"
auth_req "$A_TOKEN" GET /user/me
check_eq "$(header X-Cache)" HIT "a message leaves the cached GET /user/me alone (it shows no chatroom)"

auth_req "$A_TOKEN" GET "/chatroom/$ROOM"
check_eq "$(jget .message_count)" 2 "room message_count is 2"
check_eq "$(jget '.messages | length')" 2 "room shows both messages"
check_eq "$(jget '.messages[0].id')" "$MID" "oldest first: the user message"
check_eq "$(jget '.messages[1].id')" "$RID" "then the reply"

# --- validation: nothing stored, nothing counted ---
C8001=$(head -c 8001 /dev/zero | tr '\0' x)
for body in '{"content":""}' '{"content":"   "}' '{"content":" \n\t "}' '{"content":"\u3000"}' \
            '{"content":"\u00a0\u2028\u2029\u202f\u205f\u1680\u2000\u200a\u0085 \u3000"}' '{}' '{"content":null}' \
            '{"content":5}' '{"content":["a"]}' "{\"content\":\"$C8001\"}"; do
    auth_req "$A_TOKEN" POST "/chatroom/$ROOM/message" "$body"
    check_status 400 "invalid content ${body:0:30}"
    check_eq "$(jget .error.code)" validation_error "invalid content ${body:0:30}: validation_error"
done
for body in '{"content":' 'content' '"text"' '[1]' '{"content":"a"}x'; do
    auth_req "$A_TOKEN" POST "/chatroom/$ROOM/message" "$body"
    check_status 400 "invalid JSON $body"
    check_eq "$(jget .error.code)" invalid_json "invalid JSON $body: invalid_json"
done
auth_req "$A_TOKEN" POST "/chatroom/$ROOM/message" "{\"content\":\"$(head -c 143360 /dev/zero | tr '\0' y)\"}"
check_status 413 "140 KiB message body (the cap is 128 KiB)"
check_eq "$(jget .error.code)" payload_too_large "140 KiB message: payload_too_large"
auth_req "$A_TOKEN" POST "/chatroom/$ROOM/message" '{"content":"hi"}' -H "Idempotency-Key: has space"
check_status 400 "Idempotency-Key with a space"
auth_req "$A_TOKEN" POST "/chatroom/$ROOM/message" '{"content":"hi"}' \
    -H "Idempotency-Key: $(head -c 256 /dev/zero | tr '\0' k)"
check_status 400 "Idempotency-Key of 256 characters"
check_eq "$(user_msgs "$A_ID")" 1 "refused messages stored nothing"
check_eq "$(psql_q "SELECT message_count FROM chatrooms WHERE id = $ROOM")" 2 "message_count unchanged"
auth_req "$A_TOKEN" GET /chatroom/usage
check_eq "$(jget .used)" 1 "refused messages are not counted"

# --- Idempotency-Key: a retry gets the first response, one message stored ---
# (pro from here on, so these messages never meet the daily limit; pro messages are still counted)
psql_q "UPDATE users SET tier = 'pro' WHERE id = $A_ID" >/dev/null
KEY="idem-$RANDOM-$RANDOM-$$"
auth_req "$A_TOKEN" POST "/chatroom/$ROOM/message" '{"content":"once"}' -H "Idempotency-Key: $KEY"
check_status 202 "first request with an Idempotency-Key"
FIRST=$BODY
auth_req "$A_TOKEN" POST "/chatroom/$ROOM/message" '{"content":"once"}' -H "Idempotency-Key: $KEY"
check_status 202 "retry with the same Idempotency-Key"
check_eq "$BODY" "$FIRST" "retry returns the same body"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE chatroom_id = $ROOM AND content = 'once'")" 1 \
    "the retry stored no second message"
check_eq "$(psql_q "SELECT message_count FROM chatrooms WHERE id = $ROOM")" 4 "message_count counts it once"
auth_req "$A_TOKEN" GET /chatroom/usage
check_eq "$(jget .used)" 2 "the retry is not counted"

# The same key with another request (other content, other room, a room that does not exist): 409, nothing
# stored; the same request again (the content compared after trimming) still replays the first response.
auth_req "$A_TOKEN" POST /chatroom '{"title":"second room"}'
ROOM2=$(jget .id)
for case in "$ROOM|{\"content\":\"twice\"}|other content" "$ROOM2|{\"content\":\"once\"}|other chatroom" \
            "999999999999|{\"content\":\"once\"}|unknown chatroom" "0|{\"content\":\"once\"}|chatroom id 0"; do
    IFS='|' read -r room body what <<<"$case"
    auth_req "$A_TOKEN" POST "/chatroom/$room/message" "$body" -H "Idempotency-Key: $KEY"
    if [ "$room" = 0 ]; then # not an id at all: 404 before any key is looked at
        check_status 404 "Idempotency-Key reused with $what: 404"
        continue
    fi
    check_status 409 "Idempotency-Key reused with $what: 409"
    check_eq "$(jget .error.code)/$(jget .error.message)" \
        "conflict/This Idempotency-Key was used with a different request." "$what: conflict and its message"
    check_eq "$(header Idempotent-Replayed)" "" "$what: nothing replayed"
done
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE user_id = $A_ID AND role = 'user'")" 2 \
    "the refused reuses stored no message"
check_eq "$(psql_q "SELECT message_count FROM chatrooms WHERE id = $ROOM")/$(psql_q "SELECT message_count FROM chatrooms WHERE id = $ROOM2")" \
    4/0 "the refused reuses changed no counter"
auth_req "$A_TOKEN" GET /chatroom/usage
check_eq "$(jget .used)" 2 "the refused reuses are not counted"
auth_req "$A_TOKEN" POST "/chatroom/$ROOM/message" '{"content":" once\u3000"}' -H "Idempotency-Key: $KEY"
check_status 202 "the first request again (same trimmed content) after the 409s"
check_eq "$BODY" "$FIRST" "it still replays the first response"
check_eq "$(header Idempotent-Replayed)" true "marked Idempotent-Replayed"

# A key older than 24 h is forgotten: the same key makes a new message.
psql_q "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE user_id = $A_ID AND key = '$KEY'" >/dev/null
auth_req "$A_TOKEN" POST "/chatroom/$ROOM/message" '{"content":"once"}' -H "Idempotency-Key: $KEY"
check_status 202 "a 25-hour-old Idempotency-Key is a new request"
check "the old key's retry made a new message" test "$(jget .message.id)" != "$(jq -r .message.id <<<"$FIRST")"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE chatroom_id = $ROOM AND content = 'once'")" 2 \
    "the expired key stored a second message"
SECOND=$BODY
auth_req "$A_TOKEN" POST "/chatroom/$ROOM/message" '{"content":"once"}' -H "Idempotency-Key: $KEY"
check_eq "$BODY" "$SECOND" "the renewed key replays the new response"

# The same key in parallel: one message, both answers identical.
KEY2="idem-par-$RANDOM-$$"
TMP=$(mktemp -d)
for i in 1 2 3; do
    curl -s -o "$TMP/body$i" -w '%{http_code}' -X POST -H "Authorization: Bearer $A_TOKEN" \
        -H 'Content-Type: application/json' -H "Idempotency-Key: $KEY2" \
        -d '{"content":"parallel once"}' "$BASE_URL/chatroom/$ROOM/message" >"$TMP/code$i" &
done
wait
check_eq "$(cat "$TMP/code1" "$TMP/code2" "$TMP/code3" | tr -d '\n')" 202202202 "parallel same-key requests all 202"
check "parallel same-key bodies are identical" cmp -s "$TMP/body1" "$TMP/body2"
check "parallel same-key bodies are identical (3)" cmp -s "$TMP/body1" "$TMP/body3"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE chatroom_id = $ROOM AND content = 'parallel once'")" 1 \
    "parallel same-key requests stored one message"
rm -rf "$TMP"

# The key belongs to the user: another user's identical key is independent.
signup_and_login
auth_req "$TOKEN" POST /chatroom '{}'
OROOM=$(jget .id)
auth_req "$TOKEN" POST "/chatroom/$OROOM/message" '{"content":"other"}' -H "Idempotency-Key: $KEY"
check_status 202 "another user's same Idempotency-Key is a new request"
check_eq "$(jget .message.chatroom_id)" "$OROOM" "and lands in that user's room"

# A refused request (unknown room) does not burn the key.
KEY3="idem-404-$RANDOM-$$"
auth_req "$A_TOKEN" POST "/chatroom/999999999999/message" '{"content":"x"}' -H "Idempotency-Key: $KEY3"
check_status 404 "Idempotency-Key on an unknown room: 404"
auth_req "$A_TOKEN" POST "/chatroom/$ROOM/message" '{"content":"after 404"}' -H "Idempotency-Key: $KEY3"
check_status 202 "the key is still usable after a 404"

# --- pagination (a pro user, so the daily limit does not interfere) ---
signup_and_login
P_TOKEN=$TOKEN P_ID=$USER_ID
psql_q "UPDATE users SET tier = 'pro' WHERE id = $P_ID" >/dev/null
auth_req "$P_TOKEN" POST /chatroom '{"title":"pages"}'
PROOM=$(jget .id)
ok=1
for i in $(seq 1 26); do
    auth_req "$P_TOKEN" POST "/chatroom/$PROOM/message" "{\"content\":\"m$i\"}"
    [ "$STATUS" = 202 ] || ok=0
done
check_eq "$ok" 1 "26 messages accepted for a pro user"
ALL=$(psql_q "SELECT string_agg(id::text, ',' ORDER BY id) FROM messages WHERE chatroom_id = $PROOM")
check_eq "$(tr ',' '\n' <<<"$ALL" | wc -l)" 52 "52 messages stored (26 + replies)"

auth_req "$P_TOKEN" GET "/chatroom/$PROOM"
check_eq "$(jget .message_count)" 52 "message_count 52"
check_eq "$(jget '.messages | length')" 50 "GET /chatroom/{id} embeds the latest 50"
check_eq "$(jget '[.messages[].id] | map(tostring) | join(",")')" "$(cut -d, -f3- <<<"$ALL")" \
    "the latest 50, oldest first"

auth_req "$P_TOKEN" GET "/chatroom/$PROOM/messages"
check_status 200 "messages with default limit"
check_eq "$(jget '.messages | length')" 50 "default limit 50"
check_eq "$(jget .next_before)" "$(cut -d, -f3 <<<"$ALL")" "next_before is the smallest id of the page"

PAGES="" BEFORE="" n=0
while :; do
    q="limit=20"
    [ -n "$BEFORE" ] && q="$q&before=$BEFORE"
    auth_req "$P_TOKEN" GET "/chatroom/$PROOM/messages?$q"
    [ "$STATUS" = 200 ] || break
    ids=$(jget '[.messages[].id] | map(tostring) | join(",")')
    check_eq "$(jget '[.messages[].id] == ([.messages[].id] | sort)')" true "page $n is oldest first"
    PAGES="$ids${PAGES:+,$PAGES}"
    n=$((n + 1))
    BEFORE=$(jget .next_before)
    [ "$BEFORE" = null ] && break
    check_eq "$BEFORE" "$(cut -d, -f1 <<<"$ids")" "page $n: next_before is its smallest id"
    [ $n -lt 10 ] || break
done
check_eq "$n" 3 "52 messages in pages of 20 make 3 pages"
check_eq "$PAGES" "$ALL" "the pages together are every message exactly once"
check_eq "$(jget '.messages | length')" 12 "last page has the 12 oldest"

auth_req "$P_TOKEN" GET "/chatroom/$PROOM/messages?limit=100"
check_eq "$(jget '.messages | length')" 52 "limit=100 returns all 52"
check_eq "$(jget .next_before)" null "no older messages: next_before null"
auth_req "$P_TOKEN" GET "/chatroom/$PROOM/messages?limit=1"
check_eq "$(jget '[.messages[].id] | map(tostring) | join(",")')" "${ALL##*,}" "limit=1 is the newest message"
auth_req "$P_TOKEN" GET "/chatroom/$PROOM/messages?limit=52"
check_eq "$(jget .next_before)" null "limit equal to the count: next_before null"
auth_req "$P_TOKEN" GET "/chatroom/$PROOM/messages?limit=51"
check_eq "$(jget .next_before)" "$(cut -d, -f2 <<<"$ALL")" "limit one short: next_before set"
auth_req "$P_TOKEN" GET "/chatroom/$PROOM/messages?before=$(cut -d, -f1 <<<"$ALL")"
check_eq "$(jget '.messages | length')" 0 "before the first id: empty page"
check_eq "$(jget .next_before)" null "empty page: next_before null"
auth_req "$P_TOKEN" GET "/chatroom/$PROOM/messages?before=999999999999&limit=2"
check_eq "$(jget '[.messages[].id] | map(tostring) | join(",")')" "$(tr ',' '\n' <<<"$ALL" | tail -2 | paste -sd,)" \
    "a large before returns the newest"

for q in limit=0 limit=101 limit=abc limit=-1 limit= limit=1.5 before=0 before=-1 before=abc before= \
         before=99999999999999999999; do
    auth_req "$P_TOKEN" GET "/chatroom/$PROOM/messages?$q"
    check_status 400 "messages?$q is 400"
    check_eq "$(jget .error.code)" validation_error "messages?$q: validation_error"
done

auth_req "$P_TOKEN" GET "/chatroom/$ROOM/messages"
check_status 404 "another user's messages are 404"

# --- the content bounds: 8000 characters (also multi-byte) are accepted whole ---
auth_req "$P_TOKEN" POST /chatroom '{}'
BROOM=$(jget .id)
auth_req "$P_TOKEN" POST "/chatroom/$BROOM/message" "{\"content\":\"$(head -c 8000 /dev/zero | tr '\0' x)\"}"
check_status 202 "content of 8000 characters"
check_eq "$(jget '.message.content | length')" 8000 "8000 characters stored whole"
auth_req "$P_TOKEN" POST "/chatroom/$BROOM/message" "{\"content\":\"$(printf 'ж%.0s' $(seq 8000))\"}"
check_status 202 "content of 8000 two-byte characters"
check_eq "$(jget '.message.content | length')" 8000 "8000 two-byte characters stored whole"
auth_req "$P_TOKEN" POST "/chatroom/$BROOM/message" "{\"content\":\"$(printf 'ж%.0s' $(seq 8001))\"}"
check_status 400 "content of 8001 two-byte characters"
auth_req "$P_TOKEN" POST "/chatroom/$BROOM/message" '{"content":"\u3000\u00a0zero\u200bwidth\u200b\u2028"}'
check_status 202 "content between Unicode spaces"
check_eq "$(jget .message.content)" $'zero\xe2\x80\x8bwidth\xe2\x80\x8b' "Unicode White_Space is trimmed at both ends, ZWSP is not"
