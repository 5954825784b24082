# libattention — the README's commands: `make demo`, `make test`. Others: `make lib`,
# `make bench`, `make golden`, `make clean`. TARGET_CPU selects the CPU the kernels are
# compiled for (default: this machine; e.g. TARGET_CPU=x86-64-v3 for portable binaries).

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

.PHONY: all lib demo test test-swift test-c test-python python-deps golden bench clean

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

golden:
	KERAS_BACKEND=jax JAX_ENABLE_X64=1 $(PYTHON) Tests/golden/make_golden.py

clean:
	rm -rf .build
