"""The shared object's ABI: exported symbols = the header's functions (= the ctypes table),
no Swift runtime dependency, and the ctypes structs laid out as a C compiler lays out the
header's."""

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import attention
from attention import _initializers, _lib

ROOT = Path(__file__).resolve().parents[2]
HEADER = ROOT / "include" / "attention.h"
# Symbols the GNU toolchain defines in every shared object, outside a version script's reach.
TOOLCHAIN_SYMBOLS = {"_init", "_fini", "_edata", "_end", "__bss_start"}


def _library_path():
    _lib.lib()
    return next(p for p in _lib._candidates() if p.is_file())


def _header_functions():
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    return set(re.findall(r"\b(att_\w+)\s*\(", text))


def _exported():
    """Defined dynamic symbols other objects can bind: global or weak (nm's upper-case types,
    and "u"). Local entries of .dynsym (lower case, e.g. Swift metadata that the version
    script made local) are not exports."""
    listing = subprocess.run(["nm", "-D", "--defined-only", str(_library_path())],
                             check=True, capture_output=True, text=True).stdout
    rows = [line.split() for line in listing.splitlines() if line.strip()]
    return {row[-1] for row in rows if row[-2].isupper() or row[-2] == "u"}


def test_header_declares_the_functions_of_the_ctypes_table():
    functions = _header_functions()
    assert len(functions) >= 20
    assert functions == set(_lib._SIGNATURES)


def test_exported_att_symbols_are_the_header_functions():
    exported = {s for s in _exported() if s.startswith("att_")}
    assert exported == _header_functions()


def test_nothing_else_is_exported():
    others = {s for s in _exported() if not s.startswith("att_")} - TOOLCHAIN_SYMBOLS
    assert others == set(), f"exported beyond the C API: {sorted(others)}"


def test_no_swift_runtime_dependency():
    listing = subprocess.run(["ldd", str(_library_path())], check=True, capture_output=True,
                             text=True).stdout
    needed = [line.split()[0] for line in listing.splitlines() if line.strip()]
    forbidden = [n for n in needed if n.startswith(("libswift", "libdispatch", "libFoundation",
                                                    "libBlocksRuntime"))]
    assert forbidden == [], listing
    assert any(n.startswith("libc.so") for n in needed), listing


_STRUCTS = {
    "att_shape": _lib.Shape,
    "att_tensor": _lib.Tensor,
    "att_attention_config": _lib.AttentionConfig,
    "att_additive_attention_config": _lib.AdditiveAttentionConfig,
    "att_initializer": _lib.Initializer,
    "att_regularizer": _lib.Regularizer,
    "att_constraint": _lib.Constraint,
    "att_multi_head_attention_config": _lib.MultiHeadAttentionConfig,
    "att_group_query_attention_config": _lib.GroupQueryAttentionConfig,
    "att_reuse_multi_head_attention_config": _lib.ReuseMultiHeadAttentionConfig,
    "att_call_args": _lib.CallArgs,
    "att_gradient_args": _lib.GradientArgs,
    "att_dot_product_attention_args": _lib.DotProductAttentionArgs,
}


def _constants():
    """C enum/macro name -> the value the Python side uses for it."""
    names = {f"ATT_{n}": getattr(_lib, n) for n in dir(_lib)
             if re.fullmatch(r"(OK|ERR_\w+|FLOAT32|FLOAT64|UINT8|SCORE_\w+|MAX_RANK)", n)}
    for family, prefix in ((_initializers.INITIALIZERS, "ATT_INIT_"),
                           (_initializers.REGULARIZERS, "ATT_REG_"),
                           (_initializers.CONSTRAINTS, "ATT_CONSTRAINT_")):
        for class_name in family.table:
            c_name = {"L1L2": "L1_L2"}.get(class_name, _initializers._snake(class_name).upper())
            names[prefix + c_name] = family.kind(class_name)
    return names


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_ctypes_structs_and_constants_match_the_header(tmp_path):
    constants = _constants()
    assert len(constants) == 12 + 3 + 2 + 1 + 13 + 3 + 4
    lines = [f'printf("{name} %lld\\n", (long long){name});' for name in constants]
    for c_name, struct in _STRUCTS.items():
        lines.append(f'printf("{c_name} %zu\\n", sizeof({c_name}));')
        for field, _ in struct._fields_:
            lines.append(f'printf("{c_name}.{field} %zu\\n", offsetof({c_name}, {field}));')
    source = tmp_path / "layout.c"
    source.write_text("#include <stdio.h>\n#include <stddef.h>\n#include <attention.h>\n"
                      "int main(void) {\n" + "\n".join(lines) + "\nreturn 0;\n}\n")
    program = tmp_path / "layout"
    subprocess.run(["cc", "-std=c11", f"-I{ROOT / 'include'}", str(source), "-o", str(program)],
                   check=True)
    c_layout = dict(line.rsplit(" ", 1) for line in
                    subprocess.run([str(program)], check=True, capture_output=True,
                                   text=True).stdout.splitlines())
    py_layout = {name: str(value) for name, value in constants.items()}
    for c_name, struct in _STRUCTS.items():
        py_layout[c_name] = str(ctypes.sizeof(struct))
        for field, _ in struct._fields_:
            py_layout[f"{c_name}.{field}"] = str(getattr(struct, field).offset)
    assert py_layout == c_layout


def _header_version():
    """(MAJOR, MINOR, PATCH) from the header's ATT_VERSION_* macros, the one place it is written."""
    text = HEADER.read_text()
    return tuple(int(re.search(rf"^#define ATT_VERSION_{part} (\d+)$", text, re.M).group(1))
                 for part in ("MAJOR", "MINOR", "PATCH"))


def test_version_is_the_headers_everywhere():
    major, minor, patch = _header_version()
    assert _lib.version() == f"{major}.{minor}.{patch}"
    assert _lib.version_number() == major * 1_000_000 + minor * 1_000 + patch
    pyproject = (ROOT / "python" / "pyproject.toml").read_text()
    assert re.search(r'^version = "(.*?)"', pyproject, re.M).group(1) == _lib.version()


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_version_number_macro(tmp_path):
    source = tmp_path / "version.c"
    source.write_text("#include <stdio.h>\n#include <attention.h>\n"
                      "#if ATT_VERSION_NUMBER < 2000\n#error ATT_VERSION_NUMBER is not usable in #if\n#endif\n"
                      "int main(void) { printf(\"%d\\n\", ATT_VERSION_NUMBER); return 0; }\n")
    program = tmp_path / "version"
    subprocess.run(["cc", "-std=c11", f"-I{ROOT / 'include'}", str(source), "-o", str(program)], check=True)
    output = subprocess.run([str(program)], check=True, capture_output=True, text=True).stdout
    assert int(output) == _lib.version_number()


@pytest.mark.parametrize("struct, create, fields, count", [
    (_lib.AttentionConfig, "att_attention_create", {}, 0),
    (_lib.AdditiveAttentionConfig, "att_additive_attention_create", {}, 1),
    (_lib.AdditiveAttentionConfig, "att_additive_attention_create", {"no_scale": 1}, 0),
    (_lib.MultiHeadAttentionConfig, "att_multi_head_attention_create", {"num_heads": 2, "key_dim": 3}, 8),
    (_lib.MultiHeadAttentionConfig, "att_multi_head_attention_create",
     {"num_heads": 2, "key_dim": 3, "no_bias": 1}, 4),
    (_lib.GroupQueryAttentionConfig, "att_group_query_attention_create",
     {"head_dim": 2, "num_query_heads": 2, "num_key_value_heads": 1}, 8),
    (_lib.ReuseMultiHeadAttentionConfig, "att_reuse_multi_head_attention_create",
     {"num_heads": 2, "key_dim": 3}, 8),
])
def test_zero_filled_config_is_keras_default(struct, create, fields, count):
    """Zero in a config field means Keras's default (use_bias=True, AdditiveAttention's
    use_scale=True); the Python layers fill the negated fields from their arguments."""
    config = struct(struct_size=ctypes.sizeof(struct), **fields)
    handle = ctypes.c_void_p()
    _lib.check(getattr(_lib.lib(), create)(ctypes.byref(config), ctypes.byref(handle)))
    try:
        shape = _lib.make_shape((2, 3, 4))
        _lib.check(_lib.lib().att_layer_build(handle, ctypes.byref(shape), ctypes.byref(shape), None))
        n = ctypes.c_size_t()
        _lib.check(_lib.lib().att_layer_weight_count(handle, ctypes.byref(n)))
        assert n.value == count
    finally:
        _lib.lib().att_layer_destroy(handle)


@pytest.mark.parametrize("layer, count", [
    (lambda: attention.AdditiveAttention(), 1), (lambda: attention.AdditiveAttention(use_scale=False), 0),
    (lambda: attention.MultiHeadAttention(2, 3), 8), (lambda: attention.MultiHeadAttention(2, 3, use_bias=False), 4),
    (lambda: attention.GroupQueryAttention(2, 2, 1), 8),
    (lambda: attention.GroupQueryAttention(2, 2, 1, use_bias=False), 4),
    (lambda: attention.ReuseMultiHeadAttention(2, 3), 8),
    (lambda: attention.ReuseMultiHeadAttention(2, 3, use_bias=False), 4),
])
def test_python_layers_fill_the_negated_fields(layer, count):
    x = np.ones((2, 3, 4), np.float32)
    built = layer()
    built([x, x]) if isinstance(built, attention.AdditiveAttention) else built(x, x)
    assert len(built.get_weights()) == count
