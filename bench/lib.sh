# shellcheck shell=bash
# bench/lib.sh: what the bench scripts share; sourced after tests/stack.sh.

# Stop the stack and remove STACK_DIR (what a script's EXIT trap does).
bench_stack_remove() {
    stack_stop >/dev/null 2>&1 || true
    rm -rf "$STACK_DIR"
}

# One statement against the stack's database (once its services run); rows as bare text.
psql_q() { psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -c "$1"; }

# A new user, signed up and logged in with an OTP through the API: prints its access token.
bench_signup() {
    local m otp
    m=+1999$(date +%s%N | tail -c 9)
    curl -sf -XPOST "$BASE_URL/auth/signup" -d "{\"mobile\":\"$m\"}" >/dev/null
    otp=$(curl -sf -XPOST "$BASE_URL/auth/send-otp" -d "{\"mobile\":\"$m\"}" | jq -r .otp)
    curl -sf -XPOST "$BASE_URL/auth/verify-otp" -d "{\"mobile\":\"$m\",\"otp\":\"$otp\"}" | jq -r .access_token
}
