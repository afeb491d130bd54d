#!/usr/bin/env bash
# e2e: core
# The AI reply worker against the fake AI (tests/fakes/ai.js): replies complete with the fake's text, the
# chatroom's earlier turns go upstream, transient errors are retried, permanent ones fail the reply with a
# short error, calls run concurrently, and a reply whose chatroom is deleted mid-call is simply dropped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../worker_lib.sh"

tag=$(uniq_tag)
worker_user
new_room

# Defaults of the stack's worker, except a short recover time (30 s by default) for the last checks.
worker_restart WORKER_RECOVER_SECONDS=3

# ---- a reply completes with the fake's answer ----
first="hello worker $tag"
post_msg "$ROOM" "$first"
r1=$REPLY_ID
check "first reply finishes within 30 s" wait_replies 30 "$r1"
check_eq "$(reply_field "$r1" status)" completed "first reply is completed"
check_eq "$(reply_field "$r1" content)" "fake-gemini: $first" "first reply holds the fake's answer"
check_eq "$(reply_field "$r1" "coalesce(error, 'none')")/$(reply_field "$r1" "completed_at IS NOT NULL")" "none/t" \
    "completed reply has no error and a completed_at"
check_eq "$(reply_field "$r1" "coalesce(lease_until::text, 'none')")/$(reply_field "$r1" "coalesce(lease_owner, 'none')")" \
    "none/none" "completed reply holds no lease"
auth_req "$TOKEN" GET "/chatroom/$ROOM/messages"
check_eq "$(jget "[.messages[] | select(.id == $r1)][0].status")/$(jget "[.messages[] | select(.id == $r1)][0].content")" \
    "completed/fake-gemini: $first" "the API shows the completed reply"

# ---- the earlier turns of the chatroom go upstream, oldest first ----
second="and a follow-up $tag"
post_msg "$ROOM" "$second"
r2=$REPLY_ID
check "second reply finishes within 30 s" wait_replies 30 "$r2"
check_eq "$(reply_field "$r2" content)" "fake-gemini: $second" "second reply holds the fake's answer"
sel="select(.body.contents[-1].parts[-1].text == \"$second\")"
req_json=$(curl -s "$FAKE_AI_URL/__requests" | jq -c "[.[] | $sel][0]")
check_eq "$(jq -c '[.body.contents[] | .role]' <<<"$req_json")" '["user","model","user"]' \
    "upstream got user, model, user turns"
check_eq "$(jq -r '[.body.contents[] | .parts[0].text] | join("|")' <<<"$req_json")" \
    "$first|fake-gemini: $first|$second" "upstream got the earlier turns of the chatroom, oldest first"
check "upstream got a systemInstruction and maxOutputTokens >= 2048" \
    jq -e '(.body.systemInstruction.parts[0].text | length) > 0 and .body.generationConfig.maxOutputTokens >= 2048' \
    <<<"$req_json"
check_eq "$(jq -r '.path' <<<"$req_json")" "/v1beta/models/gemini-3.5-flash:streamGenerateContent?alt=sse" \
    "Gemini URL and model (the streamed form)"
check_eq "$(jq -r '.headers["content-type"]' <<<"$req_json")" "application/json" "JSON content type"

# ---- two user messages before the first is answered: merged into one user turn (no empty model turn) ----
other_room=$ROOM
new_room
m1="[[delay:1500]] first of two $tag"
m2="second of two $tag"
post_msg "$ROOM" "$m1"
ra=$REPLY_ID
post_msg "$ROOM" "$m2"
rb=$REPLY_ID
check "both replies finish within 30 s" wait_replies 30 "$ra" "$rb"
check_eq "$(reply_field "$ra" status)/$(reply_field "$rb" status)" completed/completed "both replies completed"
sel="select(.body.contents[-1].parts[-1].text == \"$m2\")"
check_eq "$(curl -s "$FAKE_AI_URL/__requests" | jq -c "[.[] | $sel][0].body.contents | map(.role)")" '["user"]' \
    "consecutive user messages are merged into one user turn"
ROOM=$other_room

# ---- transient failures are retried: 429 (RetryInfo retryDelay 2s in the body) then 503, then success ----
# Like Google, the fake's Gemini 429 has no Retry-After header: the wait comes from the body alone.
probe=$(jq -nc --arg t "[[fail:429]] probe $tag" '{contents: [{role: "user", parts: [{text: $t}]}]}')
hdrs=$(curl -s -D - -o /dev/null -X POST -H 'x-goog-api-key: test-gemini-key' -H 'Content-Type: application/json' \
    -d "$probe" "$FAKE_AI_URL/v1beta/models/gemini-3.5-flash:generateContent" | tr -d '\r')
check "the fake's Gemini 429 carries no Retry-After header" not grep -qi '^retry-after:' <<<"$hdrs"
check "... and is a 429" grep -q '^HTTP/1.1 429' <<<"$hdrs"
flaky="[[fail:429,503]] [[retrydelay:2s]] flaky $tag"
post_msg "$ROOM" "$flaky"
rf=$REPLY_ID
check "flaky reply finishes within 30 s" wait_replies 30 "$rf"
check_eq "$(reply_field "$rf" status)" completed "429 then 503 still ends completed"
check_eq "$(reply_field "$rf" content)" "fake-gemini: $flaky" "retried reply holds the fake's answer"
sel="select(.body.contents[-1].parts[-1].text == \"$flaky\")"
check_eq "$(curl -s "$FAKE_AI_URL/__requests" | jq -c "[.[] | $sel | .status]")" '[429,503,200]' \
    "upstream saw exactly three calls: 429, 503, 200"
check_eq "$(reply_field "$rf" attempts)" 3 "three attempts recorded"
t429=$(curl -s "$FAKE_AI_URL/__requests" | jq "[.[] | $sel | .time] | .[1] - .[0]")
# the first backoff alone is at most 1 s: waiting 2 s means the body's retryDelay was honoured
check "the retry after the 429 waited the body's retryDelay (2 s): ${t429} ms" test "$t429" -ge 1950

# ---- a permanent error fails the reply with a short error, without retries ----
bad="[[fail:400]] bad request $tag"
post_msg "$ROOM" "$bad"
rp=$REPLY_ID
check "failing reply finishes within 30 s" wait_replies 30 "$rp"
check_eq "$(reply_field "$rp" status)" failed "400 ends failed"
err=$(reply_field "$rp" error)
check "the error names the upstream status: '$err'" has "$err" 400
check "the error is short (${#err} <= 200 characters)" at_most 200 "$err"
check "the error holds no API key" lacks "$err" test-gemini-key
check_eq "$(reply_field "$rp" content)" "" "a failed reply has empty content"
sel="select(.body.contents[-1].parts[-1].text == \"$bad\")"
check_eq "$(fake_count "$sel")" 1 "a permanent error is not retried"
auth_req "$TOKEN" GET "/chatroom/$ROOM/messages"
check_eq "$(jget "[.messages[] | select(.id == $rp)][0].status")" failed "the API shows the failed reply"
check "the API shows its error" test -n "$(jget "[.messages[] | select(.id == $rp)][0].error // empty")"

# ---- blocked prompt and no text are permanent too ----
post_msg "$ROOM" "[[blocked]] $tag"
rbl=$REPLY_ID
post_msg "$ROOM" "[[empty]] $tag"
rem=$REPLY_ID
check "blocked/empty replies finish within 30 s" wait_replies 30 "$rbl" "$rem"
check_eq "$(reply_field "$rbl" status)" failed "a blocked prompt fails the reply"
check "blocked error says so: $(reply_field "$rbl" error)" has "$(reply_field "$rbl" error)" blocked
check_eq "$(reply_field "$rem" status)" failed "an answer without text fails the reply"

# ---- a prompt whose reply failed is not sent again with the later ones ----
main_room=$ROOM
new_room
ok1="before the poison $tag"
post_msg "$ROOM" "$ok1"
check "the first reply of the room completes" wait_replies 30 "$REPLY_ID"
post_msg "$ROOM" "[[blocked]] poison $tag"
rpo=$REPLY_ID
post_msg "$ROOM" "[[fail:400]] rejected $tag"
rre=$REPLY_ID
check "the blocked and the rejected replies finish" wait_replies 30 "$rpo" "$rre"
check_eq "$(reply_field "$rpo" status)/$(reply_field "$rre" status)" failed/failed "both failed"
clean="after the poison $tag"
post_msg "$ROOM" "$clean"
check "the next reply completes (the failed prompts are not resent)" wait_replies 30 "$REPLY_ID"
check_eq "$(reply_field "$REPLY_ID" status)/$(reply_field "$REPLY_ID" content)" "completed/fake-gemini: $clean" \
    "the next reply holds its own answer"
sel="select(.body.contents[-1].parts[-1].text == \"$clean\")"
req_json=$(curl -s "$FAKE_AI_URL/__requests" | jq -c "[.[] | $sel][0]")
check_eq "$(jq -c '[.body.contents[] | .role]' <<<"$req_json")" '["user","model","user"]' \
    "upstream got the good exchange and the new prompt only"
check_eq "$(jq -r '[.body.contents[] | .parts[] | .text] | join("|")' <<<"$req_json")" \
    "$ok1|fake-gemini: $ok1|$clean" "the prompts whose replies failed are left out of the history"

# ---- the history stops where the newest turns reach 512 KiB: a 600 kB answer is not sent again ----
# after_answer N: an answer of about N bytes, then a prompt after it; sets ROLES to the roles upstream got for it
after_answer() {
    post_msg "$ROOM" "[[pad:$1]] an answer of $1 $tag"
    check "the $1-byte answer completes" wait_replies 30 "$REPLY_ID"
    local after="after the answer of $1 $tag"
    post_msg "$ROOM" "$after"
    check "the next reply completes" wait_replies 30 "$REPLY_ID"
    ROLES=$(curl -s "$FAKE_AI_URL/__requests" |
        jq -c "[.[] | select(.body.contents[-1].parts[-1].text == \"$after\")][0] | [.body.contents[] | .role]")
}
new_room
after_answer 600000
check_eq "$ROLES" '["user"]' "past 512 KiB of history only the newest turns go upstream"
after_answer 300000
check_eq "$ROLES" '["user","model","user","model","user"]' \
    "within 512 KiB the turns before go too (the 600 kB one is cut off)"
ROOM=$main_room

# ---- an answer over the 2 MiB ceiling is refused, not stored ----
post_msg "$ROOM" "[[huge]] $tag"
rh=$REPLY_ID
check "the huge reply finishes within 30 s" wait_replies 30 "$rh"
check_eq "$(reply_field "$rh" status)/$(reply_field "$rh" error)" "failed/upstream response too large" \
    "a 3 MiB answer fails the reply"

# ---- many calls run at once, not one after another ----
# Measured on the fake's side, not by the clock of this (possibly busy) machine: each call is held 1.5 s, so the
# calls that arrived within 1.5 s after one call arrived were in flight together with it. One after another, no
# two would ever be. The messages are queued while the worker is stopped, so that a slow machine's posts do not
# spread the calls out.
stack_worker_stop TERM
ids=()
for i in $(seq 1 20); do
    post_msg "$ROOM" "[[delay:1500]] parallel $i $tag"
    ids+=("$REPLY_ID")
done
worker_restart WORKER_RECOVER_SECONDS=3
check "20 replies that each take 1.5 s upstream finish" wait_replies 90 "${ids[@]}"
overlap=$(curl -s "$FAKE_AI_URL/__requests" | jq --arg t "$tag" '
    [.[] | select(.body.contents[-1].parts[-1].text | tostring | (contains("[[delay:1500]] parallel") and contains($t))) | .time]
    | sort | . as $ts | [range(length) | . as $i | $ts | map(select(. >= $ts[$i] and . < $ts[$i] + 1500)) | length] | max // 0')
check "... at most 1.5 s apart: up to $overlap calls in flight at once (concurrent, not serial)" test "$overlap" -ge 10
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE id IN ($(
    IFS=,
    echo "${ids[*]}"
)) AND status = 'completed'")" 20 "all 20 completed"

# ---- the chatroom is deleted while its reply is being computed: nothing breaks, the entry is acked ----
new_room
post_msg "$ROOM" "[[delay:1500]] doomed $tag"
doomed=$REPLY_ID
sel="select(.body.contents[-1].parts[-1].text == \"[[delay:1500]] doomed $tag\")"
check "the doomed reply reached upstream" wait_fake_count 20 1 "$sel"
auth_req "$TOKEN" DELETE "/chatroom/$ROOM"
check_status 204 "chatroom deleted mid-call"
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE id = $doomed")" 0 "its reply is gone with it"
post_msg "$other_room" "after the delete $tag"
check "the worker carries on: the next reply completes" wait_replies 30 "$REPLY_ID"
check_eq "$(reply_field "$REPLY_ID" status)" completed "next reply completed"

# ---- no reply left pending, no stream entry left unacked ----
deadline=$((SECONDS + 20))
while ((SECONDS < deadline)) && [[ $(redis_cli XPENDING gb:replies workers | head -n 1) != 0 ]]; do
    sleep 0.3
done
check_eq "$(redis_cli XPENDING gb:replies workers | head -n 1)" 0 "every stream entry was acknowledged"
check "the worker is still running" _stack_alive worker
