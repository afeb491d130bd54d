#!/usr/bin/env bash
# README.md "Production", followed literally as root, into a temporary tree, against the test stack: every
# ```sh block of the walk-through (and the by-hand spawn-fcgi block of "Apache") runs as written, with only
#   - the places moved under a temporary directory T (/usr/local/ -> T/usr/local/, /etc/gemini-backend,
#     /run/gemini-backend, /var/log/gemini-backend, /etc/redis/redis.conf) and port 8080 -> a free port;
#   - the account "gemini" mapped to "nobody" (useradd is recorded, not run: the test does not create accounts);
#   - what changes the machine recorded instead of run: apt-get, git, scripts/deps.sh, pg_createcluster,
#     systemctl, journalctl, runuser -u postgres (the stack's PostgreSQL is already there);
#   - psql reaching the stack's cluster (PGHOST/PGUSER), and after step 3 the stack's DATABASE_URL/REDIS_URL put
#     in place of the local servers' (the lines step 3 wrote are checked first), METRICS_DIR moved under T.
# Checked: the install, the settings step's result, --check as the unprivileged account, the units step 5
# enables exist; lighttpd + worker by hand answer and run as that account (nothing of ours as root) with the
# request log in the log directory; the spawn-fcgi + Apache by-hand block serves too, its programs as that
# account, their request log in /var/log/gemini-backend/<program>.log (not /dev/null). Runs once, as root only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

read -r -a first <<<"${DEPLOYMENTS:-lighttpd}"
[[ $DEPLOYMENT == "${first[0]:-lighttpd}" ]] || exit 0
if ((EUID != 0)); then
    echo "# 08_production: the walk-through is for root (not root here): skipped"
    exit 0
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readme=$root/README.md
T=$(mktemp -d "${TMPDIR:-/tmp}/gb-prod.XXXXXX")
chmod 755 "$T"
TUSER=nobody
TGROUP=$(id -gn nobody)
PORT_W=$(_stack_free_port)
BG_PIDS=()
pg_sock=$STACK_DIR/pg
redis_sock=$STACK_DIR/redis.sock
pg_mode=$(stat -c %a "$pg_sock")
redis_mode=$(stat -c %a "$redis_sock")
cleanup() {
    local p
    for p in "${BG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for f in "$T"/run/gemini-backend/*.pid; do [[ -f $f ]] && xargs kill <"$f" 2>/dev/null || true; done
    sleep 1
    chmod "$pg_mode" "$pg_sock" 2>/dev/null || true
    chmod "$redis_mode" "$redis_sock" 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
# The unprivileged account reaches the stack's PostgreSQL and Redis sockets (restored at the end).
chmod 711 "$pg_sock"
chmod 777 "$redis_sock"

# block FIRST_LINE: the ```sh block of the README whose first line is FIRST_LINE.
block() {
    awk -v want="$1" '/^```sh$/ { inb = 1; n = 0; next } inb && /^```$/ { if (hit) exit; inb = 0; next }
        inb { n++; if (n == 1 && $0 == want) hit = 1; if (hit) print }' "$readme"
}
rewrite() {
    sed -e "s|/usr/local/src/gemini-backend|$root|g" -e "s|/usr/local/|$T/usr/local/|g" \
        -e "s|/etc/gemini-backend|$T/etc/gemini-backend|g" -e "s|/run/gemini-backend|$T/run/gemini-backend|g" \
        -e "s|/var/log/gemini-backend|$T/log|g" -e "s|/etc/redis/redis.conf|$T/redis.conf|g" -e "s|8080|$PORT_W|g"
}
# The stand-ins, defined in front of every block.
cat >"$T/preamble.sh" <<EOF
CALLS=$T/calls
root=$root
rec() { echo "\$*" >>"\$CALLS"; }
apt-get() { rec apt-get "\$@"; }
git() { rec git "\$@"; }
scripts/deps.sh() { rec deps.sh "\$@"; }
pg_createcluster() { rec pg_createcluster "\$@"; }
systemctl() { rec systemctl "\$@"; }
journalctl() { rec journalctl "\$@"; }
useradd() { rec useradd "\$@"; }
make() { command make --no-print-directory -C "$root" BUILD="$BUILD_DIR" PREFIX="$T/usr/local" SYSCONFDIR="$T/etc" \
    GB_RUNDIR="$T/run/gemini-backend" GB_HTTP_PORT="$PORT_W" "\$@"; }
mapacct() { # the arguments with the account gemini after -u/-o (user) and -g (group) replaced: MAPPED
    local a prev='' out=()
    for a in "\$@"; do
        if [[ \$a == gemini ]]; then
            case \$prev in -u | -o) a=$TUSER ;; -g) a=$TGROUP ;; esac
        fi
        out+=("\$a")
        prev=\$a
    done
    MAPPED=("\${out[@]}")
}
chgrp() { [[ \$1 == gemini ]] && set -- "$TGROUP" "\${@:2}"; command chgrp "\$@"; }
install() { mapacct "\$@"; command install "\${MAPPED[@]}"; }
spawn-fcgi() { mapacct "\$@"; command spawn-fcgi "\${MAPPED[@]}"; }
runuser() { # in a background job (a subshell) it becomes runuser itself, so that killing the job stops it
    if [[ \$1 == -u && \$2 == postgres ]]; then rec runuser "\$@"; return 0; fi
    mapacct "\$@"
    if [[ \$BASHPID != "\$\$" ]]; then exec runuser "\${MAPPED[@]}"; fi
    command runuser "\${MAPPED[@]}"
}
export PGHOST=$pg_sock PGUSER=postgres
EOF
# run_block NAME FIRST_LINE [AFTER] [BEFORE]: the rewritten block as a script (BEFORE and AFTER around it), in a
# clean environment (the test's own settings must not leak in: the real environment wins over ENV_FILE); its
# output in T/NAME.out.
run_block() {
    local body
    body=$(block "$2")
    if [[ -z $body ]]; then
        echo "README has no block starting with '$2'" >"$T/$1.out"
        return 1
    fi
    { cat "$T/preamble.sh"; printf '%s\n' "${4:-}"; rewrite <<<"$body"; printf '%s\n' "${3:-}"; } >"$T/$1.sh"
    (cd "$T" && env -i PATH="$PATH" HOME=/root bash -e "$T/$1.sh") >"$T/$1.out" 2>&1
}
out_of() { cat "$T/$1.out"; }

# ---- 1. build and install ----
rc=0
run_block install '# 1. build and install (replace the URL by the one of your copy of gemini-backend)' || rc=$?
check_eq "$rc" 0 "step 1 runs ($(tail -n 1 "$T/install.out" | cut -c1-160))"
check "step 1 installs the programs" test -x "$T/usr/local/lib/gemini-backend/auth" -a -x "$T/usr/local/lib/gemini-backend/worker"
check "step 1 creates a system account with no login shell" grep -q 'useradd --system .*--shell /usr/sbin/nologin gemini' "$T/calls"
check_eq "$(stat -c '%a %G' "$T/etc/gemini-backend/env")" "640 $TGROUP" "step 1 leaves the settings readable by the account only"

# ---- 2. + 3. database, Redis, settings (one shell, as the README says) ----
rc=0
run_block dbset '# 2. database and Redis' "$(block '# 3. settings (run in the same shell as step 2, which set REDIS_PASSWORD)' | rewrite)" || rc=$?
check_eq "$rc" 0 "steps 2 and 3 run ($(tail -n 2 "$T/dbset.out" | tr '\n' ' ' | cut -c1-200))"
check "step 2 creates the role and the database as postgres" grep -q 'runuser -u postgres -- psql -c CREATE ROLE gemini LOGIN' "$T/calls"
check "step 2 applied the schema as the account" test "$(psql_q 'SELECT count(*) FROM schema_version')" -ge 1
check "step 2 gives Redis a password and persistence" grep -Eq '^requirepass [0-9a-f]{48}$' "$T/redis.conf"
env_file=$T/etc/gemini-backend/env
check "step 3 writes a 96-hex-digit JWT_SECRET" grep -Eq '^JWT_SECRET=[0-9a-f]{96}$' "$env_file"
check "step 3 writes DATABASE_URL" grep -qx "DATABASE_URL='postgresql:///gemini?host=/var/run/postgresql'" "$env_file"
check "step 3 writes REDIS_URL with step 2's password" \
    grep -qx "REDIS_URL=redis://:$(sed -n 's/^requirepass //p' "$T/redis.conf")@127.0.0.1:6379/0" "$env_file"
check "step 3 sets AI_PROVIDER=offline" grep -qx 'AI_PROVIDER=offline' "$env_file"
# Without systemd (step 5's by-hand case: a container) systemctl cannot start the servers: step 2 names the way.
step2=$(block '# 2. database and Redis')
check "step 2 says how to start PostgreSQL without systemd" grep -q '# without systemd: pg_ctlcluster 15 main start$' <<<"$step2"
check "step 2 says how to start Redis without systemd" grep -q '# without systemd: service redis-server restart$' <<<"$step2"
# Steps 2 and 3 run again (an upgrade, a retry after a typo) keep the one Redis password the settings hold.
redis_url=$(grep '^REDIS_URL=' "$env_file")
rc=0
run_block dbset2 '# 2. database and Redis' "$(block '# 3. settings (run in the same shell as step 2, which set REDIS_PASSWORD)' | rewrite)" || rc=$?
check_eq "$rc" 0 "steps 2 and 3 run again ($(tail -n 2 "$T/dbset2.out" | tr '\n' ' ' | cut -c1-200))"
check_eq "$(grep -c '^requirepass ' "$T/redis.conf")/$(grep '^REDIS_URL=' "$env_file")" "1/$redis_url" \
    "... and keep the one Redis password, the one REDIS_URL holds"
# The test stack's servers in place of the local ones.
grep -v -e '^DATABASE_URL=' -e '^REDIS_URL=' "$env_file" >"$T/env.new"
printf "DATABASE_URL='%s'\nREDIS_URL=%s\n" "$DATABASE_URL" "$REDIS_URL" >>"$T/env.new"
# ... and the default METRICS_DIR (/run/gemini-backend/metrics) moved like the other places.
printf 'METRICS_DIR=%s\n' "$T/run/gemini-backend/metrics" >>"$T/env.new"
cat "$T/env.new" >"$env_file"

# ---- 4. check ----
rc=0
run_block check '# 4. check' || rc=$?
check_eq "$rc" 0 "step 4: --check as the account passes ($(tail -n 2 "$T/check.out" | tr '\n' ' '))"
check "step 4 says all checks passed" grep -q 'all checks passed' "$T/check.out"

# ---- 5. systemd ----
rc=0
run_block systemd '# 5. start (systemd)' '' 'curl() { rec curl "$@"; }' || rc=$?
check_eq "$rc" 0 "step 5 (systemd) runs"
missing=''
for unit in $(sed -n 's/^systemctl enable --now //p' "$T/calls"); do
    file=$T/usr/local/lib/systemd/system/$unit.service
    [[ $unit == *@* ]] && file=$T/usr/local/lib/systemd/system/${unit%%@*}@.service
    [[ -f $file ]] || missing+=" $unit"
done
check "step 5 enables units that make install installed (missing:${missing:- none})" test -z "$missing"

# ---- 5. by hand: lighttpd and the worker as the account ----
rc=0
run_block byhand '# 5. start (by hand, without systemd)' 'jobs -p >"'"$T"'/byhand.pids"' || rc=$?
mapfile -t pids <"$T/byhand.pids" 2>/dev/null || pids=()
BG_PIDS+=("${pids[@]}")
check_eq "$rc" 0 "step 5 by hand runs"
check "step 5 by hand: /healthz answers ok" grep -q '"status":"ok"' "$T/byhand.out"
BASE_URL=http://127.0.0.1:$PORT_W
req GET /nope
check_status 404 "the by-hand lighttpd answers GET /nope with the app's JSON 404"
M=$(rand_mobile)
req POST /auth/signup "{\"mobile\":\"$M\"}"
check_status 201 "the by-hand lighttpd signs a user up"
req POST /auth/send-otp "{\"mobile\":\"$M\"}"
check_eq "$STATUS/$(jget '.otp // "none"')" "200/none" "production: send-otp keeps the code out of the response"
owners() { # the users of this lighttpd and of every process running an installed program
    local pids
    pids=$(pgrep -d, -f "^($T/usr/local/lib/gemini-backend/|lighttpd -D -f $T/)" || true)
    [[ -n $pids ]] || return 0
    ps -o user= -p "$pids" | sort | uniq -c | tr -s ' ' | tr '\n' ';'
}
who=$(owners)
check "lighttpd, its programs and the worker run, none as root ($who)" test -n "$who" -a -z "$(grep -w root <<<"$who" || true)"
check "... as the account ($who)" grep -q " $TUSER;" <<<"$who"
sleep 0.5
check "the request log is in /var/log/gemini-backend/lighttpd.log" grep -q 'POST /auth/signup 201' "$T/log/lighttpd.log"
req GET /metrics
check_status 200 "GET /metrics answers the loopback client"
check "... with the signups counted (the programs can write /run/gemini-backend/metrics)" \
    grep -q 'route="/auth/signup".*status="201"' <<<"$BODY"
check_eq "$(stat -c %U "$T/run/gemini-backend/metrics")" "$TUSER" "the metrics directory belongs to the account"
check "the worker logs to /var/log/gemini-backend/worker.log" test -s "$T/log/worker.log"
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for _ in $(seq 1 50); do
    [[ -z $(owners) ]] && break
    sleep 0.2
done
check_eq "$(owners)" "" "killing the two jobs stops lighttpd, its programs and the worker"

# start_block NAME BODY: the README block BODY after the preamble, as $T/NAME.sh, started in the background in a
# clean environment (output in $T/NAME.out); then waits for /healthz: its status in $code (000: no answer in 20 s).
start_block() {
    { cat "$T/preamble.sh"; rewrite <<<"$2"; } >"$T/$1.sh"
    (cd "$T" && exec env -i PATH="$PATH" HOME=/root bash -e "$T/$1.sh") >"$T/$1.out" 2>&1 &
    BG_PIDS+=($!)
    code=000
    for _ in $(seq 1 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$BASE_URL/healthz" || true)
        [[ $code != 000 ]] && break
        sleep 0.2
    done
}

# ---- spawn-fcgi + Apache by hand (Deployment, Apache) ----
if command -v apache2 >/dev/null 2>&1 && command -v spawn-fcgi >/dev/null 2>&1; then
    body=$(block 'install -d -m 0755 /run/gemini-backend /run/gemini-backend/htdocs')
    check "README has the by-hand spawn-fcgi block" grep -q 'spawn-fcgi' <<<"$body"
    start_block apache "$body"
    check_eq "$code" 200 "spawn-fcgi + Apache by hand: /healthz is 200 ($(tail -n 2 "$T/apache.out" | tr '\n' ' '))"
    M=$(rand_mobile)
    req POST /auth/signup "{\"mobile\":\"$M\"}"
    check_status 201 "spawn-fcgi + Apache by hand signs a user up"
    users=$(for p in auth chatroom subscribe webhook; do xargs ps -o user= -p <"$T/run/gemini-backend/$p.pid"; done |
        sort -u | tr '\n' ' ')
    check_eq "$users" "$TUSER " "the programs under spawn-fcgi run as the account"
    sleep 0.5
    check "their request log is in /var/log/gemini-backend/auth.log, not /dev/null" grep -q 'POST /auth/signup 201' "$T/log/auth.log"
fi

# ---- fcgiwrap + nginx-cgi.conf by hand (Deployment, nginx, "Plain CGI with fcgiwrap") ----
if command -v nginx >/dev/null 2>&1 && command -v fcgiwrap >/dev/null 2>&1 && command -v spawn-fcgi >/dev/null 2>&1; then
    body=$(block '# plain CGI by hand (without systemd)')
    check "README has the by-hand fcgiwrap block" grep -q 'fcgiwrap' <<<"$body"
    # the Apache block above stopped as its comment says: Apache, then the programs
    for f in "$T"/run/gemini-backend/*.pid; do [[ -f $f ]] && { xargs kill <"$f" 2>/dev/null || true; rm -f "$f"; }; done
    for _ in $(seq 1 50); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$BASE_URL/healthz" || true) == 000 ]] && break
        sleep 0.2
    done
    start_block cgi "$body"
    check_eq "$code" 200 "fcgiwrap + nginx-cgi by hand: /healthz is 200 ($(tail -n 2 "$T/cgi.out" | tr '\n' ' '))"
    M=$(rand_mobile)
    req POST /auth/signup "{\"mobile\":\"$M\"}"
    check_status 201 "fcgiwrap + nginx-cgi by hand signs a user up"
    users=$(xargs ps -o user= -p <"$T/run/gemini-backend/fcgiwrap.pid" | sort -u | tr '\n' ' ')
    check_eq "$users" "$TUSER " "fcgiwrap runs as the account"
    sleep 0.5
    check "the programs' request log is in /var/log/gemini-backend/cgi.log" grep -q 'POST /auth/signup 201' "$T/log/cgi.log"
fi
