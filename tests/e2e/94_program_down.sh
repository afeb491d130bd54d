#!/usr/bin/env bash
# Every process of the auth program killed at once (SIGKILL) while logins are in flight, and requests while it
# is down. The auth program also answers the web server's own errors (its error handler), so this is the case
# where that handler fails too: every answer must still be the JSON error shape with the client's X-Request-Id
# (503 `unavailable`, or the login's own answer), never the web server's HTML page (lighttpd: server-error.lua,
# nginx: @gb_unavailable). Then the program comes back (lighttpd respawns it; under nginx its service manager
# does, here stack_respawn_program) and answers again.
# Deployments: lighttpd, lighttpd-asan and nginx. Apache's ErrorDocument has no such fallback (README, "Failure
# behaviour"); nginx-cgi runs a process per request, there is no pool to kill.
set -euo pipefail
case ${DEPLOYMENT:-lighttpd} in
lighttpd | lighttpd-asan | nginx) ;;
*) exit 0 ;;
esac
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

mobile=$(rand_mobile)
req POST /auth/signup "{\"mobile\":\"$mobile\",\"password\":\"password123\"}"
check_status 201 "signup with a password"

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# From an address of its own: the tries cut short keep their per-address count (README), which must not reach
# the other scripts' 127.0.0.1.
addr=$(rand_loopback)
login() { # N: one login; its headers and body in $dir/N.head, $dir/N.body
    curl -s --interface "$addr" --max-time 20 -o "$dir/$1.body" -D "$dir/$1.head" -X POST "$BASE_URL/auth/login" \
        -H 'Content-Type: application/json' -H "X-Request-Id: down-$1" \
        -d "{\"mobile\":\"$mobile\",\"password\":\"password123\"}" || true
}

for i in $(seq 1 12); do login "$i" & done
sleep 0.05 # the logins are hashing (about 75 ms each)
mapfile -t pids < <(stack_program_pids auth)
check "the auth program has processes to kill" test "${#pids[@]}" -gt 0
kill -KILL "${pids[@]}" 2>/dev/null || true
wait
for i in $(seq 13 16); do login "$i"; done # while it is down (lighttpd may be respawning it)

html=0 bad=()
for i in $(seq 1 16); do
    st=$(awk 'NR == 1 { print $2 }' "$dir/$i.head")
    ct=$(awk -F': ' 'tolower($1) == "content-type" { sub(/\r$/, "", $2); print $2 }' "$dir/$i.head")
    id=$(awk -F': ' 'tolower($1) == "x-request-id" { sub(/\r$/, "", $2); print $2 }' "$dir/$i.head")
    grep -qi '<html' "$dir/$i.body" && html=$((html + 1))
    case $st in
    200) jq -e '.access_token | strings' "$dir/$i.body" >/dev/null 2>&1 || bad+=("$i: 200 without a token") ;;
    503)
        [[ $(jq -r '.error.code' "$dir/$i.body" 2>/dev/null) == unavailable ]] || bad+=("$i: 503 $(head -c 80 "$dir/$i.body")")
        grep -qi '^retry-after: 1' "$dir/$i.head" || bad+=("$i: 503 without Retry-After: 1")
        ;;
    *) bad+=("$i: status ${st:-none} $(head -c 80 "$dir/$i.body")") ;;
    esac
    [[ $ct == application/json* ]] || bad+=("$i: Content-Type ${ct:-none}")
    [[ $id == "down-$i" ]] || bad+=("$i: X-Request-Id ${id:-none}")
done
check_eq "$html" 0 "no answer is the web server's HTML page"
check_eq "${bad[*]:-}" "" \
    "every answer is a login (200) or 503 unavailable (Retry-After: 1), in JSON, with the client's X-Request-Id"

stack_respawn_program auth
for _ in $(seq 1 50); do
    req GET /no-such-path
    [[ $STATUS == 404 ]] && break
    sleep 0.2
done
check_status 404 "the auth program answers again (its JSON 404 for an unknown path)"
check_eq "$(jget .error.code)" not_found "... in the JSON error shape"
