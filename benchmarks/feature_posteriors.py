"""Probe: which class do the other classes' dummy features lean towards? FreeEagle's signal.

A candidate third signal for `kcc.scan`, kept as a benchmark because it did not earn its place:
on the zoo it flags BadNets's target but not InputAware's (the model the scan misses), at any
split depth tried (`benchmarks/results/feature_posteriors.md`; 0.45 and 0.87, and 50 or 1,000
steps, were tried in a prototype of this script with the same result). Made by

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax python benchmarks/feature_posteriors.py \
        --models=badnets_all2one,clean,inputaware_all2one --depths=0.6,0.75

The classifier is split at an intermediate layer, `F = tail(head(x))` (`split`). For every class
`k`, `R` non-negative dummy feature maps `h` of the split layer's output shape are optimised so
that the tail puts them in `k` (cross-entropy towards `k`, Adam); no input image is involved. On
each optimised `h`, the tail's posteriors over the *other* classes,

    P_k(j) = softmax_{j != k}(tail(h)_j),            s_j = mean_{k != j} mean_R P_k(j),

say which class is each class's runner-up. A backdoor target is every class's runner-up: its
training taught the tail that a trigger's features send any class's features to it, so `s_t` is
abnormally large (`kcc.scan.anomaly` turns the `s_j` into p-values). Unlike the maximum margin
and trigger inversion, this looks past the input: a trigger that differs for every image
(InputAware) still ends in the same target features.

Reference: Fu et al., "FreeEagle: Detecting Complex Neural Trojans in Data-Free Cases", USENIX
Security 2023 (dummy intermediate features per class and the column statistics of the K x K
posterior matrix; here with posteriors renormalised over the other classes, and MM-BD's gamma
test instead of FreeEagle's (max - Q3) / IQR score, so that all signals share one test).
"""

import json
import os
import time

import keras
import numpy as np
from absl import app
from absl import flags
from keras import ops

from kcc import flops
from kcc.scan import max_margin

#: Depth of the split, as a share of the model's layers: FreeEagle splits deep in the network,
#: where features are class-specific but several layers remain to carry a backdoor.
SPLIT_DEPTH = 0.75


def split(model, depth=None):
    """The tail of `model` after the layer nearest to `depth` of its layers whose output alone
    determines the logits (no residual connection crosses it).

    Args:
        model: a functional Keras classifier.
        depth: where to split, as a share of `model.layers` (0 = the input, 1 = the logits).

    Returns:
        `(tail, layer_name)`: a Keras model from the split layer's output `(B, h, w, c)` (or
        `(B, d)`) to the logits, sharing the classifier's weights, and the split layer's name.

    Raises:
        ValueError: no layer of `model` splits it (e.g. a Sequential wrapped in a layer).
    """
    depth = SPLIT_DEPTH if depth is None else depth
    layers = model.layers
    wanted = int(round(depth * (len(layers) - 1)))
    order = sorted(range(1, len(layers) - 1), key=lambda i: (abs(i - wanted), -i))
    for i in order:
        layer = layers[i]
        try:
            tail = keras.Model(layer.output, model.outputs[0], name=f"tail_after_{layer.name}")
        except (ValueError, KeyError):  # the graph is disconnected: something crosses the cut
            continue
        if any(isinstance(t, keras.layers.InputLayer) for t in tail.layers[1:]):
            continue
        return tail, layer.name
    raise ValueError(f"No layer of {model.name!r} splits it into a head and a tail (every "
                     "candidate has a connection crossing it), so the feature signal cannot run.")


class FeatureAscent(keras.Model):
    """`restarts` dummy feature maps per class that `fit` sends to their class.

    The tail is frozen and runs in inference mode; the features, `(K * R, *feature_shape)`,
    non-negative, are the only trainable weight. `fit`'s inputs are ignored placeholders.

    Args:
        tail: a Keras model from features to logits `(B, K)`.
        restarts: feature maps per class (`R`).
        seed: seeds the uniform [0, 1) starting features.
    """

    def __init__(self, tail, restarts=5, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.tail = tail
        self.num_classes = int(tail.outputs[0].shape[-1])
        shape = tuple(tail.inputs[0].shape[1:])
        self.features = self.add_weight(
            shape=(self.num_classes * restarts, *shape), name="features",
            initializer=keras.initializers.RandomUniform(0.0, 1.0, seed=seed),
            constraint=keras.constraints.NonNeg())
        self.classes = np.repeat(np.arange(self.num_classes), restarts)

    def call(self, inputs, training=False):
        return self.tail(self.features, training=False)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return ops.mean(keras.losses.sparse_categorical_crossentropy(
            self.classes, y_pred, from_logits=True))


def runner_up_matrix(logits, classes):
    """`P` `(K, K)`: row `k` is the mean over the rows of `logits` `(K * R, K)` optimised for
    class `k` (`classes` `(K * R,)`) of the softmax over the other classes (`P[k, k] = 0`)."""
    logits = np.asarray(logits, np.float64)
    k = logits.shape[-1]
    own = np.eye(k, dtype=bool)[classes]
    others = np.where(own, -np.inf, logits)
    others = np.exp(others - others.max(axis=-1, keepdims=True))
    others /= others.sum(axis=-1, keepdims=True)
    return np.stack([others[classes == c].mean(axis=0) for c in range(k)])


def feature_posteriors(model, restarts=5, steps=300, learning_rate=0.01, depth=None, seed=0,
                       verbose=True):
    """Every class's mean share of the other classes' runner-up posteriors, `s_j` (module doc).

    Args:
        model: a functional Keras classifier producing logits (not modified).
        restarts: dummy feature maps per class (`R`).
        steps: Adam steps.
        learning_rate: Adam learning rate, in the split layer's activation units.
        depth: where to split (`split`); None: `SPLIT_DEPTH`.
        seed: seeds the starting features.
        verbose: show a progress line that updates while the ascent runs.

    Returns:
        `(s, info)`: float64 `(K,)` (`1 / (K - 1)` each when no class leans anywhere) and
        `{"layer": the split layer's name, "matrix": P as nested lists}`.
    """
    if restarts < 1 or steps < 1:
        raise ValueError(f"Need restarts >= 1 and steps >= 1. Received restarts={restarts}, "
                         f"steps={steps}.")
    tail, layer = split(model, depth)
    trainable = [(l, l.trainable) for l in flops.iterate_layers(model)]
    model.trainable = False
    try:
        ascent = FeatureAscent(tail, restarts, seed)
        logits = ops.convert_to_numpy(max_margin.ascend(ascent, steps, learning_rate,
                                                        "feature posteriors", verbose))
    finally:
        for l, flag in trainable:
            l.trainable = flag
    matrix = runner_up_matrix(logits, ascent.classes)
    k = matrix.shape[0]
    s = matrix.sum(axis=0) / (k - 1)
    return s, {"layer": layer, "matrix": np.round(matrix, 4).tolist()}


_MODELS = flags.DEFINE_list("models", ["badnets_all2one", "clean", "inputaware_all2one"],
                            "Zoo entries (examples/zoo/<name>.keras).")
_DEPTHS = flags.DEFINE_list("depths", ["0.75"], "Split depths (share of the layers).")
_RESTARTS = flags.DEFINE_integer("restarts", 5, "Dummy feature maps per class.")
_STEPS = flags.DEFINE_integer("steps", 300, "Adam steps.")


def main(argv):
    del argv
    from kcc import intake
    from kcc import saving
    from kcc.scan import anomaly

    import kcc.scan
    import zoo  # benchmarks/zoo.py, beside this script

    path = zoo.output("feature_posteriors.json")
    rows = json.load(open(path)) if os.path.exists(path) else {}
    for name in _MODELS.value:
        model = intake.load_suspect(os.path.join(zoo.ZOO, f"{name}.keras"))
        for depth in _DEPTHS.value:
            key = f"{name}|{depth}|{_RESTARTS.value}|{_STEPS.value}"
            if key in rows:
                continue
            start = time.time()
            s, info = feature_posteriors(model, _RESTARTS.value, _STEPS.value, depth=float(depth),
                                         verbose=False)
            p, flagged = anomaly.p_values(s, kcc.scan.ALPHA, min_ratio=kcc.scan.MIN_RATIO)
            rows[key] = {"model": name, "depth": float(depth), "layer": info["layer"],
                         "s": np.round(s, 4).tolist(), "p": p.tolist(), "flagged": flagged,
                         "seconds": round(time.time() - start, 1), "machine": zoo.machine()}
            print(name, depth, rows[key]["layer"], flagged, flush=True)
            saving.write_json(rows, path)
    lines = ["# FreeEagle-style feature posteriors on the zoo (probe)", "",
             "`benchmarks/feature_posteriors.py`: per class, 5 non-negative dummy feature maps at",
             "the split layer optimised 300 Adam steps towards the class; `s_j` = mean share of",
             "class j in the other classes' runner-up posteriors; p-values by `kcc.scan.anomaly`",
             "(alpha and min_ratio of `kcc.scan`). Command in the script's docstring.", "",
             "| model | depth | split layer | largest s (class) | next s | flagged | seconds |",
             "|---|---|---|---|---|---|---|"]
    for row in rows.values():
        order = np.argsort(row["s"])[::-1]
        lines.append(f"| {row['model']} | {row['depth']:g} | {row['layer']} | "
                     f"{row['s'][order[0]]:.3f} ({order[0]}) | {row['s'][order[1]]:.3f} "
                     f"({order[1]}) | {row['flagged'] or '-'} | {row['seconds']:.0f} |")
    saving.write_text("\n".join(lines) + "\n", zoo.output("feature_posteriors.md"))


if __name__ == "__main__":
    app.run(main)
