#!/usr/bin/env bash
# `make install` / `make uninstall`: the FHS layout under DESTDIR with the default PREFIX, the paths written into
# the installed units and nginx configurations point at installed files, the installed programs answer
# --version and --check (against the test stack), an edited settings file survives a re-install and an
# uninstall; an install to real paths under a temporary PREFIX passes `systemd-analyze verify` (every unit,
# templates instantiated) and the web servers' own syntax checks of the installed configurations.
# Runs once, on the first deployment.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

read -r -a first <<<"${DEPLOYMENTS:-lighttpd}"
[[ $DEPLOYMENT == "${first[0]:-lighttpd}" ]] || exit 0
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gb-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
programs=(auth chatroom subscribe webhook worker)
units=(gemini-apache.service gemini-fcgi@.service gemini-fcgiwrap.service gemini-lighttpd.service
    gemini-nginx.service gemini-worker@.service)

mk() { make --no-print-directory -C "$root" BUILD="$BUILD_DIR" "$@"; }
mode() { stat -c %a "$1"; }

# ---- DESTDIR, default PREFIX ----
D=$tmp/dest
rc=0
out=$(mk install DESTDIR="$D" 2>&1) || rc=$?
check_eq "$rc" 0 "make install DESTDIR=... succeeds ($(tail -n 1 <<<"$out" | cut -c1-160))"
# (read after the install, which relinks the programs when the version changed, e.g. a tree that became dirty)
version=$(sed -n 's/^#define GB_VERSION "\(.*\)"$/\1/p' "$root/$BUILD_DIR/version.h" 2>/dev/null ||
    sed -n 's/^#define GB_VERSION "\(.*\)"$/\1/p' "$BUILD_DIR/version.h")
for p in "${programs[@]}"; do
    check "program $p installed in /usr/local/lib/gemini-backend, mode 755" \
        test -x "$D/usr/local/lib/gemini-backend/$p" -a "$(mode "$D/usr/local/lib/gemini-backend/$p")" = 755
done
for u in "${units[@]}"; do
    check "unit $u installed in /usr/local/lib/systemd/system" test -s "$D/usr/local/lib/systemd/system/$u"
done
for f in lighttpd.conf apache.conf nginx.conf nginx-cgi.conf; do
    check "config $f installed in /etc/gemini-backend and as an example" \
        cmp -s "$D/etc/gemini-backend/$f" "$D/usr/local/share/gemini-backend/examples/$f"
done
check "the web root is installed (index.html, /docs and its init.js, openapi.yaml)" \
    test -s "$D/usr/local/share/gemini-backend/www/index.html" -a -s "$D/usr/local/share/gemini-backend/www/docs/init.js" \
    -a -s "$D/usr/local/share/gemini-backend/www/docs/index.html" -a -s "$D/usr/local/share/gemini-backend/www/openapi.yaml"
check "schema.sql is installed" cmp -s "$root/schema.sql" "$D/usr/local/share/gemini-backend/schema.sql"
check "README and LICENSE are installed in /usr/local/share/doc/gemini-backend" \
    test -s "$D/usr/local/share/doc/gemini-backend/README.md" -a -s "$D/usr/local/share/doc/gemini-backend/LICENSE"
check_eq "$(mode "$D/etc/gemini-backend/env")" 600 "the settings file /etc/gemini-backend/env is mode 0600"
check "the settings file says APP_ENV=production" grep -qx 'APP_ENV=production' "$D/etc/gemini-backend/env"
check "nothing is installed outside /usr/local and /etc/gemini-backend" \
    test -z "$(cd "$D" && find . -type f | grep -Ev '^\./(usr/local/|etc/gemini-backend/)' || true)"

# Every absolute path an installed unit runs or reads that belongs to this install exists in the install.
bad=''
for u in "${units[@]}"; do
    while read -r path; do
        [[ -e $D$path ]] || bad+=" $u:$path"
    done < <(grep -v '^#' "$D/usr/local/lib/systemd/system/$u" | grep -oE '(/usr/local|/etc/gemini-backend)[^ ;"]*' |
        sed 's/%i$/auth/' | sort -u)
done
check "the installed units name only installed files (missing:${bad:- none})" test -z "$bad"
check "the units run the installed programs" grep -q '^ExecStart=/usr/local/lib/gemini-backend/worker$' \
    "$D/usr/local/lib/systemd/system/gemini-worker@.service"
check "the lighttpd unit points GB_BIN_DIR at the installed programs" grep -q 'GB_BIN_DIR=/usr/local/lib/gemini-backend ' \
    "$D/usr/local/lib/systemd/system/gemini-lighttpd.service"
check "no unit still names the build tree" test -z "$(grep -l "$root" "$D"/usr/local/lib/systemd/system/* || true)"
for f in nginx.conf nginx-cgi.conf; do
    check "installed $f has every \${GB_*} placeholder filled in" test -z "$(grep -v '^ *#' "$D/etc/gemini-backend/$f" | grep '\${GB_' || true)"
    # ... on its lines, not in the header's rendering example (a comment), which the install once mangled
    check "... and its header still shows how to render it" grep -qF 'sed -e "s|\${GB_PORT}|8080|g"' "$D/etc/gemini-backend/$f"
done
check "installed nginx-cgi.conf runs the installed programs" \
    grep -q 'SCRIPT_FILENAME *//*usr/local/lib/gemini-backend/\$gb_program' "$D/etc/gemini-backend/nginx-cgi.conf"

for p in "${programs[@]}"; do
    rc=0
    out=$(timeout 10 "$D/usr/local/lib/gemini-backend/$p" --version </dev/null 2>&1) || rc=$?
    check_eq "$rc/$out" "0/$p (gemini-backend) $version" "installed $p --version"
    rc=0
    out=$(timeout 20 "$D/usr/local/lib/gemini-backend/$p" --check </dev/null 2>&1) || rc=$?
    check_eq "$rc" 0 "installed $p --check passes against the test stack"
done
# The template itself: --check names what is still to be filled in.
rc=0
out=$(env -i PATH="$PATH" ENV_FILE="$D/etc/gemini-backend/env" timeout 20 "$D/usr/local/lib/gemini-backend/worker" \
    --check </dev/null 2>&1) || rc=$?
check_eq "$rc" 1 "--check with the untouched settings template fails"
check "... naming a required setting" grep -qE '(JWT_SECRET|DATABASE_URL|REDIS_URL)' <<<"$out"

# A re-install keeps an edited settings file and an edited config, and updates a config nobody edited (here
# lighttpd.conf as an older release installed it: its copy and the example both carry the old line); uninstall
# keeps the edited ones, removes the rest.
echo 'JWT_SECRET=edited' >>"$D/etc/gemini-backend/env"
echo '# edited' >>"$D/etc/gemini-backend/nginx.conf"
for f in "$D/etc/gemini-backend/lighttpd.conf" "$D/usr/local/share/gemini-backend/examples/lighttpd.conf"; do
    echo '# an older release' >>"$f"
done
out=$(mk install DESTDIR="$D" 2>&1) || true
check "a re-install keeps the edited settings file" grep -qx 'JWT_SECRET=edited' "$D/etc/gemini-backend/env"
check "a re-install keeps an edited config" grep -qx '# edited' "$D/etc/gemini-backend/nginx.conf"
check "... and says so" grep -q 'kept /etc/gemini-backend/env' <<<"$out"
check "a re-install updates a config nobody edited" cmp -s "$root/lighttpd.conf" "$D/etc/gemini-backend/lighttpd.conf"
check "... and says so" grep -q 'updated /etc/gemini-backend/lighttpd.conf' <<<"$out"
rc=0
out=$(mk uninstall DESTDIR="$D" 2>&1) || rc=$?
check_eq "$rc" 0 "make uninstall DESTDIR=... succeeds"
left=$(cd "$D" && find . -type f | sort | tr '\n' ' ')
check_eq "$left" "./etc/gemini-backend/env ./etc/gemini-backend/nginx.conf " \
    "uninstall leaves only the settings file and the edited config"
check "uninstall says it kept the settings file" grep -q 'kept /etc/gemini-backend/env' <<<"$out"

# ---- GB_HTTP_PORT and GB_WEB_USER reach every web server's files, not only nginx's ----
D2=$tmp/dest-port
rc=0
out=$(mk install DESTDIR="$D2" GB_HTTP_PORT=8181 GB_WEB_USER=nginx 2>&1) || rc=$?
check_eq "$rc" 0 "make install GB_HTTP_PORT=8181 GB_WEB_USER=nginx succeeds"
U2=$D2/usr/local/lib/systemd/system
check "... nginx.conf listens on 8181" grep -q 'listen *127.0.0.1:8181;' "$D2/etc/gemini-backend/nginx.conf"
for u in gemini-lighttpd gemini-apache; do
    check "... the $u unit serves on 8181 too" grep -q '^Environment=GB_PORT=8181 ' "$U2/$u.service"
done
for u in gemini-fcgi@ gemini-fcgiwrap; do
    check "... the $u unit gives its socket to nginx" grep -q -- '-U nginx -G nginx' "$U2/$u.service"
done
check "... the apache unit runs its workers as nginx" grep -q 'GB_USER=nginx GB_GROUP=nginx' "$U2/gemini-apache.service"
check "... no unit line still names www-data" test -z "$(grep -v '^#' "$U2"/*.service | grep www-data || true)"

# ---- real paths under a temporary PREFIX: systemd-analyze verify, the servers' syntax checks ----
P=$tmp/prefix
mkdir -p "$P/run"
rc=0
out=$(mk install PREFIX="$P/usr" SYSCONFDIR="$P/etc" GB_RUNDIR="$P/run" 2>&1) || rc=$?
check_eq "$rc" 0 "make install PREFIX=... SYSCONFDIR=... succeeds"
if ! command -v systemd-analyze >/dev/null 2>&1; then
    check "systemd-analyze is installed (scripts/deps.sh --test installs systemd)" false
else
    for u in "${units[@]}"; do
        rc=0
        out=$(cd "$P/usr/lib/systemd/system" && SYSTEMD_LOG_LEVEL=notice timeout 60 systemd-analyze verify "./$u" 2>&1) ||
            rc=$?
        check_eq "$rc/$out" "0/" "systemd-analyze verify $u: exit 0, no finding"
    done
    # The check can fail: a unit whose program is missing is reported.
    rm "$P/usr/lib/gemini-backend/worker"
    rc=0
    out=$(cd "$P/usr/lib/systemd/system" && timeout 60 systemd-analyze verify ./gemini-worker@.service 2>&1) || rc=$?
    check "systemd-analyze verify reports a unit whose program is missing" grep -q 'is not executable' <<<"$out"
fi
if command -v nginx >/dev/null 2>&1; then
    mkdir -p "$P/run/htdocs" "$P/run/nginx-tmp"
    for f in nginx.conf nginx-cgi.conf; do
        rc=0
        out=$(timeout 20 nginx -t -q -p "$P/run" -c "$P/etc/gemini-backend/$f" -g 'daemon off;' 2>&1) || rc=$?
        check_eq "$rc" 0 "nginx -t accepts the installed $f${out:+ ($out)}"
    done
fi
if command -v lighttpd >/dev/null 2>&1; then
    rc=0
    out=$(GB_PORT=8080 GB_BIN_DIR="$P/usr/lib/gemini-backend" GB_STATE_DIR="$P/run" GB_ERRORLOG='' \
        GB_WWW_DIR="$P/usr/share/gemini-backend/www" timeout 20 lighttpd -tt -f "$P/etc/gemini-backend/lighttpd.conf" 2>&1) ||
        rc=$?
    check_eq "$rc" 0 "lighttpd -tt accepts the installed lighttpd.conf with the unit's settings${out:+ ($out)}"
    # lighttpd loads its mod_magnet script (the static files' X-Request-Id) per request, from beside the web root
    check "the X-Request-Id script is installed where lighttpd.conf looks for it" \
        cmp -s "$root/deploy/lighttpd/request-id.lua" "$P/usr/share/gemini-backend/www/../lighttpd/request-id.lua"
    check "the error page script is installed beside it" \
        cmp -s "$root/deploy/lighttpd/server-error.lua" "$P/usr/share/gemini-backend/www/../lighttpd/server-error.lua"
fi
