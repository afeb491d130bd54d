#!/usr/bin/env bash
# Install what the build and `make run` need on Debian 12 (C libraries, servers, and web/package.json's npm
# packages: Swagger UI for /docs); with --test (make test, make bench) also the test suite's npm packages (the
# fakes, newman, redocly, puppeteer-core), chromium for the browser journey and clang-format for the format check,
# clang with libFuzzer for the fuzz targets.
# Idempotent and fast when everything is present: dpkg is asked first, apt-get runs only for missing packages.
# Packaged services (PostgreSQL, Redis, lighttpd, nginx, Apache) are kept from starting during the install,
# and PostgreSQL's default cluster is not created: the project runs its own private servers (tests/stack.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WITH_TESTS=0
case ${1:-} in
--test) WITH_TESTS=1 ;;
'') ;;
*)
    printf 'usage: scripts/deps.sh [--test]\n' >&2
    exit 2
    ;;
esac

PACKAGES=(
    build-essential pkg-config
    libfcgi-dev libpq-dev libhiredis-dev libcurl4-openssl-dev libjson-c-dev libjwt-dev libssl-dev nettle-dev
    libargon2-dev libunistring-dev libcmocka-dev
    postgresql redis-server lighttpd lighttpd-modules-lua spawn-fcgi fcgiwrap nginx-light apache2 libapache2-mod-fcgid
    curl jq ca-certificates wrk procps
)
# The image may ship its own node (not from Debian): keep it, and its npm. npm fetches Swagger UI at build
# time; only the tests run node.
if ! command -v npm >/dev/null 2>&1; then
    PACKAGES+=(nodejs npm)
fi
if ((WITH_TESTS)); then
    PACKAGES+=(chromium clang-format)
    # make fuzz / the fuzz corpora of make test: clang, libFuzzer and the sanitizer runtimes (libclang-rt-dev, only
    # recommended by clang), llvm-symbolizer for readable reports (llvm)
    PACKAGES+=(clang libclang-rt-dev llvm)
    # systemd-analyze (tests/e2e/07_install.sh verifies the units with it)
    PACKAGES+=(systemd)
fi

log() { printf 'deps: %s\n' "$*" >&2; }

installed() {
    local status
    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
    [[ $status == "install ok installed" ]]
}

# One dpkg-query for the whole list (unknown packages only print an error, silenced here).
declare -A have=()
while read -r pkg want ok state; do
    [[ "$want $ok $state" == "install ok installed" ]] && have[$pkg]=1
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)
missing=()
for pkg in "${PACKAGES[@]}"; do
    [[ -n ${have[$pkg]:-} ]] || missing+=("$pkg")
done

if ((${#missing[@]} > 0)); then
    SUDO=()
    if ((EUID != 0)); then
        if command -v sudo >/dev/null 2>&1; then
            SUDO=(sudo)
        else
            log "missing packages: ${missing[*]}"
            log "not root and no sudo: install them as root, then run this again"
            exit 1
        fi
    fi
    as_root() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive "$@"; }
    APT_INSTALL=(apt-get install -y --no-install-recommends
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

    # Keep maintainer scripts from starting services on ports 80/5432/6379 (invoke-rc.d asks policy-rc.d;
    # 101 = "action forbidden"). Only remove the file afterwards if we created it.
    POLICY=/usr/sbin/policy-rc.d
    created_policy=0
    cleanup() {
        if ((created_policy)); then
            as_root rm -f "$POLICY" || true
        fi
    }
    trap cleanup EXIT
    if [[ ! -e $POLICY ]]; then
        printf '#!/bin/sh\n# temporary, from gemini-backend scripts/deps.sh\nexit 101\n' |
            as_root tee "$POLICY" >/dev/null
        as_root chmod 755 "$POLICY"
        created_policy=1
    fi

    log "installing: ${missing[*]}"
    as_root apt-get update -qq

    # No default cluster ("main" on port 5432): postgresql-common reads createcluster.conf when
    # postgresql-15 is configured. Install postgresql-common first, then switch create_main_cluster off.
    if [[ " ${missing[*]} " == *" postgresql "* ]]; then
        conf=/etc/postgresql-common/createcluster.conf
        if ! installed postgresql-common; then
            as_root "${APT_INSTALL[@]}" postgresql-common
        fi
        if [[ -f $conf ]] && ! grep -Eq '^[[:space:]]*create_main_cluster[[:space:]]*=[[:space:]]*false' "$conf"; then
            as_root sed -i -E 's/^[#[:space:]]*create_main_cluster[[:space:]]*=.*$/create_main_cluster = false/' "$conf"
            grep -Eq '^create_main_cluster = false' "$conf" ||
                printf 'create_main_cluster = false\n' | as_root tee -a "$conf" >/dev/null
        fi
    fi

    as_root "${APT_INSTALL[@]}" "${missing[@]}"
    # The services installed just now were enabled for the next boot, where Debian's apache2, nginx and
    # lighttpd would all go for port 80: the project runs its own instances (make run/test, deploy/systemd),
    # so disable the ones nobody used before this install. Services that were already there are left alone.
    if command -v systemctl >/dev/null 2>&1; then
        units=()
        for pkg in "${missing[@]}"; do
            case $pkg in
            apache2) units+=(apache2.service) ;;
            nginx-light) units+=(nginx.service) ;;
            lighttpd) units+=(lighttpd.service) ;;
            redis-server) units+=(redis-server.service) ;;
            postgresql) units+=(postgresql.service) ;;
            fcgiwrap) units+=(fcgiwrap.socket fcgiwrap.service) ;;
            esac
        done
        if ((${#units[@]} > 0)); then
            log "disabling the packaged services: ${units[*]}"
            as_root systemctl disable --quiet "${units[@]}" >/dev/null 2>&1 || true
        fi
    fi
    cleanup
    trap - EXIT
    log "done"
fi

# npm packages of web/ (always) and tests/ (--test). node_modules is touched after a successful install and
# serves as the stamp: reinstall only when package.json or the lock file is newer.
npm_install() {
    local dir=$1 stamp=$1/node_modules
    [[ -f $dir/package.json ]] || return 0
    # A symlinked node_modules belongs to another checkout (a git worktree sharing the main clone's): never
    # reinstall through it, that would empty the other tree's packages.
    [[ -L $stamp ]] && return 0
    if [[ -d $stamp && ! $dir/package.json -nt $stamp &&
        ! (-f $dir/package-lock.json && $dir/package-lock.json -nt $stamp) ]]; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        log "npm not found: cannot install $dir/package.json"
        exit 1
    fi
    log "npm: installing ${dir#"$ROOT"/}/package.json"
    (
        cd "$dir"
        # No package's install scripts run: none of ours needs one (the only one, @scarf/scarf under swagger-ui-dist,
        # reports the install to its vendor), and this script runs as root.
        npm_flags=(--no-audit --no-fund --ignore-scripts --loglevel=error)
        if [[ -f package-lock.json ]]; then
            # ci refuses a lock that does not match package.json: fall back to install then.
            npm ci "${npm_flags[@]}" >/dev/null || npm install "${npm_flags[@]}" >/dev/null
        else
            npm install --no-package-lock "${npm_flags[@]}" >/dev/null
        fi
        mkdir -p node_modules
        touch node_modules
    )
}
npm_install "$ROOT/web"
if ((WITH_TESTS)); then
    npm_install "$ROOT/tests"
fi
