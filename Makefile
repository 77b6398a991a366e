# Hashi — build, run, test, bench.  See README.md.
#
# Non-recursive: every .c under proto/ and server/ is picked up by
# wildcard, so adding a module needs no change here.  Output goes to build/.

PREFIX  ?= /usr/local
BUILD   := build
DATA    ?= $(CURDIR)/data

CC      := gcc
CXX     := g++
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L \
           -Wall -Wextra -MMD -MP
CXXFLAGS ?= -O2 -g
CXXFLAGS += -std=c++17 -Wall -Wextra -MMD -MP
DCMTK_LIBS := -ldcmjpls -ldcmjpeg -ldcmimage -ldcmimgle -ldcmnet -ldcmdata \
              -loflog -lofstd -ljpeg
LIBS    := $(DCMTK_LIBS) -lwebsockets -lev -lssl -lcrypto -lsqlite3 -ljansson \
           -lpthread -lstdc++ -lm

PROTO_C   := $(wildcard proto/*.c)
PROTO_CC  := $(wildcard proto/*.cc)
SERVER_C  := $(filter-out server/main.c,$(wildcard server/*.c))
CLIENT_C  := $(filter-out client/hashi.c client/gateway_main.c,$(wildcard client/*.c))

PROTO_O   := $(PROTO_C:%.c=$(BUILD)/%.o) $(PROTO_CC:%.cc=$(BUILD)/%.o)
SERVER_O  := $(SERVER_C:%.c=$(BUILD)/%.o)
CLIENT_O  := $(CLIENT_C:%.c=$(BUILD)/%.o)

BINS := $(BUILD)/hashi-server
ifneq ($(wildcard client/hashi.c),)
BINS += $(BUILD)/hashi
endif
ifneq ($(wildcard client/gateway_main.c),)
BINS += $(BUILD)/hashi-gateway
endif

UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

# Test peers DCMTK does not ship (tests/tools/*.cc, one file each).
TOOL_BINS := $(patsubst tests/tools/%.cc,$(BUILD)/tests/%,\
               $(wildcard tests/tools/*.cc))

.PHONY: all deps run demo-send test unit bench fuzz clean install
all: $(BINS) $(UNIT_BINS) $(TOOL_BINS)

$(TOOL_BINS): $(BUILD)/tests/%: tests/tools/%.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -o $@ $< $(DCMTK_LIBS) -lpthread

deps:
	@sh scripts/deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c -o $@ $<

$(BUILD)/hashi-server: $(BUILD)/server/main.o $(SERVER_O) $(PROTO_O)
	$(CC) -o $@ $^ $(LIBS)

$(BUILD)/hashi: $(BUILD)/client/hashi.o $(CLIENT_O) $(PROTO_O)
	$(CC) -o $@ $^ $(LIBS)

$(BUILD)/hashi-gateway: $(BUILD)/client/gateway_main.o $(CLIENT_O) $(PROTO_O)
	$(CC) -o $@ $^ $(LIBS)

# Each unit test links everything but the mains: one cmocka binary a suite.
# Suites of proto/ alone (test_dicom, test_deid, test_msg, test_util) link
# only it.
PROTO_TESTS := $(BUILD)/tests/test_dicom $(BUILD)/tests/test_deid \
               $(BUILD)/tests/test_dicomweb \
               $(BUILD)/tests/test_msg \
               $(BUILD)/tests/test_util
$(PROTO_TESTS): $(BUILD)/tests/%: tests/unit/%.c $(PROTO_O)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(filter-out %.h,$^) $(LIBS) -lcmocka

$(filter-out $(PROTO_TESTS),$(UNIT_BINS)): $(BUILD)/tests/%: tests/unit/%.c $(SERVER_O) $(CLIENT_O) $(PROTO_O)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(filter-out %.h,$^) $(LIBS) -lcmocka

run: deps all
	@sh scripts/run.sh "$(DATA)"

# The demo's live scenario, against the server `make run` started.
demo-send: all
	@sh scripts/demo_send.sh "$(DATA)"

test:
	@sh scripts/deps.sh --test
	@$(MAKE) --no-print-directory all
	@sh tests/run.sh

unit: all
	@sh tests/run.sh --unit

bench:
	@sh scripts/deps.sh --bench
	@$(MAKE) --no-print-directory all
	@sh bench/run.sh

fuzz:
	@sh scripts/deps.sh
	@sh tests/fuzz/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/hashi
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	cp -r client/web $(DESTDIR)$(PREFIX)/share/hashi/

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
