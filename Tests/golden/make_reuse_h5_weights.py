"""Write the Model Garden weight-file fixture of Tests/golden/h5/model_garden/: a tf_keras
model holding a ReuseMultiHeadAttention (2 of 4 heads reused, relative position bias), saved
by `model.save_weights("reuse.weights.h5")`, described by reuse.npz in make_h5_weights.py's
format (plus `reuse_attention_scores`).

Run with the python of an environment with TensorFlow, tf-keras and tf-models-official:
    <python> Tests/golden/make_reuse_h5_weights.py
"""

from golden_npz import OUT, config_json, generator
from model_garden import ReuseMultiHeadAttention, np, tf, tf_keras

H5 = OUT / "h5" / "model_garden"
B = 2


def main():
    case = "reuse"
    rng = generator("h5", case)
    q = rng.normal(size=(B, 5, 6)).astype("float32")
    v = rng.normal(size=(B, 5, 7)).astype("float32")
    scores = rng.random((B, 4, 5, 5)) + 0.1
    scores = (scores / scores.sum(axis=-1, keepdims=True)).astype("float32")
    layer = ReuseMultiHeadAttention(num_heads=4, key_dim=3, reuse_attention=2, use_relative_pe=True,
                                    pe_max_seq_length=5)
    inputs = [tf_keras.Input(a.shape[1:], name=n)
              for n, a in (("query", q), ("value", v), ("scores", scores))]
    model = tf_keras.Model(inputs, layer(inputs[0], inputs[1], reuse_attention_scores=inputs[2]))
    layer.set_weights([(rng.normal(size=w.shape) * 0.5).astype(w.dtype) for w in layer.get_weights()])
    H5.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(H5 / f"{case}.weights.h5"))
    output = layer(q, v, reuse_attention_scores=scores, training=False).numpy()
    weights = layer.get_weights()
    np.savez_compressed(
        H5 / f"{case}.npz", h5=np.array(f"{case}.weights.h5"), layer=np.array(type(layer).__name__),
        layer_name=np.array(layer.name), config=np.array(config_json(layer.get_config())),
        dtype=np.array(layer.dtype),
        weight_count=np.array(len(weights)), **{f"weight_{i}": w for i, w in enumerate(weights)},
        query=q, value=v, reuse_attention_scores=scores, output=output,
        keras_version=np.array(tf_keras.__version__), backend=np.array("tensorflow"),
        tensorflow_version=np.array(tf.__version__))
    size = sum((H5 / f"{case}{s}").stat().st_size for s in (".npz", ".weights.h5"))
    print(f"wrote {case}.weights.h5 and {case}.npz ({size / 1e3:.1f} kB) in {H5}")


if __name__ == "__main__":
    main()
