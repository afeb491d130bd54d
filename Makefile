# gemini-backend: one plain Makefile.
#   make            build everything into $(BUILD) (default build/)
#   make asan       the same with AddressSanitizer + UBSan into build-asan/
#   make run        check PORT, install what is missing (no test tools), build, start the stack in the foreground
#                   (make run FAKES=1: with the bundled Stripe and Gemini fakes, to try Pro offline)
#   make test       install what is missing, build, run every test; last line "N passed, M failed"
#   make bench      benchmarks (see README)
#   make fuzz       libFuzzer targets (fuzz/) into build-fuzz/, each run FUZZ_SECONDS (README "Fuzzing")
# User CFLAGS/LDFLAGS are added to ours, never replace them.

BUILD    ?= build
SANITIZE ?= $(if $(filter build-asan,$(BUILD)),1,)
CC       ?= cc
PKGS      = fcgi hiredis json-c libjwt libcurl libcrypto nettle libpq libargon2

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN      = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wformat=2 -Wno-format-nonliteral
REAL_CFLAGS  = -std=c11 -D_GNU_SOURCE -DDEFAULT_VAR_DIR=\"$(CURDIR)/var\" -O2 -g $(WARN) -Ilib $(PKG_CFLAGS) $(CFLAGS)
REAL_LDFLAGS = -Wl,--as-needed $(LDFLAGS)
ifneq ($(SANITIZE),)
REAL_CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
REAL_LDFLAGS += -fsanitize=address,undefined
endif
LIBS = $(PKG_LIBS) -lunistring -lm

LIB_SRC    := $(wildcard lib/*.c)
LIB_OBJ    := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB_A      := $(BUILD)/libgemini.a
CGI_SRC    := $(wildcard cgi-bin/*.c)
CGI_BIN    := $(CGI_SRC:cgi-bin/%.c=$(BUILD)/cgi-bin/%)
WORKER_SRC := $(wildcard worker/*.c)
WORKER_BIN := $(BUILD)/worker/worker
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRC  := $(wildcard bench/*.c)
BENCH_BIN  := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%) $(BUILD)/bench/noop_linger
HDRS       := $(wildcard lib/*.h)
# The static web root served at / (web client), /docs (Swagger UI over openapi.yaml) and /openapi.yaml.
SWAGGER    := web/node_modules/swagger-ui-dist
WWW        := $(BUILD)/www
WWW_FILES  := $(WWW)/index.html $(WWW)/static/app.js $(WWW)/static/style.css $(WWW)/docs/index.html \
              $(WWW)/docs/init.js $(WWW)/docs/swagger-ui-bundle.js $(WWW)/docs/swagger-ui.css $(WWW)/openapi.yaml
# lighttpd.conf's mod_magnet script (X-Request-Id on the static files), found beside the web root.
MAGNET     := $(BUILD)/lighttpd/request-id.lua $(BUILD)/lighttpd/server-error.lua

# The version --version prints: the VERSION file, plus git describe when this is a git checkout
# ("1.0.0+g46a08b4-dirty"). Override with `make GB_VERSION=...` (a packaging build). build/version.h is
# rewritten only when it changes, so only lib/cli.o and the links follow a new commit.
GB_VERSION ?= $(shell v=$$(cat VERSION 2>/dev/null || echo 0.0.0); g=$$(git describe --always --dirty 2>/dev/null); echo "$$v$${g:++g$$g}")

.PHONY: all asan unit deps deps-test run test bench faults clean format FORCE
all: $(LIB_A) $(CGI_BIN) $(if $(WORKER_SRC),$(WORKER_BIN)) $(UNIT_BIN) $(BENCH_BIN) $(WWW_FILES) $(MAGNET)

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan SANITIZE=1 all

$(BUILD)/lib/%.o: lib/%.c $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) -c -o $@ $<

$(BUILD)/version.h: FORCE
	@mkdir -p $(@D)
	@printf '#define GB_VERSION "%s"\n' '$(GB_VERSION)' >$@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

$(BUILD)/lib/cli.o: $(BUILD)/version.h
$(BUILD)/lib/cli.o: REAL_CFLAGS += -I$(BUILD)

$(LIB_A): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/cgi-bin/%: cgi-bin/%.c $(LIB_A) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) -o $@ $< $(LIB_A) $(REAL_LDFLAGS) $(LIBS)

$(WORKER_BIN): $(WORKER_SRC) $(LIB_A) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) -o $@ $(WORKER_SRC) $(LIB_A) $(REAL_LDFLAGS) $(LIBS)

$(BUILD)/bench/%: bench/%.c $(wildcard bench/*.h)
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) -o $@ $< $(REAL_LDFLAGS) $(LIBS)

# The do-nothing handler with libfcgi's own lingering close (bench/fcgi_finish.h).
$(BUILD)/bench/noop_linger: bench/noop.c $(wildcard bench/*.h)
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) -DBENCH_LINGER -o $@ $< $(REAL_LDFLAGS) $(LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(LIB_A) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) $(shell pkg-config --cflags cmocka) -o $@ $< $(LIB_A) $(REAL_LDFLAGS) $(LIBS) $(shell pkg-config --libs cmocka)

$(WWW)/index.html: web/index.html
	@mkdir -p $(@D)
	cp $< $@
$(WWW)/static/%: web/%
	@mkdir -p $(@D)
	cp $< $@
$(WWW)/docs/index.html $(WWW)/docs/init.js: $(WWW)/docs/%: web/docs/%
	@mkdir -p $(@D)
	cp $< $@
$(WWW)/openapi.yaml: openapi.yaml
	@mkdir -p $(@D)
	cp $< $@
$(BUILD)/lighttpd/%.lua: deploy/lighttpd/%.lua
	@mkdir -p $(@D)
	cp $< $@
$(WWW)/docs/swagger-%: $(SWAGGER)/swagger-%
	@mkdir -p $(@D)
	cp $< $@
$(SWAGGER)/%:
	@echo "$@ is missing: run 'make deps' (it installs web/package.json's packages)" >&2; exit 1

unit: all
	@BUILD=$(BUILD) tests/unit.sh

deps:
	@scripts/deps.sh

deps-test:
	@scripts/deps.sh --test

# The preflight first: a bad or busy PORT is reported before anything is installed or built. A requested stop
# (Ctrl-C, SIGTERM) makes scripts/run.sh exit 0, so make reports no error.
run:
	@scripts/run.sh --preflight
	@scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@exec scripts/run.sh

# The three builds of the test run use every core (JOBS, default nproc): about 25 s less than one at a time on
# two cores. Each is a separate make, so a failing one stops the run before the tests.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

test: deps-test
	@$(MAKE) --no-print-directory -j$(JOBS) all
	@$(MAKE) --no-print-directory -j$(JOBS) asan
	@$(MAKE) --no-print-directory -j$(JOBS) fuzz-build
	@tests/run.sh

bench: deps-test
	@$(MAKE) --no-print-directory all
	@bench/run.sh

# The fault suite in full (tests/faults.sh: 1000 messages under worker SIGKILLs, FastCGI, Redis and PostgreSQL
# crashes), under lighttpd and nginx; `make test` runs its short form (tests/e2e/95_faults.sh).
faults: deps-test
	@$(MAKE) --no-print-directory all
	@FAULTS=full DEPLOYMENTS="$${DEPLOYMENTS:-lighttpd nginx}" SKIP_UNIT=1 E2E_FILTER='^95_faults' \
		E2E_TIMEOUT=$${E2E_TIMEOUT:-1800} tests/run.sh

format:
	clang-format -i $$(git ls-files -- '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz

# ---- fuzzing (README "Fuzzing") ----------------------------------------------------------------------------------
# make fuzz-build    the libFuzzer targets fuzz/*.c, built with clang into build-fuzz/ (the library compiled with
#                    -fsanitize=fuzzer-no-link,address,undefined, the targets linked with -fsanitize=fuzzer)
# make fuzz          build, then fuzz each target for FUZZ_SECONDS (default 60) from fuzz/corpus/<target>/
# make fuzz-corpus   build, then run each target once over its committed corpus (tests/run.sh does this in make test)
# FUZZ_TARGETS="http token" narrows the runs. A new target is fuzz/<name>.c plus fuzz/corpus/<name>/ (and optionally
# fuzz/<name>.dict): nothing to add here.
FUZZ_BUILD   ?= build-fuzz
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_SRC     := $(wildcard fuzz/*.c)
FUZZ_BIN      = $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%)
ifneq ($(FUZZ),)
REAL_CFLAGS  += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
REAL_LDFLAGS += -fsanitize=address,undefined
endif
.PHONY: fuzz fuzz-build fuzz-bins fuzz-corpus

fuzz-build:
	@command -v $(FUZZ_CC) >/dev/null || { echo "$(FUZZ_CC) not found: scripts/deps.sh --test installs it" >&2; exit 1; }
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) FUZZ=1 fuzz-bins

fuzz-bins: $(FUZZ_BIN)

$(BUILD)/fuzz/%: fuzz/%.c $(wildcard fuzz/*.h) tests/unit/fcgi_mem.h $(LIB_A) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) -fsanitize=fuzzer -o $@ $< $(LIB_A) $(REAL_LDFLAGS) -fsanitize=fuzzer $(LIBS)

fuzz:
	@$(MAKE) --no-print-directory fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh run $(FUZZ_TARGETS)

fuzz-corpus:
	@$(MAKE) --no-print-directory fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) scripts/fuzz.sh once $(FUZZ_TARGETS)

# ---- make install / make uninstall ---------------------------------------------------------------------------
# FHS places under PREFIX (default /usr/local; `make install PREFIX=/usr` for a package), every one overridable,
# all below DESTDIR when set (staged installs). The programs are not on PATH (the web server and systemd start
# them): LIBEXECDIR. The settings file CONFDIR/env (mode 0600, from deploy/env.example) and the web server
# configurations are installed only when absent, so a re-install never overwrites an edited one; pristine copies
# are always in PKGDATADIR/examples. systemd units go where systemd looks for them (/usr/local/lib/systemd/system
# is on its search path), with the paths of this install written in. `make uninstall` removes what install put
# there, except CONFDIR/env (it holds secrets) and configurations that differ from their pristine copies.
PREFIX         ?= /usr/local
SYSCONFDIR     ?= /etc
LIBEXECDIR     ?= $(PREFIX)/lib/gemini-backend
PKGDATADIR     ?= $(PREFIX)/share/gemini-backend
DOCDIR         ?= $(PREFIX)/share/doc/gemini-backend
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
CONFDIR        ?= $(SYSCONFDIR)/gemini-backend
# The state directory, port and web server account written into the rendered nginx configurations; the port
# and the account into the systemd units too (their state directory stays /run/gemini-backend).
GB_RUNDIR      ?= /run/gemini-backend
GB_HTTP_PORT   ?= 8080
GB_WEB_USER    ?= www-data
INSTALL        ?= install
UNITS          := $(wildcard deploy/systemd/*.service)
PROGRAMS       := $(CGI_BIN) $(WORKER_BIN)
WEB_CONFS      := lighttpd.conf apache.conf nginx.conf nginx-cgi.conf
# The committed files name the default install's places; these rewrite them to this install's.
INSTALL_SED     = -e 's|/usr/local/lib/gemini-backend|$(LIBEXECDIR)|g' \
                  -e 's|/usr/local/share/gemini-backend|$(PKGDATADIR)|g' -e 's|/etc/gemini-backend|$(CONFDIR)|g'
# nginx reads no environment: its ${GB_*} placeholders are filled in here (README, "nginx"), on the lines that
# are not comments (the header's own rendering example keeps its placeholders).
# The units take the same port and web server account as the nginx configurations (on their lines, not comments).
UNIT_SED        = $(NGX)|GB_PORT=8080 |GB_PORT=$(GB_HTTP_PORT) |' \
                  $(NGX)|-U www-data -G www-data|-U $(GB_WEB_USER) -G $(GB_WEB_USER)|' \
                  $(NGX)|GB_USER=www-data GB_GROUP=www-data|GB_USER=$(GB_WEB_USER) GB_GROUP=$(GB_WEB_USER)|'
NGX             = -e '/^[[:space:]]*\#/!s
NGINX_SED       = $(NGX)|$${GB_PORT}|$(GB_HTTP_PORT)|g' $(NGX)|$${GB_STATE_DIR}|$(GB_RUNDIR)|g' \
                  $(NGX)|$${GB_ERRORLOG}|stderr|g' $(NGX)|$${GB_USER}|$(GB_WEB_USER)|g' \
                  $(NGX)|$${GB_GROUP}|$(GB_WEB_USER)|g' $(NGX)|$${GB_BIN_DIR}|$(LIBEXECDIR)|g' \
                  $(NGX)|$${GB_WWW_DIR}|$(PKGDATADIR)/www|g'

.PHONY: install uninstall
install: $(PROGRAMS) $(WWW_FILES) $(MAGNET)
	@set -e; D='$(DESTDIR)'; \
	$(INSTALL) -d -m 0755 "$$D$(LIBEXECDIR)" "$$D$(PKGDATADIR)/examples" "$$D$(DOCDIR)" "$$D$(SYSTEMDUNITDIR)" \
	    "$$D$(CONFDIR)"; \
	$(INSTALL) -m 0755 $(PROGRAMS) "$$D$(LIBEXECDIR)/"; \
	fresh=' '; for f in $(WEB_CONFS); do \
	    if [ -e "$$D$(CONFDIR)/$$f" ] && cmp -s "$$D$(CONFDIR)/$$f" "$$D$(PKGDATADIR)/examples/$$f"; then \
	        fresh="$$fresh$$f "; fi; done; \
	rm -rf "$$D$(PKGDATADIR)/www"; cp -R $(WWW) "$$D$(PKGDATADIR)/www"; \
	chmod -R u=rwX,go=rX "$$D$(PKGDATADIR)/www"; \
	for f in $(MAGNET); do $(INSTALL) -D -m 0644 "$$f" "$$D$(PKGDATADIR)/lighttpd/$${f##*/}"; done; \
	$(INSTALL) -m 0644 schema.sql "$$D$(PKGDATADIR)/schema.sql"; \
	$(INSTALL) -m 0644 README.md LICENSE "$$D$(DOCDIR)/"; \
	if [ -f docs/API.md ]; then $(INSTALL) -m 0644 docs/API.md "$$D$(DOCDIR)/API.md"; fi; \
	$(INSTALL) -m 0644 lighttpd.conf apache.conf "$$D$(PKGDATADIR)/examples/"; \
	for f in nginx.conf nginx-cgi.conf; do \
	    sed $(NGINX_SED) $$f >"$$D$(PKGDATADIR)/examples/$$f"; chmod 0644 "$$D$(PKGDATADIR)/examples/$$f"; done; \
	sed $(INSTALL_SED) deploy/env.example >"$$D$(PKGDATADIR)/examples/env"; chmod 0644 "$$D$(PKGDATADIR)/examples/env"; \
	for f in $(WEB_CONFS); do \
	    case "$$fresh" in \
	    *" $$f "*) if ! cmp -s "$$D$(PKGDATADIR)/examples/$$f" "$$D$(CONFDIR)/$$f"; then \
	            $(INSTALL) -m 0644 "$$D$(PKGDATADIR)/examples/$$f" "$$D$(CONFDIR)/$$f"; \
	            echo "install: updated $(CONFDIR)/$$f (not edited since the last install)"; fi ;; \
	    *) if [ -e "$$D$(CONFDIR)/$$f" ]; then \
	            echo "install: kept the edited $(CONFDIR)/$$f (new one: $(PKGDATADIR)/examples/$$f)"; \
	        else $(INSTALL) -m 0644 "$$D$(PKGDATADIR)/examples/$$f" "$$D$(CONFDIR)/$$f"; fi ;; \
	    esac; done; \
	if [ -e "$$D$(CONFDIR)/env" ]; then echo "install: kept $(CONFDIR)/env"; \
	else $(INSTALL) -m 0600 "$$D$(PKGDATADIR)/examples/env" "$$D$(CONFDIR)/env"; \
	    echo "install: wrote $(CONFDIR)/env (mode 0600): fill in its settings"; fi; \
	for u in $(UNITS); do \
	    sed $(INSTALL_SED) $(UNIT_SED) $$u >"$$D$(SYSTEMDUNITDIR)/$${u##*/}"; chmod 0644 "$$D$(SYSTEMDUNITDIR)/$${u##*/}"; done; \
	echo "install: programs in $(LIBEXECDIR), settings in $(CONFDIR), units in $(SYSTEMDUNITDIR)"

uninstall:
	@set -e; D='$(DESTDIR)'; \
	for p in $(notdir $(PROGRAMS)); do rm -f "$$D$(LIBEXECDIR)/$$p"; done; \
	for u in $(notdir $(UNITS)); do rm -f "$$D$(SYSTEMDUNITDIR)/$$u"; done; \
	for f in $(WEB_CONFS); do \
	    if cmp -s "$$D$(CONFDIR)/$$f" "$$D$(PKGDATADIR)/examples/$$f"; then rm -f "$$D$(CONFDIR)/$$f"; \
	    elif [ -e "$$D$(CONFDIR)/$$f" ]; then echo "uninstall: kept the edited $(CONFDIR)/$$f"; fi; done; \
	[ ! -e "$$D$(CONFDIR)/env" ] || echo "uninstall: kept $(CONFDIR)/env (it holds secrets: remove it yourself)"; \
	rm -rf "$$D$(PKGDATADIR)" "$$D$(DOCDIR)"; \
	rmdir "$$D$(LIBEXECDIR)" "$$D$(CONFDIR)" 2>/dev/null || true
