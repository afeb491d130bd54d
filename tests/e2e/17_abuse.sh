#!/usr/bin/env bash
# Issue 16, auth abuse: the password-login throttle (per account, per client address, backoff, 429 +
# Retry-After, counters in PostgreSQL so Redis being down changes nothing), the Argon2 slots (503 when busy),
# reset-password checking the code before hashing, the signup throttle, the daily caps on wrong OTPs (per
# number, per address, logged), the chatroom cap and the paginated list, the first password needing a reset
# code, POST /auth/logout, and the JWT header's alg compared exactly.
# Each section sends from its own random loopback address (curl --interface 127.x.y.z: REMOTE_ADDR), so the
# per-address counters of other scripts (all from 127.0.0.1) and of earlier deployments never interfere.
source "$(dirname "$0")/../lib.sh"

# The defaults of the limits (the test stack does not set the variables).
LOGIN_MAX=5 LOGIN_ADDR_MAX=50 SIGNUP_ADDR_MAX=20 OTP_MAX=20 OTP_ADDR_MAX=200 ROOM_MAX=1000 HASH_SLOTS=4
HASH_LOCK_CLASS=7240016

# from ADDR METHOD PATH [JSON]: req from that source address
from() {
    local addr=$1
    shift
    req "$@" --interface "$addr"
}
# throttle_row SCOPE SUBJECT: "count/blocked" or "count/free", empty without a row
throttle_row() { psql_q "SELECT count || '/' || CASE WHEN blocked_until > now() THEN 'blocked' ELSE 'free' END FROM auth_throttle WHERE scope = '$1' AND subject = '$2'"; }
seed() { psql_q "INSERT INTO auth_throttle (scope, subject, count) VALUES ('$1', '$2', $3) ON CONFLICT (scope, subject) DO UPDATE SET count = $3, window_start = now(), blocked_until = NULL" >/dev/null; }
app_logs() { cat "$STACK_DIR"/*.log 2>/dev/null || true; }
# burst N ADDR PATH JSON [curl args...]: N parallel POSTs of JSON to PATH from ADDR ("" a random address per
# try); in JSON, %i becomes the try's number and %m a random mobile. Prints how many got each status: "401:5 429:11".
burst() {
    local n=$1 addr=$2 path=$3 json=$4 dir i body pids=()
    shift 4
    dir=$(mktemp -d)
    for i in $(seq 1 "$n"); do
        body=${json//%i/$i}
        body=${body//%m/$(rand_mobile)}
        curl -s -o /dev/null -w '%{http_code}\n' --interface "${addr:-$(rand_loopback)}" -XPOST "$BASE_URL$path" \
            -H 'Content-Type: application/json' -d "$body" "$@" >"$dir/$i" &
        pids+=($!)
    done
    wait "${pids[@]}"
    cat "$dir"/* | sort | uniq -c | awk '{printf "%s%s:%s", sep, $2, $1; sep = " "}'
    rm -rf "$dir"
}
# n_of STATUS TALLY: how many got STATUS in burst's tally
n_of() { sed -n "s/.*\b$1:\([0-9]*\).*/\1/p" <<<"$2" | grep . || echo 0; }
# parallel_limit DESC TALLY STATUS ALLOWED: exactly ALLOWED tries got STATUS and every other one 429. Only a 503
# (no Argon2 slot in time, when the deployment runs more processes than slots) gives its try back late, when
# others may already have been refused: then at most ALLOWED.
parallel_limit() {
    local desc=$1 t=$2 st=$3 allowed=$4 n
    n=$(n_of "$st" "$t")
    if (($(n_of 503 "$t") > 0)); then
        check "$desc: at most $allowed x $st ($t)" test "$n" -le "$allowed"
    else
        check_eq "$t" "$st:$allowed 429:$(($(n_of "$st" "$t") + $(n_of 429 "$t") - allowed))" "$desc"
    fi
}

# ---- 1. password login: per account ----
ADDR=$(rand_loopback)
M=$(rand_mobile)
from "$ADDR" POST /auth/signup "{\"mobile\":\"$M\",\"password\":\"right password 1\"}"
check_status 201 "signup with a password"
UID1=$(jget .id)
for i in $(seq 1 $LOGIN_MAX); do
    from "$ADDR" POST /auth/login "{\"mobile\":\"$M\",\"password\":\"wrong password $i\"}"
    check_eq "$STATUS/$(jget .error.code)" "401/invalid_credentials" "wrong password $i of $LOGIN_MAX is 401"
done
from "$ADDR" POST /auth/login "{\"mobile\":\"$M\",\"password\":\"wrong password x\"}"
check_eq "$STATUS/$(jget .error.code)" "429/rate_limited" "after $LOGIN_MAX failures the account is blocked: 429"
ra=$(header Retry-After)
check "the login block has Retry-After 1..30 ($ra)" test "${ra:-0}" -ge 1 -a "${ra:-0}" -le 30
from "$(rand_loopback)" POST /auth/login "{\"mobile\":\"$M\",\"password\":\"right password 1\"}"
check_status 429 "even the right password from another address waits: the account is blocked"
check_eq "$(throttle_row login_user "$UID1")" "$LOGIN_MAX/blocked" "blocked attempts are not counted"
check "the block is logged with the user id" grep -q "throttle: login_user cap reached for $UID1 " <<<"$(app_logs)"
check "no mobile number in the throttle's log lines" sh -c '! grep "throttle:" | grep -qF "$0"' "${M#+}" <<<"$(app_logs)"
psql_q "UPDATE auth_throttle SET blocked_until = now() - interval '1 second' WHERE scope = 'login_user' AND subject = '$UID1'" >/dev/null
from "$ADDR" POST /auth/login "{\"mobile\":\"$M\",\"password\":\"wrong again\"}"
check_status 401 "once the block is over the next wrong password is checked (401)"
check_eq "$(throttle_row login_user "$UID1")" "$((LOGIN_MAX + 1))/blocked" "and it blocks again, for longer"
from "$ADDR" POST /auth/login "{\"mobile\":\"$M\",\"password\":\"right password 1\"}"
ra=$(header Retry-After)
check "the second block doubles: Retry-After 31..60 ($ra)" test "${ra:-0}" -gt 30 -a "${ra:-0}" -le 60
psql_q "UPDATE auth_throttle SET blocked_until = NULL WHERE scope = 'login_user' AND subject = '$UID1'" >/dev/null
from "$ADDR" POST /auth/login "{\"mobile\":\"$M\",\"password\":\"right password 1\"}"
check_status 200 "the right password after the block logs in"
check_eq "$(throttle_row login_user "$UID1")" "" "a successful login forgets the account's failures"
# A password reset (the owner proved the number) lifts the login block at once
ADDR=$(rand_loopback)
M2=$(rand_mobile)
from "$ADDR" POST /auth/signup "{\"mobile\":\"$M2\",\"password\":\"forgotten password\"}"
UID2=$(jget .id)
seed login_user "$UID2" $LOGIN_MAX
psql_q "UPDATE auth_throttle SET blocked_until = now() + interval '15 minutes' WHERE scope = 'login_user' AND subject = '$UID2'" >/dev/null
from "$ADDR" POST /auth/forgot-password "{\"mobile\":\"$M2\"}"
from "$ADDR" POST /auth/reset-password "{\"mobile\":\"$M2\",\"otp\":\"$(jget .otp)\",\"new_password\":\"new password 3\"}"
check_status 200 "reset-password of a blocked account"
from "$ADDR" POST /auth/login "{\"mobile\":\"$M2\",\"password\":\"new password 3\"}"
check_eq "$STATUS/$(throttle_row login_user "$UID2")" "200/" "... lifts its login block: the new password logs in at once"

# ---- 1. password login: per client address, and Redis down changes nothing ----
ADDR=$(rand_loopback)
seed login_addr "$ADDR" $((LOGIN_ADDR_MAX - 1))
from "$ADDR" POST /auth/login "{\"mobile\":\"$(rand_mobile)\",\"password\":\"any password\"}"
check_status 401 "failure $LOGIN_ADDR_MAX from one address (unknown number) is still 401"
from "$ADDR" POST /auth/login "{\"mobile\":\"$M\",\"password\":\"right password 1\"}"
check_eq "$STATUS/$(jget .error.code)" "429/rate_limited" "then the address is blocked, whatever the account"
check "the address block has Retry-After" test -n "$(header Retry-After)"
from "$(rand_loopback)" POST /auth/login "{\"mobile\":\"$M\",\"password\":\"right password 1\"}"
check_status 200 "another address still logs in"
ADDR=$(rand_loopback)
stack_redis_stop
from "$ADDR" POST /auth/login "{\"mobile\":\"$M\",\"password\":\"wrong with redis down\"}"
check_status 401 "a wrong password with Redis down is 401"
check_eq "$(throttle_row login_addr "$ADDR")" "1/free" "and is counted with Redis down (PostgreSQL holds the counters)"
seed login_addr "$ADDR" $((LOGIN_ADDR_MAX + 3))
psql_q "UPDATE auth_throttle SET blocked_until = now() + interval '60 seconds' WHERE scope = 'login_addr' AND subject = '$ADDR'" >/dev/null
from "$ADDR" POST /auth/login "{\"mobile\":\"$M\",\"password\":\"right password 1\"}"
check_status 429 "a blocked address stays blocked with Redis down (fails safe)"
stack_redis_start

# ---- 1. the limits hold under parallel tries: each is counted before its hash (or code check) ----
ADDR=$(rand_loopback)
MP=$(rand_mobile)
from "$ADDR" POST /auth/signup "{\"mobile\":\"$MP\",\"password\":\"right password 2\"}"
UP=$(jget .id)
t=$(burst 16 "$ADDR" /auth/login "{\"mobile\":\"$MP\",\"password\":\"wrong password %i\"}")
parallel_limit "16 parallel wrong passwords for one account: $LOGIN_MAX x 401, the rest 429" "$t" 401 $LOGIN_MAX
check_eq "$(throttle_row login_user "$UP")" "$(n_of 401 "$t")/blocked" "the account's count is the 401s, and it is blocked"
ADDR=$(rand_loopback)
seed login_addr "$ADDR" $((LOGIN_ADDR_MAX - 3))
t=$(burst 12 "$ADDR" /auth/login '{"mobile":"%m","password":"any password %i"}')
parallel_limit "12 parallel wrong logins from an address 3 short of its cap: 3 x 401, the rest 429" "$t" 401 3
check_eq "$(throttle_row login_addr "$ADDR")" "$((LOGIN_ADDR_MAX - 3 + $(n_of 401 "$t")))/blocked" "the address's count is exact"
ADDR=$(rand_loopback)
seed login_addr "$ADDR" $((LOGIN_ADDR_MAX - 1))
from "$ADDR" POST /auth/login "{\"mobile\":\"$MP\",\"password\":\"right password 2\"}"
check_status 429 "the account blocked by the burst refuses the right password too"
psql_q "DELETE FROM auth_throttle WHERE scope = 'login_user' AND subject = '$UP'" >/dev/null
from "$ADDR" POST /auth/login "{\"mobile\":\"$MP\",\"password\":\"right password 2\"}"
check_status 200 "the right password as try $LOGIN_ADDR_MAX of an address logs in"
check_eq "$(throttle_row login_addr "$ADDR")" "$((LOGIN_ADDR_MAX - 1))/free" \
    "and gives its try back: the address is not blocked by it"
from "$ADDR" POST /auth/login "{\"mobile\":\"$MP\",\"password\":\"wrong password y\"}"
check_status 401 "so the next wrong password from there is still checked"
ADDR=$(rand_loopback)
seed signup_addr "$ADDR" $((SIGNUP_ADDR_MAX - 2))
t=$(burst 8 "$ADDR" /auth/signup '{"mobile":"%m","password":"password number %i"}')
parallel_limit "8 parallel signups from an address 2 short of its cap: 2 x 201, the rest 429" "$t" 201 2
ADDR=$(rand_loopback)
t=$(burst 10 "$ADDR" /auth/signup "{\"mobile\":\"$(rand_mobile)\",\"password\":\"same number %i\"}")
check_eq "$t" "201:1 409:9" "10 parallel signups of one new number: one 201, nine 409"
check_eq "$(throttle_row signup_addr "$ADDR")" "1/free" "only the signup that made an account counts for the address"
signup_and_login
TC=$TOKEN UC=$USER_ID
auth_req "$TC" POST /auth/change-password '{"new_password":"current password 1"}'
TC=$(jget .access_token)
t=$(burst 10 "" /auth/change-password '{"current_password":"wrong current %i","new_password":"new password 9"}' \
    -H "Authorization: Bearer $TC")
parallel_limit "10 parallel wrong current passwords: $LOGIN_MAX x 401, the rest 429" "$t" 401 $LOGIN_MAX
check_eq "$(throttle_row login_user "$UC")" "$(n_of 401 "$t")/blocked" "they count as failed logins of the account"

# ---- 1. Argon2 slots: all busy -> 503 with Retry-After, nothing hashed; cheap refusals still answered ----
ADDR=$(rand_loopback)
MR=$(rand_mobile)
from "$ADDR" POST /auth/signup "{\"mobile\":\"$MR\"}"
from "$ADDR" POST /auth/forgot-password "{\"mobile\":\"$MR\"}"
RCODE=$(jget .otp)
before=$(throttle_row login_user "$UID1")
hold_lock "another session holds every Argon2 slot" \
    "SELECT pg_advisory_lock($HASH_LOCK_CLASS, s) FROM generate_series(1, $HASH_SLOTS) s"
from "$ADDR" POST /auth/login "{\"mobile\":\"$M\",\"password\":\"right password 1\"}"
check_eq "$STATUS/$(jget .error.code)/$(header Retry-After)" "503/unavailable/1" "login while every Argon2 slot is busy: 503, Retry-After: 1"
check_eq "$(psql_q "SELECT COALESCE(sum(count), 0) FROM auth_throttle WHERE scope = 'login_addr' AND subject = '$ADDR'")/$(throttle_row login_user "$UID1")" "0/$before" \
    "a login refused for want of a slot gives its try back (address and account)"
from "$ADDR" POST /auth/signup "{\"mobile\":\"$(rand_mobile)\",\"password\":\"some password\"}"
check_status 503 "signup with a password while the slots are busy: 503"
# reset-password checks the code first: a wrong code is refused without needing a slot (it used to hash first)
wrong=$(printf '%06d' $(((10#$RCODE + 1) % 1000000)))
from "$ADDR" POST /auth/reset-password "{\"mobile\":\"$MR\",\"otp\":\"$wrong\",\"new_password\":\"new password 1\"}"
check_eq "$STATUS/$(jget .error.code)" "401/invalid_otp" "reset-password with a wrong code: 401 before any hash"
from "$ADDR" POST /auth/reset-password "{\"mobile\":\"$(rand_mobile)\",\"otp\":\"123456\",\"new_password\":\"new password 1\"}"
check_eq "$STATUS/$(jget .error.code)" "401/invalid_otp" "reset-password for an unknown number: 401 before any hash"
from "$ADDR" POST /auth/reset-password "{\"mobile\":\"$MR\",\"otp\":\"$RCODE\",\"new_password\":\"new password 1\"}"
check_status 503 "reset-password with the right code needs a slot: 503"
release_lock
for _ in $(seq 1 50); do
    [[ $(psql_q "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $HASH_LOCK_CLASS") == 0 ]] && break
    sleep 0.1
done
from "$ADDR" POST /auth/reset-password "{\"mobile\":\"$MR\",\"otp\":\"$RCODE\",\"new_password\":\"new password 1\"}"
check_status 200 "the code was not used up by the 503: with a free slot the reset succeeds"
check_eq "$(psql_q "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $HASH_LOCK_CLASS")" 0 \
    "every slot is released after the hashes"

# ---- 2. signup with a password: per address per hour ----
ADDR=$(rand_loopback)
seed signup_addr "$ADDR" $((SIGNUP_ADDR_MAX - 1))
from "$ADDR" POST /auth/signup "{\"mobile\":\"$M\",\"password\":\"taken number\"}"
check_status 409 "signup of a taken number is 409 (checked before hashing, not counted)"
check_eq "$(throttle_row signup_addr "$ADDR")" "$((SIGNUP_ADDR_MAX - 1))/free" "a 409 is not counted"
from "$ADDR" POST /auth/signup "{\"mobile\":\"$(rand_mobile)\",\"password\":\"password number 20\"}"
check_status 201 "signup $SIGNUP_ADDR_MAX with a password from one address"
from "$ADDR" POST /auth/signup "{\"mobile\":\"$(rand_mobile)\",\"password\":\"password number 21\"}"
check_eq "$STATUS/$(jget .error.code)" "429/rate_limited" "the next signup with a password is 429"
ra=$(header Retry-After)
check "signup Retry-After is within the hour ($ra)" test "${ra:-0}" -ge 1 -a "${ra:-0}" -le 3600
from "$ADDR" POST /auth/signup "{\"mobile\":\"$(rand_mobile)\"}"
check_status 201 "a signup without a password (nothing to hash) is not throttled"

# ---- 3. OTP verification: daily caps per number and per address ----
signup_and_login
MO=$MOBILE UO=$USER_ID TO=$TOKEN
ADDR=$(rand_loopback)
psql_q "DELETE FROM otp_sends WHERE user_id = $UO" >/dev/null
from "$ADDR" POST /auth/send-otp "{\"mobile\":\"$MO\"}"
CODE=$(jget .otp)
wrong=$(printf '%06d' $(((10#$CODE + 3) % 1000000)))
from "$ADDR" POST /auth/verify-otp "{\"mobile\":\"$MO\",\"otp\":\"$wrong\"}"
check_status 401 "a wrong code is 401"
check_eq "$(throttle_row otp_user "$UO")/$(throttle_row otp_addr "$ADDR")" "1/free/1/free" "it counts for the number and the address"
seed otp_user "$UO" $((OTP_MAX - 1))
from "$(rand_loopback)" POST /auth/verify-otp "{\"mobile\":\"$MO\",\"otp\":\"$wrong\"}"
check_status 401 "wrong code $OTP_MAX of the day for this number is 401"
from "$(rand_loopback)" POST /auth/verify-otp "{\"mobile\":\"$MO\",\"otp\":\"$CODE\"}"
check_eq "$STATUS/$(jget .error.code)" "429/rate_limited" "then even the right code is 429 for the rest of the day"
ra=$(header Retry-After)
check "the daily cap's Retry-After is the rest of the day's window ($ra)" test "${ra:-0}" -gt 86000 -a "${ra:-0}" -le 86400
psql_q "DELETE FROM otp_sends WHERE user_id = $UO" >/dev/null
from "$(rand_loopback)" POST /auth/forgot-password "{\"mobile\":\"$MO\"}"
from "$(rand_loopback)" POST /auth/reset-password "{\"mobile\":\"$MO\",\"otp\":\"$(jget .otp)\",\"new_password\":\"new password 2\"}"
check_status 429 "the cap covers both purposes (reset-password too)"
check "the OTP cap is logged with the user id" grep -q "throttle: otp_user cap reached for $UO " <<<"$(app_logs)"
check "no code in the throttle's log lines" sh -c '! grep "throttle:" | grep -qF "$0"' "$CODE" <<<"$(app_logs)"
ADDR=$(rand_loopback)
seed otp_addr "$ADDR" $((OTP_ADDR_MAX - 1))
from "$ADDR" POST /auth/verify-otp "{\"mobile\":\"$(rand_mobile)\",\"otp\":\"111111\"}"
check_status 401 "wrong code $OTP_ADDR_MAX from one address (an unknown number) is 401"
from "$ADDR" POST /auth/verify-otp "{\"mobile\":\"$(rand_mobile)\",\"otp\":\"111111\"}"
check_eq "$STATUS/$(jget .error.code)" "429/rate_limited" "then that address gets 429 for any number"
check "the per-address cap is logged" grep -q "throttle: otp_addr cap reached for $ADDR " <<<"$(app_logs)"
ADDR=$(rand_loopback)
seed otp_addr "$ADDR" $((OTP_ADDR_MAX - 3))
t=$(burst 12 "$ADDR" /auth/verify-otp '{"mobile":"%m","otp":"111111"}')
parallel_limit "12 parallel wrong codes from an address 3 short of its cap: 3 x 401, the rest 429" "$t" 401 3
check_eq "$(throttle_row otp_addr "$ADDR")" "$OTP_ADDR_MAX/blocked" "the address's count is exact"
signup_and_login
MO=$MOBILE UO=$USER_ID
psql_q "DELETE FROM otp_sends WHERE user_id = $UO" >/dev/null
req POST /auth/send-otp "{\"mobile\":\"$MO\"}"
CODE=$(jget .otp)
wrong=$(printf '%06d' $(((10#$CODE + 5) % 1000000)))
seed otp_user "$UO" $((OTP_MAX - 2))
t=$(burst 8 "" /auth/verify-otp "{\"mobile\":\"$MO\",\"otp\":\"$wrong\"}")
parallel_limit "8 parallel wrong codes for a number 2 short of its cap: 2 x 401, the rest 429" "$t" 401 2
check_eq "$(throttle_row otp_user "$UO")" "$OTP_MAX/blocked" "the number's count is exact"
ADDR=$(rand_loopback)
seed otp_addr "$ADDR" $((OTP_ADDR_MAX - 1))
signup_and_login
psql_q "DELETE FROM otp_sends WHERE user_id = $USER_ID" >/dev/null
req POST /auth/send-otp "{\"mobile\":\"$MOBILE\"}"
from "$ADDR" POST /auth/verify-otp "{\"mobile\":\"$MOBILE\",\"otp\":\"$(jget .otp)\"}"
check_status 200 "the right code as try $OTP_ADDR_MAX of an address logs in"
check_eq "$(throttle_row otp_addr "$ADDR")" "$((OTP_ADDR_MAX - 1))/free" "and gives its try back: the address is not blocked by it"

b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
sign_jwt() { # HEADER_JSON PAYLOAD_JSON: HMAC-SHA256 with the server's secret, whatever the header says
    local h p
    h=$(printf '%s' "$1" | b64url)
    p=$(printf '%s' "$2" | b64url)
    printf '%s.%s.%s' "$h" "$p" "$(printf '%s' "$h.$p" | openssl dgst -sha256 -hmac "$JWT_SECRET" -binary | b64url)"
}
# A token of the user issued AGE seconds ago (what a stolen token looks like a while later).
old_token() { # USER_ID AGE
    local now
    now=$(date +%s)
    sign_jwt '{"alg":"HS256","typ":"JWT"}' \
        "{\"sub\":\"$1\",\"iat\":$((now - $2)),\"exp\":$((now + 3600)),\"jti\":\"$(openssl rand -hex 16)\",\"tv\":0,\"typ_use\":\"access\"}"
}

# ---- 5. the first password needs a fresh login or a fresh reset code; POST /auth/logout ----
signup_and_login
auth_req "$TOKEN" POST /auth/change-password '{"new_password":"first password 0"}'
check_status 200 "a first password with a token just issued by an OTP login is set (the login proved the number)"
signup_and_login
MF=$MOBILE TF=$(old_token "$USER_ID" 600) UF=$USER_ID
auth_req "$TF" POST /auth/change-password '{"new_password":"first password 1"}'
check_eq "$STATUS/$(jget .error.code)" "400/validation_error" "a first password with a 10-minute-old token alone: 400 (otp required)"
check "the message says how to get a code" grep -q forgot-password <<<"$(jget .error.message)"
auth_req "$TF" POST /auth/change-password '{"new_password":"first password 1","otp":"123456"}' --interface "$(rand_loopback)"
check_eq "$STATUS/$(jget .error.code)" "401/invalid_otp" "with a code that was never sent: 401 invalid_otp"
psql_q "DELETE FROM otp_sends WHERE user_id = $UF" >/dev/null
req POST /auth/send-otp "{\"mobile\":\"$MF\"}"
LOGIN_CODE=$(jget .otp)
auth_req "$TF" POST /auth/change-password "{\"new_password\":\"first password 1\",\"otp\":\"$LOGIN_CODE\"}"
check_eq "$STATUS/$(jget .error.code)" "401/invalid_otp" "a login code does not set a first password"
req POST /auth/forgot-password "{\"mobile\":\"$MF\"}"
RESET_CODE=$(jget .otp)
auth_req "$TF" POST /auth/change-password "{\"new_password\":\"first password 1\",\"otp\":\"$RESET_CODE\"}"
check_status 200 "token + fresh reset code set the first password"
check_eq "$(jget .user.has_password)" true "the user has a password now"
T_A=$(jget .access_token)
auth_req "$TF" GET /user/me
check_status 401 "the token from before the first password is revoked"
req POST /auth/reset-password "{\"mobile\":\"$MF\",\"otp\":\"$RESET_CODE\",\"new_password\":\"other password 1\"}"
check_status 401 "the reset code was used up"
req POST /auth/login "{\"mobile\":\"$MF\",\"password\":\"first password 1\"}"
T_B=$(jget .access_token)
auth_req "$T_B" GET /user/me
check_status 200 "a second token of the same user works"
auth_req "$T_A" POST /auth/logout 'not json at all'
check_eq "$STATUS/$(jget .error.code)" "400/invalid_json" "logout with a body that is not JSON: 400 invalid_json"
auth_req "$T_A" GET /user/me
check_status 200 "... and nothing was revoked"
auth_req "$T_A" POST /auth/logout '{}'
check_status 204 "POST /auth/logout with an empty object is 204"
auth_req "$T_B" GET /user/me
check_status 401 "... and it revoked the tokens"
req POST /auth/login "{\"mobile\":\"$MF\",\"password\":\"first password 1\"}"
T_A=$(jget .access_token)
req POST /auth/login "{\"mobile\":\"$MF\",\"password\":\"first password 1\"}"
T_B=$(jget .access_token)
auth_req "$T_A" POST /auth/logout
check_status 204 "POST /auth/logout is 204"
check_eq "$BODY" "" "logout has an empty body"
auth_req "$T_A" GET /user/me
check_status 401 "the token that logged out is revoked"
auth_req "$T_B" GET /user/me
check_status 401 "every other token of the user is revoked too"
auth_req "$T_A" POST /auth/logout
check_status 401 "logout with a revoked token is 401"
req POST /auth/logout
check_status 401 "logout without a token is 401"
req GET /auth/logout
check_eq "$STATUS/$(header Allow)" "405/POST" "GET /auth/logout is 405 with Allow: POST"
req POST /auth/login "{\"mobile\":\"$MF\",\"password\":\"first password 1\"}"
auth_req "$(jget .access_token)" GET /user/me
check_status 200 "logging in again after logout works"

# ---- 5. reset-password and a first password set with the same reset code, racing: one wins, never a 500
# (they took the user's row and the counters in opposite orders and deadlocked) ----
signup_and_login
MD=$MOBILE TD=$TOKEN
req POST /auth/forgot-password "{\"mobile\":\"$MD\"}"
DCODE=$(jget .otp)
tmp=$(mktemp -d)
pids=()
for i in 1 2 3 4 5 6 7 8; do
    curl -s -o /dev/null -w '%{http_code}\n' --interface "$(rand_loopback)" -XPOST "$BASE_URL/auth/reset-password" \
        -H 'Content-Type: application/json' \
        -d "{\"mobile\":\"$MD\",\"otp\":\"$DCODE\",\"new_password\":\"reset password $i\"}" >"$tmp/r$i" &
    pids+=($!)
    curl -s -o /dev/null -w '%{http_code}\n' --interface "$(rand_loopback)" -XPOST "$BASE_URL/auth/change-password" \
        -H 'Content-Type: application/json' -H "Authorization: Bearer $TD" \
        -d "{\"otp\":\"$DCODE\",\"new_password\":\"first password $i\"}" >"$tmp/c$i" &
    pids+=($!)
done
wait "${pids[@]}"
codes=$(cat "$tmp"/* | sort | uniq -c | awk '{printf "%s%s:%s", sep, $2, $1; sep = " "}')
rm -rf "$tmp"
check "8 reset-passwords and 8 first passwords with one code: exactly one 200 ($codes)" test "$(n_of 200 "$codes")" = 1
check "... and no 500 ($codes)" test "$(n_of 500 "$codes")" = 0

# ---- 6. the header's alg must be exactly "HS256" ----
signup_and_login
now=$(date +%s)
claims="{\"sub\":\"$USER_ID\",\"iat\":$((now - 10)),\"exp\":$((now + 3600)),\"jti\":\"$(openssl rand -hex 16)\",\"tv\":0,\"typ_use\":\"access\"}"
auth_req "$(sign_jwt '{"alg":"HS256","typ":"JWT"}' "$claims")" GET /user/me
check_status 200 "a hand-made HS256 token is accepted (control)"
for alg in hs256 Hs256 hS256 'HS256 ' none; do
    auth_req "$(sign_jwt "{\"alg\":\"$alg\",\"typ\":\"JWT\"}" "$claims")" GET /user/me
    check_status 401 "a token whose header says alg \"$alg\" is 401"
done

# ---- 4. chatrooms: the per-user cap, exact under concurrency ----
signup_and_login
RT=$TOKEN RU=$USER_ID
psql_q "INSERT INTO chatrooms (user_id, title) SELECT $RU, 'seeded ' || i FROM generate_series(1, $((ROOM_MAX - 3))) i" >/dev/null
tmp=$(mktemp -d)
for i in 1 2 3 4 5 6; do
    curl -s -o /dev/null -w '%{http_code}\n' -XPOST "$BASE_URL/chatroom" -H "Authorization: Bearer $RT" \
        -H 'Content-Type: application/json' -d "{\"title\":\"parallel $i\"}" >"$tmp/$i" &
done
wait
codes=$(cat "$tmp"/* | sort | tr '\n' ' ')
rm -rf "$tmp"
check_eq "$codes" "201 201 201 409 409 409 " "6 parallel creates with room for 3: three 201, three 409"
check_eq "$(psql_q "SELECT count(*) FROM chatrooms WHERE user_id = $RU")" "$ROOM_MAX" "exactly $ROOM_MAX chatrooms"
auth_req "$RT" POST /chatroom '{"title":"one too many"}'
check_eq "$STATUS/$(jget .error.code)" "409/conflict" "a create over the cap is 409 conflict"
check "the message names the cap" grep -q "$ROOM_MAX" <<<"$(jget .error.message)"
DEL=$(psql_q "SELECT id FROM chatrooms WHERE user_id = $RU ORDER BY id LIMIT 1")
auth_req "$RT" DELETE "/chatroom/$DEL"
auth_req "$RT" POST /chatroom '{"title":"after a delete"}'
check_status 201 "after a delete there is room again"

# ---- 4. the list: pages of `limit` (default 50) with `before`; only the small first page is cached ----
signup_and_login
LT=$TOKEN LU=$USER_ID
psql_q "INSERT INTO chatrooms (user_id, title, updated_at) SELECT $LU, 'room ' || i, now() - i * interval '1 minute' FROM generate_series(1, 120) i" >/dev/null
expected=$(psql_q "SELECT string_agg(id::text, ',' ORDER BY updated_at DESC, id DESC) FROM chatrooms WHERE user_id = $LU")
auth_req "$LT" GET /chatroom
check_eq "$STATUS/$(jget '.chatrooms | length')/$(header X-Cache)" "200/50/MISS" "the first page has 50 rooms (the default)"
P1=$(jget '[.chatrooms[].id] | map(tostring) | join(",")')
NB=$(jget .next_before)
check_eq "$NB" "$(jget '.chatrooms[49].id')" "next_before is the last room of the page"
cached_len=$(redis_cli STRLEN "chatrooms:$LU")
check "the cached value is one small page ($cached_len bytes), not the whole list" test "${cached_len:-0}" -gt 0 -a "${cached_len:-0}" -lt 12000
auth_req "$LT" GET /chatroom
check_eq "$(header X-Cache)/$(jget '.chatrooms | length')/$(jget .next_before)" "HIT/50/$NB" "the first page again: HIT, with next_before"
auth_req "$LT" GET "/chatroom?before=$NB"
check_eq "$STATUS/$(jget '.chatrooms | length')/$(header X-Cache)" "200/50/MISS" "the second page: 50 more, from PostgreSQL"
P2=$(jget '[.chatrooms[].id] | map(tostring) | join(",")')
NB2=$(jget .next_before)
auth_req "$LT" GET "/chatroom/?before=$NB2&limit=50"
check_eq "$(jget '.chatrooms | length')/$(jget .next_before)" "20/null" "the last page: 20 rooms, next_before null"
P3=$(jget '[.chatrooms[].id] | map(tostring) | join(",")')
check_eq "$P1,$P2,$P3" "$expected" "the pages together are the whole list, newest activity first, once each"
auth_req "$LT" GET "/chatroom?limit=100"
check_eq "$(jget '.chatrooms | length')/$(jget .next_before)" "100/$(cut -d, -f100 <<<"$expected")" "limit=100"
check_eq "$(redis_cli GET "chatrooms:$LU" | sed "s/^[^|]*|//" | jq '.chatrooms | length')" 50 "other pages never replace the cached first page"
for bad in 'limit=0' 'limit=101' 'limit=abc' 'before=0' 'before=-3' 'before=x'; do
    auth_req "$LT" GET "/chatroom?$bad"
    check_eq "$STATUS/$(jget .error.code)" "400/validation_error" "GET /chatroom?$bad is 400"
done
auth_req "$RT" GET "/chatroom?before=$NB"
check_eq "$STATUS/$(jget '.chatrooms | length')" "200/0" "before= another user's room gives an empty page, nothing of theirs"
auth_req "$LT" POST /chatroom '{"title":"newest"}'
auth_req "$LT" GET /chatroom
check_eq "$(header X-Cache)/$(jget '.chatrooms[0].title')" "MISS/newest" "a create still makes the next first page fresh"

# ---- the throttle's purge of expired rows (1 call in 100): it deletes what expired, keeps the rest, and skips
# a row another transaction holds instead of waiting for it (the caller's transaction holds rows of its own, and
# two purges waiting on each other's were a deadlock). Run as the auth program has it, from its binary. ----
purge_sql=$(strings -n 30 "$(_stack_abs "$BUILD_DIR")/cgi-bin/auth" | grep -F 'DELETE FROM auth_throttle WHERE (scope, subject)' | sed -n 1p)
check "the purge statement is in the auth program" test -n "$purge_sql"
ptag=purge-$RANDOM-$$
psql_q "INSERT INTO auth_throttle (scope, subject, count, window_start) VALUES
        ('$ptag', 'old', 1, now() - interval '3 days'), ('$ptag', 'held', 1, now() - interval '3 days'),
        ('$ptag', 'new', 1, now())" >/dev/null
hold_lock "another transaction holds an expired row" \
    "SELECT 1 FROM auth_throttle WHERE scope = '$ptag' AND subject = 'held' FOR UPDATE"
out=$(psql -X -A -t -q -d "$DATABASE_URL" -c "SET lock_timeout = '2s'" -c "PREPARE p AS $purge_sql" \
    -c "EXECUTE p(172800)" 2>&1) || true
release_lock
check_eq "$(psql_q "SELECT string_agg(subject, ',' ORDER BY subject) FROM auth_throttle WHERE scope = '$ptag'")" \
    "held,new" "the purge deleted the expired row, skipped the held one without waiting${out:+ ($out)}, kept the new one"
