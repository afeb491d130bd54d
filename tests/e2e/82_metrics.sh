#!/usr/bin/env bash
# GET /metrics: the Prometheus text of every program's counters (requests by route, method and status, latency
# histograms), the worker's replies and upstream latency, the queue depth and the worker heartbeat; loopback
# clients only by default (METRICS_ALLOW_FROM), and never a request relayed by a proxy.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../worker_lib.sh"

# The value of one sample line ("name{labels} value"), 0 when absent.
sample() { awk -v k="$1" '$1 == k { v = $2 } END { print v + 0 }' <<<"$BODY"; }

req GET /metrics
check_status 200 "GET /metrics from loopback"
check_eq "$(header Content-Type)" "text/plain; version=0.0.4; charset=utf-8" "the Prometheus text content type"
check "it names its metrics with HELP and TYPE lines" grep -q '^# TYPE gemini_http_requests_total counter$' <<<"$BODY"
check "it reports the queue depth" grep -Eq '^gemini_queue_depth [0-9]+$' <<<"$BODY"
key='gemini_http_requests_total{route="/healthz",method="GET",status="200"}'
before=$(sample "$key")

for _ in 1 2 3; do req GET /healthz; done
req GET /metrics
after=$(sample "$key")
check "three GET /healthz add three (at least: other clients may scrape too) ($before -> $after)" \
    test "$after" -ge $((before + 3))
check "a latency histogram per route" \
    grep -q '^gemini_http_request_duration_seconds_bucket{route="/healthz",method="GET",le="+Inf"}' <<<"$BODY"
req GET /nope-metrics-check
req GET /metrics
check "an unknown path is counted under route=\"unmatched\"" \
    grep -q '^gemini_http_requests_total{route="unmatched",method="GET",status="404"}' <<<"$BODY"
check "a route pattern, never a raw path with ids, is the label" not grep -q 'route="/chatroom/[0-9]' <<<"$BODY"
# A request the app refuses before any handler runs still counts under its endpoint: a body over the cap (the
# app's own 413: the web servers let up to 2 MiB through) and a method the path does not allow.
key413='gemini_http_requests_total{route="/auth/signup",method="POST",status="413"}'
key405='gemini_http_requests_total{route="/healthz",method="DELETE",status="405"}'
b413=$(sample "$key413") b405=$(sample "$key405")
big=$(mktemp)
head -c 200000 /dev/zero | tr '\0' 'a' >"$big"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary "@$big" \
    "$BASE_URL/auth/signup")
rm -f "$big"
check_eq "$code" 413 "a 200 KB signup is the app's 413"
req DELETE /healthz
check_status 405 "DELETE /healthz is 405"
req GET /metrics
check "the 413 counts under route=\"/auth/signup\", POST ($b413 -> $(sample "$key413"))" \
    test "$(sample "$key413")" -gt "$b413"
check "the 405 counts under route=\"/healthz\", DELETE ($b405 -> $(sample "$key405"))" \
    test "$(sample "$key405")" -gt "$b405"

# Every process keeps its counters in a file of METRICS_DIR: a FastCGI process one of its own, a plain CGI run
# (one request per process) and `worker --once` one shared file per program, so the directory does not gain a
# file per request (it gained one, 21 KB of tmpfs, for ever).
nfiles() { find "$METRICS_DIR" -name '*.metrics' | wc -l; }
req GET /healthz
req GET /payment/cancel # a program a web server may start on its first request (Apache's mod_fcgid)
f0=$(nfiles)
for _ in 1 2 3 4 5 6 7 8; do req GET /healthz; done
req GET /payment/cancel
check_eq "$(nfiles)" "$f0" "nine more requests add no metrics file ($(ls "$METRICS_DIR" | tr '\n' ' '))"

# Worker: a completed reply and an upstream call are counted.
worker_user
new_room
req GET /metrics
done_before=$(sample gemini_replies_completed_total)
post_msg "$ROOM" "metrics $(uniq_tag)"
check "the reply finishes" wait_replies 30 "$REPLY_ID"
req GET /metrics
check "gemini_replies_completed_total grew ($done_before -> $(sample gemini_replies_completed_total))" \
    test "$(sample gemini_replies_completed_total)" -gt "$done_before"
check "upstream calls are timed" test "$(sample gemini_upstream_duration_seconds_count)" -gt 0
check "the worker heartbeat age is reported" grep -Eq '^gemini_worker_heartbeat_age_seconds [0-9.]+$' <<<"$BODY"
# The stream program's two endpoints (the message with ?wait=, its /stream) are counted too.
kmsg='gemini_http_requests_total{route="/chatroom/{id}/messages/{message_id}",method="GET",status="200"}'
kstream='gemini_http_requests_total{route="/chatroom/{id}/messages/{message_id}/stream",method="GET",status="200"}'
bmsg=$(sample "$kmsg") bstream=$(sample "$kstream")
auth_req "$TOKEN" GET "/chatroom/$ROOM/messages/$REPLY_ID?wait=1"
curl -s -o /dev/null --max-time 10 -H "Authorization: Bearer $TOKEN" "$BASE_URL/chatroom/$ROOM/messages/$REPLY_ID/stream"
req GET /metrics
check "GET of a message and its /stream are counted under their routes ($bmsg -> $(sample "$kmsg"), $bstream -> $(sample "$kstream"))" \
    test "$(sample "$kmsg")" -gt "$bmsg" -a "$(sample "$kstream")" -gt "$bstream"

# ... under their own method and route, also when refused: a POST of /stream (405)
kpost='gemini_http_requests_total{route="/chatroom/{id}/messages/{message_id}/stream",method="POST",status="405"}'
kget405='gemini_http_requests_total{route="/chatroom/{id}/messages/{message_id}/stream",method="GET",status="405"}'
bpost=$(sample "$kpost") bget405=$(sample "$kget405")
curl -s -o /dev/null -X POST -d '' "$BASE_URL/chatroom/$ROOM/messages/$REPLY_ID/stream"
req GET /metrics
check_eq "$(($(sample "$kpost") - bpost))/$(($(sample "$kget405") - bget405))" 1/0 \
    "a POST of /stream counts as POST 405 under the /stream route (not as a GET)"

# A request relayed by a proxy on this host is not a local client: 404 like a path that does not exist.
req GET /metrics "" -H 'X-Forwarded-For: 203.0.113.9'
check_eq "$STATUS/$(jget .error.code)" "404/not_found" "a relayed request (X-Forwarded-For) gets 404"
req GET /metrics "" -H 'Forwarded: for=203.0.113.9'
check_status 404 "a relayed request (Forwarded) gets 404"
req GET /metrics "" -H 'X-Real-IP: 203.0.113.9'
check_status 404 "a relayed request (X-Real-IP, nginx's usual proxy header) gets 404"
