#!/usr/bin/env bash
# What the web server configuration decides, checked on every deployment (lighttpd.conf, apache.conf,
# nginx.conf, nginx-cgi.conf): exact prefix routing to the right program, Authorization reaching the app,
# request headers and the query string passed through, bodies past 64 KiB reaching the app (its JSON 413, not
# the server's), and a POST without any body.
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# A response came from one of our programs: they put X-Request-Id on every response, the servers do not.
from_app() { test -n "$(header X-Request-Id)"; }
not_from_app() { test -z "$(header X-Request-Id)"; }

# ---- routing: each prefix reaches its program, with and without a trailing slash; look-alikes do not ----------
req GET /healthz
check_eq "$STATUS/$(jget .status)" "200/ok" "[$DEPLOYMENT] /healthz reaches auth"
req GET /healthz/
check_status 200 "[$DEPLOYMENT] /healthz/ reaches auth"
for p in /auth/login /auth/login/ /user/me /user/me/ /chatroom /chatroom/ /chatroom/usage /subscription/status \
    /subscribe/pro /payment/cancel /webhook/stripe; do
    req GET "$p"
    check "[$DEPLOYMENT] GET $p is answered by the app (status $STATUS)" from_app
done
# Which program answered: auth knows /user/me (401 without a token), chatroom knows /chatroom (401), subscribe
# knows /payment/cancel (200), webhook knows /webhook/stripe (405 for GET, POST only).
req GET /user/me
check_status 401 "[$DEPLOYMENT] /user/me is auth's (401 without a token)"
req GET /payment/cancel
check_eq "$STATUS/$(jget .status)" "200/canceled" "[$DEPLOYMENT] /payment/cancel is subscribe's"
req GET /webhook/stripe
check_eq "$STATUS/$(jget .error.code)" "405/method_not_allowed" "[$DEPLOYMENT] /webhook/stripe is webhook's (405 for GET)"
for p in /authors /auth2/login /username /userme /chatrooms /chatroomx/1 /subscriber /subscriptions \
    /payments/cancel /webhooks/stripe /healthzz; do
    req GET "$p"
    check "[$DEPLOYMENT] GET $p never reaches a program (status $STATUS)" not_from_app
    check_status 404 "[$DEPLOYMENT] GET $p is 404"
done
req GET /
check "[$DEPLOYMENT] GET / never reaches a program (status $STATUS: the server's own 403 or 404)" not_from_app

# ---- HEAD: the GET's status and headers, no body ----------------------------------------------------------------
req GET /healthz
get_len=$(header Content-Length)
req HEAD /healthz
check_status 200 "[$DEPLOYMENT] HEAD /healthz is 200"
check "[$DEPLOYMENT] HEAD /healthz comes from the app" from_app
check_eq "$(header Content-Length)" "$get_len" "[$DEPLOYMENT] HEAD carries the GET's Content-Length"
req HEAD /auth/login
check_status 405 "[$DEPLOYMENT] HEAD on a POST-only path is 405"

# ---- headers and query string ---------------------------------------------------------------------------------
signup_and_login
auth_req "$TOKEN" GET /user/me
check_eq "$STATUS/$(jget .id)" "200/$USER_ID" "[$DEPLOYMENT] Authorization reaches the app"
auth_req "$TOKEN" GET /chatroom
check_status 200 "[$DEPLOYMENT] Authorization reaches chatroom too"
auth_req "$TOKEN" GET /subscription/status
check_status 200 "[$DEPLOYMENT] Authorization reaches subscribe too"
req GET /user/me "" -H "Authorization: Bearer $TOKEN" -H 'X-Request-Id: web-conf-0001'
check_eq "$(header X-Request-Id)" web-conf-0001 "[$DEPLOYMENT] X-Request-Id reaches the app and comes back"
auth_req "$TOKEN" POST /chatroom '{"title":"web conf"}'
room=$(jget .id)
auth_req "$TOKEN" GET "/chatroom/$room/messages?limit=0"
check_eq "$STATUS/$(jget .error.code)" "400/validation_error" "[$DEPLOYMENT] the query string reaches the app (limit=0)"
auth_req "$TOKEN" GET "/chatroom/$room/messages?limit=2"
check_status 200 "[$DEPLOYMENT] limit=2 is fine"

# ---- bodies ---------------------------------------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gb-web.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# 600 KiB: past the app's 64 KiB, past a pipe's 64 KiB (CGI), below the servers' 1 MiB.
{
    printf '{"title":"'
    head -c $((600 * 1024)) /dev/zero | tr '\0' a
    printf '"}'
} >"$tmp/big.json"
auth_req "$TOKEN" POST /chatroom - --data-binary "@$tmp/big.json"
check_eq "$STATUS/$(jget .error.code)" "413/payload_too_large" "[$DEPLOYMENT] a 600 KiB body gets the app's JSON 413"
check "[$DEPLOYMENT] the 413 comes from the app" from_app
# Exactly 64 KiB is allowed by the app (then refused as a too-long title, not as too large).
{
    printf '{"title":"'
    head -c $((65536 - 12)) /dev/zero | tr '\0' a
    printf '"}'
} >"$tmp/limit.json"
check_eq "$(stat -c %s "$tmp/limit.json")" 65536 "the test body is 65536 bytes"
auth_req "$TOKEN" POST /chatroom - --data-binary "@$tmp/limit.json"
check_eq "$STATUS/$(jget .error.code)" "400/validation_error" "[$DEPLOYMENT] a 65536-byte body is read (400, not 413)"

# A POST without any body and without Content-Length (curl -XPOST, no data). lighttpd insists on a length (411).
code=$(curl -s -o "$tmp/body" -w '%{http_code}' --max-time 10 -X POST -H "Authorization: Bearer $TOKEN" \
    "$BASE_URL/chatroom")
case $DEPLOYMENT in
lighttpd*)
    check_eq "$code" 411 "[$DEPLOYMENT] lighttpd answers 411 to a POST without Content-Length"
    ;;
*)
    check_eq "$code/$(jq -r .title "$tmp/body" 2>/dev/null)" "201/New chat" \
        "[$DEPLOYMENT] a POST without a body reaches the app (chatroom with the default title)"
    ;;
esac

# The program itself, as plain CGI: a body over the limit is read to its end before the 413 (fcgiwrap fails
# the request with its own 502 when a program leaves input unread).
bin=$(_stack_abs "$BUILD_DIR/cgi-bin/auth")
left=$(head -c 100000 /dev/zero | tr '\0' a | {
    REQUEST_METHOD=POST REQUEST_URI=/auth/signup CONTENT_LENGTH=100000 CONTENT_TYPE=application/json \
        "$bin" >"$tmp/cgi.out" 2>/dev/null || true
    wc -c
})
check "CGI: a 100000-byte body is answered 413" grep -q '^Status: 413' "$tmp/cgi.out"
check_eq "$left" 0 "CGI: the program read the whole oversized body before answering"
