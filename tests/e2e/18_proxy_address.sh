#!/usr/bin/env bash
# README, "TLS" (behind a proxy): the app takes the client's address from REMOTE_ADDR only. With the shipped
# configuration an X-Forwarded-For header (any client can send one) changes nothing. With the README's snippet
# for this deployment's web server added (the proxy's address 10.0.0.5 replaced by 127.0.0.1), a second web
# server in front of the same PostgreSQL and Redis takes the address the proxy names, and only from the proxy.
# What the app saw is read from the per-address login counter (auth_throttle, scope login_addr), which keys on
# REMOTE_ADDR: one wrong password counts one failure against it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# lighttpd-asan runs lighttpd.conf as lighttpd does: the config is what is tested here, once per file.
[[ $DEPLOYMENT == lighttpd-asan ]] && exit 0
web=${STACK_WEB:-lighttpd}
case $web in
lighttpd) server=lighttpd ;;
apache) server=Apache ;;
nginx | nginxcgi) server=nginx ;;
*)
    check "a README proxy snippet for web server $web" false
    exit 0
    ;;
esac

# The README's bullet for SERVER in the paragraph that starts with "- nginx: `set_real_ip_from": its code spans,
# one per line (a bare word such as `server` in "the `server` block" is prose, not configuration).
snippet() {
    awk -v s="- $1: " '
        /^- nginx: `set_real_ip_from/ { on = 1 }
        on && /^$/ { exit }
        on && /^- / { if (b != "") exit; if (index($0, s) == 1) { b = $0; next } }
        on && b != "" && /^  / { b = b " " $0; next }
        on && b != "" { exit }
        END {
            while (match(b, /`[^`]+`/)) {
                span = substr(b, RSTART + 1, RLENGTH - 2)
                b = substr(b, RSTART + RLENGTH)
                if (span !~ /^[a-z]+$/) print span
            }
        }' "$GB_ROOT/README.md"
}
extra=$(snippet "$server")
check "the README has the $server lines for a proxy in front" test -n "$extra"
check "... trusting the example proxy 10.0.0.5" grep -q '10\.0\.0\.5' <<<"$extra"
extra=${extra//10.0.0.5/127.0.0.1}

# fresh ADDR: ADDR with whatever an earlier run counted against it forgotten.
fresh() {
    psql_q "DELETE FROM auth_throttle WHERE subject = '$1'" >/dev/null
    echo "$1"
}
# A random loopback address to send from (curl --interface), and a TEST-NET-3 address for the header.
new_addr() { fresh "$(rand_loopback)"; }
net_addr() { fresh "203.0.113.$((RANDOM % 254 + 1))"; }
# The processes of the second web server: its command line or its programs' GB_STATE_DIR names its directory.
proxy_procs() {
    local p
    for p in /proc/[0-9]*; do
        if grep -qF "$proxy_dir/" "$p/cmdline" 2>/dev/null ||
            tr '\0' '\n' 2>/dev/null <"$p/environ" | grep -qxF "GB_STATE_DIR=$proxy_dir/web"; then
            echo "${p#/proc/}"
        fi
    done
}
counted() {
    psql_q "SELECT coalesce((SELECT count FROM auth_throttle WHERE scope = 'login_addr' AND subject = '$1'), 0)"
}
# wrong_login FROM FORWARDED_FOR: one wrong password for an unknown number, from address FROM
wrong_login() {
    req POST /auth/login "{\"mobile\":\"$(rand_mobile)\",\"password\":\"not the password\"}" \
        --interface "$1" -H "X-Forwarded-For: $2"
}

# ---- the shipped configuration: the header is ignored ----
A=$(new_addr) X=$(net_addr)
wrong_login "$A" "$X"
check_status 401 "a wrong password with a forged X-Forwarded-For is 401"
check_eq "$(counted "$A")/$(counted "$X")" "1/0" "the shipped $web config counts it against the sender, not the header"

# ---- the README's lines added: a second web server ----
proxy_dir=$STACK_DIR/proxy-web-$DEPLOYMENT
proxy_stop() { (export STACK_DIR=$proxy_dir DEPLOYMENT=proxy-$DEPLOYMENT && stack_web_stop) >/dev/null 2>&1 || true; }
trap proxy_stop EXIT
rm -rf "$proxy_dir"
mkdir -p "$proxy_dir"
proxy_url=$(export STACK_DIR=$proxy_dir DEPLOYMENT=proxy-$DEPLOYMENT STACK_WEB=$web STACK_WEB_CONF_EXTRA=$extra &&
    stack_web_start >/dev/null && printf '%s\n' "$BASE_URL") || proxy_url=''
check "$web starts with the README's proxy lines (${extra//$'\n'/ | })" test -n "$proxy_url"
if [[ -z $proxy_url ]]; then
    tail -n 20 "$proxy_dir"/*.log 2>/dev/null || true
    exit 0
fi
main_url=$BASE_URL
BASE_URL=$proxy_url

local_before=$(counted 127.0.0.1)
X=$(net_addr)
wrong_login 127.0.0.1 "$X"
check_status 401 "through the proxy's address: 401"
check_eq "$(counted "$X")" 1 "the failure counts against the client address the proxy names"
check_eq "$(counted 127.0.0.1)" "$local_before" "... not against the proxy"

B=$(new_addr) X=$(net_addr)
wrong_login "$B" "$X"
check_eq "$(counted "$B")/$(counted "$X")" "1/0" "from any other address the header is still ignored"

req GET /healthz
check_status 200 "the app answers normally behind the changed config"

proxy_stop
trap - EXIT
BASE_URL=$main_url
check_eq "$(proxy_procs | wc -l)" 0 "the second web server and its programs are gone"
