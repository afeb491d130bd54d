#!/usr/bin/env bash
# e2e: core
# A token whose user was deleted in SQL (by an operator): every authenticated endpoint answers 401, never 500
# (POST /chatroom used to hit the foreign key) nor 404 / an empty list. While no worker runs, the token
# version mirror in Redis still says the token is current, so each handler must notice the missing user
# itself (the cached reads, GET /chatroom and GET /user/me, are served from their copies until then); with the
# worker back, the delete's outbox row (schema step 7) raises the mirror past any version and drops the cached
# list.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../worker_lib.sh"

signup_and_login
auth_req "$TOKEN" POST /chatroom '{"title":"doomed"}'
ROOM=$(jget .id)
auth_req "$TOKEN" POST "/chatroom/$ROOM/message" '{"content":"hello"}' -H 'Idempotency-Key: k-before'
check_status 202 "a message before the delete"
check_eq "$(psql_q "SELECT count(*) FROM idempotency_keys WHERE user_id = $USER_ID")" 1 "its key is stored"
auth_req "$TOKEN" GET /chatroom
auth_req "$TOKEN" GET /chatroom
check_eq "$(header X-Cache)" HIT "the list is cached before the delete"
auth_req "$TOKEN" GET /user/me
check_eq "$(redis_cli GET "authv:$USER_ID" | sed 's/^.*|//')" 0 "the token version mirror is warm"
# A second user whose profile was never read (no copy of GET /user/me anywhere), only its token checked.
read -r T1 U1 <<<"$TOKEN $USER_ID"
signup_and_login
read -r T2 U2 <<<"$TOKEN $USER_ID"
auth_req "$T2" GET /chatroom/usage
check_status 200 "the second user's token is checked (GET /chatroom/usage)"
read -r TOKEN USER_ID <<<"$T1 $U1"

# Without a worker nothing drains the outbox: the handlers are on their own.
worker_restart
stack_worker_stop TERM
psql_q "DELETE FROM users WHERE id IN ($USER_ID, $U2)"
check_eq "$(redis_cli GET "authv:$USER_ID" | sed 's/^.*|//')" 0 "the mirror still holds the deleted user's version"

expect_401() { # DESC
    check_eq "$STATUS/$(jget .error.code)" 401/unauthorized "$1 of a deleted user is 401 unauthorized"
    check "$1: WWW-Authenticate: Bearer" grep -qi '^WWW-Authenticate: Bearer' <<<"$HEADERS"
}
auth_req "$T2" GET /user/me
expect_401 "GET /user/me with no copy of the profile (the user's row is gone: not a 404)"
auth_req "$TOKEN" POST /chatroom '{"title":"after"}'
expect_401 "POST /chatroom"
auth_req "$TOKEN" POST /chatroom
expect_401 "POST /chatroom without a body"
auth_req "$TOKEN" GET "/chatroom/$ROOM"
expect_401 "GET /chatroom/{id}"
auth_req "$TOKEN" GET "/chatroom/$ROOM/messages"
expect_401 "GET /chatroom/{id}/messages"
auth_req "$TOKEN" POST "/chatroom/$ROOM/message" '{"content":"ghost"}'
expect_401 "POST /chatroom/{id}/message"
auth_req "$TOKEN" POST "/chatroom/$ROOM/message" '{"content":"ghost"}' -H 'Idempotency-Key: k-deleted'
expect_401 "POST /chatroom/{id}/message with an Idempotency-Key"
# An expected race, not a fault: no ERROR line, and no key stored for the deleted user.
rid=$(header X-Request-Id)
check "the request id of the post is known" test -n "$rid"
check_eq "$(grep -F "rid=$rid" "$(_stack_web_log)" | grep -c ' ERROR ' || true)" 0 \
    "the keyed post of a deleted user logs no ERROR"
check_eq "$(psql_q "SELECT count(*) FROM idempotency_keys WHERE user_id = $USER_ID")" 0 \
    "the deleted user's keys went with it (schema step 10's trigger), and the post after stored none"
auth_req "$TOKEN" DELETE "/chatroom/$ROOM"
expect_401 "DELETE /chatroom/{id}"
auth_req "$TOKEN" GET /chatroom/usage
expect_401 "GET /chatroom/usage"
auth_req "$TOKEN" POST /auth/change-password '{"new_password":"a-new-password-1"}'
expect_401 "POST /auth/change-password"
auth_req "$TOKEN" GET /subscription/status
expect_401 "GET /subscription/status"
auth_req "$TOKEN" POST /subscribe/pro
check "POST /subscribe/pro of a deleted user is 401 (or 503 when Stripe is not configured)" \
    grep -qxE '401|503' <<<"$STATUS"
check_eq "$(psql_q "SELECT count(*) FROM chatrooms WHERE user_id = $USER_ID")" 0 "nothing was written for the user"
check_eq "$(outbox_count "$USER_ID")" 1 \
    "the delete put the user into the outbox"

# The worker drains the outbox: the cached list goes and the mirror refuses every version, so the cached list is
# refused too.
worker_restore
trap - EXIT
ok=''
for _ in $(seq 1 30); do
    auth_req "$TOKEN" GET /chatroom
    [[ $STATUS == 401 ]] && ok=1 && break
    sleep 0.2
done
check_eq "${ok:+401}" 401 "GET /chatroom (cached before the delete) is 401 once the worker ran (~1 s)"
auth_req "$TOKEN" GET /user/me
expect_401 "GET /user/me (its cached copy went with the outbox too)"
check_eq "$(redis_cli GET "authv:$USER_ID" | sed 's/^.*|//')" 2147483647 \
    "the mirror of the deleted user is raised past any token's version (never deleted)"

# A database as it was before step 10: the keys' foreign key to users, no trigger. The step keeps every key
# (its post still replays), and deleting a user still deletes its keys.
signup_and_login
auth_req "$TOKEN" POST /chatroom '{}'
ROOM=$(jget .id)
auth_req "$TOKEN" POST "/chatroom/$ROOM/message" '{"content":"kept"}' -H 'Idempotency-Key: k-step10'
FIRST=$BODY
psql_q "BEGIN;
        DROP TRIGGER users_idempotency_keys_delete ON users;
        ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_user_id_fkey FOREIGN KEY (user_id)
            REFERENCES users(id) ON DELETE CASCADE;
        DELETE FROM schema_version WHERE version = 10;
        COMMIT" >/dev/null
keys_fk() {
    psql_q "SELECT count(*) FROM pg_constraint WHERE conrelid = 'idempotency_keys'::regclass AND contype = 'f'"
}
check_eq "$(keys_fk)" 1 "before step 10: the keys' foreign key"
check "schema.sql applies step 10 to a database written before it" stack_schema_apply
check_eq "$(psql_q "SELECT count(*) FROM schema_version WHERE version = 10")" 1 "step 10 is recorded"
check_eq "$(keys_fk)" 0 "the foreign key is gone"
check "schema.sql applied once more changes nothing" stack_schema_apply
auth_req "$TOKEN" POST "/chatroom/$ROOM/message" '{"content":"kept"}' -H 'Idempotency-Key: k-step10'
check_eq "$STATUS/$(header Idempotent-Replayed)" 202/true "the key stored before the step replays"
check_eq "$BODY" "$FIRST" "with the first response"
psql_q "DELETE FROM users WHERE id = $USER_ID" >/dev/null
check_eq "$(psql_q "SELECT count(*) FROM idempotency_keys WHERE user_id = $USER_ID")" 0 \
    "deleting the user deletes its keys (the trigger)"
