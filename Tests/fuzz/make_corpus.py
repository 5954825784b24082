"""Writes the seed corpus of fuzz_api.c into Tests/fuzz/corpus/: small programs, in the byte
format README.md describes, that reach every layer kind, build, call (with masks, scores,
dropout, causal, key/value caches), weights set/get, destroy and reuse, foreign handles, the functional
dot-product attention, training steps, att_set_num_threads (up to 256 threads), and layer
files: valid ones of each kind in both dtypes (written here, in the format of
include/attention.h, "Layer files"), loaded whole or saved by the library and mutated.
Run: python3 Tests/fuzz/make_corpus.py"""
import json
import math
import pathlib
import struct

OPS = ["create", "build", "call", "set_weight", "get_weight", "info", "destroy", "foreign",
       "dot_product", "threads", "load"]
KINDS = ["attention", "additive", "mha", "gqa", "reuse"]
DOUBLES = [0, 0.1, 0.5, 0.9, 0.99999, 1, -0.1, 2, "nan", "inf", "-inf"]
F32, F64 = 0, 1  # pick_layer_dtype bytes
WIDE_THREADS = [4, 5, 6, 7, 8, 9, 11, 12, 13, 16, 17, 24, 31, 32, 33, 48, 63, 64, 65, 96, 127, 128, 129, 192, 255,
                256]  # wide_thread_count


def op(name, slot=0):
    """The code byte whose value % 11 is the op and (value >> 4) % 4 the slot."""
    return next(c for c in range(256) if c % len(OPS) == OPS.index(name) and (c >> 4) % 4 == slot)


def dim(d):
    """pick_dim: 1..5 are bytes 0..4, 6..29 are 200..223; 0 and -1 are 224, 225."""
    if 1 <= d <= 5:
        return [d - 1]
    if 6 <= d <= 29:
        return [200 + d - 6]
    return [{0: 224, -1: 225}[d]]


def shape(*dims):
    """pick_shape: rank 3 is byte 0; other ranks r are 130 + r; then the dims."""
    out = [0 if len(dims) == 3 else 130 + len(dims)]
    for d in dims:
        out += dim(d)
    return out


def double(v):
    return [DOUBLES.index(v)]


def dropout(v):
    return [0] if v == 0 else [160, DOUBLES.index(v)]


def small_list(values, encode):
    """pick_axes: count 0 is byte 0; count c is the byte >= 128 with byte % 11 == c + 1."""
    if not values:
        return [0]
    out = [next(b for b in range(128, 256) if b % 11 == len(values) + 1)]
    for v in values:
        out += encode(v)
    return out


def axis(a):
    return [a + 5]


def tensor(content=0, seed=1):
    """make_tensor, natural shape and dtype, present: mode 100, content, seed."""
    return [100, content, seed]


ABSENT = [0]


def create(kind, slot=0, **f):
    """op_create; f holds the config fields the seeds vary (nulls 250/251: NULL config/out;
    size 240: struct_size 0)."""
    out = [op("create", slot), KINDS.index(kind), f.get("nulls", 0), f.get("size", 0), f.get("dtype", F32)]
    if kind == "attention":
        out += [f.get("use_scale", 0), f.get("score_mode", 0), *dropout(f.get("dropout", 0)), f.get("causal", 0)]
    elif kind == "additive":
        out += [f.get("no_scale", 0), *dropout(f.get("dropout", 0)), 7]
    elif kind == "mha":
        out += dim(f.get("heads", 2)) + dim(f.get("key_dim", 3))
        out += [0] if "value_dim" not in f else [200] + dim(f["value_dim"])
        out += dropout(f.get("dropout", 0)) + [f.get("no_bias", 0)]
        out += small_list(f.get("output_shape", []), dim) + small_list(f.get("axes", []), axis)
        out += [0] if "window" not in f else [200] + dim(f["window"])
        out += [f.get("gate", 0), 5, f.get("options", 0)]
    elif kind == "gqa":
        out += dim(f.get("head_dim", 2)) + dim(f.get("q_heads", 4)) + dim(f.get("kv_heads", 2))
        out += dropout(f.get("dropout", 0)) + [f.get("no_bias", 0)]
        out += [0] if "window" not in f else [200] + dim(f["window"])
        out += [f.get("gate", 0), 5, f.get("options", 0)]
    else:
        out += dim(f.get("heads", 2)) + dim(f.get("key_dim", 3)) + [0] + dropout(f.get("dropout", 0))
        out += [f.get("reuse", 0) + 2, f.get("relative_pe", 0), 0, f.get("pe_max", 4), f.get("no_bias", 0)]
        out += small_list(f.get("output_shape", []), dim) + small_list(f.get("axes", []), axis)
        out += [5, f.get("options", 0)]
    return out


def build(q, v=None, k=None, slot=0):
    """op_build with v (default q) and an optional key whose last dim differs."""
    out = [op("build", slot)] + shape(*q)
    if v is None and k is None:
        return out + [0, 0]
    flags = 96 | (2 | 4 if k else 0)
    out += [flags] + shape(*(v or q))
    if k:
        out += dim(k)
    return out + [0]


def cache_operands(cache):
    """pick_cache's bytes: None (no cache), or (s_max, indices) with indices None (a static
    cache), an int (one index) or a list (one per batch row); s_max None: an index without a
    cache."""
    if cache is None:
        return [0]
    s_max, indices = cache
    out = [255] if s_max is None else [next(b for b in range(160, 255) if b % 8 == s_max - 1)] + tensor(0, 7)
    if indices is None:
        return out + [0]
    if isinstance(indices, int):
        return out + [64, indices]
    return out + [128] + list(indices)


def call(has_key=False, scores=False, masks=(), reuse_scores=False, training=0, causal=0, slot=0, vary=None,
         train_weights=None, cache=None):
    """op_call on the built shapes: q, v, [k], output, [scores], masks, flags, cache; with
    train_weights (the layer's weight count) a training step (op_train) instead, asking for
    every gradient."""
    out = [op("call", slot)]
    out += [0] if vary is None else [128] + vary
    out += tensor(0, 1) + tensor(0, 2) + (tensor(0, 3) if has_key else []) + tensor(0, 4)
    out += tensor(0, 5) if scores else ABSENT
    names = ["query", "value", "key", "attention"]
    bits = sum(1 << names.index(m) for m in masks) | (16 if reuse_scores else 0)
    bits |= 32 if train_weights is not None else 0
    out += [bits]
    for m in names:
        if m in masks:
            out += tensor(100, 9)  # content 100: random 0/1 keep flags
    if reuse_scores:
        out += tensor(0, 6)
    out += [0, training, causal, 3, 4] + cache_operands(cache)
    if train_weights is not None:
        out += tensor(0, 10) + (tensor(0, 11) if scores else ABSENT) + tensor(0, 12) + tensor(0, 13)
        out += (tensor(0, 14) if has_key else []) + (tensor(0, 15) if reuse_scores else ABSENT)
        out += [0, 1] + [b for i in range(train_weights) for b in tensor(0, 20 + i)] + [0, 0, 0, 0]
    return out


def wide_threads(n):
    """The op_threads byte (>= 128) of the wide count n."""
    return 128 + WIDE_THREADS.index(n)


def weight(which, index=0, content=0, slot=0):
    return [op(which, slot), index] + tensor(content, 8)


def dot_product(dtype=0, B=2, T=3, S=4, H=2, Hv=3, K=1, group=2, broadcast=0, bias=False, mask=False,
                scale=None, causal=0):
    out = [op("dot_product"), dtype] + dim(B) + dim(T) + dim(S) + dim(H) + dim(Hv) + dim(K)
    out += [0, group - 1, broadcast] + tensor(0, 1) + tensor(0, 2) + tensor(0, 3) + tensor(0, 4)
    out += (tensor(0, 5) if bias else ABSENT) + (tensor(100, 6) if mask else ABSENT)
    return out + [0, int(scale is not None), *double(scale if scale is not None else 0), causal]


def layer_file(kind, config, weights, dtype="float32", shapes=((2, 3, 3), (2, 4, 3), None)):
    """A layer file (safetensors: length, JSON header, data) with deterministic weights;
    `weights` lists (name, shape) in get_weights() order."""
    fmt, code = ("<f", "F32") if dtype == "float32" else ("<d", "F64")
    size = struct.calcsize(fmt)
    header = {"__metadata__": {"format": "libattention-layer-1", "layer": kind,
                               "config": json.dumps({"dtype": dtype, **config}), "build_shapes": json.dumps(shapes),
                               "weights": json.dumps([n for n, _ in weights])}}
    data, offset = b"", 0
    for i, (name, shape) in enumerate(weights):
        count = math.prod(shape)
        data += b"".join(struct.pack(fmt, math.sin(i + 0.7 * k)) for k in range(count))
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + count * size]}
        offset += count * size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def projections(names, dims):
    """(name, shape) of EinsumDense kernels and biases: names -> (kernel shape, bias shape)."""
    return [w for n in names for w in ((f"{n}/kernel", dims[n][0]), (f"{n}/bias", dims[n][1]))]


LAYER_FILES = {
    "attention": layer_file("Attention", {"use_scale": True, "score_mode": "concat", "dropout": 0.0, "seed": None},
                            [("scale", ()), ("concat_score_weight", ())]),
    "additive": layer_file("AdditiveAttention", {"use_scale": True, "dropout": 0.1, "seed": 3}, [("scale", (3,))],
                           dtype="float64"),
    "mha": layer_file("MultiHeadAttention", {"num_heads": 1, "key_dim": 2, "use_bias": True, "seed": 1},
                      projections(["query", "key", "value", "attention_output"],
                                  {"query": ((3, 1, 2), (1, 2)), "key": ((3, 1, 2), (1, 2)),
                                   "value": ((3, 1, 2), (1, 2)), "attention_output": ((1, 2, 3), (3,))})),
    "gqa": layer_file("GroupedQueryAttention", {"head_dim": 2, "num_query_heads": 2, "num_key_value_heads": 1},
                      projections(["query", "key", "value", "attention_output"],
                                  {"query": ((3, 2, 2), (2, 2)), "key": ((3, 1, 2), (1, 2)),
                                   "value": ((3, 1, 2), (1, 2)), "attention_output": ((2, 2, 3), (3,))}),
                      dtype="float64"),
    "reuse": layer_file("ReuseMultiHeadAttention", {"num_heads": 1, "key_dim": 2, "use_bias": False},
                        [("query/kernel", (3, 1, 2)), ("key/kernel", (3, 1, 2)), ("value_new/kernel", (3, 1, 2)),
                         ("attention_output_new/kernel", (1, 2, 3))]),
}


def load_raw(data, dtype=F32, q=(2, 3, 3)):
    """op_load of a whole file, then the call on shapes q (value = key = q) in `dtype`."""
    return [op("load"), 0, len(data) & 255, len(data) >> 8, *data] + shape(*q) + [dtype] + call()[1:]


def load_saved(mutations=(), cut=None):
    """op_load of the slot's layer saved by the library: mutations (position, byte), or cut
    to a length; then a call."""
    if cut is not None:
        return [op("load"), 255, cut & 255, cut >> 8] + call()[1:]
    out = [op("load"), 200, len(mutations)]
    for at, byte in mutations:
        out += [at & 255, at >> 8, byte]
    return out + call()[1:]


def program(*steps, threads=0):
    out = [threads]
    for s in steps:
        out += s
    return bytes(out)


Q3 = (2, 3, 4)
V3 = (2, 5, 3)
SEEDS = {
    "attention_dot": program(create("attention"), build(Q3, (2, 5, 4)), call(scores=True)),
    "attention_concat_scale_f64": program(create("attention", dtype=F64, use_scale=1, score_mode=1),
                                          build(Q3, (2, 5, 4)), call(scores=True, masks=("query", "value"))),
    "attention_causal_dropout": program(create("attention", causal=1, dropout=0.5), build(Q3),
                                        call(training=1, scores=True)),
    "attention_key": program(create("attention"), build(Q3, (2, 5, 4), 4), call(has_key=True, causal=1)),
    "attention_weights": program(create("attention", use_scale=1, score_mode=1), build(Q3),
                                 weight("set_weight", 0, 200), weight("get_weight", 1), call()),
    "additive": program(create("additive"), build(Q3, (2, 5, 4)), call(scores=True, masks=("value",))),
    "additive_f64_dropout": program(create("additive", dtype=F64, dropout=0.1), build(Q3),
                                    call(training=1, masks=("query", "value"))),
    "additive_weights_nan": program(create("additive"), build(Q3), weight("set_weight", 0, 250), call()),
    "mha": program(create("mha"), build(Q3, V3), call(scores=True)),
    "mha_key_masks": program(create("mha"), build(Q3, V3, 2),
                             call(has_key=True, scores=True, masks=("query", "value", "key", "attention"))),
    "mha_f64_gate_window": program(create("mha", dtype=F64, gate=1, window=2, value_dim=2), build(Q3, V3),
                                   call(causal=1)),
    "mha_output_shape": program(create("mha", output_shape=[2, 3], no_bias=1), build(Q3, V3), call()),
    "mha_axes_4d": program(create("mha", axes=[1, 2]), build((1, 2, 3, 4), (1, 2, 2, 3)), call(scores=True)),
    "mha_axes_negative": program(create("mha", axes=[-2]), build((1, 2, 3, 4)), call(scores=True)),
    "mha_dropout": program(create("mha", dropout=0.5), build(Q3), call(training=1, scores=True)),
    "mha_weights": program(create("mha"), build(Q3, V3), weight("get_weight", 0), weight("set_weight", 2, 250),
                           weight("set_weight", 7), call()),
    "mha_vary_sequence": program(create("mha"), build(Q3, V3), call(vary=[1, 3, 1, 2])),
    "gqa": program(create("gqa"), build(Q3, V3), call(scores=True)),
    "gqa_masks_causal": program(create("gqa", window=2), build(Q3, V3, 2),
                                call(has_key=True, masks=("query", "value", "attention"), causal=1)),
    "gqa_f64_gate_dropout": program(create("gqa", dtype=F64, gate=1, dropout=0.5, no_bias=1), build(Q3),
                                    call(training=1)),
    "gqa_weights": program(create("gqa"), build(Q3), weight("set_weight", 1), weight("get_weight", 3), call()),
    "reuse_none": program(create("reuse"), build(Q3, V3), call(scores=True, masks=("attention",))),
    "reuse_all": program(create("reuse", reuse=-1), build(Q3, V3), call(reuse_scores=True)),
    "reuse_partial_pe": program(create("reuse", heads=3, reuse=1, relative_pe=1), build(Q3, V3),
                                call(scores=True, reuse_scores=True)),
    "reuse_output_shape_f64": program(create("reuse", dtype=F64, output_shape=[3], reuse=2), build(Q3, V3),
                                      call(reuse_scores=True)),
    "reuse_weights": program(create("reuse", relative_pe=1), build(Q3), weight("set_weight", 0, 210), call()),
    "dot_product": program(dot_product()),
    "dot_product_f64_bias_mask": program(dot_product(dtype=1, bias=True, mask=True, broadcast=0x05)),
    "dot_product_scale_causal": program(dot_product(scale=0.5, causal=1, K=2, group=1)),
    "dot_product_scale_nan": program(dot_product(scale="nan")),
    "dot_product_broadcast_rank2": program(dot_product(bias=True, mask=True, broadcast=0x20)),
    "destroy_reuse": program(create("mha"), build(Q3), [op("destroy")], call(), [op("destroy")],
                             build(Q3), [op("info"), 0, 3]),
    "not_built": program(create("gqa"), call(), weight("get_weight"), [op("info"), 0, 3]),
    "rebuild": program(create("attention", use_scale=1), build(Q3), build((1, 2, 6)), call()),
    "slots": program(create("mha", slot=1), create("attention", slot=2), build(Q3, slot=1),
                     build(Q3, slot=2), call(slot=1), call(slot=2), [op("destroy", 1)], call(slot=2)),
    "foreign": program([op("foreign"), 1, 0, 0, 0, 0, 0, 0, 0], [op("foreign"), 0, 0, 0, 0, 0, 0, 0, 0],
                       [op("foreign"), 0, 0x10, 0x10, 0, 0, 0, 0, 0]),
    "threads": program([op("threads"), 3, 1], create("mha"), build(Q3), call(), [op("threads"), 5, 200],
                       [op("threads"), 0, 9], call(), threads=2),
    "threads_wide_backward": program(create("attention", use_scale=1, score_mode=1), build((2, 29, 8), (2, 27, 8)),
                                     call(scores=True, masks=("value",), train_weights=2),
                                     [op("threads"), wide_threads(6), 0], call(scores=True, train_weights=2),
                                     create("mha", slot=1, heads=4, key_dim=5), build((1, 29, 24), slot=1),
                                     call(slot=1, train_weights=8), dot_product(T=29, S=27, H=5, K=2),
                                     threads=192 + WIDE_THREADS.index(256)),
    **{f"load_{name}": program(load_raw(data, F64 if kind in ("additive", "gqa") else F32))
       for name, data in LAYER_FILES.items() for kind in [name]},
    "load_saved_mha": program(create("mha"), build(Q3, V3), load_saved(), call()),
    "load_saved_reuse_mutated": program(create("reuse", heads=3, reuse=1, relative_pe=1), build(Q3, V3),
                                        load_saved([(8, ord("[")), (200, ord("9")), (700, 0)])),
    "load_saved_gqa_cut": program(create("gqa"), build(Q3, V3), load_saved(cut=300)),
    "load_not_a_file": program([op("load"), 0, 3, 0, 1, 2, 3], [op("load"), 0, 8, 0, 255, 255, 255, 255, 0, 0, 0, 0]),
    "mha_cache_steps": program(create("mha"), build(Q3), call(causal=1, cache=(6, 0)), call(causal=1, cache=(6, 3)),
                               call(causal=1, scores=True, cache=(6, 2))),
    "gqa_cache_rows_window": program(create("gqa", window=2), build(Q3), call(causal=1, scores=True, cache=(8, [1, 4]))),
    "gqa_cache_f64_gate": program(create("gqa", dtype=F64, gate=1), build(Q3), call(causal=1, cache=(4, [0, 1]))),
    "mha_cache_static_masks": program(create("mha"), build(Q3, V3), call(masks=("query", "attention"),
                                                                         cache=(5, None))),
    "cache_index_only": program(create("mha"), build(Q3), call(cache=(None, 1))),
    "cache_training_losses": program(create("mha", options=200), build(Q3), call(train_weights=8, cache=(4, 0))),
    "cache_other_kinds": program(create("attention"), build(Q3), call(cache=(4, 0)), create("reuse", slot=1),
                                 build(Q3, slot=1), call(slot=1, cache=(4, None))),
    "bad_configs": program(create("mha", size=240), create("attention", nulls=250), create("gqa", nulls=251),
                           create("mha", heads=0), create("gqa", q_heads=3, kv_heads=2),
                           create("attention", score_mode=2), create("reuse", reuse=5)),
}

if __name__ == "__main__":
    corpus = pathlib.Path(__file__).resolve().parent / "corpus"
    corpus.mkdir(exist_ok=True)
    for old in corpus.iterdir():
        old.unlink()
    for name, data in SEEDS.items():
        (corpus / name).write_bytes(data)
    print(f"wrote {len(SEEDS)} seeds to {corpus}")
