#!/usr/bin/env bash
# Replies that stream (API.md "AI replies", Streaming, and the two message endpoints), through the deployment's
# web server (curl -N): GET /chatroom/{id}/messages/{message_id}/stream sends delta events as the fake model
# writes (before done), then exactly one done with the stored message; every event has an id and a reconnect
# with Last-Event-ID continues where it left off; a finished reply gets done at once; an attempt that is redone
# (the model's stream cut short; under the core deployments also a worker killed with SIGKILL mid-stream) shows
# as a restart event, so the text after the last restart is exactly the stored answer. Redis down, or restarted
# under the stream program: streams still end with done; under the core deployments also Redis refusing XREAD
# (pieces come with the polls) and Redis back mid-reply (the worker publishes again from the start).
# GET /chatroom/{id}/messages/{message_id}?wait= answers when the reply lands, or after wait seconds with it
# still pending. 401 / 404 / 400 / 405 cases.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../worker_lib.sh"

tag=$(uniq_tag)
worker_user
new_room
OUT=$(mktemp -d "${TMPDIR:-/tmp}/gbsse.XXXXXX")
trap 'rm -rf "$OUT"; worker_restore' EXIT

now_ms() { date +%s%3N; }
header_of() { tr -d '\r' <"$1" | awk -v w="$2" 'tolower(substr($0, 1, index($0, ":") - 1)) == w {
    sub(/^[^:]*:[ \t]*/, ""); print; exit }'; }

# sse_get FILE PATH [curl args...]: the stream, each line prefixed with its arrival time in ms; response headers
# in FILE.h. Returns when the server ends the stream (or after 40 s).
sse_get() {
    local file=$1 path=$2
    shift 2
    curl -sN --max-time 40 -D "$file.h" -H "Authorization: Bearer $TOKEN" "$@" "$BASE_URL$path" |
        while IFS= read -r line; do printf '%s %s\n' "$(now_ms)" "$line"; done >"$file" || true
}

# Events of a recorded stream as JSON lines {t, id, event, data} (t: arrival of its data line).
events() {
    awk '
        { t = $1; sub(/^[0-9]+ /, "") }
        /^id: /    { id = substr($0, 5) }
        /^event: / { ev = substr($0, 8) }
        /^data: /  { data = substr($0, 7); dt = t }
        /^$/ && ev != "" {
            gsub(/\\/, "\\\\", id); gsub(/"/, "\\\"", id)
            printf "{\"t\":%s,\"id\":\"%s\",\"event\":\"%s\",\"data\":%s}\n", dt, id, ev, data
            id = ""; ev = ""; data = ""
        }' "$1"
}
# The text of the deltas after the last restart.
deltas_text() { events "$1" | jq -js '(map(.event) | rindex("restart") // -1) as $r | .[$r+1:] |
    map(select(.event == "delta") | .data.text) | join("")'; }
count_events() { events "$1" | jq -s --arg e "$2" 'map(select(.event == $e)) | length'; }
done_field() { events "$1" | jq -rs --arg f "$2" 'map(select(.event == "done" or .event == "error")) | .[0].data[$f]'; }

# ---- a keep-alive comment every 15 s while nothing else comes (the 16.5 s reply streams in the background
# while the sections below run; it is read before Redis is stopped) ----
post_msg "$ROOM" "[[delay:16500]] quiet $tag"
r9=$REPLY_ID
sse_get "$OUT/s9" "/chatroom/$ROOM/messages/$r9/stream" &
keepalive_pid=$!

# ---- deltas arrive before done; done carries the stored message ----
# (the delay makes sure the stream is open before the first piece, even under CGI, where a process starts first)
text="[[delay:1500]] [[chunks:5]] [[chunkms:500]] streamed one two three four five six $tag"
post_msg "$ROOM" "$text"
r1=$REPLY_ID
sse_get "$OUT/s1" "/chatroom/$ROOM/messages/$r1/stream"
check_eq "$(header_of "$OUT/s1.h" content-type)" "text/event-stream; charset=utf-8" "the stream is text/event-stream"
check "it carries an X-Request-Id" test -n "$(header_of "$OUT/s1.h" x-request-id)"
check "at least 3 delta events came" test "$(count_events "$OUT/s1" delta)" -ge 3
check_eq "$(count_events "$OUT/s1" done)" 1 "exactly one done event"
check_eq "$(events "$OUT/s1" | jq -rs '.[-1].event')" done "done is the last event"
first_delta=$(events "$OUT/s1" | jq -s 'map(select(.event == "delta"))[0].t')
done_at=$(events "$OUT/s1" | jq -s 'map(select(.event == "done"))[0].t')
check "the first delta came at least 1000 ms before done ($first_delta vs $done_at)" \
    test $((done_at - first_delta)) -ge 1000
check_eq "$(done_field "$OUT/s1" status)/$(done_field "$OUT/s1" id)" "completed/$r1" "done holds the completed message"
check_eq "$(deltas_text "$OUT/s1")" "fake-gemini: $text" "the deltas add up to the answer"
check_eq "$(done_field "$OUT/s1" content)" "$(reply_field "$r1" content)" "done's content is the stored reply"
check "every event has an id" test "$(events "$OUT/s1" | jq -s 'map(select(.id == "")) | length')" -eq 0

# ---- a finished reply gets done at once ----
t0=$(now_ms)
sse_get "$OUT/s2" "/chatroom/$ROOM/messages/$r1/stream"
check "a finished reply: the stream ends at once ($(($(now_ms) - t0)) ms)" test $(($(now_ms) - t0)) -lt 3000
check_eq "$(events "$OUT/s2" | jq -rs 'map(.event) | join(",")')" done "... with done only"
check_eq "$(done_field "$OUT/s2" content)" "fake-gemini: $text" "... holding the whole answer"

# ---- Last-Event-ID: a reconnect continues where the client left off ----
text="[[chunks:6]] [[chunkms:500]] resumed $tag"
post_msg "$ROOM" "$text"
r2=$REPLY_ID
sse_get "$OUT/s3a" "/chatroom/$ROOM/messages/$r2/stream" --max-time 1.8
last=$(events "$OUT/s3a" | jq -rs 'map(select(.event == "delta")) | .[-1].id // empty')
check "the first connection got some deltas (last id '$last')" test -n "$last"
sse_get "$OUT/s3b" "/chatroom/$ROOM/messages/$r2/stream" -H "Last-Event-ID: $last"
check "the reconnect gets no event at or before $last" \
    test "$(events "$OUT/s3b" | jq -rs --arg l "$last" 'map(select(.event == "delta" and .id == $l)) | length')" -eq 0
both=$(deltas_text "$OUT/s3a")$(deltas_text "$OUT/s3b")
check_eq "$both" "fake-gemini: $text" "the two connections' deltas add up to the answer, nothing twice"
check_eq "$(done_field "$OUT/s3b" status)" completed "the reconnect ends with done"
# the same resume once the reply is finished: what was missed, then done (not just done)
sse_get "$OUT/s3c" "/chatroom/$ROOM/messages/$r2/stream" -H "Last-Event-ID: $last"
check_eq "$(deltas_text "$OUT/s3a")$(deltas_text "$OUT/s3c")" "fake-gemini: $text" \
    "resuming a finished reply replays what the client missed"
check_eq "$(events "$OUT/s3c" | jq -rs '.[-1].event')" done "... and ends with done"

# ---- a Last-Event-ID past the newest entry (bogus, or from the future) costs no other client of the reply
# anything: the stream program shares one read of a reply's events among its clients ----
text="[[delay:1000]] [[chunks:6]] [[chunkms:400]] shared $tag"
post_msg "$ROOM" "$text"
rshared=$REPLY_ID
sse_get "$OUT/s10a" "/chatroom/$ROOM/messages/$rshared/stream" &
shared_pid=$!
sleep 1.5
sse_get "$OUT/s10b" "/chatroom/$ROOM/messages/$rshared/stream" -H 'Last-Event-ID: 9999999999999-0'
wait "$shared_pid" || true
check_eq "$(deltas_text "$OUT/s10a")" "fake-gemini: $text" \
    "a client whose neighbour resumed from a future Last-Event-ID still gets every delta"
check_eq "$(done_field "$OUT/s10a" status)/$(done_field "$OUT/s10b" status)" completed/completed "both end with done"

# ---- the model's stream cut short: the attempt is redone, the client sees restart ----
text="[[cut:1]] [[chunks:3]] [[chunkms:300]] cut $tag"
post_msg "$ROOM" "$text"
r3=$REPLY_ID
sse_get "$OUT/s4" "/chatroom/$ROOM/messages/$r3/stream"
check_eq "$(count_events "$OUT/s4" restart)" 1 "a stream cut short: one restart event"
check_eq "$(deltas_text "$OUT/s4")" "fake-gemini: $text" "the text after the restart is the whole answer"
check_eq "$(done_field "$OUT/s4" content)" "fake-gemini: $text" "done holds the answer of the second attempt"

# ---- a whole answer (its finish reason sent) whose connection is then kept open or reset: stored at once, with
# no retry (the worker used to wait out AI_TIMEOUT_MS or take the reset for a failure, and redo the answer) ----
upstream_calls() { curl -s "$BASE_URL/metrics" | awk '$1 == "gemini_upstream_duration_seconds_count" { print $2 }'; }
for how in linger rst; do
    text="[[$how]] [[chunks:2]] finished then $how $tag"
    calls0=$(upstream_calls)
    post_msg "$ROOM" "$text"
    r=$REPLY_ID
    t0=$(now_ms)
    sse_get "$OUT/s-$how" "/chatroom/$ROOM/messages/$r/stream"
    ms=$(($(now_ms) - t0))
    check_eq "$(count_events "$OUT/s-$how" restart)/$(done_field "$OUT/s-$how" content)" "0/fake-gemini: $text" \
        "an answer then $how: done with it, no restart"
    check "... at once (${ms} ms < 10000)" test "$ms" -lt 10000
    check_eq "$(reply_field "$r" status)/$(psql_q "SELECT attempts FROM messages WHERE id = $r")" completed/1 \
        "... stored after one attempt"
    check "... and its call is timed in /metrics ($calls0 -> $(upstream_calls))" test "$(upstream_calls)" -gt "$calls0"
done

# ---- a reply past the stream program's 1 MiB slow-client allowance (1.5 MB; the worker takes up to 2 MiB) comes
# back whole as one response: the long-poll, the plain read and the stream's done (they were cut off) ----
text="[[pad:1500000]] big $tag"
post_msg "$ROOM" "$text"
rbig=$REPLY_ID
REQ_TIMEOUT=40 auth_req "$TOKEN" GET "/chatroom/$ROOM/messages/$rbig?wait=30"
check_eq "$STATUS/$(jget .status)/$(jget '.content | length')" "200/completed/$((1500001 + 13 + ${#text}))" \
    "a 1.5 MB reply: the long-poll gets it whole"
auth_req "$TOKEN" GET "/chatroom/$ROOM/messages/$rbig"
check_eq "$STATUS/$(jget '.content | length')" "200/$((1500001 + 13 + ${#text}))" "... so does a plain read"
sse_get "$OUT/sbig" "/chatroom/$ROOM/messages/$rbig/stream"
check_eq "$(done_field "$OUT/sbig" content | wc -c)" "$((1500001 + 13 + ${#text} + 1))" "... and the stream's done"

# ---- long-poll ----
post_msg "$ROOM" "[[delay:1500]] long-poll $tag"
r5=$REPLY_ID
t0=$(now_ms)
REQ_TIMEOUT=30 auth_req "$TOKEN" GET "/chatroom/$ROOM/messages/$r5?wait=20"
ms=$(($(now_ms) - t0))
check_status 200 "wait=20: 200"
check_eq "$(jget .status)/$(jget .id)" "completed/$r5" "wait=20 answers with the completed reply"
check "... as soon as it landed (${ms} ms < 8000)" test "$ms" -lt 8000
post_msg "$ROOM" "[[delay:8000]] slow $tag"
r6=$REPLY_ID
t0=$(now_ms)
auth_req "$TOKEN" GET "/chatroom/$ROOM/messages/$r6?wait=2"
ms=$(($(now_ms) - t0))
check_eq "$STATUS/$(jget .status)" 200/pending "wait=2 on a slow reply: 200 with it still pending"
check "... after about 2 s (${ms} ms)" test "$ms" -ge 1900 -a "$ms" -lt 5000
auth_req "$TOKEN" GET "/chatroom/$ROOM/messages/$r6"
check_eq "$STATUS/$(jget .status)/$(jget .role)" 200/pending/model "no wait: the message at once"
auth_req "$TOKEN" GET "/chatroom/$ROOM/messages/$r6/"
check_status 200 "a trailing slash works"
for bad in 31 -1 abc 1.5; do
    auth_req "$TOKEN" GET "/chatroom/$ROOM/messages/$r6?wait=$bad"
    check_eq "$STATUS/$(jget .error.code)" 400/validation_error "wait=$bad: 400 validation_error"
done

# ---- who may see what ----
req GET "/chatroom/$ROOM/messages/$r1/stream"
check_status 401 "no token: 401"
check "... with WWW-Authenticate: Bearer" test "$(header WWW-Authenticate)" = Bearer
req GET "/chatroom/$ROOM/messages/$r1?wait=5"
check_status 401 "no token on the long-poll: 401"
owner=$TOKEN
signup_and_login
auth_req "$TOKEN" GET "/chatroom/$ROOM/messages/$r1/stream"
check_eq "$STATUS/$(jget .error.code)" 404/not_found "another user's reply: 404"
auth_req "$TOKEN" GET "/chatroom/$ROOM/messages/$r1"
check_status 404 "another user's message: 404"
TOKEN=$owner
auth_req "$TOKEN" GET "/chatroom/$ROOM/messages/999999999/stream"
check_status 404 "an unknown message: 404"
auth_req "$TOKEN" GET "/chatroom/$ROOM/messages/0/stream"
check_status 404 "message id 0: 404"
auth_req "$TOKEN" POST "/chatroom/$ROOM/messages/$r1/stream"
check_eq "$STATUS/$(header Allow)" "405/GET, HEAD" "POST on the stream: 405 with Allow: GET, HEAD"
auth_req "$TOKEN" GET "/chatroom/$ROOM/messages?limit=2"
check_eq "$STATUS/$(jget '.messages | length')" 200/2 "the message list is still served"

# ---- CORS (the stack allows https://app.example.test) ----
req OPTIONS "/chatroom/$ROOM/messages/$r1/stream" -H 'Origin: https://app.example.test' \
    -H 'Access-Control-Request-Method: GET' -H 'Access-Control-Request-Headers: authorization, last-event-id'
check_eq "$STATUS/$(header Access-Control-Allow-Origin)" "204/https://app.example.test" \
    "a preflight of the stream from an allowed origin: 204"
check "... allowing GET and Last-Event-ID" test "$(header Access-Control-Allow-Methods)" = GET -a \
    -n "$(header Access-Control-Allow-Headers | grep -i last-event-id)"
auth_req "$TOKEN" GET "/chatroom/$ROOM/messages/$r1" -H 'Origin: https://app.example.test'
check_eq "$STATUS/$(header Access-Control-Allow-Origin)" "200/https://app.example.test" \
    "the message to an allowed origin carries Access-Control-Allow-Origin"

# ---- the keep-alive stream started at the top ----
wait "$keepalive_pid" || true
check "a reply that takes 16.5 s: a ': keep-alive' comment came before done" \
    awk '/ : keep-alive$/ {k = 1} / event: done$/ {exit !k}' "$OUT/s9"
check_eq "$(done_field "$OUT/s9" status)" completed "... and then done"


# ---- Redis down: nothing can be published, yet the stream and the long-poll end (read from PostgreSQL) ----
trap 'rm -rf "$OUT"; stack_redis_start >/dev/null 2>&1 || true' EXIT
stack_redis_stop
text="[[delay:300]] redis down $tag"
post_msg "$ROOM" "$text"
r7=$REPLY_ID
t0=$(now_ms)
sse_get "$OUT/s7" "/chatroom/$ROOM/messages/$r7/stream"
ms=$(($(now_ms) - t0))
check_eq "$(done_field "$OUT/s7" status)/$(done_field "$OUT/s7" content)" "completed/fake-gemini: $text" \
    "Redis down: the stream still ends with done"
check "... within 20 s (${ms} ms)" test "$ms" -lt 20000
post_msg "$ROOM" "[[delay:300]] redis down, long-poll $tag"
r8=$REPLY_ID
REQ_TIMEOUT=30 auth_req "$TOKEN" GET "/chatroom/$ROOM/messages/$r8?wait=25"
check_eq "$STATUS/$(jget .status)" 200/completed "Redis down: the long-poll answers when the reply lands"
stack_redis_start
trap 'rm -rf "$OUT"' EXIT

# ---- Redis restarted while no stream is open: the stream program sees its idle XREAD connection close and
# connects again within a second; a reply that completes meanwhile (pieces read with the PostgreSQL polls) still
# streams every delta ----
# (its deltas may still be missing: the worker too may still be reconnecting after the outage above)
text="[[delay:1500]] [[chunks:2]] [[chunkms:100]] before the restart $tag"
post_msg "$ROOM" "$text"
sse_get "$OUT/s10" "/chatroom/$ROOM/messages/$REPLY_ID/stream"
check_eq "$(done_field "$OUT/s10" content)" "fake-gemini: $text" "a stream before the Redis restart ends with done"
_stack_stop_pidfile redis KILL
stack_redis_start >/dev/null
sleep 1
text="[[delay:200]] [[chunks:4]] [[chunkms:150]] after the restart $tag"
post_msg "$ROOM" "$text"
sse_get "$OUT/s11" "/chatroom/$ROOM/messages/$REPLY_ID/stream"
check_eq "$(deltas_text "$OUT/s11")" "fake-gemini: $text" "the first stream after a Redis restart gets every delta"

# ---- the stream program stopped (SIGTERM: a restart, a deploy) while a long-poll waits: the client gets a whole
# JSON 503 with Retry-After to ask again on (it got an empty answer, which the web server turned into a 502) ----
mapfile -t spids < <(stack_program_pids stream)
if ((${#spids[@]} > 0)); then
    post_msg "$ROOM" "[[delay:6000]] waiting at shutdown $tag" # still pending when the program stops, 1 s in
    curl -s --max-time 30 -D "$OUT/w.h" -o "$OUT/w.b" -H "Authorization: Bearer $TOKEN" -H 'X-Request-Id: wait-down' \
        "$BASE_URL/chatroom/$ROOM/messages/$REPLY_ID?wait=25" &
    wpid=$!
    sleep 1
    kill -TERM "${spids[@]}"
    wait "$wpid" || true
    st=$(awk 'NR == 1 { print $2 }' "$OUT/w.h")
    ra=$(awk -F': ' 'tolower($1) == "retry-after" { sub(/\r$/, "", $2); print $2 }' "$OUT/w.h")
    rid=$(awk -F': ' 'tolower($1) == "x-request-id" { sub(/\r$/, "", $2); print $2 }' "$OUT/w.h")
    check_eq "$st/$(jq -r .error.code "$OUT/w.b" 2>/dev/null)/$ra/$rid" "503/unavailable/1/wait-down" \
        "a long-poll waiting when the stream program stops: 503 unavailable, Retry-After: 1, its request id"
    stack_respawn_program stream
    REQ_TIMEOUT=40 auth_req "$TOKEN" GET "/chatroom/$ROOM/messages/$REPLY_ID?wait=25"
    check_eq "$STATUS/$(jget .status)" 200/completed "... and asked again, it gets the reply"
fi

# ---- what follows tests the worker and the stream program, not the web server: under the core deployments
# only (tests/run.sh) ----
if [[ ${E2E_CORE:-1} != 1 ]]; then
    exit 0
fi

# ---- the room deleted while its reply is awaited: the delete appends an end to the reply's event stream, so its
# stream ends (no done: the reply is gone) and its long-poll gets 404 at once, not at the 10 s PostgreSQL read ----
keep=$ROOM
new_room
groom=$ROOM ROOM=$keep
post_msg "$groom" "[[delay:15000]] deleted with its room $tag"
rg=$REPLY_ID
sse_get "$OUT/sg" "/chatroom/$groom/messages/$rg/stream" &
sg_pid=$!
curl -s --max-time 30 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
    "$BASE_URL/chatroom/$groom/messages/$rg?wait=25" >"$OUT/lg.s" &
lg_pid=$!
sleep 1
auth_req "$TOKEN" DELETE "/chatroom/$groom"
check_status 204 "a room deleted while its reply is awaited: 204"
t1=$(now_ms)
wait "$sg_pid" "$lg_pid" || true
t2=$(now_ms)
check "... its stream and its long-poll end within 5 s ($((t2 - t1)) ms), not at the next 10 s read" \
    test $((t2 - t1)) -lt 5000
check_eq "$(cat "$OUT/lg.s")/$(count_events "$OUT/sg" done)" 404/0 "... the long-poll gets 404, the stream no done"

# ---- Redis refuses XREAD (an ACL without it): the stream program reads each waited-for reply's event stream
# with its once-a-second PostgreSQL read instead; every delta still comes, and before done, also the last ones
# (the reply is complete in PostgreSQL before they have been read) ----
trap 'rm -rf "$OUT"; redis_cli ACL SETUSER default +xread >/dev/null 2>&1 || true' EXIT
redis_cli ACL SETUSER default -xread >/dev/null
text="[[delay:1500]] [[chunks:4]] [[chunkms:600]] no xread one two three four $tag"
post_msg "$ROOM" "$text"
r12=$REPLY_ID
sse_get "$OUT/s12" "/chatroom/$ROOM/messages/$r12/stream"
redis_cli ACL SETUSER default +xread >/dev/null
trap 'rm -rf "$OUT"' EXIT
check_eq "$(deltas_text "$OUT/s12")" "fake-gemini: $text" "XREAD refused: every delta still comes"
first_delta=$(events "$OUT/s12" | jq -s 'map(select(.event == "delta"))[0].t // 0')
done_at=$(events "$OUT/s12" | jq -s 'map(select(.event == "done"))[0].t // 0')
check "... as the reply is written, not all at the end (first delta $((done_at - first_delta)) ms before done)" \
    test $((done_at - first_delta)) -ge 500
check_eq "$(events "$OUT/s12" | jq -rs '.[-1].event')/$(done_field "$OUT/s12" content)" "done/fake-gemini: $text" \
    "... then done with the stored reply"

# ---- Redis back while a reply is being written (the worker took it from PostgreSQL, unpublished): the worker
# publishes it again from the start of the attempt (restart, the text so far), then piece by piece ----
trap 'rm -rf "$OUT"; stack_redis_start >/dev/null 2>&1 || true' EXIT
stack_redis_stop
text="[[delay:200]] [[chunks:8]] [[chunkms:500]] redis back mid-reply one two three four five $tag"
post_msg "$ROOM" "$text"
r13=$REPLY_ID
sleep 1.5
stack_redis_start
trap 'rm -rf "$OUT"' EXIT
sse_get "$OUT/s13" "/chatroom/$ROOM/messages/$r13/stream"
check_eq "$(deltas_text "$OUT/s13")" "fake-gemini: $text" "Redis back mid-reply: the stream has the answer in pieces"
check "... the pieces after Redis came back as they were written (more than one delta: $(count_events "$OUT/s13" delta))" \
    test "$(count_events "$OUT/s13" delta)" -ge 2
check_eq "$(done_field "$OUT/s13" content)" "fake-gemini: $text" "... then done with the stored reply"

# ---- a worker killed mid-stream: restart, then the new worker's answer ----
trap 'rm -rf "$OUT"; worker_restore' EXIT
# AI_TIMEOUT_MS bounds the whole streamed call (about 2.4 s here); the lease (AI_TIMEOUT_MS + 3 s) decides when the
# killed worker's reply is taken again.
worker_restart AI_TIMEOUT_MS=5000 WORKER_RECOVER_SECONDS=2
text="[[delay:400]] [[chunks:8]] [[chunkms:250]] killed one two three four five six seven $tag"
post_msg "$ROOM" "$text"
r4=$REPLY_ID
sse_get "$OUT/s5" "/chatroom/$ROOM/messages/$r4/stream" &
sse_pid=$!
got_delta() { [[ -s $OUT/s5 ]] && grep -q 'event: delta' "$OUT/s5"; }
check "a delta arrives from the first worker" wait_for 15 got_delta
stack_worker_stop KILL
check_eq "$(reply_field "$r4" status)" pending "the worker was killed before it finished the reply"
(
    export AI_TIMEOUT_MS=5000 WORKER_RECOVER_SECONDS=2
    stack_worker_start
)
wait "$sse_pid" || true
check "the stream shows a restart" test "$(count_events "$OUT/s5" restart)" -ge 1
check_eq "$(deltas_text "$OUT/s5")" "fake-gemini: $text" "after the restart: exactly the new worker's answer"
check_eq "$(done_field "$OUT/s5" content)" "$(reply_field "$r4" content)" "done holds the stored reply"
worker_restore
trap 'rm -rf "$OUT"' EXIT
