# libattention — the README's commands: `make demo`, `make test`. Others: `make lib`,
# `make bench`, `make golden`, `make fuzz`, `make test-sanitize`, `make install` /
# `make uninstall` (PREFIX, DESTDIR), `make clean`. TARGET_CPU selects the CPU the kernels
# are compiled for (default: this machine; an LLVM CPU name such as TARGET_CPU=haswell builds
# for any AVX2 + FMA machine, TARGET_CPU=x86-64 for any x86-64); each non-native choice
# builds in its own .build-cpu-<name> directory, and every target uses that build.

SWIFT      ?= swift
PYTHON     ?= python3
CC         ?= cc
TARGET_CPU ?= native
export ATTENTION_TARGET_CPU := $(TARGET_CPU)

SCRATCH := $(if $(filter native,$(TARGET_CPU)),.build,.build-cpu-$(TARGET_CPU))
BUILD   := $(SCRATCH)/release
LIB     := $(BUILD)/libattention.so
OUT     := $(SCRATCH)/c
SWIFT_BUILD := $(SWIFT) build -c release --scratch-path $(SCRATCH)
# Python finds this build's library (tests, examples, bench).
export ATTENTION_LIB := $(abspath $(LIB))
CFLAGS  := -std=c11 -O2 -Wall -Wextra -Werror -Iinclude
LDLIBS  := -L$(BUILD) -lattention -Wl,-rpath,$(abspath $(BUILD)) -lm

C_TESTS    := $(patsubst Tests/c/%.c,$(OUT)/%,$(wildcard Tests/c/test_*.c))
C_EXAMPLES := $(patsubst examples/c/%.c,$(OUT)/%,$(wildcard examples/c/*.c))

.PHONY: all lib demo test test-swift test-c test-python test-install python-deps golden bench fuzz fuzz-lib \
	test-sanitize install uninstall clean

all: lib

# The library's SONAME (libattention.so.$(SOMAJOR)) names what programs linked with
# -lattention load: each build directory gets that link next to the library.
soname_link = ln -sf libattention.so $(1)/libattention.so.$(SOMAJOR)

lib:
	$(SWIFT_BUILD) --product attention
	@$(call soname_link,$(BUILD))

python-deps:
	@$(PYTHON) -c "import numpy, pytest, hypothesis, h5py" 2>/dev/null || \
		$(PYTHON) -m pip install --quiet numpy pytest hypothesis h5py

$(OUT)/%: Tests/c/%.c $(wildcard Tests/c/*.h) include/attention.h lib
	@mkdir -p $(OUT)
	$(CC) $(CFLAGS) -ITests/c $< -o $@ $(LDLIBS)

$(OUT)/%: examples/c/%.c include/attention.h lib
	@mkdir -p $(OUT)
	$(CC) $(CFLAGS) $< -o $@ $(LDLIBS)

demo: lib python-deps $(C_EXAMPLES)
	@for p in $(C_EXAMPLES); do echo "== $$p"; $$p || exit 1; done
	$(PYTHON) examples/python/demo.py
	$(PYTHON) examples/python/train_mha.py

test: test-swift test-c test-python test-install

test-swift:
	$(SWIFT) test --scratch-path $(SCRATCH)

test-c: lib $(C_TESTS)
	@for p in $(C_TESTS); do echo "== $$p"; $$p || exit 1; done

test-python: lib python-deps
	$(PYTHON) -m pytest Tests/python -q

# Installing: the library with its SONAME and symlinks, the header, a pkg-config file.
PREFIX  ?= /usr/local
VERSION := $(shell sed -n 's/^\#define ATT_VERSION_[A-Z]* \([0-9]*\)/\1/p' include/attention.h | paste -sd.)
SOMAJOR := $(firstword $(subst ., ,$(VERSION)))
LIBDIR  := $(DESTDIR)$(PREFIX)/lib

install: lib
	install -d $(LIBDIR)/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(LIB) $(LIBDIR)/libattention.so.$(VERSION)
	ln -sf libattention.so.$(VERSION) $(LIBDIR)/libattention.so.$(SOMAJOR)
	ln -sf libattention.so.$(SOMAJOR) $(LIBDIR)/libattention.so
	install -m 644 include/attention.h $(DESTDIR)$(PREFIX)/include/attention.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' packaging/attention.pc.in \
		> $(LIBDIR)/pkgconfig/attention.pc

uninstall:
	rm -f $(LIBDIR)/libattention.so.$(VERSION) $(LIBDIR)/libattention.so.$(SOMAJOR) $(LIBDIR)/libattention.so \
		$(DESTDIR)$(PREFIX)/include/attention.h $(LIBDIR)/pkgconfig/attention.pc

# The installs, as a user makes them: `make install` into a scratch prefix, the demo built
# with pkg-config and run, `make uninstall`; `pip install ./python` into a new virtualenv and
# `import attention` from another directory; `pip wheel ./python` gives a platform wheel
# carrying the library.
INSTALL_TEST := $(abspath $(SCRATCH)/install-test)

test-install: lib
	rm -rf $(INSTALL_TEST) && mkdir -p $(INSTALL_TEST)
	$(MAKE) --no-print-directory install PREFIX=$(INSTALL_TEST)/prefix
	readelf -d $(INSTALL_TEST)/prefix/lib/libattention.so | grep -q 'SONAME.*libattention.so.$(SOMAJOR)'
	PKG_CONFIG_PATH=$(INSTALL_TEST)/prefix/lib/pkgconfig $(CC) -std=c11 -Wall -Werror examples/c/demo.c \
		$$(PKG_CONFIG_PATH=$(INSTALL_TEST)/prefix/lib/pkgconfig pkg-config --cflags --libs attention) \
		-o $(INSTALL_TEST)/demo
	env -u ATTENTION_LIB $(INSTALL_TEST)/demo > /dev/null
	$(MAKE) --no-print-directory uninstall PREFIX=$(INSTALL_TEST)/prefix
	test -z "$$(find $(INSTALL_TEST)/prefix -type f -o -type l)"
	$(PYTHON) -m venv $(INSTALL_TEST)/venv
	ATTENTION_TARGET_CPU=$(TARGET_CPU) $(INSTALL_TEST)/venv/bin/pip install --quiet ./python
	cd /tmp && env -u ATTENTION_LIB $(INSTALL_TEST)/venv/bin/python -c "import attention, numpy; \
		x = numpy.ones((1, 4, 8)); print('pip install: attention', attention.__version__, 'from', \
		attention.__file__, attention.MultiHeadAttention(num_heads=2, key_dim=4)(x, x).shape)"
	$(INSTALL_TEST)/venv/bin/pip wheel --quiet --no-deps ./python -w $(INSTALL_TEST)/wheel
	$(PYTHON) -m zipfile -l $(INSTALL_TEST)/wheel/libattention-$(VERSION)-*-linux_*.whl | grep -q attention/libattention.so
	@echo "test-install: make install / pkg-config / uninstall, pip install ./python and pip wheel work"

BENCH := $(SCRATCH)/bench

$(BENCH)/fma_probe: benchmarks/fma_probe.c
	@mkdir -p $(BENCH)
	$(CC) -O2 -march=native -pthread $< -o $@

$(BENCH)/tiny_call: benchmarks/tiny_call.c include/attention.h lib
	@mkdir -p $(BENCH)
	$(CC) $(CFLAGS) $< -o $@ $(LDLIBS)

bench: lib python-deps $(BENCH)/fma_probe $(BENCH)/tiny_call
	$(SWIFT_BUILD) --product AttentionBench
	$(PYTHON) benchmarks/bench.py --fma-probe $(BENCH)/fma_probe --tiny-call $(BENCH)/tiny_call \
		--gemm-bench $(BUILD)/AttentionBench

# Sanitizers: the library with Swift's AddressSanitizer (C tests with clang's ASan + UBSan +
# LeakSanitizer, Python tests under ASan), and ThreadSanitizer on the thread test (TSan needs
# the shared Swift runtime: a static Dispatch is invisible to its interceptors).
SAN_BIN    := $(dir $(realpath $(shell command -v $(SWIFT))))
SAN_CC     := $(SAN_BIN)clang
SAN_CFLAGS := -std=c11 -O1 -g -fno-omit-frame-pointer -fuse-ld=lld -Wall -Wextra -Werror -Iinclude -ITests/c
SWIFT_RT   := $(abspath $(SAN_BIN)../lib/swift/linux)
ASAN_LIB   := $(abspath .build-asan/release)
TSAN_LIB   := $(abspath .build-tsan/release)

test-sanitize: python-deps
	$(SWIFT) build -c release --product attention --build-path .build-asan -Xswiftc -sanitize=address
	@$(call soname_link,$(ASAN_LIB))
	@mkdir -p .build-asan/c
	@for t in Tests/c/test_*.c; do p=.build-asan/c/$$(basename $$t .c); \
		$(SAN_CC) $(SAN_CFLAGS) -fsanitize=address,undefined -fno-sanitize-recover=all $$t -o $$p \
			-L$(ASAN_LIB) -lattention -Wl,-rpath,$(ASAN_LIB) -lm || exit 1; \
		echo "== $$p (ASan + UBSan + LSan)"; ASAN_OPTIONS=detect_leaks=1 $$p || exit 1; done
	ATTENTION_LIB=$(ASAN_LIB)/libattention.so ASAN_OPTIONS=detect_leaks=0 \
		LD_PRELOAD=$$($(SAN_CC) -print-file-name=libclang_rt.asan-x86_64.so) $(PYTHON) -m pytest Tests/python -q
	$(SWIFT) build -c release --product attention --build-path .build-tsan -Xswiftc -sanitize=thread \
		-Xswiftc -no-static-stdlib
	@$(call soname_link,$(TSAN_LIB))
	@mkdir -p .build-tsan/c
	$(SAN_CC) $(SAN_CFLAGS) -fsanitize=thread Tests/c/test_threads.c -o .build-tsan/c/test_threads \
		-L$(TSAN_LIB) -lattention -Wl,-rpath,$(TSAN_LIB) -L$(SWIFT_RT) -ldispatch -lBlocksRuntime \
		-Wl,-rpath,$(SWIFT_RT) -lm
	@echo "== .build-tsan/c/test_threads (TSan)"; .build-tsan/c/test_threads

# Fuzzing: a libFuzzer harness (Tests/fuzz/fuzz_api.c) driving the C API, against the library
# built with AddressSanitizer and coverage; replays Tests/fuzz/crashes/ first (regressions),
# then fuzzes a copy of the seed corpus for FUZZ_SECONDS.
FUZZ_SECONDS ?= 120
FUZZ_BUILD   := .build-fuzz
FUZZ_BIN     := $(FUZZ_BUILD)/fuzz/fuzz_api
FUZZ_SWIFTFLAGS := -Xswiftc -sanitize=address -Xswiftc -O \
	-Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp \
	-Xcc -fsanitize=address,undefined,fuzzer-no-link -Xcc -fno-sanitize-recover=all

fuzz-lib:
	$(SWIFT) build -c release --product attention --scratch-path $(FUZZ_BUILD) $(FUZZ_SWIFTFLAGS)
	@$(call soname_link,$(FUZZ_BUILD)/release)

$(FUZZ_BIN): Tests/fuzz/fuzz_api.c include/attention.h fuzz-lib
	@mkdir -p $(dir $@)
	$(SAN_CC) -std=c11 -g -O1 -Wall -Wextra -Werror -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-fuse-ld=lld -Iinclude $< -o $@ -L$(FUZZ_BUILD)/release -lattention \
		-Wl,-rpath,$(abspath $(FUZZ_BUILD))/release -lm

fuzz: $(FUZZ_BIN)
	$(FUZZ_BIN) Tests/fuzz/crashes/*
	rm -rf $(FUZZ_BUILD)/corpus && cp -r Tests/fuzz/corpus $(FUZZ_BUILD)/corpus
	$(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) -timeout=60 -rss_limit_mb=4096 -print_final_stats=1 \
		-artifact_prefix=$(FUZZ_BUILD)/ $(FUZZ_BUILD)/corpus

# Regenerates the Keras golden files (outputs, gradients, weight files) with a python that has
# Keras 3.15 + JAX + h5py; the TF Model Garden ones need TF_PYTHON (tf-models-official 2.20).
TF_PYTHON ?= $(PYTHON)

golden:
	KERAS_BACKEND=jax JAX_ENABLE_X64=1 $(PYTHON) Tests/golden/make_golden.py
	KERAS_BACKEND=jax JAX_ENABLE_X64=1 $(PYTHON) Tests/golden/make_grad_golden.py
	KERAS_BACKEND=jax JAX_ENABLE_X64=1 $(PYTHON) Tests/golden/make_h5_weights.py
	$(TF_PYTHON) Tests/golden/make_reuse_golden.py
	$(TF_PYTHON) Tests/golden/make_reuse_grad_golden.py
	$(TF_PYTHON) Tests/golden/make_reuse_h5_weights.py

clean:
	rm -rf .build
