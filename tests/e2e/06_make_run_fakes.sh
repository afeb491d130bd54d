#!/usr/bin/env bash
# `make run FAKES=1`: the bundled Stripe and Gemini fakes start with matching settings, so Pro can be tried
# offline: /subscribe/pro gets a Checkout URL from the fake, scripts/stripe-trigger.sh (secret from
# ./var/secrets.env, nothing else given) makes the user pro, a message gets the fake model's reply; the fakes
# need no npm package (they start from a directory with no node_modules anywhere above it); a bad FAKES value
# is refused before anything is built; the stop ends the fakes too.
# Runs once, on the first deployment; like 06_make_run.sh it uses the test stack's PostgreSQL and Redis.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

read -r -a first <<<"${DEPLOYMENTS:-lighttpd}"
[[ $DEPLOYMENT == "${first[0]:-lighttpd}" ]] || exit 0
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gb-fakes.XXXXXX")

# ---- the fakes need only node's own modules ----
for f in "$root"/tests/fakes/*.js; do
    name=$(basename "$f" .js)
    cp "$f" "$tmp/$name.js"
    node "$tmp/$name.js" --port-file "$tmp/$name.port" >"$tmp/$name.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 50); do
        [[ -s $tmp/$name.port ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    check "fake $name starts with no node_modules around it (builtins only)" test -s "$tmp/$name.port"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
done

rc=0
out=$(cd "$root" && FAKES=yes timeout 30 make run 2>&1) || rc=$?
check "FAKES=yes make run fails at once (exit $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
check "... naming FAKES" grep -q "FAKES must be 0 or 1" <<<"$out"

# ---- a run with the fakes ----
MAKE_PID=''
cleanup() {
    [[ -n $MAKE_PID ]] && kill -TERM -- "-$MAKE_PID" 2>/dev/null || true
    rm -rf "$tmp"
    stack_worker_start >/dev/null 2>&1 || true
}
trap cleanup EXIT
# The run shares the test stack's PostgreSQL and Redis: stop the stack's worker (restarted at the end) so that
# the run's own worker, talking to the run's Gemini fake, takes the reply.
stack_worker_stop TERM
RUN_PORT=$(_stack_free_port)
log=$STACK_DIR/make-run-fakes.log
# The caller's Stripe and AI settings (the test stack's) are replaced by the run's own fakes.
(cd "$root" && PORT=$RUN_PORT FAKES=1 STRIPE_WEBHOOK_SECRET=whsec_not_this_one exec setsid make run) >"$log" 2>&1 &
MAKE_PID=$!
started=0
for _ in $(seq 1 120); do
    grep -q 'Ctrl-C stops everything' "$log" && started=1 && break
    kill -0 "$MAKE_PID" 2>/dev/null || break
    sleep 0.5
done
check_eq "$started" 1 "make run FAKES=1 starts and prints its banner"
stripe_url=$(sed -n 's/^    fakes: *Stripe \(http[^,]*\), Gemini \(http[^ ]*\) .*/\1/p' "$log")
ai_url=$(sed -n 's/^    fakes: *Stripe \(http[^,]*\), Gemini \(http[^ ]*\) .*/\2/p' "$log")
check "the banner names the Stripe fake ($stripe_url)" test -n "$stripe_url" -a "$stripe_url" != "${FAKE_STRIPE_URL:-}"
check "the banner names the Gemini fake ($ai_url)" test -n "$ai_url" -a "$ai_url" != "${FAKE_AI_URL:-}"
check "the banner shows the stripe-trigger command" grep -q 'stripe-trigger.sh checkout.session.completed USER_ID' "$log"

BASE_URL=http://127.0.0.1:$RUN_PORT
signup_and_login
check "a user signs up and logs in on the FAKES=1 run" test -n "$TOKEN"
auth_req "$TOKEN" POST /subscribe/pro
check_status 200 "POST /subscribe/pro answers a Checkout Session from the fake"
check "... with a Checkout URL" grep -q '^https://checkout.stripe.com/' <<<"$(jget .checkout_url)"
calls=$(curl -s --max-time 5 "$stripe_url/__requests" | jq '[.[] | select(.path == "/v1/checkout/sessions")] | length')
check_eq "$calls" 1 "the run's own Stripe fake got the Checkout call"
rc=0
out=$(cd "$root" && env -u STRIPE_WEBHOOK_SECRET -u BASE_URL PORT=$RUN_PORT scripts/stripe-trigger.sh \
    checkout.session.completed "$USER_ID" 2>&1) || rc=$?
check_eq "$rc" 0 "scripts/stripe-trigger.sh with nothing but PORT is accepted (${out:0:200})"
auth_req "$TOKEN" GET /subscription/status
check_eq "$(jget .tier)/$(jget .status)" "pro/active" "the user is pro after the triggered checkout"

auth_req "$TOKEN" POST /chatroom '{"title":"fakes"}'
room=$(jget .id)
auth_req "$TOKEN" POST "/chatroom/$room/message" '{"content":"hello fakes"}'
check_status 202 "a message is accepted"
reply=$(jget .reply.id)
got=''
for _ in $(seq 1 60); do
    auth_req "$TOKEN" GET "/chatroom/$room"
    got=$(jget ".messages[] | select(.id == $reply) | \"\(.status)/\(.content)\"")
    [[ $got == pending/* ]] || break
    sleep 0.5
done
check_eq "$got" "completed/fake-gemini: hello fakes" "the reply comes from the Gemini fake"
calls=$(curl -s --max-time 5 "$ai_url/__requests" | jq 'length')
check "the run's own Gemini fake got the model call ($calls)" test "${calls:-0}" -ge 1

# ---- stop: the fakes go too ----
fake_pids=$(cat "$root"/var/fake-*.pid 2>/dev/null | tr '\n' ' ')
check "the fakes' pid files are in ./var ($fake_pids)" test -n "$fake_pids"
kill -INT -- "-$MAKE_PID" 2>/dev/null || true
for _ in $(seq 1 60); do
    kill -0 "$MAKE_PID" 2>/dev/null || break
    sleep 0.5
done
wait "$MAKE_PID" 2>/dev/null || true
MAKE_PID=''
check "the run stopped" grep -q 'run: stopped' "$log"
alive=''
for p in $fake_pids; do kill -0 "$p" 2>/dev/null && alive+=" $p"; done
check_eq "$alive" "" "no fake is left running after the stop"
