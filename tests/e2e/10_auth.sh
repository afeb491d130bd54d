#!/usr/bin/env bash
# End-to-end: every /auth endpoint, /user/me, tokens (forged, expired, alg:none, revoked), OTP rules.
source "$(dirname "$0")/../lib.sh"

b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
# sign_jwt HEADER_JSON PAYLOAD_JSON [ALG(sha256|sha512)] [SECRET]
sign_jwt() {
    local h p s
    h=$(printf '%s' "$1" | b64url)
    p=$(printf '%s' "$2" | b64url)
    s=$(printf '%s' "$h.$p" | openssl dgst -"${3:-sha256}" -hmac "${4:-$JWT_SECRET}" -binary | b64url)
    printf '%s.%s.%s' "$h" "$p" "$s"
}

# ---- signup ----
M=$(rand_mobile)
req POST /auth/signup "{\"mobile\":\"$M\",\"name\":\"Ada\",\"email\":\"ada@example.com\"}"
check_status 201 "signup creates a user"
check_eq "$(jget .mobile)" "$M" "signup returns the mobile"
check_eq "$(jget .tier)" "basic" "a new user is basic"
check_eq "$(jget .has_password)" "false" "has_password false without a password"
check "signup created_at is RFC 3339 UTC" grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$' <<<"$(jget .created_at)"
check "signup id is a JSON integer" test "$(jget '.id|type')" = number
check_eq "$(header Content-Type)" "application/json; charset=utf-8" "JSON content type"
req POST /auth/signup "{\"mobile\":\"$M\"}"
check_status 409 "signup of an existing mobile is 409"
check_eq "$(jget .error.code)" "conflict" "409 code conflict"

# mobile normalisation: spaces and dashes stripped
M2=$(rand_mobile)
spaced="${M2:0:4} ${M2:4:3}-${M2:7}"
req POST /auth/signup "{\"mobile\":\"$spaced\"}"
check_status 201 "signup accepts spaces and dashes"
check_eq "$(jget .mobile)" "$M2" "spaces and dashes are stripped before storing"
# E.164 with '+' always: the same number without '+' (or with spaces, dashes) is the same account
M3=$(rand_mobile)
req POST /auth/signup "{\"mobile\":\"${M3#+}\"}"
check_eq "$STATUS/$(jget .mobile)" "201/$M3" "a mobile sent without + is stored and returned with +"
check_eq "$(psql_q "SELECT mobile FROM users WHERE id = $(jget .id)")" "$M3" "the stored form has the +"
req POST /auth/signup "{\"mobile\":\"${M3:0:2} ${M3:2:3}-${M3:5:3}-${M3:8}\"}"
check_eq "$STATUS/$(jget .error.code)" "409/conflict" "+1 555-... after 1555... is the same account (409)"
req POST /auth/send-otp "{\"mobile\":\"${M3#+}\"}"
check_eq "$STATUS/$(jget .mobile)" "200/$M3" "send-otp without + finds the account and answers with +"

for bad in '"1234567"' '"+1234567890123456"' '"12ab5678"' '12345678' '""' 'null'; do
    req POST /auth/signup "{\"mobile\":$bad}"
    check_status 400 "bad mobile $bad is 400"
    check_eq "$(jget .error.code)" "validation_error" "bad mobile $bad is validation_error"
done
req POST /auth/signup "{\"mobile\":\"$(rand_mobile)\",\"password\":\"short7!\"}"
check_status 400 "a 7-character password is refused"
req POST /auth/signup "{\"mobile\":\"$(rand_mobile)\",\"password\":\"$(printf 'a%.0s' {1..129})\"}"
check_status 400 "a 129-character password is refused"
req POST /auth/signup "{\"mobile\":\"$(rand_mobile)\",\"email\":\"not-an-email\"}"
check_status 400 "a bad email is refused"
req POST /auth/signup "{\"mobile\":\"$(rand_mobile)\",\"name\":42}"
check_status 400 "a non-string name is refused"
req POST /auth/signup "{\"mobile\":\"$(rand_mobile)\",\"name\":\"a\\nb\\u0007\"}"
check_eq "$STATUS/$(jget .error.code)" "400/validation_error" "a name with control characters is refused"
for bad in 'a@b..c' 'a@b.' 'a@.b' 'a@b' 'a b@c.d' 'a@b.c\u007f'; do
    req POST /auth/signup "{\"mobile\":\"$(rand_mobile)\",\"email\":\"$bad\"}"
    check_status 400 "the email $bad is refused"
done
req POST /auth/signup "{\"mobile\":\"$(rand_mobile)\",\"email\":\"x.y+tag@mail.example.co\"}"
check_status 201 "a plain email with a dot and a plus is accepted"
# C1 controls and text-direction overrides are refused in a name (they hide or reverse text where it is shown)
for bad in '\u0085' '\u009b' '\u202e' '\u2066'; do
    req POST /auth/signup "{\"mobile\":\"$(rand_mobile)\",\"name\":\"a${bad}b\"}"
    check_eq "$STATUS/$(jget .error.code)" "400/validation_error" "a name with $bad is refused"
done
# The email's limit counts characters: 250 two-byte ones and "@b.c" (254 characters, 504 bytes) fit
long=$(printf '\u00e9%.0s' {1..250})
req POST /auth/signup "{\"mobile\":\"$(rand_mobile)\",\"email\":\"$long@b.c\"}"
check_eq "$STATUS/$(jget '.email | length')" "201/254" "an email of 254 non-ASCII characters is accepted"
req POST /auth/signup "{\"mobile\":\"$(rand_mobile)\",\"email\":\"e$long@b.c\"}"
check_eq "$STATUS/$(jget .error.message)" "400/email must be 3 to 254 characters." "... 255 are refused"

# ---- malformed requests ----
req POST /auth/signup '{"mobile":'
check_status 400 "truncated JSON is 400"
check_eq "$(jget .error.code)" "invalid_json" "truncated JSON is invalid_json"
req POST /auth/signup '["a"]'
check_eq "$STATUS/$(jget .error.code)" "400/invalid_json" "a JSON array is not an object"
req POST /auth/signup "{\"mobile\":\"$(rand_mobile)\"} trailing"
check_eq "$STATUS/$(jget .error.code)" "400/invalid_json" "trailing garbage is invalid_json"
req POST /auth/signup ''
check_eq "$STATUS/$(jget .error.code)" "400/invalid_json" "an empty body is invalid_json"
for num in NaN Infinity -Infinity; do # json-c reads them; JSON has no such numbers
    req POST /auth/signup "{\"mobile\":\"$(rand_mobile)\",\"x\":[1,{\"y\":$num}]}"
    check_eq "$STATUS/$(jget .error.code)" "400/invalid_json" "a body with $num is invalid_json"
done
req POST /auth/signup "{\"mobile\":\"$(rand_mobile)\",\"x\":1.5e300}"
check_status 201 "a large finite number is still fine"
big=$(mktemp)
{ printf '{"mobile":"%s","name":"' "$(rand_mobile)"; head -c 70000 /dev/zero | tr '\0' 'a'; printf '"}'; } >"$big"
req POST /auth/signup - --data-binary @"$big"
check_eq "$STATUS/$(jget .error.code)" "400/validation_error" "a 70 KB body is read (the cap is 128 KiB): the name is too long"
{ printf '{"mobile":"%s","name":"' "$(rand_mobile)"; head -c 140000 /dev/zero | tr '\0' 'a'; printf '"}'; } >"$big"
req POST /auth/signup - --data-binary @"$big"
check_eq "$STATUS/$(jget .error.code)" "413/payload_too_large" "a 140 KB body is 413 payload_too_large"
rm -f "$big"
# A \u escape of a lone UTF-16 surrogate is not text: refused, never stored as U+FFFD
for esc in '\ud800' 'x\udbff' '\udc00' '\ud800\u0041' '\udfff\ud800'; do
    req POST /auth/signup "{\"mobile\":\"$(rand_mobile)\",\"name\":\"$esc\"}"
    check_eq "$STATUS/$(jget .error.code)" "400/invalid_json" "a lone surrogate escape ($esc) is invalid_json"
done
# Bytes that are not UTF-8 are refused wherever they are, a member the endpoint ignores included: an overlong
# "/", an encoded surrogate, a code point past U+10FFFF (json-c's own check lets these three through), a stray byte.
for bad in '\xc0\xaf' '\xed\xa0\x80' '\xf4\x90\x80\x80' '\xff'; do
    req POST /auth/signup - --data-binary "$(printf "{\"mobile\":\"%s\",\"extra\":\"$bad\"}" "$(rand_mobile)")"
    check_eq "$STATUS/$(jget .error.code)" "400/invalid_json" "bytes $bad in an ignored member are invalid_json"
done
# A raw control character inside a string (a typed line break or tab; RFC 8259 wants it escaped) is not JSON,
# though json-c takes it; between tokens, whitespace is fine.
for raw in '\n' '\t' '\x01'; do
    m=$(rand_mobile)
    req POST /auth/signup - --data-binary "$(printf "{\"mobile\":\"%s\",\"extra\":\"a${raw}b\"}" "$m")"
    check_eq "$STATUS/$(jget .error.code)" "400/invalid_json" "a raw $raw inside a string (an ignored member) is invalid_json"
    check_eq "$(psql_q "SELECT count(*) FROM users WHERE mobile = '$m'")" 0 "... and nothing is stored"
done
# A compressed body (Content-Encoding: gzip) is 415, not "not valid UTF-8": no server here decodes one.
m=$(rand_mobile)
gz=$(mktemp)
printf '{"mobile":"%s"}' "$m" | gzip -c >"$gz"
req POST /auth/signup - --data-binary @"$gz" -H 'Content-Encoding: gzip'
rm -f "$gz"
check_eq "$STATUS/$(jget .error.code)" "415/unsupported_media_type" "a gzip body is 415 unsupported_media_type"
check_eq "$(psql_q "SELECT count(*) FROM users WHERE mobile = '$m'")" 0 "... and nothing is stored"
req POST /auth/signup "{\"mobile\":\"$m\"}" -H 'Content-Encoding: identity'
check_status 201 "Content-Encoding: identity is a plain body"
req POST /auth/signup - --data-binary "$(printf '{\n\t"mobile": "%s",\r\n "name": "ab", "extra": "a\\nb"}\n' "$(rand_mobile)")"
check_eq "$STATUS/$(jget .name)" "201/ab" "line breaks between tokens and an escaped one (\\n) in a string are fine"
req POST /auth/signup "{\"mobile\":\"$(rand_mobile)\",\"name\":\"\\\\ud800 \ud83d\ude00\"}"
check_eq "$STATUS/$(jget .name)" "201/\\ud800 😀" "a surrogate pair is a character; an escaped backslash before ud800 is text"
req GET /auth/signup
check_status 405 "GET on a POST endpoint is 405"
check_eq "$(header Allow)" "POST" "405 carries Allow: POST"
check_eq "$(jget .error.code)" "method_not_allowed" "405 code"
req GET /auth/nope
check_eq "$STATUS/$(jget .error.code)" "404/not_found" "unknown auth path is 404 not_found"
req GET /user/me/ "" -H "X-Request-Id: trace-abc.123"
check_eq "$(header X-Request-Id)" "trace-abc.123" "X-Request-Id is echoed"
check_status 401 "trailing slash reaches /user/me"
req GET /user/me "" -H 'X-Request-Id: bad id with spaces'
check "an insane X-Request-Id is replaced" test -n "$(header X-Request-Id)" -a "$(header X-Request-Id)" != "bad id with spaces"

# ---- OTP login ----
req POST /auth/send-otp "{\"mobile\":\"$(rand_mobile)\"}"
check_eq "$STATUS/$(jget .error.code)" "404/not_found" "send-otp for an unknown mobile is 404"
req POST /auth/send-otp "{\"mobile\":\"$M\"}"
check_status 200 "send-otp 200"
OTP=$(jget .otp)
check "the OTP is 6 digits" grep -Eq '^[0-9]{6}$' <<<"$OTP"
check_eq "$(jget .purpose)/$(jget .expires_in)/$(jget .mobile)" "login/300/$M" "send-otp body"
stored=$(psql_q "SELECT encode(o.code_hash,'hex') FROM otps o JOIN users u ON u.id=o.user_id WHERE u.mobile='$M' AND o.purpose='login'")
check "the OTP is stored only as a 32-byte keyed hash" test "${#stored}" = 64 -a "$stored" != "$OTP"
req POST /auth/send-otp "{\"mobile\":\"$M\"}"
check_status 429 "a second send within 30 s is 429"
check_eq "$(jget .error.code)" "rate_limited" "send limit code"
ra=$(header Retry-After)
check "send limit has Retry-After 1..30 ($ra)" test "${ra:-0}" -ge 1 -a "${ra:-0}" -le 30

wrong=$(printf '%06d' $(( (10#$OTP + 1) % 1000000 )))
req POST /auth/verify-otp "{\"mobile\":\"$M\",\"otp\":\"$wrong\"}"
check_eq "$STATUS/$(jget .error.code)" "401/invalid_otp" "a wrong OTP is 401 invalid_otp"
check_eq "$(header WWW-Authenticate)" Bearer "a wrong OTP: WWW-Authenticate: Bearer, like every 401"
req POST /auth/verify-otp "{\"mobile\":\"$M\",\"otp\":\"12ab56\"}"
check_eq "$STATUS/$(jget .error.code)" "400/validation_error" "a non-numeric OTP is 400"
req POST /auth/verify-otp "{\"mobile\":\"$M\",\"otp\":\"$OTP\"}"
check_status 200 "verify-otp with the right code"
T1=$(jget .access_token)
check_eq "$(jget .token_type)/$(jget .expires_in)/$(jget .user.mobile)" "Bearer/86400/$M" "token response shape"
req POST /auth/verify-otp "{\"mobile\":\"$M\",\"otp\":\"$OTP\"}"
check_eq "$STATUS/$(jget .error.code)" "401/invalid_otp" "a used OTP cannot be reused"

auth_req "$T1" GET /user/me
check_status 200 "/user/me with the token"
check_eq "$(jget .mobile)/$(jget .name)/$(jget .email)/$(jget .tier)" "$M/Ada/ada@example.com/basic" "/user/me body"
check "no password hash leaks into the user" test "$(jget 'has("password_hash")')" = false

# ---- attempt limit: 5 wrong tries burn the code ----
signup_and_login
M3=$MOBILE
psql_q "DELETE FROM otp_sends WHERE user_id=$USER_ID" >/dev/null
req POST /auth/send-otp "{\"mobile\":\"$M3\"}"
OTP3=$(jget .otp)
w3=$(printf '%06d' $(( (10#$OTP3 + 7) % 1000000 )))
for i in 1 2 3 4 5; do
    req POST /auth/verify-otp "{\"mobile\":\"$M3\",\"otp\":\"$w3\"}"
    check_eq "$STATUS" "401" "wrong try $i is 401"
done
req POST /auth/verify-otp "{\"mobile\":\"$M3\",\"otp\":\"$OTP3\"}"
check_eq "$STATUS/$(jget .error.code)" "429/rate_limited" "after 5 wrong tries even the right code gets 429"
check "burned-code 429 has Retry-After" test -n "$(header Retry-After)"
# Its Retry-After is when a new code may be asked for: the code went out 25 s ago, so about 5 s (not a fixed 30).
psql_q "UPDATE otp_sends SET sent_at = sent_at - interval '25 seconds' WHERE user_id=$USER_ID" >/dev/null
req POST /auth/verify-otp "{\"mobile\":\"$M3\",\"otp\":\"$OTP3\"}"
ra=$(header Retry-After)
check "... the seconds until send-otp takes a new code ($ra)" test "$ra" -ge 1 -a "$ra" -le 6
psql_q "UPDATE otp_sends SET sent_at = sent_at - interval '10 seconds' WHERE user_id=$USER_ID" >/dev/null
req POST /auth/verify-otp "{\"mobile\":\"$M3\",\"otp\":\"$OTP3\"}"
check_eq "$STATUS/$(header Retry-After)" 429/1 "... 1 once a new code may be asked for"
req POST /auth/send-otp "{\"mobile\":\"$M3\"}"
check_status 200 "... and send-otp then sends one"

# ---- expiry ----
psql_q "DELETE FROM otp_sends WHERE user_id=$USER_ID" >/dev/null
req POST /auth/send-otp "{\"mobile\":\"$M3\"}"
OTP4=$(jget .otp)
psql_q "UPDATE otps SET expires_at = now() - interval '1 second' WHERE user_id=$USER_ID AND purpose='login'" >/dev/null
req POST /auth/verify-otp "{\"mobile\":\"$M3\",\"otp\":\"$OTP4\"}"
check_eq "$STATUS/$(jget .error.code)" "401/invalid_otp" "an expired OTP is refused"

# ---- hourly send limit (10 per hour) ----
psql_q "DELETE FROM otp_sends WHERE user_id=$USER_ID; INSERT INTO otp_sends (user_id, purpose, sent_at) SELECT $USER_ID, 'login', now() - (i * interval '4 minutes') FROM generate_series(1,10) i" >/dev/null
req POST /auth/send-otp "{\"mobile\":\"$M3\"}"
check_status 429 "the 11th send within an hour is 429"
ra=$(header Retry-After)
check "hourly limit Retry-After is past 30 s ($ra)" test "${ra:-0}" -gt 30 -a "${ra:-0}" -le 3600
req POST /auth/forgot-password "{\"mobile\":\"$M3\"}"
check_status 200 "the limit is per purpose: forgot-password still works"

# ---- purposes do not mix ----
signup_and_login
M5=$MOBILE
req POST /auth/forgot-password "{\"mobile\":\"$M5\"}"
check_eq "$STATUS/$(jget .purpose)" "200/password_reset" "forgot-password issues a reset code"
RESET=$(jget .otp)
req POST /auth/forgot-password "{\"mobile\":\"$(rand_mobile)\"}"
check_status 404 "forgot-password for an unknown mobile is 404"
req POST /auth/verify-otp "{\"mobile\":\"$M5\",\"otp\":\"$RESET\"}"
check_eq "$STATUS/$(jget .error.code)" "401/invalid_otp" "a reset code cannot log in"
psql_q "DELETE FROM otp_sends WHERE user_id=$USER_ID" >/dev/null
req POST /auth/send-otp "{\"mobile\":\"$M5\"}"
LOGIN5=$(jget .otp)
req POST /auth/reset-password "{\"mobile\":\"$M5\",\"otp\":\"$LOGIN5\",\"new_password\":\"correct horse battery\"}"
check_eq "$STATUS/$(jget .error.code)" "401/invalid_otp" "a login code cannot reset a password"

# ---- reset-password ----
OLD=$TOKEN
req POST /auth/reset-password "{\"mobile\":\"$M5\",\"otp\":\"$RESET\",\"new_password\":\"short\"}"
check_eq "$STATUS/$(jget .error.code)" "400/validation_error" "reset with a weak password is 400"
req POST /auth/reset-password "{\"mobile\":\"$M5\",\"otp\":\"$RESET\",\"new_password\":\"correct horse battery\"}"
check_status 200 "reset-password with the reset code (not burned by the validation error)"
NEW=$(jget .access_token)
check_eq "$(jget .user.has_password)" "true" "the user now has a password"
auth_req "$OLD" GET /user/me
check_status 401 "a token issued before the reset is revoked"
auth_req "$NEW" GET /user/me
check_status 200 "the fresh token works"
req POST /auth/reset-password "{\"mobile\":\"$M5\",\"otp\":\"$RESET\",\"new_password\":\"another good one\"}"
check_status 401 "a reset code is single use"

# ---- password login ----
req POST /auth/login "{\"mobile\":\"$M5\",\"password\":\"correct horse battery\"}"
check_status 200 "login with the password"
check_eq "$(jget .token_type)" "Bearer" "login returns a token"
req POST /auth/login "{\"mobile\":\"$M5\",\"password\":\"wrong horse battery\"}"
check_eq "$STATUS/$(jget .error.code)" "401/invalid_credentials" "a wrong password is 401 invalid_credentials"
check_eq "$(header WWW-Authenticate)" Bearer "a wrong password: WWW-Authenticate: Bearer, like every 401"
msg_wrong=$(jget .error.message)
req POST /auth/login "{\"mobile\":\"$(rand_mobile)\",\"password\":\"correct horse battery\"}"
check_eq "$STATUS/$(jget .error.code)" "401/invalid_credentials" "an unknown mobile is 401 invalid_credentials"
check_eq "$(jget .error.message)" "$msg_wrong" "no hint which of mobile and password was wrong"
req POST /auth/login "{\"mobile\":\"$M\",\"password\":\"whatever123\"}"
check_status 401 "a user without a password cannot log in with one"
req POST /auth/login "{\"mobile\":\"$M5\"}"
check_status 400 "login without a password is 400"

# ---- change-password ----
req POST /auth/login "{\"mobile\":\"$M5\",\"password\":\"correct horse battery\"}"
T5=$(jget .access_token)
auth_req "$T5" POST /auth/change-password '{"new_password":"brand new secret"}'
check_eq "$STATUS/$(jget .error.code)" "400/validation_error" "change-password without current_password is 400"
auth_req "$T5" POST /auth/change-password '{"current_password":"not it at all","new_password":"brand new secret"}'
check_eq "$STATUS/$(jget .error.code)" "401/invalid_credentials" "a wrong current_password is 401 invalid_credentials"
check_eq "$(header WWW-Authenticate)" Bearer "a wrong current_password: WWW-Authenticate: Bearer, like every 401"
auth_req "$T5" POST /auth/change-password '{"current_password":"correct horse battery","new_password":"tiny"}'
check_status 400 "a weak new password is 400"
auth_req "$T5" POST /auth/change-password '{"current_password":"correct horse battery","new_password":"brand new secret"}'
check_status 200 "change-password succeeds"
T6=$(jget .access_token)
auth_req "$T5" GET /user/me
check_status 401 "the token from before the change is revoked"
check "revoked answer has WWW-Authenticate: Bearer" grep -q '^Bearer' <<<"$(header WWW-Authenticate)"
auth_req "$T6" GET /user/me
check_status 200 "the fresh token from change-password works"
req POST /auth/login "{\"mobile\":\"$M5\",\"password\":\"brand new secret\"}"
check_status 200 "login with the new password"
req POST /auth/login "{\"mobile\":\"$M5\",\"password\":\"correct horse battery\"}"
check_status 401 "the old password no longer works"
auth_req "$T1" POST /auth/change-password '{"new_password":"first password!"}'
check_status 200 "a user without a password sets one without current_password (a token from a fresh OTP login; 17_abuse: older ones need a reset code)"
req POST /auth/change-password '{"new_password":"first password!"}'
check_status 401 "change-password needs a token"

# Concurrent changes with one token: exactly one wins, the others' token is revoked by it.
signup_and_login
req POST /auth/forgot-password "{\"mobile\":\"$MOBILE\"}"
RESET=$(jget .otp)
tmp=$(mktemp -d)
for i in 1 2 3 4; do
    curl -s -o /dev/null -w '%{http_code}\n' -XPOST "$BASE_URL/auth/change-password" \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        -d "{\"new_password\":\"parallel password $i\",\"otp\":\"$RESET\"}" >"$tmp/$i" &
done
wait
codes=$(cat "$tmp"/* | sort | tr '\n' ' ')
rm -rf "$tmp"
check_eq "$codes" "200 401 401 401 " "4 parallel change-passwords with one token: one 200, three 401"
check_eq "$(psql_q "SELECT token_version FROM users WHERE id = $USER_ID")" "1" "the token version moved once"

# The Redis mirror of the token version: a stale (older) mirror value never locks out a fresh token, and an
# older writer never overwrites a newer value.
signup_and_login
T_OLD=$TOKEN
req POST /auth/forgot-password "{\"mobile\":\"$MOBILE\"}"
auth_req "$T_OLD" POST /auth/change-password "{\"new_password\":\"mirror test password\",\"otp\":\"$(jget .otp)\"}"
T_NEW=$(jget .access_token)
# The password change also reaches Redis through the outbox (the worker drops the mirror when it drains it):
# let that finish first, or it may remove what is planted below.
wait_outbox_empty 8 "$USER_ID" || true
# what a racing reader of the old version would have left (stamped with the epoch in force, lib/mirror.h)
redis_cli SET "authv:$USER_ID" "$(redis_cli GET gb:epoch)|0" EX 600 >/dev/null
auth_req "$T_NEW" GET /user/me
check_status 200 "a fresh token works although the mirror holds an older version"
check_eq "$(redis_cli GET "authv:$USER_ID" | sed 's/^.*|//')" "1" "the mirror was raised from PostgreSQL"
auth_req "$T_OLD" GET /user/me
check_status 401 "and the revoked token is refused again"

# ---- forged tokens ----
req GET /user/me
check_status 401 "no token is 401"
check_eq "$(jget .error.code)" "unauthorized" "401 code unauthorized"
check "401 has WWW-Authenticate: Bearer" grep -q '^Bearer' <<<"$(header WWW-Authenticate)"
req GET /user/me "" -H "Authorization: Basic dXNlcjpwYXNz"
check_status 401 "a Basic credential is 401"
req GET /user/me "" -H "Authorization: Bearer"
check_status 401 "an empty bearer is 401"
auth_req "not.a.jwt" GET /user/me
check_status 401 "garbage token is 401"
sig=${T6##*.}
first=${sig:0:1}; [ "$first" = A ] && repl=B || repl=A
auth_req "${T6%.*}.${repl}${sig:1}" GET /user/me
check_status 401 "a tampered signature is 401"
now=$(date +%s)
uid=$(psql_q "SELECT id FROM users WHERE mobile='$M5'")
tv=$(psql_q "SELECT token_version FROM users WHERE mobile='$M5'")
claims="{\"sub\":\"$uid\",\"iat\":$((now-10)),\"exp\":$((now+3600)),\"jti\":\"$(openssl rand -hex 16)\",\"tv\":$tv,\"typ_use\":\"access\"}"
good=$(sign_jwt '{"alg":"HS256","typ":"JWT"}' "$claims")
auth_req "$good" GET /user/me
check_status 200 "a correctly signed hand-made token is accepted (control)"
auth_req "$(sign_jwt '{"alg":"HS256","typ":"JWT"}' "$claims" sha256 wrong-secret-wrong-secret-wrong-secret)" GET /user/me
check_status 401 "a token signed with another key is 401"
none="$(printf '%s' '{"alg":"none","typ":"JWT"}' | b64url).$(printf '%s' "$claims" | b64url)."
auth_req "$none" GET /user/me
check_status 401 "an alg:none token is 401"
auth_req "$(sign_jwt '{"alg":"HS512","typ":"JWT"}' "$claims" sha512)" GET /user/me
check_status 401 "an HS512 token signed with our secret is 401 (alg pinned)"
expired="{\"sub\":\"$uid\",\"iat\":$((now-7200)),\"exp\":$((now-3600)),\"jti\":\"$(openssl rand -hex 16)\",\"tv\":$tv,\"typ_use\":\"access\"}"
auth_req "$(sign_jwt '{"alg":"HS256","typ":"JWT"}' "$expired")" GET /user/me
check_status 401 "an expired token is 401"
just_expired="{\"sub\":\"$uid\",\"iat\":$((now-100)),\"exp\":$((now-2)),\"jti\":\"$(openssl rand -hex 16)\",\"tv\":$tv,\"typ_use\":\"access\"}"
auth_req "$(sign_jwt '{"alg":"HS256","typ":"JWT"}' "$just_expired")" GET /user/me
check_status 401 "a token that expired 2 s ago is 401 (no leeway on exp)"
other="{\"sub\":\"$uid\",\"iat\":$((now-10)),\"exp\":$((now+3600)),\"jti\":\"$(openssl rand -hex 16)\",\"tv\":$((tv-1)),\"typ_use\":\"access\"}"
auth_req "$(sign_jwt '{"alg":"HS256","typ":"JWT"}' "$other")" GET /user/me
check_status 401 "a token with an old token version is 401"

# ---- schema step 6: stored mobiles without + become E.164; of two accounts with both forms the older keeps it ----
A=$(rand_mobile) B=$(rand_mobile) C=$(rand_mobile)
old_a=$(psql_q "INSERT INTO users (mobile, created_at) VALUES ('${A#+}', now() - interval '2 days') RETURNING id")
new_a=$(psql_q "INSERT INTO users (mobile, created_at) VALUES ('$A', now() - interval '1 day') RETURNING id")
old_b=$(psql_q "INSERT INTO users (mobile, created_at) VALUES ('$B', now() - interval '2 days') RETURNING id")
new_b=$(psql_q "INSERT INTO users (mobile, created_at) VALUES ('${B#+}', now() - interval '1 day') RETURNING id")
only_c=$(psql_q "INSERT INTO users (mobile) VALUES ('${C#+}') RETURNING id")
psql_q "DELETE FROM schema_version WHERE version = 6"
check "schema.sql re-applies step 6" stack_schema_apply
check "schema.sql applied once more changes nothing" stack_schema_apply
mob() { psql_q "SELECT mobile FROM users WHERE id = $1"; }
check_eq "$(mob "$old_a")/$(mob "$new_a")" "$A/$A#dup-$new_a" "bare digits, older: it gets the +, the newer + account is renamed"
check_eq "$(mob "$old_b")/$(mob "$new_b")" "$B/$B#dup-$new_b" "+ form, older: it keeps it, the newer bare one is renamed"
check_eq "$(mob "$only_c")" "$C" "a lone bare mobile gets its +"
check_eq "$(psql_q "SELECT count(*) FROM users WHERE mobile ~ '^[0-9]+\$'")" 0 "no mobile without + is left"
req POST /auth/send-otp "{\"mobile\":\"${C#+}\"}"
check_eq "$STATUS/$(jget .mobile)" "200/$C" "the migrated account is found by either form"
req POST /auth/send-otp "{\"mobile\":\"$A\"}"
check_status 200 "the number of a duplicate pair reaches the older account"

# ---- secrets stay out of the logs ----
if compgen -G "$STACK_DIR/*.log" >/dev/null; then
    check "no token in the logs" sh -c "! grep -rqF -- '$T6' $STACK_DIR/*.log"
    check "no OTP body in the logs" sh -c "! grep -rqF -- '\"otp\":\"$OTP\"' $STACK_DIR/*.log"
    check "no password in the logs" sh -c "! grep -rqF -- 'brand new secret' $STACK_DIR/*.log"
fi
