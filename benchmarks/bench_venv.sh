#!/bin/sh
# bench_venv.sh PYTHON VENV [TORCH]: creates VENV, the virtualenv `make bench` runs in so that
# torch and onnxruntime are measured beside libattention: numpy, onnxruntime, onnx (to write
# the little ONNX graphs) and torch, from PyPI (and whatever else pip is configured with).
#
# TORCH is what to install for torch; the default, auto, takes the newest CPU-only wheel pip
# can see — the PyTorch CPU index (download.pytorch.org/whl/cpu, tried as an extra index) or a
# local `+cpu` wheel on pip's find-links — and otherwise PyPI's torch, the CUDA build, whose
# nvidia-* / triton dependencies make the virtualenv ~5.4 GB instead of ~1.1 GB (the bench
# uses it on the CPU only). Any pip requirement works: TORCH=torch takes PyPI's newest.
#
# All or nothing: VENV/complete is written once everything imports, and a VENV without it is
# removed and made again; on any failure (no network) VENV is removed and the script exits 1,
# so `make bench` runs with the plain python and shows no peers' columns. pip's cache is not
# used (it would keep another copy of the wheels under ~/.cache).
set -u
python=${1:?usage: bench_venv.sh PYTHON VENV [TORCH]}
venv=${2:?usage: bench_venv.sh PYTHON VENV [TORCH]}
torch=${3:-auto}
cpu_index=https://download.pytorch.org/whl/cpu

test -f "$venv/complete" && exit 0
fail() {
    echo "bench_venv.sh: $1; removing $venv" >&2
    rm -rf "$venv"
    exit 1
}
start=$(date +%s)
rm -rf "$venv"
echo "== creating $venv (numpy, onnxruntime, onnx, torch from PyPI; once)"
"$python" -m venv "$venv" || fail "$python -m venv failed"
pip() {
    "$venv/bin/python" -m pip --no-cache-dir --disable-pip-version-check --retries 1 --timeout 30 "$@"
}
pip install --quiet numpy onnxruntime onnx || fail "pip could not install numpy, onnxruntime and onnx"
# The PyTorch CPU index as an extra index only when it answers (else pip warns on every
# package); asked with --isolated, or a torch on pip's configured find-links would answer.
extra=
pip --isolated index versions torch --index-url $cpu_index > /dev/null 2>&1 && extra="--extra-index-url $cpu_index"
if [ "$torch" = auto ]; then
    # `pip index` lists the versions this python can install, newest first.
    cpu=$(pip index versions torch $extra 2>/dev/null \
        | sed -n 's/^Available versions: //p' | tr ',' '\n' | tr -d ' ' | grep '+cpu$' | head -n 1)
    torch=torch${cpu:+==$cpu}
fi
echo "== installing $torch"
pip install --quiet $extra "$torch" || fail "pip could not install $torch"
"$venv/bin/python" -c "import numpy, onnx, onnxruntime, torch; print('==', '$venv:', 'torch', torch.__version__, \
'(CUDA build, used on the CPU)' if torch.version.cuda else '(CPU build)', '/ onnxruntime', onnxruntime.__version__, \
'/ onnx', onnx.__version__, '/ numpy', numpy.__version__)" || fail "the packages do not import"
touch "$venv/complete"
echo "== $venv: $(du -sh "$venv" | cut -f 1), made in $(($(date +%s) - start)) s"
