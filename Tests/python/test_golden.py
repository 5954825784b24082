"""Every golden file (Tests/golden/<group>/<case>_<dtype>.npz, written by real Keras 3.15 by
Tests/golden/make_golden.py, or by TF Model Garden by Tests/golden/make_reuse_golden.py) run through our layer with its weights and inputs: outputs and
scores within the contract tolerance (the float32 one where the file says Keras computed in
float32, e.g. softmax_in_float32)."""

import json
from pathlib import Path

import numpy as np
import pytest

import attention
from conftest import assert_close

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
# The extremes group (NaN/Inf results) is checked by test_extremes.py; the gradient files one
# level deeper (golden/gradients/<group>/) by test_gradient_golden.py.
FILES = sorted(f for f in GOLDEN.glob("*/*.npz") if f.parent.name != "extremes")
FLOAT32_FLAGS = ("softmax_in_float32", "float32_compute")


def test_golden_files_exist():
    assert len(FILES) > 0, f"no golden .npz files under {GOLDEN}"
    groups = {f.parent.name for f in FILES}
    assert {"attention", "additive_attention", "multi_head_attention", "dot_product_attention",
            "group_query_attention", "reuse_multi_head_attention"} <= groups, groups


def _optional(case, name):
    return case[name] if name in case.files else None


def _keras_scores_were_float32(case):
    """Keras 3.15 on JAX computes ops.tanh of float64 in float32, so a float64
    AdditiveAttention without scale keeps float32 scores through `s - 1e9` and the softmax
    (a fully masked row comes out uniform). Such a case is a float32 computation: it is
    compared with our float32 layer."""
    config = json.loads(str(case["config"]))
    return (str(case["layer"]) == "AdditiveAttention" and not config.get("use_scale", True)
            and str(case["dtype"]) == "float64")


def _run(case, dtype):
    """Our result (output, scores or None) for a golden case, computed in `dtype`."""
    layer_kind = str(case["layer"])
    config = json.loads(str(case["config"]))
    call = json.loads(str(case["call"]))
    query, value, key = (_optional(case, n) for n in ("query", "value", "key"))
    weights = [case[f"weight_{i}"] for i in range(int(case["weight_count"]))]
    if layer_kind == "dot_product_attention":
        output = attention.dot_product_attention(
            query, _optional(case, "key"), value, bias=_optional(case, "bias"),
            mask=_optional(case, "mask"), **config)
        return output, None
    scores_wanted = call["return_attention_scores"]
    if layer_kind in ("MultiHeadAttention", "GroupQueryAttention", "ReuseMultiHeadAttention"):
        layer = getattr(attention, layer_kind)(**config, dtype=dtype)
        layer.build(query.shape, value.shape, None if key is None else key.shape)
        layer.set_weights(weights)
        if layer_kind == "ReuseMultiHeadAttention":  # attention_mask is its only mask
            extra = {"reuse_attention_scores": _optional(case, "reuse_attention_scores")}
        else:
            extra = {name: _optional(case, name) for name in ("query_mask", "value_mask", "key_mask")}
            extra["use_causal_mask"] = call["use_causal_mask"]
        result = layer(query, value, key=key, attention_mask=_optional(case, "attention_mask"),
                       return_attention_scores=scores_wanted, training=False, **extra)
    else:
        layer = getattr(attention, layer_kind)(**config, dtype=dtype)
        inputs = [query, value] + ([key] if key is not None else [])
        layer.build([x.shape for x in inputs])
        layer.set_weights(weights)
        masks = [_optional(case, "query_mask"), _optional(case, "value_mask")]
        result = layer(inputs, mask=None if all(m is None for m in masks) else masks, training=False,
                       use_causal_mask=call["use_causal_mask"],
                       return_attention_scores=scores_wanted)
    return result if scores_wanted else (result, None)


def _attends_across_heads(case):
    """TF Model Garden resolves a negative attention axis from the projection's rank, so
    attention_axes=-2 of ReuseMultiHeadAttention lands on the heads axis and upstream attends
    across heads. This library refuses that axis (README, "Numerics contract")."""
    if str(case["layer"]) != "ReuseMultiHeadAttention":
        return False
    axes = json.loads(str(case["config"])).get("attention_axes") or []
    return -2 in ([axes] if isinstance(axes, int) else axes)


@pytest.mark.parametrize("path", FILES, ids=[str(f.relative_to(GOLDEN)) for f in FILES])
def test_golden(path):
    with np.load(path) as case:
        if _attends_across_heads(case):
            with pytest.raises(ValueError, match=r"attention_axes contains -2 \(the feature axis\)"):
                _run(case, str(case["dtype"]))
            return
        computed_in = "float32" if _keras_scores_were_float32(case) else str(case["dtype"])
        output, scores = _run(case, computed_in)
        # Keras computed part of the case in float32 (its fused softmax, or ops.tanh of a
        # float64 input): the float32 tolerance applies.
        in_float32 = any(bool(case[key]) for key in FLOAT32_FLAGS if key in case.files)
        dtype = np.float32 if in_float32 else np.dtype(str(case["dtype"]))
        assert output.dtype == np.dtype(computed_in)
        assert_close(output, case["output"], dtype, "output")
        if "scores" in case.files:
            assert scores is not None
            assert_close(scores, case["scores"], dtype, "scores")
