# Portico build. `make` builds build/portico and build/portico-quote.
# Every .c under src/ (except src/quote/) goes into the proxy; src/quote/ is the example backend.

CC      ?= gcc
PKGS    := openssl libnghttp2 yaml-0.1 jansson libcares libcurl libpcre2-8
CFLAGS  ?= -O2 -g
override CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wpointer-arith \
           -fno-strict-aliasing -D_GNU_SOURCE -Isrc
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LDLIBS  += $(PKG_LIBS) -lpthread -lm

BUILD   ?= build
SRCS    := $(shell find src -name '*.c' -not -path 'src/quote/*' | sort)
LIBSRCS := $(filter-out src/main.c,$(SRCS))
OBJS    := $(SRCS:%.c=$(BUILD)/obj/%.o)
LIBOBJS := $(LIBSRCS:%.c=$(BUILD)/obj/%.o)
QUOTE_SRCS := $(shell find src/quote -name '*.c' | sort)
UNIT_SRCS  := $(shell find tests/unit -name 'test_*.c' 2>/dev/null | sort)
UNIT_BINS  := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
PYTHON  := /usr/bin/python3

.PHONY: all deps test layers unit integration asan fuzz fuzz-objects fuzz-link-flags bench run clean
all: $(BUILD)/portico $(BUILD)/portico-quote $(BUILD)/tests/h1parse

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/portico: $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/portico-quote: $(QUOTE_SRCS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ -lpthread

$(BUILD)/tests/%: tests/unit/%.c $(LIBOBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Itests/unit $< $(LIBOBJS) -o $@ $(LDLIBS) -lcmocka

# Portico's request parser as a command, for the framing property test.
$(BUILD)/tests/h1parse: tests/tools/h1parse.c $(BUILD)/obj/src/http/h1.o $(BUILD)/obj/src/core/common.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@

deps:
	@bash scripts/deps.sh

# The folder rule (src/ folders include one way, down; see the script's opening paragraph).
layers:
	@bash scripts/check-layers.sh

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

integration: all
	$(PYTHON) -m pytest -q tests/integration

test: deps layers
	$(MAKE) all unit
	$(MAKE) integration

asan: deps
	$(MAKE) BUILD=build-asan CC=clang \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined" all unit
	PORTICO_BUILD=build-asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  $(PYTHON) -m pytest -q tests/integration

# Every tests/fuzz/fuzz_*.c for FUZZ_SECONDS (default 60) each: see tests/fuzz/run.sh.
fuzz: deps
	@bash tests/fuzz/run.sh

# For tests/fuzz/run.sh (with BUILD=build/fuzz and instrumenting CFLAGS): the objects of src/
# that fuzz targets without a `// fuzz-sources:` line link, and on three lines the compile
# flags, the objects and the libraries to link them with.
fuzz-objects: $(LIBOBJS)
fuzz-link-flags:
	@echo '$(PKG_CFLAGS)'
	@echo '$(LIBOBJS)'
	@echo '$(LDLIBS)'

# The benchmark skips Portico (with a message) when it does not build, so nginx and HAProxy can
# still be measured.
bench: deps $(BUILD)/portico-quote
	@$(MAKE) --no-print-directory $(BUILD)/portico || echo "bench: $(BUILD)/portico did not build"
	@bash bench/run.sh

run: deps all
	@bash scripts/run-quickstart.sh

clean:
	rm -rf build build-asan

-include $(OBJS:.o=.d)
