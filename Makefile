# libattention — the README's commands: `make demo`, `make test`. Others: `make lib`,
# `make bench`, `make golden`, `make fuzz`, `make test-sanitize`, `make clean`. TARGET_CPU
# selects the CPU the kernels are compiled for (default: this machine; an LLVM CPU name such
# as TARGET_CPU=haswell builds for any AVX2 + FMA machine).

SWIFT      ?= swift
PYTHON     ?= python3
CC         ?= cc
TARGET_CPU ?= native
export ATTENTION_TARGET_CPU := $(TARGET_CPU)

BUILD   := .build/release
LIB     := $(BUILD)/libattention.so
OUT     := .build/c
CFLAGS  := -std=c11 -O2 -Wall -Wextra -Werror -Iinclude
LDLIBS  := -L$(BUILD) -lattention -Wl,-rpath,$(abspath $(BUILD)) -lm

C_TESTS    := $(patsubst Tests/c/%.c,$(OUT)/%,$(wildcard Tests/c/test_*.c))
C_EXAMPLES := $(patsubst examples/c/%.c,$(OUT)/%,$(wildcard examples/c/*.c))

.PHONY: all lib demo test test-swift test-c test-python python-deps golden bench fuzz fuzz-lib test-sanitize clean

all: lib

lib:
	$(SWIFT) build -c release --product attention

python-deps:
	@$(PYTHON) -c "import numpy, pytest, hypothesis" 2>/dev/null || \
		$(PYTHON) -m pip install --quiet numpy pytest hypothesis

$(OUT)/%: Tests/c/%.c Tests/c/check.h Tests/c/reference.h include/attention.h lib
	@mkdir -p $(OUT)
	$(CC) $(CFLAGS) -ITests/c $< -o $@ $(LDLIBS)

$(OUT)/%: examples/c/%.c include/attention.h lib
	@mkdir -p $(OUT)
	$(CC) $(CFLAGS) $< -o $@ $(LDLIBS)

demo: lib python-deps $(C_EXAMPLES)
	@for p in $(C_EXAMPLES); do echo "== $$p"; $$p || exit 1; done
	$(PYTHON) examples/python/demo.py
	$(PYTHON) examples/python/train_mha.py

test: test-swift test-c test-python

test-swift:
	$(SWIFT) test

test-c: lib $(C_TESTS)
	@for p in $(C_TESTS); do echo "== $$p"; $$p || exit 1; done

test-python: lib python-deps
	$(PYTHON) -m pytest Tests/python -q

BENCH := .build/bench

$(BENCH)/fma_probe: benchmarks/fma_probe.c
	@mkdir -p $(BENCH)
	$(CC) -O2 -march=native -pthread $< -o $@

$(BENCH)/tiny_call: benchmarks/tiny_call.c include/attention.h lib
	@mkdir -p $(BENCH)
	$(CC) $(CFLAGS) $< -o $@ $(LDLIBS)

bench: lib python-deps $(BENCH)/fma_probe $(BENCH)/tiny_call
	$(SWIFT) build -c release --product AttentionBench
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
	@mkdir -p .build-asan/c
	@for t in Tests/c/test_*.c; do p=.build-asan/c/$$(basename $$t .c); \
		$(SAN_CC) $(SAN_CFLAGS) -fsanitize=address,undefined -fno-sanitize-recover=all $$t -o $$p \
			-L$(ASAN_LIB) -lattention -Wl,-rpath,$(ASAN_LIB) -lm || exit 1; \
		echo "== $$p (ASan + UBSan + LSan)"; ASAN_OPTIONS=detect_leaks=1 $$p || exit 1; done
	ATTENTION_LIB=$(ASAN_LIB)/libattention.so ASAN_OPTIONS=detect_leaks=0 \
		LD_PRELOAD=$$($(SAN_CC) -print-file-name=libclang_rt.asan-x86_64.so) $(PYTHON) -m pytest Tests/python -q
	$(SWIFT) build -c release --product attention --build-path .build-tsan -Xswiftc -sanitize=thread \
		-Xswiftc -no-static-stdlib
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

golden:
	KERAS_BACKEND=jax JAX_ENABLE_X64=1 $(PYTHON) Tests/golden/make_golden.py

clean:
	rm -rf .build
