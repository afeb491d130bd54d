#!/usr/bin/env bash
# e2e: core
# Lost list-cache invalidations: a change made while Redis cannot be written (stopped, or paused for writes) is
# recorded in PostgreSQL (cache_invalidations) and replayed by the worker once Redis answers again, so a cached
# list that survived the outage is not served stale for its 10-minute TTL.
. "$(dirname "$0")/../lib.sh"

room_ids() { jget '[.chatrooms[].id] | map(tostring) | join(",")'; }
# Several reads, so that whichever FastCGI process answers, none may serve the stale list.
fresh_reads() { # EXPECTED_IDS: 0 when four reads in a row show them
    local i
    for i in 1 2 3 4; do
        auth_req "$TOKEN" GET /chatroom
        [[ $STATUS == 200 && $(room_ids) == "$1" ]] || return 1
    done
}
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

signup_and_login
auth_req "$TOKEN" POST /chatroom '{"title":"one"}'
R1=$(jget .id)
auth_req "$TOKEN" GET /chatroom
auth_req "$TOKEN" GET /chatroom
check_eq "$(header X-Cache)" HIT "the list is cached"

# ---- Redis stopped after a SAVE: it comes back holding the list of before the change ----
dump=$STACK_DIR/dump.rdb
trap 'rm -f "$dump"' EXIT # later restarts of the test Redis must start empty again
redis_cli SAVE >/dev/null
stack_redis_stop
auth_req "$TOKEN" POST /chatroom '{"title":"two"}'
check_status 201 "create with Redis down"
R2=$(jget .id)
check_eq "$(outbox_count "$USER_ID")" 1 "the lost invalidation is recorded in PostgreSQL"
sleep 1.5
check_eq "$(outbox_count "$USER_ID")" 1 "it stays there while Redis is down"
stack_redis_start
rm -f "$dump"
check "the worker replays it soon after Redis answers (within 4 s)" wait_outbox_empty 4 "$USER_ID"
check "the list after Redis came back is fresh, not the saved one" fresh_reads "$R2,$R1"

# ---- Redis paused for writes while a chatroom is created: the tombstone cannot be written ----
auth_req "$TOKEN" GET /chatroom
auth_req "$TOKEN" GET /chatroom
check_eq "$(header X-Cache)" HIT "the list is cached again"
redis_cli CLIENT PAUSE 3000 WRITE >/dev/null
t0=$(date +%s%N)
auth_req "$TOKEN" POST /chatroom '{"title":"three"}'
check_status 201 "create while Redis refuses writes"
R3=$(jget .id)
left=$((3000 - $(ms_since "$t0")))
sleep "$(awk -v m="$left" 'BEGIN { if (m < 0) m = 0; printf "%.3f", (m + 100) / 1000 }')" # the pause is over
check "after the pause the lost invalidation is replayed (within 4 s)" wait_outbox_empty 4 "$USER_ID"
check "the list after the pause is fresh" fresh_reads "$R3,$R2,$R1"
auth_req "$TOKEN" GET /chatroom
auth_req "$TOKEN" GET /chatroom
check_eq "$(header X-Cache)" HIT "and it is cached again"

# ---- a password change while Redis refuses writes: the token version mirror cannot be raised ----
# Without the outbox the mirror would keep the old version for its TTL (10 min) and the revoked token would
# keep working.
signup_and_login
T_OLD=$TOKEN
auth_req "$T_OLD" GET /user/me
check_eq "$(redis_cli GET "authv:$USER_ID")" "$(redis_cli GET gb:epoch)|0" "the token version is mirrored in Redis"
req POST /auth/forgot-password "{\"mobile\":\"$MOBILE\"}" # a first password needs a reset code
RESET=$(jget .otp)
redis_cli CLIENT PAUSE 8000 WRITE >/dev/null
t0=$(date +%s%N)
auth_req "$T_OLD" POST /auth/change-password "{\"new_password\":\"paused redis password\",\"otp\":\"$RESET\"}"
check_status 200 "change-password while Redis refuses writes"
T_NEW=$(jget .access_token)
if (($(ms_since "$t0") < 7000)); then
    check_eq "$(outbox_count "$USER_ID")" 1 "the stale mirror is recorded in the outbox"
fi
revoked_soon() { # the old token refused within 15 s
    local deadline=$((SECONDS + 15))
    while ((SECONDS < deadline)); do
        auth_req "$T_OLD" GET /user/me
        [[ $STATUS == 401 ]] && return 0
        sleep 0.3
    done
    return 1
}
check "the revoked token is refused soon after the pause" revoked_soon
check "the outbox row is gone once Redis takes writes again (the pause is 8 s)" wait_outbox_empty 12 "$USER_ID"
auth_req "$T_NEW" GET /user/me
check_status 200 "the fresh token works"

# An operator revokes every token of the user in SQL: the trigger's outbox row has the worker raise the mirror to
# the version PostgreSQL holds, never delete it: a deleted mirror let a request that had read the old version
# from PostgreSQL just before the change store it back after the drain, and the revoked tokens worked again for
# the mirror's 10 minutes.
tv=$(psql_q "SELECT token_version + 1 FROM users WHERE id = $USER_ID")
psql_q "UPDATE users SET token_version = $tv WHERE id = $USER_ID" >/dev/null
check "the SQL change's outbox row is drained" wait_outbox_empty 4 "$USER_ID"
check_eq "$(redis_cli GET "authv:$USER_ID")" "$(redis_cli GET gb:epoch)|$tv" \
    "the drain raised the mirror to PostgreSQL's version (it is never deleted)"
auth_req "$T_NEW" GET /user/me
check_eq "$STATUS/$(jget .error.code)" "401/unauthorized" "the token revoked in SQL is refused"
