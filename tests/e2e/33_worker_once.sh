#!/usr/bin/env bash
# e2e: core
# `worker --once` (the cron mode) drains the queue and exits 0; the other providers: offline (a labelled local
# stand-in) and OpenAI-compatible chat completions; a wrong API key fails replies with a short, key-free error.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../worker_lib.sh"

tag=$(uniq_tag)
worker_user
new_room
bin=$(_stack_abs "$BUILD_DIR/worker/worker")
log=$STACK_DIR/worker-once.log

# run_once [VAR=VALUE...]: one `worker --once` with these settings (at most 60 s); sets ONCE_RC and ONCE_SECS
run_once() {
    local t0=$SECONDS
    ONCE_RC=0
    env "$@" timeout 60 "$bin" --once </dev/null >>"$log" 2>&1 || ONCE_RC=$?
    ONCE_SECS=$((SECONDS - t0))
}

# The daemon is stopped for the whole script (worker_restore brings it back at the end).
# shellcheck disable=SC2119 # no settings: the stack's own
worker_restart
stack_worker_stop TERM

# ---- --once drains the queue, retries included, then exits 0 ----
ids=() texts=()
for i in 1 2 3; do
    texts+=("once $i $tag")
    post_msg "$ROOM" "${texts[-1]}"
    ids+=("$REPLY_ID")
done
texts+=("[[fail:503]] once retried $tag")
post_msg "$ROOM" "${texts[-1]}"
ids+=("$REPLY_ID")
check_eq "$(psql_q "SELECT count(*) FROM messages WHERE id IN ($(
    IFS=,
    echo "${ids[*]}"
)) AND status = 'pending'")" 4 "four replies wait while no worker runs"
nworker_files() { find "$METRICS_DIR" -name 'worker.*.metrics' | wc -l; }
rm -f "$METRICS_DIR/worker.shared.metrics"
wfiles0=$(nworker_files)
run_once
check_eq "$ONCE_RC" 0 "worker --once exits 0"
for i in 0 1 2 3; do
    check_eq "$(reply_field "${ids[$i]}" status)/$(reply_field "${ids[$i]}" content)" \
        "completed/fake-gemini: ${texts[$i]}" "--once completed reply $((i + 1))"
done
check_eq "$(reply_field "${ids[3]}" attempts)" 2 "--once waited for the retry of the 503"
run_once
check_eq "$ONCE_RC/$((ONCE_SECS <= 5))" 0/1 "--once with nothing to do exits 0 at once (${ONCE_SECS} s)"
# Each run counts into the one shared metrics file of `worker --once` runs, not a file per run (a cron job
# every minute added 1,440 files of 21 KB a day).
check_eq "$(($(nworker_files) - wfiles0))/$(ls "$METRICS_DIR" | grep -c '^worker\.shared\.metrics$')" 1/1 \
    "two --once runs added one metrics file, the shared one"

# ---- offline provider: a clearly labelled stand-in ----
long=$(printf 'x%.0s' $(seq 1 250))
sql_pending "$ROOM" "offline please $tag"
o1=$REPLY_ID
enqueue "$o1"
sql_pending "$ROOM" "$long"
o2=$REPLY_ID
enqueue "$o2"
before=$(fake_count 'select(true)')
run_once AI_PROVIDER=offline
check_eq "$ONCE_RC" 0 "offline --once exits 0"
check_eq "$(reply_field "$o1" status)/$(reply_field "$o1" content)" \
    "completed/[offline model: no AI provider configured] You said: offline please $tag" "offline answer is labelled"
c2=$(reply_field "$o2" content)
check_eq "$c2" "[offline model: no AI provider configured] You said: $(printf 'x%.0s' $(seq 1 200))…" \
    "offline answer echoes at most 200 characters"
check_eq "$(fake_count 'select(true)')" "$before" "offline mode calls no upstream"

# ---- OpenAI-compatible provider ----
q="openai question $tag"
post_msg "$ROOM" "$q"
ro=$REPLY_ID
run_once AI_PROVIDER=openai OPENAI_MODEL=fake-model
check_eq "$ONCE_RC" 0 "openai --once exits 0"
check_eq "$(reply_field "$ro" status)/$(reply_field "$ro" content)" "completed/fake-openai: $q" \
    "openai reply holds the fake's answer"
sel="select(.path == \"/v1/chat/completions\" and .body.messages[-1].content == \"$q\")"
req_json=$(curl -s "$FAKE_AI_URL/__requests" | jq -c "[.[] | $sel][0]")
check_eq "$(jq -r '.body.model' <<<"$req_json")/$(jq -r '.body.stream' <<<"$req_json")" "fake-model/true" \
    "chat completions request: model, stream true"
check_eq "$(jq -r '.body.messages[0].role' <<<"$req_json")" system "the system prompt comes first"
# shellcheck disable=SC2016 # jq's $r
check "then alternating user/assistant turns" jq -e '[.body.messages[1:][] | .role] as $r |
    ($r | length) >= 3 and ([range(0; $r | length)] | all(. as $i | $r[$i] == (if $i % 2 == 0 then "user" else "assistant" end)))' \
    <<<"$req_json"
check_eq "$(jq -r '.body.messages[-1].role' <<<"$req_json")" user "the last message is the user's"

# ---- wrong API key: permanent failure, short error, no key in it ----
post_msg "$ROOM" "bad key $tag"
rk=$REPLY_ID
run_once GEMINI_API_KEY=not-the-right-key-123
check_eq "$ONCE_RC" 0 "--once with a bad key still exits 0"
err=$(reply_field "$rk" error)
check_eq "$(reply_field "$rk" status)" failed "a rejected key fails the reply"
check "the error names the reason: '$err'" has "$err" API_KEY_INVALID
check "the error is short" at_most 200 "$err"
check "the error holds no key" lacks "$err" not-the-right-key
check "the log holds no key" not grep -q -e not-the-right-key -e test-gemini-key "$log"

# ---- AI_PROVIDER=openai without OPENAI_MODEL: the worker refuses to start (every request would be a 400) ----
post_msg "$ROOM" "no model $tag"
rnm=$REPLY_ID
before=$(fake_count 'select(true)')
rc=0
env -u OPENAI_MODEL AI_PROVIDER=openai timeout 20 "$bin" --once </dev/null >"$STACK_DIR/worker-nomodel.log" 2>&1 || rc=$?
check_eq "$rc" 2 "openai without OPENAI_MODEL: the worker exits 2 at start-up"
check "... with a message naming OPENAI_MODEL" grep -q 'OPENAI_MODEL' "$STACK_DIR/worker-nomodel.log"
check_eq "$(reply_field "$rnm" status)/$(fake_count 'select(true)')" "pending/$before" "... before taking any reply"
# the stack's own worker (the daemon) is not affected: it is configured for gemini
run_once
check_eq "$(reply_field "$rnm" status)" completed "the reply is answered by a correctly configured worker"

# ---- a model the provider does not serve: permanent 404, not retried ----
post_msg "$ROOM" "retired model $tag"
rm404=$REPLY_ID
run_once GEMINI_MODEL=gemini-2.0-flash
err=$(reply_field "$rm404" error)
check_eq "$(reply_field "$rm404" status)/$(reply_field "$rm404" attempts)" failed/1 "an unknown Gemini model fails at once"
check "its error says 404 NOT_FOUND: '$err'" has "$err" "404 NOT_FOUND"
post_msg "$ROOM" "unknown openai model $tag"
rmo=$REPLY_ID
run_once AI_PROVIDER=openai OPENAI_MODEL=no-such-model
err=$(reply_field "$rmo" error)
check_eq "$(reply_field "$rmo" status)/$(reply_field "$rmo" attempts)" failed/1 "an unknown OpenAI model fails at once"
check "its error says 404 model_not_found: '$err'" has "$err" "404 model_not_found"

# ---- the fake answers a missing Gemini key like Google: 403 PERMISSION_DENIED ----
req_body=$(jq -nc --arg t "no key $tag" '{contents: [{role: "user", parts: [{text: $t}]}]}')
nokey=$(curl -s -w ' %{http_code}' -X POST -H 'Content-Type: application/json' -d "$req_body" \
    "$FAKE_AI_URL/v1beta/models/gemini-3.5-flash:generateContent")
check_eq "${nokey##* }/$(jq -r .error.status <<<"${nokey% *}")" 403/PERMISSION_DENIED "no key: 403 PERMISSION_DENIED"

# ---- the attempt cap: always-503 fails after AI_MAX_ATTEMPTS ----
post_msg "$ROOM" "[[fail:503,503,503,503,503,503,503,503]] never $tag"
rn=$REPLY_ID
run_once AI_MAX_ATTEMPTS=2
check_eq "$(reply_field "$rn" status)/$(reply_field "$rn" attempts)" failed/2 "always 503: failed after 2 attempts"
check "its error says it gave up: $(reply_field "$rn" error)" has "$(reply_field "$rn" error)" "gave up"

# ---- a 200 that is not JSON is transient: retried, then given up ----
post_msg "$ROOM" "[[garbage]] $tag"
rg=$REPLY_ID
run_once AI_MAX_ATTEMPTS=2
check_eq "$(reply_field "$rg" status)/$(reply_field "$rg" attempts)" failed/2 "a non-JSON 200 is retried, then fails"
check "its error says what was wrong: $(reply_field "$rg" error)" has "$(reply_field "$rg" error)" "malformed upstream response"
