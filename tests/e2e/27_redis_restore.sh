#!/usr/bin/env bash
# e2e: core
# Revocation and the cached list whatever Redis holds (API.md "Auth"; lib/mirror.h): after FLUSHALL, after a
# kill -9 and a restart from an older dump.rdb (which still holds the old token version mirror and the old
# list), and in the first instants after such a restart, a revoked token is 401 on every request and the
# chatroom list is never the stale one.
. "$(dirname "$0")/../lib.sh"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Redis killed (no save), its dump.rdb replaced by FILE, started again: it loads the older snapshot.
redis_restore() { # FILE
    _stack_stop_pidfile redis KILL
    cp "$1" "$STACK_DIR/dump.rdb"
    stack_redis_start >/dev/null
}
# N requests with TOKEN on PATH in parallel at once; prints how many were not 401.
not_401() { # N TOKEN PATH
    for i in $(seq 1 "$1"); do
        curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $2" "$BASE_URL$3" >"$TMP/c$i" &
    done
    wait
    cat "$TMP"/c* | grep -vc '^401$' || true
    rm -f "$TMP"/c*
}
list_ids() { jget '[.chatrooms[].id] | map(tostring) | join(",")'; }

# ---- a snapshot with a valid token version mirror and a cached list ----
signup_and_login
T_OLD=$TOKEN U=$USER_ID
auth_req "$T_OLD" POST /chatroom '{"title":"before the snapshot"}'
R1=$(jget .id)
auth_req "$T_OLD" GET /chatroom
auth_req "$T_OLD" GET /chatroom
check_eq "$(header X-Cache)" HIT "the list is cached before the snapshot"
auth_req "$T_OLD" GET /user/me
check_status 200 "the token works before the snapshot"
auth_req "$T_OLD" GET /user/me
check_eq "$(header X-Cache)" HIT "GET /user/me is cached before the snapshot"
check "the snapshot is written" redis_cli SAVE
cp "$STACK_DIR/dump.rdb" "$TMP/old.rdb"

# ---- after the snapshot: the password changes (every older token revoked) and a room is added ----
auth_req "$T_OLD" POST /auth/change-password '{"new_password":"after the snapshot 1"}'
check_status 200 "change-password after the snapshot"
T_NEW=$(jget .access_token)
auth_req "$T_NEW" POST /chatroom '{"title":"after the snapshot"}'
R2=$(jget .id)
check_eq "$(not_401 5 "$T_OLD" /user/me)" 0 "the old token is revoked"
auth_req "$T_NEW" GET /user/me
check_eq "$STATUS/$(jget .has_password)" 200/true "the new token's GET /user/me is fresh (has_password)"

# ---- kill -9, restart from the older snapshot ----
redis_restore "$TMP/old.rdb"
check "the restored Redis holds the old mirror (version 0)" test "$(redis_cli GET "authv:$U" | sed 's/^.*|//')" = 0
check "the restored Redis holds the old list" grep -q "before the snapshot" <<<"$(redis_cli GET "chatrooms:$U")"
check_eq "$(not_401 20 "$T_OLD" /user/me)" 0 "right after the restore: 20 parallel requests with the revoked token, all 401"
check_eq "$(not_401 10 "$T_OLD" /chatroom)" 0 "... also on the cached list endpoint"
auth_req "$T_NEW" GET /chatroom
check_status 200 "the new token works after the restore"
check_eq "$(header X-Cache)" MISS "the restored list is not served"
check_eq "$(list_ids)" "$R2,$R1" "the list after the restore is fresh"
auth_req "$T_NEW" GET /chatroom
check_eq "$(header X-Cache)/$(list_ids)" "HIT/$R2,$R1" "and it is cached again, fresh"
check_eq "$(not_401 10 "$T_OLD" /user/me)" 0 "the revoked token stays refused once the mirror is rebuilt"
auth_req "$T_NEW" GET /user/me
check_eq "$STATUS/$(jget .has_password)" 200/true "GET /user/me after the restore is fresh (the snapshot's copy said no password)"
auth_req "$T_NEW" GET /user/me
check_eq "$(header X-Cache)" HIT "and it is cached again"
# A change of the user's data made straight in SQL invalidates the cached user with the list: the users trigger
# writes the outbox, and the worker's drain tombstones both.
psql_q "UPDATE users SET tier = 'pro' WHERE id = $U" >/dev/null
wait_outbox_empty 8 "$U" || true
auth_req "$T_NEW" GET /user/me
check_eq "$(header X-Cache)/$(jget .tier)" MISS/pro "an invalidation of the user drops the cached user"

# ---- a revocation while Redis is down, then Redis back from a snapshot taken before it ----
redis_cli SAVE >/dev/null
cp "$STACK_DIR/dump.rdb" "$TMP/old2.rdb"
_stack_stop_pidfile redis KILL
auth_req "$T_NEW" POST /auth/change-password '{"current_password":"after the snapshot 1","new_password":"while redis is down"}'
check_status 200 "change-password while Redis is down"
T_NEWER=$(jget .access_token)
cp "$TMP/old2.rdb" "$STACK_DIR/dump.rdb"
stack_redis_start >/dev/null
check_eq "$(not_401 20 "$T_NEW" /user/me)" 0 "the instant Redis is back from the older snapshot: the token revoked meanwhile is 401 (20 of 20)"
auth_req "$T_NEWER" GET /user/me
check_status 200 "the newest token works"

# ---- FLUSHALL ----
# The password changes above reach the cache through the outbox too (the worker tombstones the list when it
# drains it): let that finish first, or it may land between the two reads below.
wait_outbox_empty 8 || true
auth_req "$T_NEWER" GET /chatroom
auth_req "$T_NEWER" GET /chatroom
check_eq "$(header X-Cache)" HIT "cached before the flush"
redis_cli FLUSHALL >/dev/null
check_eq "$(not_401 10 "$T_NEW" /user/me)" 0 "after FLUSHALL the revoked token is 401"
auth_req "$T_NEWER" POST /chatroom '{"title":"after the flush"}'
R3=$(jget .id)
auth_req "$T_NEWER" GET /chatroom
check_eq "$(jget '.chatrooms | length')/$(jget '.chatrooms[0].id')" "3/$R3" "after FLUSHALL the list is fresh"
check "a new epoch is in force" test -n "$(redis_cli GET gb:epoch)"

# ---- a forged mirror without a valid epoch stamp is never trusted ----
redis_cli SET "authv:$U" 0 EX 600 >/dev/null
check_eq "$(not_401 5 "$T_NEW" /user/me)" 0 "an unstamped mirror value does not revive a revoked token"
redis_cli SET "authv:$U" "stale.0123|0" EX 600 >/dev/null
check_eq "$(not_401 5 "$T_NEW" /user/me)" 0 "a mirror value of another epoch does not revive a revoked token"

# ---- Redis refusing writes while it still serves reads: out of memory (it still takes a DEL), and refusing
# every write (as with a failed save or too few replicas; min-replicas-to-write here). A logout's raise of the
# mirror is refused, and the old copies (in Redis and the processes' local ones) must not keep the token
# valid; a new message's invalidation is refused, and the cached list must not hide it ----
policy=$(redis_cli CONFIG GET maxmemory-policy | tail -n 1)
writes() { # refuse-oom | refuse-all | take
    case $1 in
    refuse-oom) redis_cli CONFIG SET maxmemory-policy noeviction >/dev/null && redis_cli CONFIG SET maxmemory 1 ;;
    refuse-all) redis_cli CONFIG SET min-replicas-to-write 1 ;;
    take)
        redis_cli CONFIG SET maxmemory 0 >/dev/null && redis_cli CONFIG SET min-replicas-to-write 0 >/dev/null &&
            redis_cli CONFIG SET maxmemory-policy "$policy"
        ;;
    esac >/dev/null
}
trap 'writes take; rm -rf "$TMP"' EXIT
for mode in refuse-oom refuse-all; do
    signup_and_login
    T_REF=$TOKEN
    auth_req "$T_REF" POST /chatroom '{"title":"before the refusal"}'
    R_REF=$(jget .id)
    for _ in 1 2 3 4; do
        auth_req "$T_REF" GET /user/me
        auth_req "$T_REF" GET /chatroom
    done
    check_eq "$STATUS/$(header X-Cache)" 200/HIT "$mode: the user and the list are cached"
    writes "$mode"
    check "$mode: Redis refuses writes now" grep -Eq 'OOM|NOREPLICAS' <<<"$(redis_cli SET gb:probe 1 2>&1)"
    check "... and still serves reads" test "$(redis_cli EXISTS gb:epoch)" = 1
    auth_req "$T_REF" POST "/chatroom/$R_REF/message" '{"content":"while Redis refuses writes"}'
    check_status 202 "$mode: a message is taken"
    auth_req "$T_REF" GET /chatroom
    check_eq "$STATUS/$(jget '.chatrooms[0].message_count')" 200/2 "... and the list shows it (not the cached copy)"
    auth_req "$T_REF" POST /auth/logout
    check_status 204 "$mode: logout"
    check_eq "$(not_401 20 "$T_REF" /user/me)" 0 "... the logged-out token is 401 on /user/me (20 of 20)"
    check_eq "$(not_401 20 "$T_REF" /chatroom)" 0 "... and on the cached list (20 of 20)"
    writes take
    wait_outbox_empty 8 || true
    check_eq "$(not_401 10 "$T_REF" /user/me)" 0 "... and once Redis takes writes again"
done
