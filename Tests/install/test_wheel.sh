#!/bin/sh
# test_wheel.sh PYTHON WHEEL DIR — the wheel as a user without Swift gets it: a virtualenv of
# PYTHON in DIR/venv-<its version>, PATH holding only it, /usr/bin and /bin (no swift), `pip
# install WHEEL`; from /tmp a MultiHeadAttention call against the reference formulas under
# each ATTENTION_MAX_ISA cap (the kernels that ran: the cap's, or the CPU's best if lower),
# then examples/c/demo.c built with the package's pkg-config file and run without
# LD_LIBRARY_PATH. Exits non-zero on any failure.
set -eu
python=$1 wheel=$(realpath "$2")
version=$("$python" -c 'import sys; print(sys.version.split()[0])')
venv=$(realpath -m "$3/venv-$version")
demo=$(realpath "$(dirname "$0")/../../examples/c/demo.c")

rm -rf "$venv"
"$python" -m venv "$venv"
export PATH="$venv/bin:/usr/bin:/bin"
unset ATTENTION_LIB ATTENTION_MAX_ISA PYTHONPATH LD_LIBRARY_PATH
if command -v swift > /dev/null; then echo "swift is still on PATH: $(command -v swift)"; exit 1; fi
pip install --quiet "$wheel"

cd /tmp
best=$(python -c "import attention; print(attention.cpu_kernels())")
for cap in avx512 avx2 baseline; do
    BEST=$best ATTENTION_MAX_ISA=$cap python - <<'PY'
import os, sys
import numpy as np
import attention
from attention import reference

assert os.path.realpath(attention.__file__).startswith(os.path.realpath(sys.prefix)), attention.__file__
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 5, 8))
layer = attention.MultiHeadAttention(num_heads=2, key_dim=4, seed=1, dtype="float64")
output = layer(x, x)
expected, _ = reference.multi_head_attention(x, x, weights=layer.get_weights(), num_heads=2, key_dim=4)
error = abs(output - expected).max()
assert error < 1e-10, error
# Dispatched: the cap's variant, or the best this CPU has when that is lower; else the one library.
order, cap, best = ["baseline", "avx2", "avx512"], os.environ["ATTENTION_MAX_ISA"], os.environ["BEST"]
dispatched = os.path.exists(os.path.join(attention.get_library_dir(), "libattention-baseline.so"))
want = min(cap, best, key=order.index) if dispatched else best
kernels = attention.cpu_kernels()
assert kernels == want, (cap, best, kernels)
print(f"python {sys.version.split()[0]}: attention {attention.__version__}, cap {cap}: {kernels} kernels, error {error:.1e}")
PY
done

pc_dir=$(python -c "import attention; print(attention.get_pkgconfig_dir())")
${CC:-cc} -std=c11 -Wall -Werror "$demo" $(PKG_CONFIG_PATH=$pc_dir pkg-config --cflags --libs attention) -o "$venv/demo"
"$venv/demo" > "$venv/demo.log"
echo "C demo: $(head -1 "$venv/demo.log"): $(tail -1 "$venv/demo.log")"
echo "wheel on python $version: installed without swift, layer calls and the C demo (pkg-config) work"
