#!/usr/bin/env bash
# Slow and waiting clients must not stop the service for others, under every web server:
#   - request bodies trickling in a byte a second, more of them than the auth program has processes: the web
#     server reads a body whole before it asks a program (Apache: spooled, apache.conf), so a new request is
#     still answered at once;
#   - 40 clients streaming a pending reply (each holds its connection up to 120 s): more than the 32 threads
#     Apache once had; the others are still answered (not in CGI mode, below).
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

PIDS=()
stop_all() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    PIDS=()
    wait 2>/dev/null || true
}
trap stop_all EXIT
port=${BASE_URL##*:}

# slow_body: a POST whose 200-byte body comes one byte a second (for 30 s at most)
slow_body() {
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return 0
    printf 'POST /auth/send-otp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{' >&3
    for _ in $(seq 1 30); do
        sleep 1
        printf ' ' >&3 2>/dev/null || return 0
    done
}
for _ in $(seq 1 10); do
    slow_body &
    PIDS+=($!)
done
sleep 2
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST -H 'Content-Type: application/json' \
    -d "{\"mobile\":\"$(rand_mobile)\"}" "$BASE_URL/auth/send-otp" || true)
check_eq "$code" 404 "10 bodies trickling in: another send-otp is answered at once (404: an unknown number)"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$BASE_URL/healthz" || true)
check_eq "$code" 200 "... and /healthz"
stop_all

# 40 streams of a reply that stays pending (no worker). Not under nginx-cgi: in CGI mode each stream is a
# process of its own, held by one of fcgiwrap's few workers (README: CGI is for development, not for scale).
[[ ${DEPLOYMENT:-lighttpd} == nginx-cgi ]] && exit 0
stack_worker_stop TERM >/dev/null 2>&1 || true
trap 'stop_all; stack_worker_start >/dev/null 2>&1 || true' EXIT
signup_and_login
auth_req "$TOKEN" POST /chatroom '{}'
room=$(jget .id)
auth_req "$TOKEN" POST "/chatroom/$room/message" '{"content":"wait for me"}'
check_status 202 "a message whose reply stays pending"
reply=$(jget .reply.id)
for _ in $(seq 1 40); do
    curl -s -N -o /dev/null --max-time 30 -H "Authorization: Bearer $TOKEN" \
        "$BASE_URL/chatroom/$room/messages/$reply/stream" &
    PIDS+=($!)
done
sleep 3
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$BASE_URL/healthz" || true)
check_eq "$code" 200 "40 open streams: /healthz is answered"
auth_req "$TOKEN" GET /chatroom
check_status 200 "40 open streams: the chatroom list is answered"
stop_all
stack_worker_start >/dev/null 2>&1 || true
trap - EXIT
