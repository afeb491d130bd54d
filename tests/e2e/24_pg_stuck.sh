#!/usr/bin/env bash
# PostgreSQL that stops answering without closing anything (paused: SIGSTOP of the postmaster and every
# backend, as a hung host or a network cut without a reset looks): requests get 503 `unavailable` after the
# programs' wait for an answer (lib/db.h DB_ANSWER_MS_DEFAULT, 5 s), never hang; after it resumes they work.
# Then a post waiting on a lock whose FastCGI process is killed: the server aborts the statement when it sees
# the connection closed (client_connection_check_interval), so the 503 the client got hides no message, and the
# cached list stays true. Deployments with a pool of processes to kill: lighttpd, lighttpd-asan, nginx (the
# paused part runs under every deployment).
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

TMP=$(mktemp -d)
trap 'resume_all; release_lock; rm -rf "$TMP"' EXIT

signup_and_login
auth_req "$TOKEN" POST /chatroom '{"title":"stuck"}'
ROOM=$(jget .id)
# every process of the program has its connection open (the ones that reconnect during the pause meet
# connect_timeout instead, 3 s)
for i in $(seq 1 16); do
    curl -s -o /dev/null --max-time 5 -H "Authorization: Bearer $TOKEN" "$BASE_URL/chatroom/usage" &
done
wait

# ---- paused: 503 in bounded time ----
pause_pg
for i in $(seq 1 6); do
    curl -s -o "$TMP/p$i.body" -D "$TMP/p$i.head" -w '%{http_code}\n' --max-time 15 \
        -H "Authorization: Bearer $TOKEN" "$BASE_URL/chatroom/usage" >"$TMP/p$i.code" &
done
wait
codes=$(cat "$TMP"/p*.code | sort | uniq -c | awk '{ printf "%s%s×%s", (NR > 1 ? " " : ""), $1, $2 }')
check_eq "$codes" "6×503" "PostgreSQL paused: 6 requests at once all get 503 (none hangs past 15 s: 000)"
check_eq "$(cat "$TMP"/p*.body | jq -r .error.code | sort -u)" unavailable "... with the code unavailable"
check_eq "$(grep -il '^retry-after: 1' "$TMP"/p*.head | wc -l)" 6 "... and Retry-After: 1"
resume_all
ok=0
for _ in $(seq 1 50); do
    auth_req "$TOKEN" GET /chatroom/usage
    [[ $STATUS == 200 ]] && ok=1 && break
    sleep 0.2
done
check_eq "$ok" 1 "PostgreSQL resumed: requests are answered again"

# ---- a post waiting on a lock, its process killed: nothing committed ----
case ${DEPLOYMENT:-lighttpd} in
lighttpd | lighttpd-asan | nginx) ;;
*) exit 0 ;;
esac
auth_req "$TOKEN" GET /chatroom
auth_req "$TOKEN" GET /chatroom
check_eq "$(header X-Cache)" HIT "the list is cached"
hold_lock "the room's lock is held" "SELECT 1 FROM chatrooms WHERE id = $ROOM FOR UPDATE"
curl -s -o /dev/null -w '%{http_code}' --max-time 20 -X POST -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"content":"killed while waiting"}' \
    "$BASE_URL/chatroom/$ROOM/message" >"$TMP/killed.code" &
post=$!
waiting=0
for _ in $(seq 1 100); do
    [[ $(psql_q "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
                 AND query LIKE '%chat_post%'") == 1 ]] && waiting=1 && break
    sleep 0.05
done
check_eq "$waiting" 1 "the post waits for the room's lock"
mapfile -t pids < <(stack_program_pids chatroom)
kill -KILL "${pids[@]}" 2>/dev/null || true
wait "$post" || true # (a bare wait would wait for the lock holder too)
check "the client gets a 5xx" grep -Eq '^5[0-9][0-9]$' "$TMP/killed.code"
sleep 2 # the server checks every second whether the client is still there
release_lock
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE chatroom_id = $ROOM")" 0 \
    "the killed post's statement was aborted: no message stored"
stack_respawn_program chatroom
ok=0
for _ in $(seq 1 50); do
    auth_req "$TOKEN" GET /chatroom
    [[ $STATUS == 200 ]] && ok=1 && break
    sleep 0.2
done
check_eq "$ok/$(jget '.chatrooms[0].message_count')" 1/0 "the list is served again, and true (no message)"
auth_req "$TOKEN" GET /chatroom/usage
check_eq "$(jget .used)" 0 "nothing was counted"
