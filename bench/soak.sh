#!/usr/bin/env bash
# bench/soak.sh: the memory of ONE FastCGI process (PROGRAM: chatroom, the default, or stream) over a million
# requests of every kind it serves.
#
# Starts a private stack (tests/stack.sh) under nginx with one spawn-fcgi process per program, signs up USERS pro
# users with a room each, then drives the program's process with wrk (-t1 -c4) and a Lua mix of its routes and
# error paths until it has served TOTAL requests. PROGRAM=chatroom:
#   reads      the cached list (and with a trailing slash), a room with its messages (and a room of 60 long
#              messages and a model answer of 1 MB: a 1.9 MB answer), message pages (with and without before=),
#              the day's usage
#   writes     posts (plain, with non-ASCII text, with an Idempotency-Key that repeats: replays), a room created
#              and deleted again (so that the lists keep their size)
#   refusals   404 (unknown room, id not a number), 401 (bad and missing token), 400 (broken JSON, content too
#              long, a lone surrogate), 413 (a body over the cap), 405 (PATCH), a CORS preflight (204)
# PROGRAM=stream (its replies are all finished: every answer comes at once, none waits):
#   reads      a message, a reply with ?wait=, a reply's event stream (its done event), the same resumed with
#              Last-Event-ID, the model answer of 1 MB read and streamed (no HEAD: wrk waits for a body after one)
#   refusals   404 (unknown message, another user's, id not a number), 401 (bad and missing token), 400 (a bad
#              wait=), 405 (POST), a CORS preflight (204)
# After each slice of SLICE seconds it prints the requests so far and the process's RSS, PSS and private memory
# (/proc/PID/smaps_rollup; private without the program's own code pages, see mem_kb). Fails (exit 1) if the
# process was replaced, a request got a 5xx, the private memory after the last slice is over MAX_PRIVATE_KB, or
# it grew by more than MAX_GROWTH_KB from the first slice that ends past WARM requests (pools, caches and the
# local copies filled) to the last.
#
#   bench/soak.sh  PROGRAM=chatroom TOTAL=1000000 SLICE=15 WARM=100000 USERS=8 MAX_PRIVATE_KB=2048 MAX_GROWTH_KB=256
#                  BUILD_DIR=build
#
# Needs a build (make) and nginx, spawn-fcgi, wrk (make deps-test). Everything it starts is stopped at exit.
set -euo pipefail

PROGRAM=${PROGRAM:-chatroom}
case $PROGRAM in
chatroom | stream) ;;
*)
    echo "bench/soak.sh: PROGRAM must be chatroom or stream" >&2
    exit 2
    ;;
esac
TOTAL=${TOTAL:-1000000}
SLICE=${SLICE:-15}
USERS=${USERS:-8}
MAX_PRIVATE_KB=${MAX_PRIVATE_KB:-2048}
MAX_GROWTH_KB=${MAX_GROWTH_KB:-256}
WARM=${WARM:-100000}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export GB_ROOT=$ROOT BUILD_DIR=${BUILD_DIR:-build}

STACK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gb-bench-soak.XXXXXX")
chmod 755 "$STACK_DIR"
# LOG_LEVEL info: the process logs its access line per request, as `make run` does.
export STACK_DIR STACK_MODE=test STACK_WEB=nginx DEPLOYMENT=soak-nginx WEB_FCGI_PROCS=1
export TEST_LOG_LEVEL=${TEST_LOG_LEVEL:-info}
# shellcheck source=../tests/stack.sh
source "$ROOT/tests/stack.sh"
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
trap bench_stack_remove EXIT

stack_services_start >/dev/null
stack_web_start >/dev/null

ids=()
: >"$STACK_DIR/users"
for ((i = 0; i < USERS; i++)); do
    token=$(bench_signup)
    room=$(curl -sf -XPOST "$BASE_URL/chatroom" -H "Authorization: Bearer $token" -d '{"title":"soak"}' | jq -r .id)
    ids+=("$(curl -sf "$BASE_URL/user/me" -H "Authorization: Bearer $token" | jq -r .id)")
    echo "$token $room" >>"$STACK_DIR/users"
done
# A second room of the second user holding 60 long messages (7,800 characters, a quote in every third: what the
# worker stores for a long model answer), then one model answer of 750,000 characters (1 MB in PostgreSQL, 1.25
# MB as JSON; a row that long grows libpq's buffers): reading the room answers about 1.9 MB.
read -r token2 _ < <(sed -n 2p "$STACK_DIR/users")
big_room=$(curl -sf -XPOST "$BASE_URL/chatroom" -H "Authorization: Bearer $token2" -d '{"title":"long"}' | jq -r .id)
psql_q "INSERT INTO messages (chatroom_id, user_id, role, content, status)
        SELECT $big_room, user_id, CASE WHEN g % 2 = 1 THEN 'user' ELSE 'model' END, repeat('é\"x', 2600), 'completed'
        FROM chatrooms, generate_series(1, 60) g WHERE id = $big_room" >/dev/null
big_msg=$(psql_q "INSERT INTO messages (chatroom_id, user_id, role, content, status)
        SELECT $big_room, user_id, 'model', repeat('é\"x', 250000), 'completed' FROM chatrooms WHERE id = $big_room
        RETURNING id")
# Each user's room gets questions and their finished replies (what the stream program answers).
psql_q "INSERT INTO messages (chatroom_id, user_id, role, content, status)
        SELECT c.id, c.user_id, CASE WHEN g % 2 = 1 THEN 'user' ELSE 'model' END,
               CASE WHEN g % 2 = 1 THEN 'question ' || g ELSE repeat('réponse ', 40 * g) END, 'completed'
        FROM chatrooms c, generate_series(1, 10) g WHERE c.title = 'soak'" >/dev/null
psql_q "UPDATE users SET tier = 'pro' WHERE id IN ($(
    IFS=,
    echo "${ids[*]}"
))" >/dev/null

prog_exe=$(realpath "$BUILD_DIR/cgi-bin/$PROGRAM")
prog_pid() {
    local found
    mapfile -t found < <(bench_pids "$prog_exe")
    ((${#found[@]} == 1)) || {
        echo "FAIL: ${#found[@]} $PROGRAM processes (want 1): ${found[*]}" >&2
        return 1
    }
    echo "${found[0]}"
}
# PID -> RSS, PSS, private (KiB), and how much of private is the program's own code: file pages of its executable
# that only this process maps here, but that every process of the program shares when there are several (make
# bench's 8), so they are not part of what one more process costs.
mem_kb() { bench_proc_mem_code "$1" "$prog_exe"; }

big=$(head -c 140000 /dev/zero | tr '\0' 'a')
long=$(head -c 8001 /dev/zero | tr '\0' 'b')
# The wrk script of each program: its mix of requests, and the status counts it prints at the end.
# The Lua both mixes end with: count(status) tallies an answer by class, done prints "soak-status 2xx 3xx 4xx 5xx"
# over every thread (each script keeps n2..n5 and the threads table).
lua_counts() {
    cat <<'LUA'
function count(status)
  if status >= 500 then n5 = n5 + 1 elseif status >= 400 then n4 = n4 + 1
  elseif status >= 300 then n3 = n3 + 1 else n2 = n2 + 1 end
end

function done(summary, latency, requests)
  local a, b, c, d = 0, 0, 0, 0
  for _, t in ipairs(threads) do a = a + t:get("n2"); b = b + t:get("n3"); c = c + t:get("n4"); d = d + t:get("n5") end
  io.write(string.format("soak-status %d %d %d %d\n", a, b, c, d))
end
LUA
}
lua_chatroom() {
    echo "local users = {"
    while read -r token room; do echo "  {\"$token\", \"$room\"},"; done <"$STACK_DIR/users"
    echo "}"
    echo "local big = '{\"content\":\"$big\"}'"
    echo "local long = '{\"content\":\"$long\"}'"
    echo "local big_room = {\"$token2\", \"$big_room\"}"
    cat <<'LUA'
-- Weights out of 1000: each request draws one kind.
local kinds = {
  {370, "list"}, {110, "room"}, {110, "page"}, {30, "page_before"}, {50, "usage"}, {40, "post"},
  {30, "post_key"}, {10, "post_utf8"}, {15, "create"}, {20, "delete"}, {45, "no_room"}, {20, "bad_id"},
  {40, "bad_token"}, {10, "no_token"}, {30, "bad_json"}, {10, "too_long"}, {10, "surrogate"}, {5, "too_big"},
  {20, "patch"}, {15, "preflight"}, {5, "slash"}, {5, "big_room"},
}
local threads = {}
function setup(thread) table.insert(threads, thread); thread:set("tid", #threads) end
n2, n3, n4, n5, created, n = 0, 0, 0, 0, {}, 0
function init(args) math.randomseed(os.time() * 1000 + (tid or 0)) end

local function hdr(u) return {["Authorization"] = "Bearer " .. u[1], ["Content-Type"] = "application/json"} end
local function pick()
  local r, acc = math.random(1000), 0
  for _, k in ipairs(kinds) do acc = acc + k[1]; if r <= acc then return k[2] end end
  return "list"
end

function request()
  n = n + 1
  local u = users[math.random(#users)]
  local h, room = hdr(u), "/chatroom/" .. u[2]
  local k = pick()
  if k == "list" then return wrk.format("GET", "/chatroom", h)
  elseif k == "slash" then return wrk.format("GET", "/chatroom/", h)
  elseif k == "room" then return wrk.format("GET", room, h)
  elseif k == "big_room" then return wrk.format("GET", "/chatroom/" .. big_room[2], hdr(big_room))
  elseif k == "page" then return wrk.format("GET", room .. "/messages?limit=20", h)
  elseif k == "page_before" then
    return wrk.format("GET", room .. "/messages?limit=5&before=" .. math.random(1, 100000), h)
  elseif k == "usage" then return wrk.format("GET", "/chatroom/usage", h)
  elseif k == "post" then return wrk.format("POST", room .. "/message", h, '{"content":"soak ' .. n .. '"}')
  elseif k == "post_key" then
    local key = "soak-" .. (tid or 0) .. "-" .. math.random(20)
    h["Idempotency-Key"] = key
    return wrk.format("POST", room .. "/message", h, '{"content":"keyed ' .. key .. '"}')
  elseif k == "post_utf8" then
    return wrk.format("POST", room .. "/message", h, '{"content":"h\\u00e9llo \\ud83c\\udf0d w\195\182rld ' .. n .. '"}')
  elseif k == "create" then
    return wrk.format("POST", "/chatroom", hdr(users[1]), '{"title":"soak room ' .. n .. '"}')
  elseif k == "delete" then
    local id = table.remove(created)
    return wrk.format("DELETE", "/chatroom/" .. (id or "999999999"), hdr(users[1]))
  elseif k == "no_room" then return wrk.format("GET", "/chatroom/999999999", h)
  elseif k == "bad_id" then return wrk.format("GET", "/chatroom/abc", h)
  elseif k == "bad_token" then return wrk.format("GET", "/chatroom", {["Authorization"] = "Bearer x.y.z"})
  elseif k == "no_token" then return wrk.format("GET", "/chatroom")
  elseif k == "bad_json" then return wrk.format("POST", room .. "/message", h, '{"content":')
  elseif k == "too_long" then return wrk.format("POST", room .. "/message", h, long)
  elseif k == "surrogate" then return wrk.format("POST", room .. "/message", h, '{"content":"\\ud800"}')
  elseif k == "too_big" then return wrk.format("POST", room .. "/message", h, big)
  elseif k == "patch" then return wrk.format("PATCH", "/chatroom", h, "{}")
  else
    return wrk.format("OPTIONS", "/chatroom", {["Origin"] = "https://app.example.test",
      ["Access-Control-Request-Method"] = "POST", ["Access-Control-Request-Headers"] = "authorization"})
  end
end

-- Rooms are created as the first user and deleted again (more deletes than creates: the lists keep their size).
function response(status, headers, body)
  count(status)
  if status == 201 and body then
    local id = body:match('^{"id":(%d+)')
    if id then table.insert(created, id) end
  end
end

LUA
    lua_counts
}
lua_stream() {
    echo "local users = {"
    while read -r token room; do
        echo "  {\"$token\", \"$room\", {$(psql_q "SELECT string_agg(id::text, ',' ORDER BY id) FROM messages
            WHERE chatroom_id = $room AND role = 'model'")}},"
    done <"$STACK_DIR/users"
    echo "}"
    echo "local big_room = {\"$token2\", \"$big_room\", $big_msg}"
    cat <<'LUA'
-- Weights out of 1000: each request draws one kind.
local kinds = {
  {250, "message"}, {120, "wait"}, {230, "stream"}, {40, "resume"}, {8, "big"}, {7, "big_stream"},
  {60, "no_message"}, {40, "not_mine"}, {25, "bad_id"}, {60, "bad_token"}, {20, "no_token"}, {30, "bad_wait"},
  {50, "post"}, {30, "preflight"},
}
local threads = {}
function setup(thread) table.insert(threads, thread); thread:set("tid", #threads) end
n2, n3, n4, n5 = 0, 0, 0, 0
function init(args) math.randomseed(os.time() * 1000 + (tid or 0)) end

local function pick()
  local r, acc = math.random(1000), 0
  for _, k in ipairs(kinds) do acc = acc + k[1]; if r <= acc then return k[2] end end
  return "message"
end

function request()
  local u = users[math.random(#users)]
  local h = {["Authorization"] = "Bearer " .. u[1]}
  local msg = "/chatroom/" .. u[2] .. "/messages/" .. u[3][math.random(#u[3])]
  local k = pick()
  if k == "message" then return wrk.format("GET", msg, h)
  elseif k == "wait" then return wrk.format("GET", msg .. "?wait=" .. math.random(30), h)
  elseif k == "stream" then return wrk.format("GET", msg .. "/stream", h)
  elseif k == "resume" then h["Last-Event-ID"] = "0-1"; return wrk.format("GET", msg .. "/stream", h)
  elseif k == "big" or k == "big_stream" then
    local path = "/chatroom/" .. big_room[2] .. "/messages/" .. big_room[3]
    return wrk.format("GET", k == "big" and path or path .. "/stream", {["Authorization"] = "Bearer " .. big_room[1]})
  elseif k == "no_message" then return wrk.format("GET", "/chatroom/" .. u[2] .. "/messages/999999999/stream", h)
  elseif k == "not_mine" then
    return wrk.format("GET", "/chatroom/" .. big_room[2] .. "/messages/" .. big_room[3], h)
  elseif k == "bad_id" then return wrk.format("GET", "/chatroom/" .. u[2] .. "/messages/abc", h)
  elseif k == "bad_token" then return wrk.format("GET", msg .. "/stream", {["Authorization"] = "Bearer x.y.z"})
  elseif k == "no_token" then return wrk.format("GET", msg)
  elseif k == "bad_wait" then return wrk.format("GET", msg .. "?wait=31", h)
  elseif k == "post" then return wrk.format("POST", msg .. "/stream", h, "{}")
  else
    return wrk.format("OPTIONS", msg .. "/stream", {["Origin"] = "https://app.example.test",
      ["Access-Control-Request-Method"] = "GET", ["Access-Control-Request-Headers"] = "authorization"})
  end
end

function response(status, headers, body)
  count(status)
end

LUA
    lua_counts
}
"lua_$PROGRAM" >"$STACK_DIR/soak.lua"

read -r token1 room1 <"$STACK_DIR/users"
pid=$(prog_pid)
served=0 first='' first_at=0 c2=0 c3=0 c4=0 c5=0
while ((served < TOTAL)); do
    out=$(wrk -t1 -c4 -d"${SLICE}s" -s "$STACK_DIR/soak.lua" "$BASE_URL")
    read -r _ a b c d < <(grep '^soak-status' <<<"$out")
    served=$((served + $(awk '/ requests in / {print $1}' <<<"$out")))
    c2=$((c2 + a)) c3=$((c3 + b)) c4=$((c4 + c)) c5=$((c5 + d))
    now=$(prog_pid)
    [[ $now == "$pid" ]] || {
        echo "FAIL: the $PROGRAM process $pid was replaced by $now after $served requests"
        exit 1
    }
    # rooms whose delete a slice's end cut off: deleted here, so that the first user's list keeps its size
    for id in $(curl -sf "$BASE_URL/chatroom" -H "Authorization: Bearer $token1" |
        jq -r --arg keep "$room1" '.chatrooms[] | select((.id | tostring) != $keep) | .id'); do
        curl -sf -o /dev/null -XDELETE "$BASE_URL/chatroom/$id" -H "Authorization: Bearer $token1"
    done
    read -r rss pss priv code < <(mem_kb "$pid")
    priv=$((priv - code))
    ((served < WARM)) || [[ -n $first ]] || first=$priv first_at=$served
    echo "soak: $served requests: RSS $rss KiB, PSS $pss KiB, private $priv KiB (+ $code KiB of the program's code)"
done
[[ -n $first ]] || first=$priv first_at=$served # a run shorter than WARM: no growth to tell
growth=$((priv - first))
echo "soak: one $PROGRAM process, $served requests (2xx $c2, 3xx $c3, 4xx $c4, 5xx $c5): private $priv KiB" \
    "(+ $code KiB of the program's code; RSS $rss, PSS $pss), $first KiB after $first_at: grew $growth KiB"
((c5 == 0)) || {
    echo "FAIL: $c5 requests got a 5xx; the stack's error lines:"
    grep -h -i -E 'error|fatal|panic' "$STACK_DIR"/*.log | tail -n 20
    exit 1
}
((priv <= MAX_PRIVATE_KB)) || {
    echo "FAIL: private memory $priv KiB after $served requests (limit $MAX_PRIVATE_KB KiB)"
    exit 1
}
((growth <= MAX_GROWTH_KB)) || {
    echo "FAIL: private memory grew by $growth KiB from $first_at to $served requests (limit $MAX_GROWTH_KB KiB)"
    exit 1
}
echo "ok: flat after $served requests"
