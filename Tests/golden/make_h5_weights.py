"""Write the Keras weight-file fixtures of Tests/golden/h5/keras/: small models holding Keras
3.15's attention layers, saved by `model.save_weights("<model>.weights.h5")`, each layer
described by an .npz that Tests/python/test_interop.py loads the file against.

Run where Keras 3.15 with JAX is installed:
    KERAS_BACKEND=jax JAX_ENABLE_X64=1 <python with keras> Tests/golden/make_h5_weights.py
(Model Garden's ReuseMultiHeadAttention: make_reuse_h5_weights.py.) Weights and inputs come
from numpy generators seeded by the case name; reruns write byte-identical files.

<layer case>.npz (np.savez_compressed, strings as 0-d str arrays): `h5` (the weights file's name
in the same directory), `layer` (Keras class name), `layer_name`, `config` (JSON of the Keras
layer's get_config()), `dtype`, `weight_count`, `weight_<i>` (its get_weights()), `query`,
`value`, optional `key` and `reuse_attention_scores`, `output` (the layer's output on them,
training=False), `keras_version`, `backend`.
"""

from golden_npz import OUT, config_json, generator
from keras_jax import keras, np

H5 = OUT / "h5" / "keras"  # a level below the golden groups: test_golden.py reads */*.npz
GROUP = "h5"
B = 2
STAMPS = {"keras_version": keras.__version__, "backend": keras.backend.backend()}
L = keras.layers


def describe(case, h5_name, layer, inputs, output):
    """Write H5/<case>.npz for `layer` (see the module docstring)."""
    weights = layer.get_weights()
    arrays = {
        "h5": np.array(h5_name), "layer": np.array(type(layer).__name__),
        "layer_name": np.array(layer.name), "config": np.array(config_json(layer.get_config())),
        "dtype": np.array(str(layer.dtype)), "weight_count": np.array(len(weights)),
        **{f"weight_{i}": np.asarray(w) for i, w in enumerate(weights)},
        **{k: np.asarray(v) for k, v in inputs.items() if v is not None},
        "output": np.asarray(output),
        **{k: np.array(v) for k, v in STAMPS.items()},
    }
    np.savez_compressed(H5 / f"{case}.npz", **arrays)


def randomize(layer, rng):
    """Non-trivial weights (the initial ones are often 0 or 1)."""
    layer.set_weights([(rng.normal(size=w.shape) * 0.5).astype(w.dtype) for w in layer.get_weights()])


def single(case, make_layer, shapes, dtype="float32", luong=False):
    """A Functional model around one layer called on inputs of `shapes` (query, value, key)."""
    rng = generator(GROUP, case)
    data = {name: None if s is None else rng.normal(size=(B,) + s).astype(dtype)
            for name, s in zip(("query", "value", "key"), shapes)}
    inputs = [keras.Input(shape=x.shape[1:], dtype=dtype, name=n) for n, x in data.items() if x is not None]
    layer = make_layer()
    if luong:
        out = layer(inputs)
    else:
        out = layer(*inputs[:2], key=inputs[2] if len(inputs) == 3 else None)
    model = keras.Model(inputs, out)
    randomize(layer, rng)
    h5_name = f"{case}.weights.h5"
    model.save_weights(H5 / h5_name)
    args = [data[n] for n in data if data[n] is not None]
    output = layer(args, training=False) if luong else layer(*args[:2], key=data["key"], training=False)
    describe(case, h5_name, layer, data, keras.ops.convert_to_numpy(output))


def luong():
    """A model nesting a Functional sub-model with an Attention (scale, concat, dropout) and an
    AdditiveAttention; layer_name or the kind picks one."""
    case, dtype = "luong", "float32"
    rng = generator(GROUP, case)
    x = rng.normal(size=(B, 4, 6)).astype(dtype)
    y = rng.normal(size=(B, 5, 7)).astype(dtype)
    k = rng.normal(size=(B, 5, 6)).astype(dtype)
    inputs = [keras.Input(a.shape[1:], name=n) for n, a in (("x", x), ("y", y), ("k", k))]
    dot = L.Attention(use_scale=True, score_mode="concat", dropout=0.1, name="luong_concat")
    additive = L.AdditiveAttention(name="bahdanau")
    inner = keras.Model(inputs, [dot(inputs), additive(inputs)], name="inner")
    outer_inputs = [keras.Input(a.shape[1:]) for a in (x, y, k)]
    model = keras.Model(outer_inputs, inner(outer_inputs))
    for layer in (dot, additive):
        randomize(layer, rng)
    h5_name = f"{case}.weights.h5"
    model.save_weights(H5 / h5_name)
    h = keras.ops.convert_to_numpy(dot([x, y, k], training=False))
    describe(f"{case}_attention", h5_name, dot, {"query": x, "value": y, "key": k}, h)
    out = keras.ops.convert_to_numpy(additive([x, y, k], training=False))
    describe(f"{case}_additive_attention", h5_name, additive, {"query": x, "value": y, "key": k}, out)


def main():
    H5.mkdir(parents=True, exist_ok=True)
    for stale in [*H5.glob("*.npz"), *H5.glob("*.weights.h5")]:
        stale.unlink()
    # Distinct query/value/key dims, so a mix-up cannot go unnoticed.
    single("mha", lambda: L.MultiHeadAttention(num_heads=2, key_dim=3), ((4, 6), (5, 7), (5, 5)))
    # Rank 4 over axes (1, 2), gate, value_dim != key_dim, output_shape, float64.
    single("mha_gate_rank4_float64",
           lambda: L.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=2, use_gate=True,
                                        attention_axes=(1, 2), output_shape=(3,), dtype="float64"),
           ((2, 3, 6), (2, 4, 7), None), dtype="float64")
    single("gqa", lambda: L.GroupQueryAttention(head_dim=3, num_query_heads=4, num_key_value_heads=2,
                                                use_gate=True),
           ((4, 6), (5, 6), (5, 5)))
    luong()
    files = sorted(f for f in H5.iterdir() if f.suffix in (".npz", ".h5"))
    print(f"{len(files)} files, {sum(f.stat().st_size for f in files) / 1e3:.1f} kB in {H5}")


if __name__ == "__main__":
    main()
