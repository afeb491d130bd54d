#!/usr/bin/env bash
# e2e: core
# PostgreSQL down: chatroom endpoints answer 503 unavailable (never 500, never internals), a cached list is
# still served, nothing half-done is left behind; everything works again once PostgreSQL is back.
. "$(dirname "$0")/../lib.sh"

signup_and_login
auth_req "$TOKEN" POST /chatroom '{"title":"pg"}'
ROOM=$(jget .id)
auth_req "$TOKEN" GET /chatroom
auth_req "$TOKEN" GET /chatroom
check_eq "$(header X-Cache)" HIT "list cached before the outage"

stack_pg_stop
auth_req "$TOKEN" GET /chatroom
check_status 200 "a cached list is served while PostgreSQL is down"
check_eq "$(jget '.chatrooms[0].id')" "$ROOM" "the cached list is the right one"
auth_req "$TOKEN" GET "/chatroom/$ROOM"
check_status 503 "GET /chatroom/{id} with PostgreSQL down"
check_eq "$(jget .error.code)" unavailable "503 code unavailable"
auth_req "$TOKEN" POST "/chatroom/$ROOM/message" '{"content":"lost?"}'
check_status 503 "POST message with PostgreSQL down"
auth_req "$TOKEN" POST /chatroom '{}'
check_status 503 "POST /chatroom with PostgreSQL down"
auth_req "$TOKEN" GET "/chatroom/$ROOM/messages"
check_status 503 "GET messages with PostgreSQL down"
auth_req "$TOKEN" GET /chatroom/usage
check_status 503 "usage with PostgreSQL down"
auth_req "$TOKEN" DELETE "/chatroom/$ROOM"
check_status 503 "DELETE with PostgreSQL down"
check "503 bodies do not leak internals" test -z "$(grep -Eio 'postgres|libpq|socket|connection' <<<"$BODY")"
stack_pg_start

auth_req "$TOKEN" POST "/chatroom/$ROOM/message" '{"content":"after"}'
check_status 202 "POST message after PostgreSQL is back"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE chatroom_id = $ROOM AND role = 'user'")" 1 \
    "only the message sent after the outage is stored"
auth_req "$TOKEN" GET "/chatroom/$ROOM"
check_status 200 "GET /chatroom/{id} after PostgreSQL is back"
check_eq "$(jget .message_count)" 2 "message_count after the outage"
auth_req "$TOKEN" GET /chatroom/usage
check_eq "$(jget .used)" 1 "usage counts only the accepted message"
