#!/usr/bin/env bash
# e2e: core
# Local copies (lib/cache_local.h): a FastCGI process keeps what its hot reads fetched from Redis (the token
# version mirror, the epoch, the cached list and user) and serves them without a round trip, kept true by
# CLIENT TRACKING invalidations. Every check reads in parallel bursts, so that every process of a program
# answers some of them, right after the change: none may answer from a copy the change made stale. Meanwhile
# another user's reads keep every process busy, so each holds its lease (copies are only served by a process
# that heard from Redis in the last 250 ms) and would serve a stale copy if an invalidation went missing.
. "$(dirname "$0")/../lib.sh"

TMP=$(mktemp -d)
STOPPED=''
trap 'keepalive_stop; rm -rf "$TMP"; [[ -n $STOPPED ]] && kill -CONT "$STOPPED" 2>/dev/null' EXIT
N=32

keepalive_start() { # TOKEN: 4 loops of reads, about 40 a second each, until keepalive_stop
    local i
    touch "$TMP/run"
    for i in 1 2 3 4; do
        while [[ -e $TMP/run ]]; do
            curl -s -o /dev/null -o /dev/null -o /dev/null -o /dev/null --max-time 5 \
                -H "Authorization: Bearer $1" "$BASE_URL/chatroom" "$BASE_URL/user/me" \
                "$BASE_URL/chatroom" "$BASE_URL/user/me" || true
            sleep 0.1
        done &
    done
}
keepalive_stop() {
    rm -f "$TMP/run"
    wait
}

burst() { # TOKEN PATH: N GETs, 8 at a time; TMP/codes has one status per line, TMP/b<i> the bodies
    rm -f "$TMP"/b*
    seq "$N" | xargs -P 8 -I{} curl -s -o "$TMP/b{}" -w '%{http_code}\n' --max-time 10 \
        -H "Authorization: Bearer $1" "$BASE_URL$2" >"$TMP/codes"
}
all_status() { # STATUS: 0 when every answer of the last burst had it
    [[ $(wc -l <"$TMP/codes") == "$N" ]] && ! grep -qv "^$1\$" "$TMP/codes"
}
all_lists() { # IDS: 0 when every answer of the last burst was 200 with exactly these chatroom ids, in order
    local lists
    all_status 200 || return 1
    lists=$(jq -r '[.chatrooms[].id] | map(tostring) | join(",")' "$TMP"/b*) || return 1
    [[ $(wc -l <<<"$lists") == "$N" && $(sort -u <<<"$lists") == "$1" ]]
}
mget_calls() { redis_cli INFO commandstats | sed -n 's/^cmdstat_mget:calls=\([0-9]*\),.*/\1/p' | grep . || echo 0; }
room_in_sql() { # a chatroom created behind the app's back (no invalidation): the newest of the user's
    psql_q "INSERT INTO chatrooms (user_id, title, created_at, updated_at)
            VALUES ($USER_ID, 'sql', now() + interval '1 hour', now() + interval '1 hour') RETURNING id"
}

signup_and_login
keepalive_start "$TOKEN"
signup_and_login
auth_req "$TOKEN" POST /chatroom '{"title":"one"}'
R1=$(jget .id)

# ---- the copies are used: most reads of a burst make no MGET ----
if [[ $DEPLOYMENT != *cgi* ]]; then # plain CGI: one request per process, nothing to keep
    # A process's copy lasts 250 ms after its last round trip: on a machine busy enough to space one process's
    # reads further apart every read asks Redis, so up to three bursts are tried (without copies all three would).
    burst "$TOKEN" /chatroom
    for try in 1 2 3; do
        before=$(mget_calls)
        burst "$TOKEN" /chatroom
        after=$(mget_calls)
        ((after - before < N / 2)) && break
    done
    check "a burst of $N cached reads is served 200 with the list" all_lists "$R1"
    check "fewer than half of them asked Redis (MGET calls: $((after - before)), burst $try)" \
        test $((after - before)) -lt $((N / 2))
fi

# ---- an invalidation reaches every process before the writer answers ----
burst "$TOKEN" /chatroom
auth_req "$TOKEN" POST /chatroom '{"title":"two"}'
R2=$(jget .id)
burst "$TOKEN" /chatroom
check "a created room is in every read right after the 201" all_lists "$R2,$R1"

# ---- revocation: a password change refuses the old token in every process at once ----
burst "$TOKEN" /user/me
check "the token works in every process" all_status 200
T_OLD=$TOKEN
auth_req "$T_OLD" POST /auth/change-password '{"new_password":"local copies password"}'
check_status 200 "change-password"
T_NEW=$(jget .access_token)
burst "$T_OLD" /user/me
check "the old token is refused by every read right after (GET /user/me)" all_status 401
burst "$T_OLD" /chatroom
check "... and GET /chatroom" all_status 401
burst "$T_NEW" /chatroom
check "the new token works" all_lists "$R2,$R1"
TOKEN=$T_NEW

# ---- changes made in Redis by hand: a DEL, a FLUSHALL ----
R3=$(room_in_sql)
burst "$TOKEN" /chatroom
check "a room added in SQL is not seen while the cached list stands (the cache is in use)" all_lists "$R2,$R1"
redis_cli DEL "chatrooms:$USER_ID" >/dev/null
burst "$TOKEN" /chatroom
check "after DEL of the cached list by hand, every read has the room" all_lists "$R3,$R2,$R1"
psql_q "UPDATE chatrooms SET title = 'flushed', updated_at = now() + interval '2 hours' WHERE id = $R1" >/dev/null
redis_cli FLUSHALL >/dev/null
burst "$TOKEN" /chatroom
check "after FLUSHALL, every read is fresh" all_lists "$R1,$R3,$R2"

# ---- the invalidation connections killed: what they would have carried is not lost ----
burst "$TOKEN" /chatroom
psql_q "UPDATE chatrooms SET updated_at = now() + interval '3 hours' WHERE id = $R2" >/dev/null
redis_cli CLIENT KILL TYPE pubsub >/dev/null
redis_cli DEL "chatrooms:$USER_ID" >/dev/null
burst "$TOKEN" /chatroom
check "with the invalidation connections killed, a DEL is still seen by every read" all_lists "$R2,$R1,$R3"
burst "$TOKEN" /chatroom
check "... and the reads after it too" all_lists "$R2,$R1,$R3"

# ---- Redis hung (SIGSTOP) while a password changes: the lease runs out, PostgreSQL decides ----
keepalive_stop
burst "$TOKEN" /user/me
check "warm again" all_status 200
redis_pid=$(_stack_pid redis)
kill -STOP "$redis_pid"
STOPPED=$redis_pid
auth_req "$TOKEN" POST /auth/change-password \
    '{"current_password":"local copies password","new_password":"hung redis password"}' --max-time 20
check_status 200 "change-password while Redis hangs"
N=8 # each read waits out a hung MGET (about 2 s) before PostgreSQL answers
burst "$TOKEN" /user/me
check "the old token is refused by every process while Redis hangs" all_status 401
kill -CONT "$redis_pid"
STOPPED=''
