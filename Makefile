# gemini-backend: one plain Makefile.
#   make            build everything into $(BUILD) (default build/)
#   make asan       the same with AddressSanitizer + UBSan into build-asan/
#   make run        check PORT, install what is missing (no test tools), build, start the stack in the foreground
#   make test       install what is missing, build, run every test; last line "N passed, M failed"
#   make bench      benchmarks (see README)
# User CFLAGS/LDFLAGS are added to ours, never replace them.

BUILD    ?= build
SANITIZE ?= $(if $(filter build-asan,$(BUILD)),1,)
CC       ?= cc
PKGS      = fcgi hiredis json-c libjwt libcurl libcrypto libpq libargon2

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN      = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wformat=2 -Wno-format-nonliteral
REAL_CFLAGS  = -std=c11 -D_GNU_SOURCE -DDEFAULT_VAR_DIR=\"$(CURDIR)/var\" -O2 -g $(WARN) -Ilib $(PKG_CFLAGS) $(CFLAGS)
REAL_LDFLAGS = -Wl,--as-needed $(LDFLAGS)
ifneq ($(SANITIZE),)
REAL_CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
REAL_LDFLAGS += -fsanitize=address,undefined
endif
LIBS = $(PKG_LIBS) -lm

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
BENCH_BIN  := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
HDRS       := $(wildcard lib/*.h)
# The static web root served at / (web client), /docs (Swagger UI over openapi.yaml) and /openapi.yaml.
SWAGGER    := web/node_modules/swagger-ui-dist
WWW        := $(BUILD)/www
WWW_FILES  := $(WWW)/index.html $(WWW)/static/app.js $(WWW)/static/style.css $(WWW)/docs/index.html \
              $(WWW)/docs/swagger-ui-bundle.js $(WWW)/docs/swagger-ui.css $(WWW)/openapi.yaml

# The version --version prints: the VERSION file, plus git describe when this is a git checkout
# ("1.0.0+g46a08b4-dirty"). Override with `make GB_VERSION=...` (a packaging build). build/version.h is
# rewritten only when it changes, so only lib/cli.o and the links follow a new commit.
GB_VERSION ?= $(shell v=$$(cat VERSION 2>/dev/null || echo 0.0.0); g=$$(git describe --always --dirty 2>/dev/null); echo "$$v$${g:++g$$g}")

.PHONY: all asan unit deps deps-test run test bench faults clean format FORCE
all: $(LIB_A) $(CGI_BIN) $(if $(WORKER_SRC),$(WORKER_BIN)) $(UNIT_BIN) $(BENCH_BIN) $(WWW_FILES)

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

$(BUILD)/bench/%: bench/%.c
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) -o $@ $< $(REAL_LDFLAGS) $(LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB_A) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) $(shell pkg-config --cflags cmocka) -o $@ $< $(LIB_A) $(REAL_LDFLAGS) $(LIBS) $(shell pkg-config --libs cmocka)

$(WWW)/index.html: web/index.html
	@mkdir -p $(@D)
	cp $< $@
$(WWW)/static/%: web/%
	@mkdir -p $(@D)
	cp $< $@
$(WWW)/docs/index.html: web/docs/index.html
	@mkdir -p $(@D)
	cp $< $@
$(WWW)/openapi.yaml: openapi.yaml
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

test: deps-test
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory asan
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
	clang-format -i lib/*.c lib/*.h cgi-bin/*.c worker/*.c bench/*.c tests/unit/*.c

clean:
	rm -rf build build-asan
