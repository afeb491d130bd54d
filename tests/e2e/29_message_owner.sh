#!/usr/bin/env bash
# e2e: core
# A message belongs to its room and to that room's owner: one foreign key, (chatroom_id, user_id) -> chatrooms
# (id, user_id) (schema step 9). PostgreSQL refuses a message that names another user or no room; deleting a
# room, or its user, deletes its messages; the step migrates a database written before it (a stray message of
# another user in a room is given the room's owner, nothing is lost) and applies once more as a no-op.
set -euo pipefail
source "$(dirname "$0")/../worker_lib.sh"

# The SQLSTATE PostgreSQL refuses a statement with, "ok" when it is accepted.
sql_state() {
    local out
    if out=$(psql -X -A -t -q -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d "$DATABASE_URL" -c "$1" 2>&1); then
        echo ok
    else
        sed -n 's/^ERROR: *\([0-9A-Z]\{5\}\):.*/\1/p' <<<"$out" | head -1
    fi
}
insert_msg() { # ROOM USER_ID
    echo "INSERT INTO messages (chatroom_id, user_id, role, content, status) VALUES ($1, $2, 'user', 'x', 'completed')"
}
room_with_post() { # TOKEN: ROOM, one message and its reply in it
    TOKEN=$1 new_room
    TOKEN=$1 check "a post into room $ROOM" post_msg "$ROOM" mine
}
owner_keys() {
    psql_q "SELECT string_agg(pg_get_constraintdef(oid), '; ' ORDER BY conname) FROM pg_constraint
            WHERE conrelid = 'messages'::regclass AND contype = 'f'"
}
ONE_KEY='FOREIGN KEY (chatroom_id, user_id) REFERENCES chatrooms(id, user_id) ON DELETE CASCADE'

signup_and_login
A_ID=$USER_ID A_TOKEN=$TOKEN
signup_and_login
B_ID=$USER_ID B_TOKEN=$TOKEN

check_eq "$(owner_keys)" "$ONE_KEY" "messages have one foreign key, to their room and its owner"
room_with_post "$A_TOKEN"
A_ROOM=$ROOM
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE chatroom_id = $A_ROOM AND user_id = $A_ID")" 2 \
    "the message and its reply name the room's owner"
check_eq "$(sql_state "$(insert_msg "$A_ROOM" "$B_ID")")" 23503 \
    "a message of another user in the room is refused (foreign key violation)"
check_eq "$(sql_state "$(insert_msg 0 "$A_ID")")" 23503 "a message in no room is refused"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE chatroom_id = $A_ROOM")" 2 "nothing was added by the refusals"

auth_req "$A_TOKEN" DELETE "/chatroom/$A_ROOM"
check_status 204 "the room is deleted"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE chatroom_id = $A_ROOM")" 0 "its messages went with it"

room_with_post "$A_TOKEN"
psql_q "DELETE FROM users WHERE id = $A_ID"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE user_id = $A_ID OR chatroom_id = $ROOM")" 0 \
    "deleting a user (in SQL) deletes the messages of its rooms"

# A database as it was before step 9: two foreign keys (a message could name any user), no unique (id, user_id).
room_with_post "$B_TOKEN"
B_ROOM=$ROOM
signup_and_login
C_ID=$USER_ID
psql_q "BEGIN;
        ALTER TABLE messages DROP CONSTRAINT messages_room_owner_fkey,
            ADD CONSTRAINT messages_chatroom_id_fkey FOREIGN KEY (chatroom_id) REFERENCES chatrooms(id)
                ON DELETE CASCADE,
            ADD CONSTRAINT messages_user_id_fkey FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE;
        DROP INDEX chatrooms_id_user;
        DELETE FROM schema_version WHERE version = 9;
        COMMIT" >/dev/null
STRAY=$(psql_q "$(insert_msg "$B_ROOM" "$C_ID") RETURNING id")
check "the old keys accept a message of another user in a room" test -n "$STRAY"
check "schema.sql applies step 9 to a database written before it" stack_schema_apply
check_eq "$(psql_q "SELECT user_id FROM messages WHERE id = $STRAY")" "$B_ID" \
    "the stray message now names the room's owner"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE chatroom_id = $B_ROOM")" 3 "no message was lost"
check_eq "$(owner_keys)" "$ONE_KEY" "the two old foreign keys are replaced by the one"
check_eq "$(psql_q "SELECT count(*) FROM schema_version WHERE version = 9")" 1 "step 9 is recorded"
check "schema.sql applied once more changes nothing" stack_schema_apply
check_eq "$(owner_keys)" "$ONE_KEY" "still the one foreign key"
auth_req "$B_TOKEN" POST "/chatroom/$B_ROOM/message" '{"content":"after the step"}'
check_status 202 "a post after the migration"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE chatroom_id = $B_ROOM AND user_id = $B_ID")" 5 \
    "it and its reply are stored under the owner"
