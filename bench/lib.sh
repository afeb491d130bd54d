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

# Pids of the running processes whose executable is the file EXE (an absolute, resolved path).
bench_pids() {
    local pid
    for pid in $(pgrep -f "$(basename "$1")" || true); do
        [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$1" ]] && echo "$pid"
    done
    return 0
}

# Memory of process PID (/proc/PID/smaps_rollup): "RSS PSS private" in KiB; "0 0 0" when it is gone.
bench_proc_mem() {
    awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} /^Private_(Clean|Dirty):/ {v+=$2} END {print r+0, p+0, v+0}' \
        "/proc/$1/smaps_rollup" 2>/dev/null || echo "0 0 0"
}

# bench_proc_mem_code PID [EXE]: "RSS PSS private code" (KiB), code being the private clean pages of the file EXE
# (the program's own code, which several processes of it share), or without EXE of every mapped file (the code of
# the program and of the libraries that no other process on the machine maps at that moment: 1 MB and more for
# libcurl's, which only the worker and subscribe load). Private memory less code is what the process wrote.
bench_proc_mem_code() {
    local code
    code=$(awk -v exe="${2:-}" '/^[0-9a-f]+-[0-9a-f]+ / {mine = (exe == "" ? $6 ~ /^\// : $6 == exe)}
        mine && /^Private_Clean:/ {c += $2} END {print c + 0}' "/proc/$1/smaps" 2>/dev/null || echo 0)
    echo "$(bench_proc_mem "$1") $code"
}
