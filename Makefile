# libattention — the README's commands: `make demo`, `make test`. Others: `make lib`,
# `make bench` (`make bench-venv`), `make golden`, `make fuzz`, `make test-sanitize`, `make install` /
# `make uninstall` (PREFIX, DESTDIR), `make python-lib` (python/setup.py's), `make clean`.
# TARGET_CPU selects the CPU the kernels are compiled for. The default, dispatch, is the
# library for any x86-64: the package built once per kernel variant (avx512, avx2, baseline;
# each in .build-variant-<name>) and a loader, compiled for baseline x86-64, that picks the
# variant at run time (Sources/CPUDispatch). An LLVM CPU name builds for one class of machine
# instead (native: this one; haswell: any AVX2 + FMA machine; x86-64: any x86-64) in its own
# .build-cpu-<name> directory; every target uses the build TARGET_CPU names.

SWIFT      ?= swift
PYTHON     ?= python3
CC         ?= cc
TARGET_CPU ?= dispatch
DISPATCH   := $(filter dispatch,$(TARGET_CPU))
# The Swift builds that are not variants (tests, bench, checked, fuzz) compile for this CPU.
export ATTENTION_TARGET_CPU := $(if $(DISPATCH),native,$(TARGET_CPU))
# Whether this CPU has 512-bit registers, for native builds (Package.swift: kernel vector width).
export ATTENTION_NATIVE_AVX512 := $(if $(shell grep -qw avx512f /proc/cpuinfo 2>/dev/null && echo y),1,0)

SCRATCH := $(if $(DISPATCH),.build,.build-cpu-$(TARGET_CPU))
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

.PHONY: all lib demo test test-swift test-c test-checked test-variants test-emulated bench-builds test-python test-install \
	python-deps golden bench bench-venv fuzz fuzz-lib test-sanitize install uninstall python-lib clean

all: lib

# The library's SONAME (libattention.so.$(SOMAJOR)) names what programs linked with
# -lattention load: each build directory gets that link next to the library.
soname_link = ln -sf libattention.so $(1)/libattention.so.$(SOMAJOR)

VARIANTS := avx512 avx2 baseline

ifneq ($(DISPATCH),)
lib:
	@for v in $(VARIANTS); do echo "== kernel variant $$v"; \
		ATTENTION_VARIANT=$$v $(SWIFT) build -c release --product attention --scratch-path .build-variant-$$v \
		&& install -D -m 755 .build-variant-$$v/release/libattention.so $(BUILD)/libattention-$$v.so || exit 1; done
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror -Iinclude -march=x86-64 -fPIC -shared \
		Sources/CPUDispatch/attention_dispatch.c -o $(LIB) -Wl,-soname,libattention.so.$(SOMAJOR) \
		-Wl,--version-script=Sources/LibAttention/exports.map -ldl -lpthread
	@$(call soname_link,$(BUILD))
else
lib:
	$(SWIFT_BUILD) --product attention
	@$(call soname_link,$(BUILD))
endif

python-deps:
	@$(PYTHON) -c "import numpy, pytest, hypothesis, h5py, ml_dtypes" 2>/dev/null || \
		$(PYTHON) -m pip install --quiet numpy pytest hypothesis h5py ml_dtypes

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
	$(PYTHON) examples/python/generate.py

test: test-swift test-c test-checked test-python test-variants test-emulated test-install

test-swift:
	$(SWIFT) test --scratch-path $(SCRATCH)

test-c: lib $(C_TESTS)
	@for p in $(C_TESTS); do echo "== $$p"; $$p || exit 1; done

# The dispatched library's other variants on this machine, through the cap: the C and
# Python suites again with ATTENTION_MAX_ISA=avx2 and =baseline (the runs above took the best);
# and the Swift kernel tests built as the avx2 variant (6-row register tile, 8-lane vectors),
# whose multi-block shapes the small C and Python gradient cases do not reach.
test-variants: lib python-deps $(C_TESTS) $(OUT)/demo
ifneq ($(DISPATCH),)
	@if grep -qw avx2 /proc/cpuinfo; then echo "== swift test, kernels of the avx2 variant"; \
		ATTENTION_VARIANT=avx2 $(SWIFT) test -c release --scratch-path .build-variant-avx2 --filter AttentionKernelsTests \
		|| exit 1; fi
	@for v in avx2 baseline; do for p in $(C_TESTS); do echo "== $$p (ATTENTION_MAX_ISA=$$v)"; \
		ATTENTION_MAX_ISA=$$v $$p || exit 1; done; \
		echo "== pytest (ATTENTION_MAX_ISA=$$v)"; ATTENTION_MAX_ISA=$$v $(PYTHON) -m pytest Tests/python -q || exit 1; done
	@ATTENTION_MAX_ISA=bogus $(OUT)/demo 2>&1 | grep -q 'ATT_ERR_INTERNAL: libattention: ATTENTION_MAX_ISA is "bogus"' \
		&& echo "a cap naming no variant: every call fails with ATT_ERR_INTERNAL and says why"
endif

# CPUs without AVX-512, emulated (Debian's qemu-user-static, installed when missing): the C
# demo and the C tests that run in seconds on a Haswell (AVX2: the avx2 kernels) and a qemu64
# (baseline x86-64: the baseline kernels), and a Python layer call on a Haswell and on a
# Nehalem (baseline kernels too; numpy 2 itself needs SSE4.2, which qemu64 lacks), each
# checking which kernels ran.
EMULATED_TESTS := $(OUT)/demo $(OUT)/test_api $(OUT)/test_bad_input $(OUT)/test_mha $(OUT)/test_backward \
	$(OUT)/test_gqa_reuse $(OUT)/test_threads $(OUT)/test_cache
QEMU := qemu-x86_64-static

test-emulated: lib python-deps $(EMULATED_TESTS)
ifneq ($(DISPATCH),)
	@command -v $(QEMU) > /dev/null || (apt-get update -qq && apt-get install -y -qq qemu-user-static > /dev/null)
	@for cpu in Haswell:avx2:Haswell qemu64:baseline:Nehalem; do name=$${cpu%%:*}; want=$$(echo $$cpu | cut -d: -f2); \
		python_cpu=$${cpu##*:}; \
		for p in $(EMULATED_TESTS); do echo "== $$p on an emulated $$name"; \
			$(QEMU) -cpu $$name $$p > $(OUT)/emulated.log 2> /dev/null || { cat $(OUT)/emulated.log; exit 1; }; \
			tail -1 $(OUT)/emulated.log; done; \
		$(QEMU) -cpu $$name $(OUT)/demo 2> /dev/null | grep -q "$$want kernels" || { echo "demo on $$name: expected $$want kernels"; exit 1; }; \
		$(QEMU) -cpu $$python_cpu $$($(PYTHON) -c "import sys; print(sys.executable)") -c "import sys; \
			sys.path.insert(0, 'python'); import attention, numpy as np; from attention import reference; \
			rng = np.random.default_rng(0); x = rng.standard_normal((2, 5, 8)); \
			layer = attention.MultiHeadAttention(num_heads=2, key_dim=4, seed=1, dtype='float64'); out = layer(x, x); \
			expected, _ = reference.multi_head_attention(x, x, weights=layer.get_weights(), num_heads=2, key_dim=4); \
			assert attention.cpu_kernels() == '$$want', attention.cpu_kernels(); \
			error = abs(out - expected).max(); assert error < 1e-10, error; \
			print('python on an emulated $$python_cpu:', attention.cpu_kernels(), 'kernels, error', error)" \
			2> $(OUT)/emulated.log || { grep -v "TCG doesn't support" $(OUT)/emulated.log; exit 1; }; done
endif

# The checked build: the library with the kernels' bounds and overflow checks on (release
# builds otherwise use -Ounchecked), so an index error traps in a test instead of corrupting
# memory; the C thread sweep runs against it (the Swift tests already build with checks).
CHECKED := .build-checked/release

test-checked:
	ATTENTION_CHECKED=1 $(SWIFT) build -c release --product attention --scratch-path .build-checked
	@$(call soname_link,$(CHECKED))
	@mkdir -p .build-checked/c
	$(CC) $(CFLAGS) -ITests/c Tests/c/test_thread_sweep.c -o .build-checked/c/test_thread_sweep \
		-L$(CHECKED) -lattention -Wl,-rpath,$(abspath $(CHECKED)) -lm
	@echo "== .build-checked/c/test_thread_sweep (bounds and overflow checks on)"; .build-checked/c/test_thread_sweep

test-python: lib python-deps
	$(PYTHON) -m pytest Tests/python -q

# Installing: the library with its SONAME and symlinks, the header, a pkg-config file.
PREFIX  ?= /usr/local
VERSION := $(shell sed -n 's/^\#define ATT_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9][0-9]*\)$$/\2/p' include/attention.h | paste -sd.)
SOMAJOR := $(firstword $(subst ., ,$(VERSION)))
LIBDIR  := $(DESTDIR)$(PREFIX)/lib
# packaging/attention.pc.in with prefix $(1) and libdir $(2), on stdout.
pc_file = sed -e 's|@PREFIX@|$(1)|' -e 's|@LIBDIR@|$(2)|' -e 's|@VERSION@|$(VERSION)|' packaging/attention.pc.in

install: lib
	install -d $(LIBDIR)/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(LIB) $(LIBDIR)/libattention.so.$(VERSION)
	$(if $(DISPATCH),install -m 755 $(VARIANTS:%=$(BUILD)/libattention-%.so) $(LIBDIR)/)
	ln -sf libattention.so.$(VERSION) $(LIBDIR)/libattention.so.$(SOMAJOR)
	ln -sf libattention.so.$(SOMAJOR) $(LIBDIR)/libattention.so
	install -m 644 include/attention.h $(DESTDIR)$(PREFIX)/include/attention.h
	$(call pc_file,$(PREFIX),$${prefix}/lib) > $(LIBDIR)/pkgconfig/attention.pc

# The library inside the Python package (python/setup.py runs this; PYPKG: the package's
# directory in the wheel's build tree): libattention.so and a copy under its SONAME (a
# wheel holds no symlinks) and the kernel variants, all without debug info; attention.h in
# include/ and pkgconfig/attention.pc whose paths are relative to its own directory.
python-lib: lib
	@test -n "$(PYPKG)" || { echo "python-lib: PYPKG (the package's build directory) is not set"; exit 1; }
	rm -rf $(PYPKG)/libattention*.so* $(PYPKG)/include $(PYPKG)/pkgconfig
	mkdir -p $(PYPKG)/include $(PYPKG)/pkgconfig
	for f in libattention.so $(if $(DISPATCH),$(VARIANTS:%=libattention-%.so)); do \
		strip --strip-debug -o $(PYPKG)/$$f $(BUILD)/$$f || exit 1; done
	cp $(PYPKG)/libattention.so $(PYPKG)/libattention.so.$(SOMAJOR)
	install -m 644 include/attention.h $(PYPKG)/include/attention.h
	$(call pc_file,$${pcfiledir}/..,$${prefix}) > $(PYPKG)/pkgconfig/attention.pc

uninstall:
	rm -f $(LIBDIR)/libattention.so.$(VERSION) $(LIBDIR)/libattention.so.$(SOMAJOR) $(LIBDIR)/libattention.so \
		$(VARIANTS:%=$(LIBDIR)/libattention-%.so) $(DESTDIR)$(PREFIX)/include/attention.h \
		$(LIBDIR)/pkgconfig/attention.pc

# The installs, as a user makes them: `make install` into a scratch prefix, the demo built
# with pkg-config and run, `make uninstall`; the wheel (`pip wheel ./python`): its name
# (py3-none-manylinux_*) and files, then Tests/install/test_wheel.sh with each of
# INSTALL_PYTHONS (install with no swift on PATH, layer calls from /tmp, the C demo built
# with the package's pkg-config file).
INSTALL_TEST := $(abspath $(SCRATCH)/install-test)
# $(PYTHON), and a Python 3.12 when pyenv has one.
INSTALL_PYTHONS ?= $(PYTHON) $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3))
WHEEL_FILES := libattention.so libattention.so.$(SOMAJOR) include/attention.h pkgconfig/attention.pc \
	$(if $(DISPATCH),$(VARIANTS:%=libattention-%.so))

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
	ATTENTION_TARGET_CPU=$(TARGET_CPU) $(PYTHON) -m pip wheel --quiet --no-deps ./python -w $(INSTALL_TEST)/wheel
	@wheel=$$(ls $(INSTALL_TEST)/wheel/libattention-$(VERSION)-py3-none-manylinux_*_x86_64.whl) && echo "== $$wheel" && \
		$(PYTHON) -m zipfile -l $$wheel > $(INSTALL_TEST)/wheel/contents && \
		for f in $(WHEEL_FILES); do grep -q "^attention/$$f " $(INSTALL_TEST)/wheel/contents \
			|| { echo "the wheel lacks attention/$$f"; exit 1; }; done && \
		for py in $(INSTALL_PYTHONS); do Tests/install/test_wheel.sh $$py $$wheel $(INSTALL_TEST) || exit 1; done
	@echo "test-install: make install / pkg-config / uninstall, and the wheel (pip install without swift, C via pkg-config) work"

BENCH := $(SCRATCH)/bench

$(BENCH)/fma_probe: benchmarks/fma_probe.c
	@mkdir -p $(BENCH)
	$(CC) -O2 -march=native -pthread $< -o $@

$(BENCH)/tiny_call: benchmarks/tiny_call.c include/attention.h lib
	@mkdir -p $(BENCH)
	$(CC) $(CFLAGS) $< -o $@ $(LDLIBS)

# The peers' virtualenv: numpy, onnxruntime, onnx and torch (a CPU-only wheel when pip can see
# one, else PyPI's) from PyPI, made once by benchmarks/bench_venv.sh and reused (remove it, or
# `make clean`, to make it again; BENCH_TORCH=<pip requirement> picks another torch). One for
# every TARGET_CPU. `make bench` runs in it; when it cannot be made (no network) the bench runs
# with $(PYTHON), and torch / onnxruntime show "-" unless that python has them.
BENCH_VENV  := .build/bench-venv
BENCH_TORCH ?= auto
# (flock, when there is one: two make runs do not build it at once.)
make_bench_venv = mkdir -p $(dir $(BENCH_VENV)) && test -f $(BENCH_VENV)/complete || \
	$$(command -v flock > /dev/null && echo flock $(BENCH_VENV).lock) \
	benchmarks/bench_venv.sh $(PYTHON) $(BENCH_VENV) $(BENCH_TORCH)

bench-venv:
	@$(make_bench_venv)

# AttentionBench is built before the library: in a fresh tree SwiftPM replaces a .build/release
# directory (where the dispatched library is installed) with its symlink, library and all.
bench: python-deps $(BENCH)/fma_probe
	$(SWIFT_BUILD) --product AttentionBench
	@$(MAKE) --no-print-directory lib $(BENCH)/tiny_call
	@$(make_bench_venv) || echo "make bench: no peers' virtualenv ($(BENCH_VENV)); running with $(PYTHON)"
	$$(test -f $(BENCH_VENV)/complete && echo $(BENCH_VENV)/bin/python || echo $(PYTHON)) benchmarks/bench.py \
		--fma-probe $(BENCH)/fma_probe --tiny-call $(BENCH)/tiny_call --gemm-bench $(BUILD)/AttentionBench

# The dispatched library against single-CPU builds of the same sources, in one run: its
# avx512 kernels vs TARGET_CPU=native, its avx2 kernels (capped) vs TARGET_CPU=haswell.
bench-builds: lib python-deps
	$(MAKE) --no-print-directory lib TARGET_CPU=native
	$(MAKE) --no-print-directory lib TARGET_CPU=haswell
	$(PYTHON) benchmarks/compare_builds.py dispatch=$(LIB) native=.build-cpu-native/release/libattention.so \
		dispatch:avx2=$(LIB):avx2 haswell=.build-cpu-haswell/release/libattention.so

# Sanitizers: the library with Swift's AddressSanitizer (C tests with clang's ASan + UBSan +
# LeakSanitizer, Python tests under ASan) and objects' lifetimes ending at their last use (which
# the language allows; a buffer read after its owner's last use is then a use after free), and
# ThreadSanitizer on the thread test (with the shared Swift runtime; TSan's runtime intercepts
# libdispatch, so that links too).
SAN_BIN    := $(dir $(realpath $(shell command -v $(SWIFT))))
SAN_CC     := $(SAN_BIN)clang
SAN_CFLAGS := -std=c11 -O1 -g -fno-omit-frame-pointer -fuse-ld=lld -Wall -Wextra -Werror -Iinclude -ITests/c
SWIFT_RT   := $(abspath $(SAN_BIN)../lib/swift/linux)
ASAN_LIB   := $(abspath .build-asan/release)
TSAN_LIB   := $(abspath .build-tsan/release)

test-sanitize: python-deps
	$(SWIFT) build -c release --product attention --build-path .build-asan -Xswiftc -sanitize=address \
		-Xswiftc -Xfrontend -Xswiftc -enable-lexical-lifetimes=false
	@$(call soname_link,$(ASAN_LIB))
	@mkdir -p .build-asan/c
	@for t in Tests/c/test_*.c; do p=.build-asan/c/$$(basename $$t .c); \
		$(SAN_CC) $(SAN_CFLAGS) -fsanitize=address,undefined -fno-sanitize-recover=all $$t -o $$p \
			-L$(ASAN_LIB) -lattention -Wl,-rpath,$(ASAN_LIB) -lm || exit 1; \
		echo "== $$p (ASan + UBSan + LSan)"; ASAN_OPTIONS=detect_leaks=1 $$p || exit 1; done
	ATTENTION_LIB=$(ASAN_LIB)/libattention.so ASAN_OPTIONS=detect_leaks=0 CC="$(SAN_CC) -fsanitize=address -shared-libasan -fuse-ld=lld" \
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

# Regenerates the Keras golden files (outputs, gradients, weight files, key/value cache steps) with a
# python that has Keras 3.15 + JAX + h5py (+ keras-hub 0.32 for the cache files); the TF Model
# Garden ones need TF_PYTHON (tf-models-official 2.20).
TF_PYTHON ?= $(PYTHON)

golden:
	KERAS_BACKEND=jax JAX_ENABLE_X64=1 $(PYTHON) Tests/golden/make_golden.py
	KERAS_BACKEND=jax JAX_ENABLE_X64=1 $(PYTHON) Tests/golden/make_grad_golden.py
	KERAS_BACKEND=jax JAX_ENABLE_X64=1 $(PYTHON) Tests/golden/make_h5_weights.py
	KERAS_BACKEND=jax JAX_ENABLE_X64=1 $(PYTHON) Tests/golden/make_cache_golden.py
	$(TF_PYTHON) Tests/golden/make_reuse_golden.py
	$(TF_PYTHON) Tests/golden/make_reuse_grad_golden.py
	$(TF_PYTHON) Tests/golden/make_reuse_h5_weights.py

clean:
	rm -rf .build .build-*
