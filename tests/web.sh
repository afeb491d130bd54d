# shellcheck shell=bash
# tests/web.sh: the Apache and nginx flavours of stack_web_start/stop (sourced by tests/stack.sh, which has
# lighttpd). Each follows web_lighttpd_start/stop: it exports BASE_URL (and PORT, PUBLIC_URL in test mode), keeps
# the web server's pid in STACK_DIR/web.pid, writes the server's and the programs' output to the deployment's
# log (STACK_DIR/<DEPLOYMENT>.log), waits until /healthz is answered by the app, and its stop ends every process
# it started: the web server, the spawn-fcgi'd programs or fcgiwrap, and any program left behind.
#
#   web_apache_start / web_apache_stop       apache.conf: Apache 2.4 (event MPM) + mod_proxy_fcgi, programs
#                                            under spawn-fcgi on unix sockets
#   web_nginx_start / web_nginx_stop         nginx.conf: nginx + fastcgi_pass, programs under spawn-fcgi
#   web_nginxcgi_start / web_nginxcgi_stop   nginx-cgi.conf: nginx + fcgiwrap, the programs run as plain CGI,
#                                            one process per request
#
# The committed configuration files are what runs: Apache reads its ${GB_*} variables from the environment
# itself; for nginx the ${GB_*} placeholders are filled in by _web_render into STACK_DIR/web/.
# Knobs: WEB_FCGI_PROCS (processes per program under spawn-fcgi, default 2), WEB_CGI_PROCS (fcgiwrap processes,
# i.e. concurrent CGI requests, default 4).
#
# As root, the web server's workers run as www-data (GB_USER/GB_GROUP; nobody when there is no www-data) and
# the sockets are given to that account (spawn-fcgi -U/-G); the programs themselves keep running as the
# invoking user, like under lighttpd, so that they reach the stack's PostgreSQL and Redis sockets.

[[ -n ${_GB_WEB_SH_LOADED:-} ]] && return 0
_GB_WEB_SH_LOADED=1

WEB_FCGI_PROCS=${WEB_FCGI_PROCS:-2}
WEB_CGI_PROCS=${WEB_CGI_PROCS:-4}
WEB_APACHE_MODULES=${WEB_APACHE_MODULES:-/usr/lib/apache2/modules}

# ---- helpers -------------------------------------------------------------------------------------------------

# Who the web server's workers run as (exported for the configuration files).
_web_identity() {
    if ((EUID == 0)); then
        if getent passwd www-data >/dev/null && getent group www-data >/dev/null; then
            GB_USER=www-data GB_GROUP=www-data
        else
            GB_USER=nobody GB_GROUP=$(id -gn nobody 2>/dev/null || echo nogroup)
        fi
    else
        GB_USER=$(id -un) GB_GROUP=$(id -gn)
    fi
    export GB_USER GB_GROUP
}

# _web_render SRC DST: copy SRC with every ${GB_NAME} replaced by the value of the environment variable GB_NAME.
# Fails (and writes nothing) when one of them is not set. Nothing else is touched (nginx's own $variables stay).
_web_render() {
    local src=$1 dst=$2
    if ! awk '
        {
            out = ""
            line = $0
            while (match(line, /\$\{GB_[A-Z0-9_]+\}/)) {
                name = substr(line, RSTART + 2, RLENGTH - 3)
                if (!(name in ENVIRON)) {
                    printf "%s:%d: ${%s} is not set\n", FILENAME, NR, name > "/dev/stderr"
                    bad = 1
                }
                out = out substr(line, 1, RSTART - 1) ENVIRON[name]
                line = substr(line, RSTART + RLENGTH)
            }
            print out line
        }
        END { exit bad }' "$src" >"$dst.tmp"; then
        rm -f "$dst.tmp"
        _stack_fail "cannot render $src"
        return 1
    fi
    mv "$dst.tmp" "$dst"
}

# The web server answers and the request reached the app (a 502/503 page of the server itself is not enough): the
# body of /healthz names "postgres", or holds STACK_READY_MATCH (a benchmark's baseline handler, in place of the
# chatroom program, answers every path with its own fixed body).
_web_app_ready() {
    local body
    body=$(curl -s --max-time 2 "$BASE_URL/healthz" 2>/dev/null) || return 1
    [[ $body == *"${STACK_READY_MATCH:-\"postgres\"}"* ]]
}

# _web_common_env: bin and state directories, log, identity; sets WEB_BIN, WEB_STATE, WEB_LOG.
_web_common_env() {
    WEB_BIN=$(_stack_abs "${BUILD_DIR:-build}/cgi-bin")
    _stack_check_binaries "$WEB_BIN" || return 1
    WEB_STATE=$STACK_DIR/web
    mkdir -p "$WEB_STATE/htdocs" || return 1
    chmod 711 "$WEB_STATE" || return 1 # the web server's workers (another account) reach the sockets in it
    WEB_LOG=$(_stack_web_log)
    _web_identity
    # GB_STATE_DIR in a program's environment is how _stack_web_programs recognises this stack's programs.
    export GB_BIN_DIR=$WEB_BIN GB_STATE_DIR=$WEB_STATE GB_WWW_DIR
    GB_WWW_DIR=$(_stack_abs "${BUILD_DIR:-build}/www")
    if ((EUID == 0)); then
        # Started as root, the server's workers run as GB_USER, who may not be able to pass through the checkout
        # (a clone under a 0700 mktemp directory): serve a readable copy from the state directory instead.
        rm -rf "$WEB_STATE/www" && cp -R "$GB_WWW_DIR" "$WEB_STATE/www" && chmod -R go+rX "$WEB_STATE/www" || return 1
        GB_WWW_DIR=$WEB_STATE/www
    fi
    printf '%s\n' "$WEB_BIN" >"$STACK_DIR/web.bin"
}

# _web_spawn NAME PROCS PROGRAM [ARGS...]: spawn-fcgi PROCS copies of PROGRAM on STACK_DIR/web/NAME.sock, their
# pids in STACK_DIR/web/NAME.pids (one per line; deliberately not STACK_DIR/*.pid, which holds one pid each).
# spawn-fcgi's forking mode sends the programs' stderr to /dev/null: a shell in front (it execs, so the pid and
# the inherited socket on fd 0 stay the program's) appends it to the deployment's log instead.
_web_spawn() {
    local name=$1 procs=$2 sock pids owner=()
    shift 2
    sock=$WEB_STATE/$name.sock
    pids=$WEB_STATE/$name.pids
    rm -f "$sock" "$pids"
    if ((EUID == 0)); then
        owner=(-U "$GB_USER" -G "$GB_GROUP")
    fi
    # shellcheck disable=SC2016,SC2094 # $1/$@ are the inner shell's; the log is only appended to
    if ! spawn-fcgi -s "$sock" -M 0660 "${owner[@]}" -F "$procs" -P "$pids" -- \
        /bin/sh -c 'log=$1; shift; exec "$@" 2>>"$log"' sh "$WEB_LOG" "$@" </dev/null >>"$WEB_LOG" 2>&1; then
        _stack_fail "spawn-fcgi $name ($*) failed" "$WEB_LOG"
        return 1
    fi
}

# Stop every process of STACK_DIR/web/*.pids (SIGTERM: libfcgi programs finish the request in hand and exit).
_web_stop_spawned() {
    local f p pids=()
    for f in "$STACK_DIR"/web/*.pids; do
        [[ -f $f ]] || continue
        while read -r p || [[ -n $p ]]; do
            [[ $p =~ ^[0-9]+$ ]] && kill -0 "$p" 2>/dev/null && pids+=("$p")
        done <"$f"
    done
    if ((${#pids[@]})); then
        _stack_kill_pids TERM "$STACK_STOP_TIMEOUT" "${pids[@]}"
    fi
    rm -f "$STACK_DIR"/web/*.pids "$STACK_DIR"/web/*.sock
}

# _web_start_server FLAVOUR SPAWN COMMAND...: pick the port (test mode: a free one, up to three tries when one is
# taken meanwhile) and export it (GB_PORT, BASE_URL, PORT, PUBLIC_URL) before anything starts, so that the
# programs see the right PUBLIC_URL; then run SPAWN (starts the programs), _web_FLAVOUR_prepare (exports what the
# configuration needs) and COMMAND (the web server, in the foreground of its own process), and wait for the app.
_web_start_server() {
    local flavour=$1 spawn=$2 port
    shift 2
    for _ in 1 2 3; do
        if [[ $STACK_MODE == run ]]; then
            port=${PORT:-8080}
        else
            port=$(_stack_free_port) || {
                _stack_fail "no free TCP port found"
                return 1
            }
        fi
        export GB_PORT=$port BASE_URL=http://127.0.0.1:$port PORT=$port
        [[ $STACK_MODE == run ]] || export PUBLIC_URL=$BASE_URL
        _web_stop_spawned
        "$spawn" || return 1
        "_web_${flavour}_prepare" || return 1
        if [[ $STACK_MODE == run ]]; then
            _stack_bg "$@" </dev/null # its own session: stopped by pid, in order (scripts/run.sh)
        else
            printf -- '---- %s: %s on %s with %s ----\n' "${DEPLOYMENT:-$flavour}" "$flavour" "$BASE_URL" \
                "$WEB_BIN" >>"$WEB_LOG"
            _stack_bg "$@" </dev/null >>"$WEB_LOG" 2>&1
        fi
        echo $! >"$STACK_DIR/web.pid"
        if _stack_wait_until "$STACK_START_TIMEOUT" web "$WEB_LOG" _web_app_ready 2>/dev/null; then
            return 0
        fi
        if [[ $STACK_MODE != run ]] && ! _stack_alive web &&
            tail -n 5 "$WEB_LOG" | grep -q 'Address already in use'; then
            continue
        fi
        break
    done
    if _stack_alive web; then
        _stack_fail "$flavour on port $port: the app did not answer /healthz within ${STACK_START_TIMEOUT}s" "$WEB_LOG"
    else
        _stack_fail "$flavour failed to start on port $port" "$WEB_LOG"
    fi
    return 1
}

# Stop the web server (web.pid), then the programs, then whatever program of this stack is left (a CGI run by
# fcgiwrap, an orphan). Sanitizer builds write their reports at exit: wait for them.
_web_stop() {
    _stack_need_dir || return 1
    local wpid='' p alive=()
    wpid=$(_stack_pid web) || wpid=''
    if [[ -n $wpid ]]; then
        _stack_kill_pids TERM "$STACK_STOP_TIMEOUT" "$wpid"
    fi
    rm -f "$STACK_DIR/web.pid"
    _web_stop_spawned
    while read -r p; do
        [[ -n $p ]] && kill -0 "$p" 2>/dev/null && alive+=("$p")
    done < <(_stack_web_programs '' | sort -u)
    if ((${#alive[@]})); then
        _stack_kill_pids TERM "$STACK_STOP_TIMEOUT" "${alive[@]}"
    fi
    rm -f "$STACK_DIR/web.bin" "$STACK_DIR"/web/*.sock 2>/dev/null || true
}

# The four programs under spawn-fcgi, one socket each (the configuration files name them).
_web_spawn_programs() {
    local name
    for name in "${STACK_APP_BINARIES[@]}"; do
        _web_spawn "$name" "$WEB_FCGI_PROCS" "$WEB_BIN/$name" || return 1
    done
}

# ---- Apache 2.4 + mod_proxy_fcgi + spawn-fcgi (apache.conf) --------------------------------------------------

_web_apache_prepare() {
    export GB_ERRORLOG=/dev/stderr GB_APACHE_MODULES=$WEB_APACHE_MODULES
}

web_apache_start() {
    local conf
    _stack_alive web && return 0
    _stack_need_dir || return 1
    _web_common_env || return 1
    conf=$(_stack_web_conf apache.conf "$WEB_STATE") || return 1
    if ! command -v apache2 >/dev/null 2>&1 || [[ ! -f $WEB_APACHE_MODULES/mod_proxy_fcgi.so ]]; then
        _stack_fail "apache2 or $WEB_APACHE_MODULES/mod_proxy_fcgi.so is missing (scripts/deps.sh installs them)"
        return 1
    fi
    if _web_start_server apache _web_spawn_programs apache2 -DFOREGROUND -f "$conf"; then
        return 0
    fi
    web_apache_stop
    return 1
}

# SIGTERM: Apache stops its children at once (requests in flight are cut; nothing is running between tests).
web_apache_stop() { _web_stop; }

# ---- nginx + spawn-fcgi (nginx.conf) -------------------------------------------------------------------------

_web_nginx_prepare() {
    export GB_ERRORLOG=stderr
    # nginx's workers (GB_USER when started as root) write request bodies past 128 KiB under it: they must pass
    # through it whatever the umask (make run's 027).
    mkdir -p "$WEB_STATE/nginx-tmp" && chmod 711 "$WEB_STATE/nginx-tmp" || return 1
    _web_render "$GB_ROOT/$WEB_NGINX_CONF" "$WEB_STATE/$WEB_NGINX_CONF" || return 1
    [[ -z ${STACK_WEB_CONF_EXTRA:-} ]] && return 0
    # STACK_WEB_CONF_EXTRA (tests/stack.sh) at the top of the server block.
    STACK_WEB_CONF_EXTRA=$STACK_WEB_CONF_EXTRA awk '
        { print }
        !done && /^[ \t]*server[ \t]*\{/ {
            print "# STACK_WEB_CONF_EXTRA"
            print ENVIRON["STACK_WEB_CONF_EXTRA"]
            done = 1
        }
        END { exit !done }' "$WEB_STATE/$WEB_NGINX_CONF" >"$WEB_STATE/$WEB_NGINX_CONF.tmp" &&
        mv "$WEB_STATE/$WEB_NGINX_CONF.tmp" "$WEB_STATE/$WEB_NGINX_CONF"
}

_web_nginx_start_with() { # CONFIG SPAWN
    WEB_NGINX_CONF=$1
    _web_start_server nginx "$2" nginx -p "$WEB_STATE" -c "$WEB_STATE/$WEB_NGINX_CONF" -g 'daemon off;'
}

web_nginx_start() {
    _stack_alive web && return 0
    _stack_need_dir || return 1
    _web_common_env || return 1
    if _web_nginx_start_with nginx.conf _web_spawn_programs; then
        return 0
    fi
    web_nginx_stop
    return 1
}

# SIGTERM: nginx's fast shutdown.
web_nginx_stop() { _web_stop; }

# ---- nginx + fcgiwrap, plain CGI (nginx-cgi.conf) ------------------------------------------------------------

# fcgiwrap hands its environment (the app configuration exported by stack_services_start) to each program; -p
# allows only our four programs.
_web_spawn_fcgiwrap() {
    local allow=() name
    for name in "${STACK_APP_BINARIES[@]}"; do
        allow+=(-p "$WEB_BIN/$name")
    done
    _web_spawn fcgiwrap "$WEB_CGI_PROCS" /usr/sbin/fcgiwrap "${allow[@]}"
}

web_nginxcgi_start() {
    _stack_alive web && return 0
    _stack_need_dir || return 1
    _web_common_env || return 1
    if _web_nginx_start_with nginx-cgi.conf _web_spawn_fcgiwrap; then
        return 0
    fi
    web_nginxcgi_stop
    return 1
}

web_nginxcgi_stop() { _web_stop; }
