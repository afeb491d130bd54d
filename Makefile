# gemini-backend: one plain Makefile.
#   make            build everything into $(BUILD) (default build/)
#   make asan       the same with AddressSanitizer + UBSan into build-asan/
#   make run        install what is missing, build, start the whole stack in the foreground
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

.PHONY: all asan unit deps run test bench clean format
all: $(LIB_A) $(CGI_BIN) $(if $(WORKER_SRC),$(WORKER_BIN)) $(UNIT_BIN) $(BENCH_BIN) $(WWW_FILES)

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan SANITIZE=1 all

$(BUILD)/lib/%.o: lib/%.c $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) -c -o $@ $<

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

run: deps
	@$(MAKE) --no-print-directory all
	@exec scripts/run.sh

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory asan
	@tests/run.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@bench/run.sh

format:
	clang-format -i lib/*.c lib/*.h cgi-bin/*.c worker/*.c bench/*.c tests/unit/*.c

clean:
	rm -rf build build-asan
