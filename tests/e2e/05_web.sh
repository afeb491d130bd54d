#!/usr/bin/env bash
# What the web server configuration decides, checked on every deployment (lighttpd.conf, apache.conf,
# nginx.conf, nginx-cgi.conf): exact prefix routing to the right program, every other path answered by the app
# (JSON 404), the servers' own errors answered by the app (JSON, X-Request-Id), Authorization reaching the app,
# request headers and the query string passed through, bodies past the app's caps reaching the app (its JSON
# 413, not the server's), a POST without any body, CORS, and the static files' browser security headers.
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# A response came from one of our programs: they put X-Request-Id on every response, the servers only on the
# static files they serve (checked below).
from_app() { test -n "$(header X-Request-Id)"; }

# ---- routing: each prefix reaches its program, with and without a trailing slash; look-alikes do not ----------
req GET /healthz
check_eq "$STATUS/$(jget .status)" "200/ok" "[$DEPLOYMENT] /healthz reaches chatroom"
req GET /healthz/
check_status 200 "[$DEPLOYMENT] /healthz/ reaches chatroom"
for p in /auth/login /auth/login/ /user/me /user/me/ /chatroom /chatroom/ /chatroom/usage /subscription/status \
    /subscribe/pro /payment/cancel /webhook/stripe; do
    req GET "$p"
    check "[$DEPLOYMENT] GET $p is answered by the app (status $STATUS)" from_app
done
# A Range header never cuts an API answer (a 206 of JSON would be unparseable) nor turns a static file into the
# server's HTML 416: ranges are off, the whole answer comes back.
req GET /healthz -H 'Range: bytes=0-5'
check_eq "$STATUS/$(jget .postgres)" "200/ok" "[$DEPLOYMENT] GET /healthz with Range: bytes=0-5 is the whole JSON"
req GET /static/app.js -H 'Range: bytes=99999999-'
check_eq "$STATUS/$(header Content-Type | grep -c html)" "200/0" \
    "[$DEPLOYMENT] an unsatisfiable Range on a static file: the whole file, not an HTML 416"
check "[$DEPLOYMENT] ... with an X-Request-Id" from_app
# A request line of HTTP/2.0 (not spoken here in plain text) is refused with 505 in the JSON shape, as
# http_version_not_supported, not as the app's internal_error (lighttpd, nginx); Apache serves it as HTTP/1.1.
port=${BASE_URL##*:}
raw=$(exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'GET /healthz HTTP/2.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3 &&
    timeout 5 cat <&3 | tr -d '\r') || true
got="$(sed -n '1s/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p' <<<"$raw")/$(tail -n 1 <<<"$raw" | jq -r '.error.code // .status' 2>/dev/null || true)"
[[ $DEPLOYMENT == apache* && $got == 200/* ]] || check_eq "$got" "505/http_version_not_supported" \
    "[$DEPLOYMENT] GET ... HTTP/2.0: 505 http_version_not_supported in JSON"
# Which program answered: auth knows /user/me (401 without a token), chatroom knows /chatroom (401), subscribe
# knows /payment/cancel (200), webhook knows /webhook/stripe (405 for GET, POST only).
req GET /user/me
check_status 401 "[$DEPLOYMENT] /user/me is auth's (401 without a token)"
req GET /payment/cancel
check_eq "$STATUS/$(jget .status)" "200/canceled" "[$DEPLOYMENT] /payment/cancel is subscribe's"
req GET /webhook/stripe
check_eq "$STATUS/$(jget .error.code)" "405/method_not_allowed" "[$DEPLOYMENT] /webhook/stripe is webhook's (405 for GET)"
# Every other path is answered by the app (the auth program's router): 404 not_found in the JSON error shape,
# with an X-Request-Id, never the server's HTML page; a static file that does not exist too.
for p in /authors /auth2/login /username /userme /chatrooms /chatroomx /chatroomx/1 /subscriber /subscriptions \
    /payments/cancel /webhooks/stripe /healthzz /nope /nope/ /index.html /.htaccess /__server-error /static/ /static/nope.js /docs/nope.js /openapi.yml \
    '/chatroom%2F1' '/a%2Fb'; do
    req GET "$p"
    check "[$DEPLOYMENT] GET $p is answered by the app (status $STATUS)" from_app
    check_eq "$STATUS/$(jget .error.code)" "404/not_found" "[$DEPLOYMENT] GET $p is a JSON 404 not_found"
    check_eq "$(header Content-Type)" "application/json; charset=utf-8" "[$DEPLOYMENT] GET $p is JSON"
done
req POST /nope '{}'
check_eq "$STATUS/$(jget .error.code)" "404/not_found" "[$DEPLOYMENT] POST /nope is a JSON 404 too"
req GET /nope "" -H 'X-Request-Id: web-conf-404'
check_eq "$(header X-Request-Id)" web-conf-404 "[$DEPLOYMENT] an unknown path echoes X-Request-Id"

# ---- the static files: an X-Request-Id on each answer, GET and HEAD only ---------------------------------------
# API.md: every response carries X-Request-Id, the client's when it is sane; the servers serve these files
# themselves, and every other method is the app's 405 with the files' Allow.
for p in / /docs /docs/ /openapi.yaml /static/app.js /docs/swagger-ui.css; do
    req GET "$p"
    rid=$(header X-Request-Id)
    check_eq "$STATUS/$((${#rid} >= 16))" "200/1" "[$DEPLOYMENT] GET $p: 200 with a generated X-Request-Id ($rid)"
    req GET "$p" "" -H 'X-Request-Id: web-static.1:a_b'
    check_eq "$STATUS/$(header X-Request-Id)" "200/web-static.1:a_b" "[$DEPLOYMENT] GET $p echoes a sane X-Request-Id"
    req GET "$p" "" -H 'X-Request-Id: not sane <id>'
    rid=$(header X-Request-Id)
    check "[$DEPLOYMENT] GET $p replaces an X-Request-Id that is not sane ($rid)" \
        test -n "$rid" -a "$rid" != 'not sane <id>' -a "$(grep -ci '^X-Request-Id:' <<<"$HEADERS")" = 1
    req HEAD "$p"
    check_eq "$STATUS/$(header X-Request-Id | grep -c .)" "200/1" "[$DEPLOYMENT] HEAD $p: 200 with an X-Request-Id"
done
# README, "Web client, API reference, metrics": every static answer, GET and HEAD, carries the same browser
# security headers, once each (the policy is explained in lighttpd.conf; tests/browser/journey.mjs checks that
# the pages break none of it). An add_header in an nginx location drops the inherited ones: each path is checked.
csp="default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
security_want="Content-Security-Policy=$csp x1; X-Content-Type-Options=nosniff x1; Referrer-Policy=no-referrer x1; X-Frame-Options=DENY x1; "
# The four headers of the last answer as NAME=VALUE xCOUNT, on one line.
security_headers() {
    local h out=''
    for h in Content-Security-Policy X-Content-Type-Options Referrer-Policy X-Frame-Options; do
        out+="$h=$(header "$h") x$(grep -ci "^$h:" <<<"$HEADERS" || true); "
    done
    printf '%s' "$out"
}
for p in / /docs /docs/ /docs/init.js /docs/swagger-ui-bundle.js /docs/swagger-ui.css /static/app.js /static/style.css \
    /openapi.yaml; do
    for m in GET HEAD; do
        req "$m" "$p"
        check_eq "$STATUS/$(security_headers)" "200/$security_want" "[$DEPLOYMENT] $m $p carries the browser security headers"
    done
done
for m in POST PUT DELETE PATCH OPTIONS; do
    for p in / /docs /static/app.js /openapi.yaml; do
        req "$m" "$p" '{}'
        check_eq "$STATUS/$(jget .error.code)/$(header Allow)" "405/method_not_allowed/GET, HEAD" \
            "[$DEPLOYMENT] $m $p is the app's 405 with Allow: GET, HEAD"
        check "[$DEPLOYMENT] $m $p carries one X-Request-Id" test "$(grep -ci '^X-Request-Id:' <<<"$HEADERS")" = 1
    done
done

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
# %00 in the query: lighttpd refuses the request itself, the others pass it on and the app keeps it as text;
# either way a JSON 400 validation_error (API.md's code), never a bare bad_request.
auth_req "$TOKEN" GET "/chatroom/$room/messages?limit=1%00"
check_eq "$STATUS/$(jget .error.code)" "400/validation_error" "[$DEPLOYMENT] limit=1%00 is 400 validation_error"

# ---- bodies ---------------------------------------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gb-web.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# json_body FILE SIZE: a {"title":"aaa..."} body of exactly SIZE bytes
json_body() {
    {
        printf '{"title":"'
        head -c $(($2 - 12)) /dev/zero | tr '\0' a
        printf '"}'
    } >"$1"
}
# 600 KiB: past the app's 128 KiB, past a pipe's 64 KiB (CGI), below the servers' limits.
json_body "$tmp/big.json" $((600 * 1024))
auth_req "$TOKEN" POST /chatroom - --data-binary "@$tmp/big.json"
check_eq "$STATUS/$(jget .error.code)" "413/payload_too_large" "[$DEPLOYMENT] a 600 KiB body gets the app's JSON 413"
check "[$DEPLOYMENT] the 413 comes from the app" from_app
# Exactly 128 KiB is allowed by the app (then refused as a too-long title, not as too large); one byte more is not.
json_body "$tmp/limit.json" 131072
check_eq "$(stat -c %s "$tmp/limit.json")" 131072 "the test body is 131072 bytes"
auth_req "$TOKEN" POST /chatroom - --data-binary "@$tmp/limit.json"
check_eq "$STATUS/$(jget .error.code)" "400/validation_error" "[$DEPLOYMENT] a 131072-byte body is read (400, not 413)"
json_body "$tmp/over.json" 131073
auth_req "$TOKEN" POST /chatroom - --data-binary "@$tmp/over.json"
check_eq "$STATUS/$(jget .error.code)" "413/payload_too_large" "[$DEPLOYMENT] a 131073-byte body is 413"
# The webhook's cap is 1 MiB: exactly 1 MiB is read (then refused for its missing signature), one byte more is 413.
head -c 1048576 /dev/zero | tr '\0' a >"$tmp/1mib"
req POST /webhook/stripe - --data-binary "@$tmp/1mib"
check_eq "$STATUS/$(jget .error.code)" "400/validation_error" "[$DEPLOYMENT] a 1 MiB webhook body is read (400 for the signature)"
printf a >>"$tmp/1mib"
req POST /webhook/stripe - --data-binary "@$tmp/1mib"
check_eq "$STATUS/$(jget .error.code)" "413/payload_too_large" "[$DEPLOYMENT] a 1 MiB + 1 webhook body is 413"
check "[$DEPLOYMENT] the webhook's 413 comes from the app" from_app
# 3 MiB: past the web servers' own limits (2 MiB); their 413 still reaches the client as the app's JSON.
head -c $((3 * 1024 * 1024)) /dev/zero | tr '\0' a >"$tmp/3mib"
auth_req "$TOKEN" POST /chatroom - --data-binary "@$tmp/3mib"
check_eq "$STATUS/$(jget .error.code)" "413/payload_too_large" "[$DEPLOYMENT] a 3 MiB body is a JSON 413"
check "[$DEPLOYMENT] the 3 MiB 413 comes from the app" from_app

# A POST without any body and without Content-Length (curl -XPOST, no data). Apache and nginx pass it on (an
# empty body); lighttpd insists on a length (411) and hands its error to the app.
code=$(curl -s -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' --max-time 10 -X POST \
    -H "Authorization: Bearer $TOKEN" -H 'X-Request-Id: web-conf-411' "$BASE_URL/chatroom")
check "[$DEPLOYMENT] a POST without Content-Length is answered by the app" grep -qi '^X-Request-Id: web-conf-411' "$tmp/headers"
case $DEPLOYMENT in
lighttpd*)
    check_eq "$code/$(jq -r .error.code "$tmp/body" 2>/dev/null)" "411/length_required" \
        "[$DEPLOYMENT] lighttpd's 411 for a POST without Content-Length is the app's JSON"
    ;;
*)
    check_eq "$code/$(jq -r .title "$tmp/body" 2>/dev/null)" "201/New chat" \
        "[$DEPLOYMENT] a POST without a body reaches the app (chatroom with the default title)"
    ;;
esac
code=$(curl -s -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' --max-time 10 -X POST "$BASE_URL/subscribe/pro")
check_eq "$(grep -ci '^X-Request-Id:' "$tmp/headers")/$(jq -r '.error.code|type' "$tmp/body" 2>/dev/null)" "1/string" \
    "[$DEPLOYMENT] curl -XPOST /subscribe/pro (no body, no length) gets a JSON error from the app ($code)"

# ---- the servers' own errors are answered by the app ----------------------------------------------------------
# Methods the servers know nothing about, or answer themselves: the app's 405 (lighttpd: 501, still the app's).
for m in FOO TRACE PROPFIND; do
    req "$m" /chatroom
    check "[$DEPLOYMENT] $m /chatroom is answered by the app (status $STATUS)" from_app
    check_eq "$(jget '.error.code|type')" string "[$DEPLOYMENT] $m /chatroom has the JSON error shape"
done
# A GET with a body: Apache and nginx pass it on, lighttpd refuses it (400): either way the app answers.
req GET /healthz '{}'
check "[$DEPLOYMENT] a GET with a body is answered by the app (status $STATUS)" from_app
# A request target longer than the server takes (10 KB): the server's 414/431, answered by the app. Apache
# cannot hand errors of the request line to anything (its own page), so it is left out.
if [[ $DEPLOYMENT != apache* ]]; then
    req GET "/$(head -c 10000 /dev/zero | tr '\0' a)"
    check "[$DEPLOYMENT] a 10 KB request target gets the app's JSON (status $STATUS)" from_app
    check_eq "$(jget '.error.code|type')" string "[$DEPLOYMENT] ... in the JSON error shape"
fi

# ---- CORS (the stack allows https://app.example.test and http://localhost:5173) --------------------------------
allowed=https://app.example.test
req OPTIONS /chatroom "" -H "Origin: $allowed" -H 'Access-Control-Request-Method: POST' \
    -H 'Access-Control-Request-Headers: authorization, content-type'
check_status 204 "[$DEPLOYMENT] a preflight from an allowed origin is 204"
check_eq "$(header Access-Control-Allow-Origin)" "$allowed" "[$DEPLOYMENT] the preflight allows that origin"
check "[$DEPLOYMENT] the preflight allows POST ($(header Access-Control-Allow-Methods))" \
    grep -q 'POST' <<<"$(header Access-Control-Allow-Methods)"
for h in Authorization Content-Type Idempotency-Key X-Request-Id; do
    check "[$DEPLOYMENT] the preflight allows the $h header" grep -q "$h" <<<"$(header Access-Control-Allow-Headers)"
done
check "[$DEPLOYMENT] the preflight has a Max-Age" test -n "$(header Access-Control-Max-Age)"
check_eq "$(header Vary)" Origin "[$DEPLOYMENT] the preflight varies by Origin"
check "[$DEPLOYMENT] the preflight comes from the app" from_app
req OPTIONS "/chatroom/$room/message" "" -H 'Origin: http://localhost:5173' -H 'Access-Control-Request-Method: POST'
check_eq "$STATUS/$(header Access-Control-Allow-Origin)" "204/http://localhost:5173" \
    "[$DEPLOYMENT] the second allowed origin, a path with an id"
req OPTIONS /chatroom "" -H 'Origin: https://evil.example.test' -H 'Access-Control-Request-Method: POST'
check_eq "$(header Access-Control-Allow-Origin)" "" "[$DEPLOYMENT] a preflight from another origin gets no CORS headers"
check "[$DEPLOYMENT] ... and is not a 204 ($STATUS)" test "$STATUS" != 204
auth_req "$TOKEN" GET /chatroom "" -H "Origin: $allowed"
check_eq "$STATUS/$(header Access-Control-Allow-Origin)" "200/$allowed" "[$DEPLOYMENT] a GET from an allowed origin carries ACAO"
check_eq "$(header Vary)" Origin "[$DEPLOYMENT] ... and Vary: Origin"
for h in X-Request-Id Retry-After X-Cache Idempotent-Replayed WWW-Authenticate; do
    check "[$DEPLOYMENT] ... and exposes $h" grep -q "$h" <<<"$(header Access-Control-Expose-Headers)"
done
req GET /nope "" -H "Origin: $allowed"
check_eq "$STATUS/$(header Access-Control-Allow-Origin)" "404/$allowed" "[$DEPLOYMENT] errors to an allowed origin carry ACAO too"
auth_req "$TOKEN" GET /chatroom "" -H 'Origin: https://app.example.test.evil.test'
check_eq "$(header Access-Control-Allow-Origin)$(header Access-Control-Expose-Headers)" "" \
    "[$DEPLOYMENT] another origin gets no CORS headers"

# The program itself, as plain CGI: a body over the limit is read to its end before the 413 (fcgiwrap fails
# the request with its own 502 when a program leaves input unread).
bin=$(_stack_abs "$BUILD_DIR/cgi-bin/auth")
left=$(head -c 200000 /dev/zero | tr '\0' a | {
    REQUEST_METHOD=POST REQUEST_URI=/auth/signup CONTENT_LENGTH=200000 CONTENT_TYPE=application/json \
        "$bin" >"$tmp/cgi.out" 2>/dev/null || true
    wc -c
})
check "CGI: a 200000-byte body is answered 413" grep -q '^Status: 413' "$tmp/cgi.out"
check_eq "$left" 0 "CGI: the program read the whole oversized body before answering"
# A web server's error handed over in REDIRECT_STATUS is answered with that status in JSON, whatever the path.
out=$(REQUEST_METHOD=GET REQUEST_URI=/healthz REDIRECT_STATUS=413 "$bin" </dev/null 2>/dev/null | tr -d '\r')
check "CGI: REDIRECT_STATUS=413 is answered 413" grep -q '^Status: 413' <<<"$out"
check "CGI: ... as payload_too_large" grep -q '"code":"payload_too_large"' <<<"$out"
out=$(REQUEST_METHOD=GET REQUEST_URI=/auth/login REDIRECT_STATUS=200 "$bin" </dev/null 2>/dev/null | tr -d '\r')
check "CGI: REDIRECT_STATUS=200 (PHP-style) is an ordinary request (GET /auth/login: 405)" grep -q '^Status: 405' <<<"$out"
