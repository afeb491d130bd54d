#!/usr/bin/env bash
# Chatrooms: create/list/get/delete, the list cache (X-Cache), 404s, trailing slashes, 405s, validation.
. "$(dirname "$0")/../lib.sh"

RFC3339='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$'

signup_and_login
A_TOKEN=$TOKEN A_ID=$USER_ID
signup_and_login
B_TOKEN=$TOKEN

# --- auth needed everywhere ---
for p in "GET /chatroom" "POST /chatroom" "GET /chatroom/usage" "GET /chatroom/1" "DELETE /chatroom/1" \
         "GET /chatroom/1/messages"; do
    req ${p% *} "${p#* }"
    check_status 401 "$p without a token"
    check "$p without a token: WWW-Authenticate" test -n "$(header WWW-Authenticate)"
done
auth_req "not.a.jwt" GET /chatroom
check_status 401 "GET /chatroom with a malformed token"

# --- empty list, then the cache: MISS, HIT ---
auth_req "$A_TOKEN" GET /chatroom
check_status 200 "list of a new user"
check_eq "$(jget '.chatrooms | length')" 0 "a new user has no chatrooms"
check_eq "$(header X-Cache)" MISS "first list read is a MISS"
auth_req "$A_TOKEN" GET /chatroom
check_eq "$(header X-Cache)" HIT "second list read is a HIT"
check_eq "$(jget '.chatrooms | length')" 0 "cached empty list"

# --- create ---
auth_req "$A_TOKEN" POST /chatroom '{"title":"  First room  "}'
check_status 201 "create with a title"
R1=$(jget .id)
check_eq "$(jget .title)" "First room" "title is trimmed"
check_eq "$(jget .message_count)" 0 "new room has no messages"
check "create: id is an integer" test "$(jget '.id | type')" = number
check "create: created_at is RFC 3339 UTC" grep -Eq "$RFC3339" <<<"$(jget .created_at)"
check "create: updated_at is RFC 3339 UTC" grep -Eq "$RFC3339" <<<"$(jget .updated_at)"
check_eq "$(jget '[keys[]] | join(",")')" "created_at,id,message_count,title,updated_at" "chatroom shape"

auth_req "$A_TOKEN" GET /chatroom
check_eq "$(header X-Cache)" MISS "list after create is a MISS"
check_eq "$(jget '.chatrooms | length')" 1 "list shows the new room"
check_eq "$(jget '.chatrooms[0].id')" "$R1" "list has the room's id"
auth_req "$A_TOKEN" GET /chatroom
check_eq "$(header X-Cache)" HIT "then HIT"
check_eq "$(jget '.chatrooms[0].title')" "First room" "cached list has the room"

auth_req "$A_TOKEN" POST /chatroom
check_status 201 "create without a body"
R2=$(jget .id)
check_eq "$(jget .title)" "New chat" "default title without a body"
auth_req "$A_TOKEN" POST /chatroom '{}'
check_status 201 "create with {}"
check_eq "$(jget .title)" "New chat" "default title with {}"
R3=$(jget .id)
auth_req "$A_TOKEN" POST /chatroom '{"title":null}'
check_status 201 "create with a null title"
check_eq "$(jget .title)" "New chat" "default title with null"
R4=$(jget .id)
T200=$(printf 'é%.0s' $(seq 200))
auth_req "$A_TOKEN" POST /chatroom "{\"title\":\"$T200\"}"
check_status 201 "title of 200 two-byte characters"
check_eq "$(jget '.title | length')" 200 "200-character title stored whole"
R5=$(jget .id)

auth_req "$A_TOKEN" GET /chatroom
check_eq "$(header X-Cache)" MISS "list after more creates is a MISS"
check_eq "$(jget '[.chatrooms[].id] | map(tostring) | join(",")')" "$R5,$R4,$R3,$R2,$R1" \
    "list is newest activity first"

# --- get ---
auth_req "$A_TOKEN" GET "/chatroom/$R1"
check_status 200 "get own room"
check_eq "$(jget .id)" "$R1" "get: id"
check_eq "$(jget .title)" "First room" "get: title"
check_eq "$(jget '.messages | length')" 0 "get: no messages yet"
check_eq "$(jget '[keys[]] | join(",")')" "created_at,id,message_count,messages,title,updated_at" "get: shape"

# --- 404: another user's room, and ids that are not positive integers ---
auth_req "$B_TOKEN" GET "/chatroom/$R1"
check_status 404 "another user's room is 404"
check_eq "$(jget .error.code)" not_found "another user's room: not_found"
auth_req "$B_TOKEN" DELETE "/chatroom/$R1"
check_status 404 "deleting another user's room is 404"
auth_req "$B_TOKEN" POST "/chatroom/$R1/message" '{"content":"hi"}'
check_status 404 "posting into another user's room is 404"
auth_req "$B_TOKEN" GET "/chatroom/$R1/messages"
check_status 404 "reading another user's messages is 404"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE chatroom_id = $R1")" 0 "nothing stored by the other user"
for bad in abc 0 -1 99999999999999999999 1.5 00x1; do
    auth_req "$A_TOKEN" GET "/chatroom/$bad"
    check_status 404 "GET /chatroom/$bad is 404"
    auth_req "$A_TOKEN" GET "/chatroom/$bad/messages"
    check_status 404 "GET /chatroom/$bad/messages is 404"
    auth_req "$A_TOKEN" POST "/chatroom/$bad/message" '{"content":"hi"}'
    check_status 404 "POST /chatroom/$bad/message is 404"
    auth_req "$A_TOKEN" DELETE "/chatroom/$bad"
    check_status 404 "DELETE /chatroom/$bad is 404"
done
auth_req "$A_TOKEN" GET "/chatroom/999999999999"
check_status 404 "unknown id is 404"
auth_req "$A_TOKEN" GET "/chatroom/$R1/nope"
check_status 404 "unknown sub-path is 404"

# --- trailing slashes ---
auth_req "$A_TOKEN" GET /chatroom/
check_status 200 "GET /chatroom/"
auth_req "$A_TOKEN" POST /chatroom/ '{"title":"slash"}'
check_status 201 "POST /chatroom/"
R6=$(jget .id)
auth_req "$A_TOKEN" GET "/chatroom/$R6/"
check_status 200 "GET /chatroom/{id}/"
check_eq "$(jget .title)" slash "GET /chatroom/{id}/ finds the room"
auth_req "$A_TOKEN" GET "/chatroom/$R6/messages/"
check_status 200 "GET /chatroom/{id}/messages/"
auth_req "$A_TOKEN" GET /chatroom/usage/
check_status 200 "GET /chatroom/usage/"
auth_req "$A_TOKEN" GET "/chatroom/$R6/messages/?limit=5"
check_status 200 "GET /chatroom/{id}/messages/?limit=5"
auth_req "$A_TOKEN" DELETE "/chatroom/$R6/"
check_status 204 "DELETE /chatroom/{id}/"

# --- 405 with Allow ---
allow_has() { # allow_has METHOD...: every method is listed in Allow
    local a m
    a=$(header Allow)
    for m in "$@"; do grep -qw "$m" <<<"$a" || return 1; done
}
auth_req "$A_TOKEN" PUT /chatroom '{}'
check_status 405 "PUT /chatroom is 405"
check_eq "$(jget .error.code)" method_not_allowed "405 code"
check "PUT /chatroom: Allow lists GET, HEAD and POST" allow_has GET HEAD POST
auth_req "$A_TOKEN" PATCH "/chatroom/$R1" '{}'
check_status 405 "PATCH /chatroom/{id} is 405"
check "PATCH /chatroom/{id}: Allow lists GET and DELETE" allow_has GET DELETE
auth_req "$A_TOKEN" GET "/chatroom/$R1/message"
check_status 405 "GET /chatroom/{id}/message is 405"
check "GET /chatroom/{id}/message: Allow lists POST" allow_has POST
auth_req "$A_TOKEN" POST "/chatroom/$R1/messages" '{}'
check_status 405 "POST /chatroom/{id}/messages is 405"
check "POST /chatroom/{id}/messages: Allow lists GET" allow_has GET
auth_req "$A_TOKEN" POST /chatroom/usage '{}'
check_status 405 "POST /chatroom/usage is 405"
check_eq "$(header Allow)" "GET, HEAD" "POST /chatroom/usage: Allow is GET and HEAD only (usage is not an {id})"
auth_req "$A_TOKEN" DELETE /chatroom/usage
check_status 405 "DELETE /chatroom/usage is 405"
check_eq "$(header Allow)" "GET, HEAD" "DELETE /chatroom/usage: Allow is GET and HEAD only"
# {id} is a run of digits: any other segment is no route at all (404), whatever the method
for p in "POST /chatroom/abc" "PATCH /chatroom/abc" "POST /chatroom/usage/message" "GET /chatroom/usage/messages"; do
    auth_req "$A_TOKEN" ${p% *} "${p#* }"
    check_eq "$STATUS/$(jget .error.code)" 404/not_found "$p is 404 (no route)"
done
auth_req "$A_TOKEN" DELETE /chatroom/007
check_status 404 "DELETE /chatroom/007 reaches the handler: 404"

# --- validation ---
T201=$(printf 'a%.0s' $(seq 201))
auth_req "$A_TOKEN" POST /chatroom "{\"title\":\"$T201\"}"
check_status 400 "title of 201 characters"
check_eq "$(jget .error.code)" validation_error "title too long: validation_error"
auth_req "$A_TOKEN" POST /chatroom '{"title":"   "}'
check_status 400 "blank title"
check_eq "$(jget .error.code)" validation_error "blank title: validation_error"
auth_req "$A_TOKEN" POST /chatroom '{"title":""}'
check_status 400 "empty title"
auth_req "$A_TOKEN" POST /chatroom '{"title":"\u3000\u00a0\u2028\u205f"}'
check_status 400 "a title of Unicode spaces only is blank"
auth_req "$A_TOKEN" POST /chatroom '{"title":42}'
check_status 400 "numeric title"
check_eq "$(jget .error.code)" validation_error "numeric title: validation_error"
auth_req "$A_TOKEN" POST /chatroom '{"title":"x\u0000y"}'
check_status 400 "title with NUL"
auth_req "$A_TOKEN" POST /chatroom '{"title":'
check_status 400 "truncated JSON"
check_eq "$(jget .error.code)" invalid_json "truncated JSON: invalid_json"
auth_req "$A_TOKEN" POST /chatroom '["title"]'
check_status 400 "JSON array body"
check_eq "$(jget .error.code)" invalid_json "array body: invalid_json"
auth_req "$A_TOKEN" POST /chatroom '{"title":"a"} trailing'
check_status 400 "trailing garbage"
BIG=$(head -c 143360 /dev/zero | tr '\0' a)
auth_req "$A_TOKEN" POST /chatroom "{\"title\":\"$BIG\"}"
check_status 413 "140 KiB body (the cap is 128 KiB)"
check_eq "$(jget .error.code)" payload_too_large "140 KiB body: payload_too_large"
check_eq "$(psql_q "SELECT count(*) FROM chatrooms WHERE user_id = $A_ID")" 5 "refused creates stored nothing"

# --- delete ---
auth_req "$A_TOKEN" GET /chatroom
auth_req "$A_TOKEN" GET /chatroom
check_eq "$(header X-Cache)" HIT "HIT before delete"
auth_req "$A_TOKEN" DELETE "/chatroom/$R2"
check_status 204 "delete own room"
check_eq "$BODY" "" "204 has an empty body"
auth_req "$A_TOKEN" GET /chatroom
check_eq "$(header X-Cache)" MISS "list after delete is a MISS"
check "deleted room is gone from the list" test "$(jget "[.chatrooms[].id] | index($R2)")" = null
check_eq "$(jget '.chatrooms | length')" 4 "four rooms left"
auth_req "$A_TOKEN" GET "/chatroom/$R2"
check_status 404 "deleted room is 404"
auth_req "$A_TOKEN" DELETE "/chatroom/$R2"
check_status 404 "deleting twice is 404"

# The other user's list was never touched by A's changes.
auth_req "$B_TOKEN" GET /chatroom
check_eq "$(jget '.chatrooms | length')" 0 "other user still has no rooms"

# --- the cache mechanism: a change leaves a tombstone, the next read replaces it by the list ---
auth_req "$B_TOKEN" POST /chatroom '{"title":"tomb"}'
B_ID=$(psql_q "SELECT user_id FROM chatrooms WHERE id = $(jget .id)")
check "after a change the cache key holds a tombstone" test "$(redis_cli GET "chatrooms:$B_ID" | head -c1)" = "~"
auth_req "$B_TOKEN" GET /chatroom
check_eq "$(header X-Cache)" MISS "read after the change: MISS"
check_eq "$(redis_cli GET "chatrooms:$B_ID")" "$(redis_cli GET gb:epoch)|$BODY" \
    "the read stored exactly its body, stamped with the epoch"

# --- readers racing writers: once the writes are done, the next read is fresh ---
# Readers that read PostgreSQL before a change must not store their stale list after its invalidation.
signup_and_login
S_TOKEN=$TOKEN
for _ in 1 2 3 4; do
    (for i in $(seq 1 40); do
        curl -s -o /dev/null -H "Authorization: Bearer $S_TOKEN" "$BASE_URL/chatroom"
    done) &
done
for i in $(seq 1 12); do
    curl -s -o /dev/null -X POST -H "Authorization: Bearer $S_TOKEN" -H 'Content-Type: application/json' \
        -d "{\"title\":\"race $i\"}" "$BASE_URL/chatroom"
done
wait
fresh=1
for i in 1 2 3; do
    auth_req "$S_TOKEN" GET /chatroom
    [ "$(jget '.chatrooms | length')" = 12 ] || fresh=0
done
check_eq "$fresh" 1 "after racing readers the list shows all 12 rooms (cached: $(header X-Cache))"
