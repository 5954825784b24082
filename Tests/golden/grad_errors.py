"""Print how far our gradients are from the gradient golden files, per group.

    python3 Tests/golden/grad_errors.py [substring ...] [-x substring ...]

Runs every Tests/golden/gradients case (or those whose path contains one of the substrings,
less those containing a substring given after -x)
through the library exactly as Tests/python/test_gradient_golden.py does, and prints one row
per (group, dtype, Keras path, quantity): the number of arrays, the max absolute error, the
max relative error (absolute error / the largest |expected| of that quantity in the case, so
an analytically zero gradient such as a key bias's is measured against its case's scale), the
max ratio of error to the test's tolerance for that array (<= 1 passes) and the case holding
that worst ratio. "path" is f32 for cases Keras computed partly in float32
(softmax_in_float32 / float32_compute), else the file's dtype. Quantities: output, scores,
inputs (dL/dquery, value, key, reuse_attention_scores), weights (dL/dweights), losses
(sorted layer.losses), constrained (weights after apply_constraints()). Needs numpy, pytest
and hypothesis (it imports the test module) and the built library.
"""

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
# This folder holds a golden group named "attention": keep it off sys.path so that
# `import attention` finds the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path[:0] = [str(HERE.parents[1] / "python"), str(HERE.parent / "python")]
import test_gradient_golden as T  # noqa: E402
from conftest import tolerance  # noqa: E402

INPUTS = ("query", "value", "key", "reuse_attention_scores")


def _kind(quantity):
    return ("inputs" if quantity in INPUTS else
            "weights" if quantity.startswith("weight_") else quantity)


def _path(case):
    in_float32 = any(bool(case[k]) for k in T.FLOAT32_FLAGS if k in case.files)
    return "f32" if in_float32 else str(case["dtype"])


def _pairs(path, case):
    """[(kind, ours, expected)] of one case, and the dtype whose tolerance applies."""
    if path.parent.name == "constraints":
        layer = T.build_layer(case, str(case["dtype"]))
        layer.apply_constraints()
        return [("constrained", w, case[f"constrained_weight_{i}"])
                for i, w in enumerate(layer.get_weights())], np.dtype(str(case["dtype"]))
    layer, result = T.run_gradients(case)
    pairs = [(_kind(q), ours, expected)
             for q, ours, expected in T.compared_quantities(case, result)
             if expected is not None]
    for kind, ours, expected in pairs:
        if ours is None:
            raise AssertionError(f"{kind}: None where the case has an array")
    if "losses" in case.files:
        pairs.append(("losses", T.our_losses(layer), np.sort(case["losses"])))
    return pairs, T.compared_as(case)


def collect(selected=(), excluded=()):
    """{(group, dtype, path, kind): [arrays, max abs, max rel, max tolerance ratio, worst]}
    and the failures. rel: the error over the largest |expected| of that kind in the case
    (so an analytically zero gradient, e.g. a key bias's, is measured against its case's
    scale); ratio: the error over the test's tolerance for that array (<= 1 passes)."""
    table = defaultdict(lambda: [0, 0.0, 0.0, 0.0, ""])
    failures = []
    files = [f for f in T.FILES + T.CONSTRAINT_FILES
             if (not selected or any(s in str(f) for s in selected))
             and not any(s in str(f) for s in excluded)]
    for path in files:
        name = str(path.relative_to(T.GOLDEN))
        with np.load(path) as case:
            base = (path.parent.name, str(case["dtype"]), _path(case))
            try:
                pairs, dtype = _pairs(path, case)
            except (Exception, pytest.fail.Exception) as error:  # report and go on
                failures.append(f"{name}: {type(error).__name__}: {error}")
                continue
        peaks = defaultdict(float)
        for kind, _, expected in pairs:
            if np.size(expected):
                peaks[kind] = max(peaks[kind], float(np.max(np.abs(expected))))
        for kind, ours, expected in pairs:
            ours, expected = np.asarray(ours, np.float64), np.asarray(expected, np.float64)
            if ours.shape != expected.shape:
                failures.append(f"{name}: {kind} shape {ours.shape} != {expected.shape}")
                continue
            error = float(np.max(np.abs(ours - expected))) if expected.size else 0.0
            row = table[base + (kind,)]
            row[0] += 1
            row[1] = max(row[1], error)
            relative = error / peaks[kind] if peaks[kind] else (0.0 if not error else np.inf)
            ratio = error / tolerance(expected, dtype)
            if relative >= row[2]:
                row[2] = relative
            if ratio >= row[3]:
                row[3], row[4] = ratio, name
    return table, failures


def main(arguments):
    selected = arguments[:arguments.index("-x")] if "-x" in arguments else arguments
    excluded = arguments[arguments.index("-x") + 1:] if "-x" in arguments else []
    table, failures = collect(selected, excluded)
    header = (f"{'group':27} {'dtype':7} {'path':7} {'quantity':11} {'n':>4} {'max abs':>9} "
              f"{'max rel':>9} {'/tol':>7}  worst (by /tol)")
    print(header)
    print("-" * len(header))
    for key in sorted(table):
        count, error, relative, ratio, worst = table[key]
        print(f"{key[0]:27} {key[1]:7} {key[2]:7} {key[3]:11} {count:4d} {error:9.2e} "
              f"{relative:9.2e} {ratio:7.3f}  {worst}")
    for failure in failures:
        print("FAILED", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
