"""Every gradient golden file (Tests/golden/gradients/<group>/<case>_<dtype>.npz, written by real
Keras 3.15 on JAX by Tests/golden/make_grad_golden.py, or by TF Model Garden under
tf.GradientTape by Tests/golden/make_reuse_grad_golden.py) run through our layer's
gradients(): the step's output and scores, dL/dquery, dL/dvalue, dL/dkey,
dL/dreuse_attention_scores and dL/dweights within the contract tolerance (the float32 one
where the file says Keras computed in float32), layer.losses against Keras's list (compared
sorted: the order is ours), and the constraint files through apply_constraints().

L = sum(output * output_gradient) [+ sum(scores * scores_gradient)] [+ sum(layer.losses) when
the case's call has "regularization": true]; training=False throughout."""

import json
from pathlib import Path

import numpy as np
import pytest

import attention
from conftest import assert_close

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "gradients"
FILES = sorted(f for f in GOLDEN.glob("*/*.npz") if f.parent.name != "constraints")
CONSTRAINT_FILES = sorted(GOLDEN.glob("constraints/*.npz"))
FLOAT32_FLAGS = ("softmax_in_float32", "float32_compute")
PROJECTED = ("MultiHeadAttention", "GroupQueryAttention", "ReuseMultiHeadAttention")
API = "the gradient API of issue 6 (notes/gradient_api.md)"


def _ids(files):
    return [str(f.relative_to(GOLDEN)) for f in files]


def test_gradient_golden_files_exist():
    assert FILES, f"no gradient golden .npz files under {GOLDEN}"
    groups = {f.parent.name for f in FILES}
    assert {"attention", "additive_attention", "multi_head_attention", "group_query_attention",
            "reuse_multi_head_attention"} <= groups, groups
    assert CONSTRAINT_FILES, f"no constraint golden files under {GOLDEN / 'constraints'}"


def _optional(case, name):
    return case[name] if name in case.files else None


def _keras_scores_were_float32(case):
    """A float64 AdditiveAttention without scale: Keras-JAX keeps its scores, masking and
    softmax in float32 (ops.tanh of float64 is float32), so it is compared with our float32
    layer, as in test_golden.py."""
    config = json.loads(str(case["config"]))
    return (str(case["layer"]) == "AdditiveAttention" and not config.get("use_scale", True)
            and str(case["dtype"]) == "float64")


def computed_in(case):
    """The dtype our layer computes the case in."""
    return "float32" if _keras_scores_were_float32(case) else str(case["dtype"])


def compared_as(case):
    """The dtype whose tolerance applies: float32 where Keras computed (part of) the case in
    float32 (its fused attention core, ops.tanh of a float64 input)."""
    in_float32 = any(bool(case[key]) for key in FLOAT32_FLAGS if key in case.files)
    return np.float32 if in_float32 else np.dtype(str(case["dtype"]))


def _require(obj, name):
    if not hasattr(obj, name):
        pytest.fail(f"{type(obj).__name__} has no {name}(): {API} has not landed", pytrace=False)


def build_layer(case, dtype):
    """Our layer of the case, built for its inputs and holding its weights (cast to dtype)."""
    layer_kind = str(case["layer"])
    config = json.loads(str(case["config"]))
    layer = getattr(attention, layer_kind)(**config, dtype=dtype)
    query, value, key = (_optional(case, n) for n in ("query", "value", "key"))
    if layer_kind in PROJECTED:
        layer.build(query.shape, value.shape, None if key is None else key.shape)
    else:
        layer.build([x.shape for x in (query, value, key) if x is not None])
    weights = [case[f"weight_{i}"] for i in range(int(case["weight_count"]))]
    # Model Garden's relative_position_embeddings stay float32 (float32-only cases anyway).
    layer.set_weights([np.asarray(w, dtype) for w in weights])
    return layer


def _call_arguments(case, dtype):
    """(positional, keywords) of the case's __call__ / gradients(), inputs cast to dtype."""
    layer_kind = str(case["layer"])
    call = json.loads(str(case["call"]))

    def cast(name):
        x = _optional(case, name)
        return None if x is None else np.asarray(x, dtype)

    query, value, key = cast("query"), cast("value"), cast("key")
    if layer_kind == "ReuseMultiHeadAttention":
        return (query, value), {"key": key, "attention_mask": _optional(case, "attention_mask"),
                                "training": False,
                                "reuse_attention_scores": cast("reuse_attention_scores")}
    if layer_kind in PROJECTED:
        keywords = {name: _optional(case, name)
                    for name in ("query_mask", "value_mask", "key_mask", "attention_mask")}
        return (query, value), {"key": key, **keywords, "training": False,
                                "use_causal_mask": call["use_causal_mask"]}
    masks = [_optional(case, "query_mask"), _optional(case, "value_mask")]
    inputs = [query, value] + ([key] if key is not None else [])
    return (inputs,), {"mask": None if all(m is None for m in masks) else masks,
                       "training": False, "use_causal_mask": call["use_causal_mask"]}


def run_gradients(case):
    """(layer, Gradients) of our layer for the case."""
    dtype = computed_in(case)
    call = json.loads(str(case["call"]))
    layer = build_layer(case, dtype)
    _require(layer, "gradients")
    args, keywords = _call_arguments(case, dtype)
    sg = _optional(case, "scores_gradient")
    keywords["output_gradient"] = np.asarray(case["output_gradient"], dtype)
    keywords["scores_gradient"] = None if sg is None else np.asarray(sg, dtype)
    if str(case["layer"]) in PROJECTED:
        keywords["regularization"] = bool(call.get("regularization", False))
    return layer, layer.gradients(*args, **keywords)


def compared_quantities(case, result):
    """[(name, ours, expected)] of every quantity the case records; our None where the case has
    an expected array is reported as such."""
    pairs = [("output", result.output, case["output"])]
    for name, ours in (("scores", result.scores), ("query", result.query),
                       ("value", result.value), ("key", result.key),
                       ("reuse_attention_scores", result.reuse_attention_scores)):
        key = "scores" if name == "scores" else "grad_" + name
        pairs.append((name, ours, _optional(case, key)))
    count = int(case["weight_count"])
    ours = list(result.weights) if result.weights is not None else []
    assert len(ours) == count, f"{len(ours)} weight gradients, expected {count}"
    pairs += [(f"weight_{i}", ours[i], case[f"grad_weight_{i}"]) for i in range(count)]
    return pairs


def our_losses(layer):
    return np.sort(np.asarray([float(x) for x in layer.losses], np.float64))


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_gradient_golden(path):
    with np.load(path) as case:
        layer, result = run_gradients(case)
        dtype = compared_as(case)
        assert np.asarray(result.output).dtype == np.dtype(computed_in(case))
        for name, ours, expected in compared_quantities(case, result):
            if expected is None:
                assert ours is None, f"{name}: expected None (the case has no {name})"
                continue
            assert ours is not None, f"{name}: None, expected an array"
            what = name if name in ("output", "scores") else f"d L / d {name}"
            assert_close(ours, expected, dtype, what)
        if "losses" in case.files:
            expected = np.sort(case["losses"])
            got = our_losses(layer)
            assert got.size == expected.size, (
                f"layer.losses after gradients(): {got.size} entries {got.tolist()}, Keras "
                f"lists {expected.size}: {expected.tolist()}")
            assert_close(got, expected, dtype, "layer.losses after gradients() (sorted)")
            # The same penalties after a plain call of the same step.
            args, keywords = _call_arguments(case, computed_in(case))
            layer(*args, return_attention_scores="scores_gradient" in case.files, **keywords)
            assert_close(our_losses(layer), expected, dtype, "layer.losses after __call__ (sorted)")


@pytest.mark.parametrize("path", CONSTRAINT_FILES, ids=_ids(CONSTRAINT_FILES))
def test_constraint_golden(path):
    with np.load(path) as case:
        dtype = str(case["dtype"])
        layer = build_layer(case, dtype)
        _require(layer, "apply_constraints")
        layer.apply_constraints()
        got = layer.get_weights()
        count = int(case["weight_count"])
        assert len(got) == count
        for i in range(count):
            assert_close(got[i], case[f"constrained_weight_{i}"], np.dtype(dtype),
                         f"weight {i} after apply_constraints()")
