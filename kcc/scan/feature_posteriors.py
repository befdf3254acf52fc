"""Which class do the other classes' dummy features lean towards? FreeEagle's statistic.

The classifier is split at an intermediate layer, `F = tail(head(x))` (`split`). For every class
`k`, `R` non-negative dummy feature maps `h` of the split layer's output shape are optimised so
that the tail puts them in `k` (cross-entropy towards `k`, Adam); no input image is involved. On
each optimised `h`, the tail's posteriors over the *other* classes,

    P_k(j) = softmax_{j != k}(tail(h)_j),            s_j = mean_{k != j} mean_R P_k(j),

say which class is each class's runner-up. A backdoor target is every class's runner-up: its
training taught the tail that a trigger's features send any class's features to it, so `s_t` is
abnormally large (`kcc.scan.anomaly` turns the `s_j` into p-values; `1 / (K - 1)` each when no
class leans anywhere). Unlike the maximum margin and trigger inversion, this looks past the
input: a trigger that differs for every image (InputAware) still ends in the same target
features.

Reference: Fu et al., "FreeEagle: Detecting Complex Neural Trojans in Data-Free Cases", USENIX
Security 2023 (dummy intermediate features per class and the column statistics of the K x K
posterior matrix; here with the posteriors renormalised over the other classes, and MM-BD's
gamma test instead of FreeEagle's (max - Q3) / IQR score, so that every signal of `kcc.scan`
shares one test).
"""

import keras
import numpy as np
from keras import ops

from kcc import flops
from kcc import models
from kcc.scan import max_margin

#: Depth of the split, as a share of the model's layers: FreeEagle splits deep in the network,
#: where features are class-specific but several layers remain to carry a backdoor. Set on
#: `badnets_all2one`, `clean` and `inputaware_all2one` (0.45, 0.6, 0.75 and 0.87 tried;
#: `benchmarks/results/feature_posteriors.md`) before the signal joined the scan.
SPLIT_DEPTH = 0.75
#: Fewest layers with weights (other than BatchNormalization) the tail must hold for the signal
#: to run: the premise is a tail deep enough to have learned "trigger features -> target" apart
#: from the clean classes. On the scan tests' 3-convolution model (`tests/planted.py`), whose
#: tail at `SPLIT_DEPTH` is one Dense layer, the clean twin's class 0 took 38% of the runner-up
#: posteriors (p < 1e-4) and the backdoored twin's target did not stand out; the zoo models'
#: tails hold 4 (VGG-19-BN), 6 (ResNet-18) and 15 (MobileNetV2).
MIN_TAIL_LAYERS = 3


def split(model, depth=SPLIT_DEPTH):
    """The tail of `model` after the layer nearest to `depth` of its layers whose output alone
    determines the logits (no residual connection crosses it).

    Args:
        model: a functional Keras classifier.
        depth: where to split, as a share of `model.layers` (0 = the input, 1 = the logits).

    Returns:
        `(tail, layer_name)`: a Keras model from the split layer's output `(B, h, w, c)` (or
        `(B, d)`) to the logits, sharing the classifier's weights, and the split layer's name.

    Raises:
        ValueError: no layer of `model` splits it (e.g. a Sequential wrapped in a layer), or the
            tail holds fewer than `MIN_TAIL_LAYERS` layers with weights.
    """
    layers = model.layers
    wanted = int(round(depth * (len(layers) - 1)))
    order = sorted(range(1, len(layers) - 1), key=lambda i: (abs(i - wanted), -i))
    for i in order:
        layer = layers[i]
        try:
            tail = keras.Model(layer.output, model.outputs[0], name=f"tail_after_{layer.name}")
        except (ValueError, KeyError, AttributeError):  # disconnected: something crosses the cut
            continue
        if any(isinstance(t, keras.layers.InputLayer) for t in tail.layers[1:]):
            continue
        weighted = [l for l in flops.iterate_layers(tail)
                    if l.weights and not isinstance(l, keras.layers.BatchNormalization)]
        if len(weighted) < MIN_TAIL_LAYERS:
            raise ValueError(
                f"the tail after {layer.name!r} ({depth:g} of the layers) holds "
                f"{len(weighted)} layer(s) with weights, fewer than the {MIN_TAIL_LAYERS} the "
                "signal needs to be meaningful (too shallow a model).")
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


def feature_posteriors(model, restarts=5, steps=300, learning_rate=0.01, depth=SPLIT_DEPTH,
                       seed=0, verbose=True):
    """Every class's mean share of the other classes' runner-up posteriors, `s_j` (module doc).

    Args:
        model: a functional Keras classifier producing logits (not modified).
        restarts: dummy feature maps per class (`R`).
        steps: Adam steps.
        learning_rate: Adam learning rate, in the split layer's activation units.
        depth: where to split (`split`).
        seed: seeds the starting features.
        verbose: show a progress line that updates while the ascent runs.

    Returns:
        `(s, info)`: float64 `(K,)` and `{"layer": the split layer's name, "matrix": P as
        nested lists}`.

    Raises:
        ValueError: `restarts` or `steps` below 1, or no layer splits the model (`split`).
    """
    if restarts < 1 or steps < 1:
        raise ValueError(f"Need restarts >= 1 and steps >= 1. Received restarts={restarts}, "
                         f"steps={steps}.")
    tail, layer = split(model, depth)
    with models.trainable_restored(model):
        model.trainable = False
        ascent = FeatureAscent(tail, restarts, seed)
        logits = ops.convert_to_numpy(max_margin.ascend(ascent, steps, learning_rate,
                                                        "feature posteriors", verbose))
    matrix = runner_up_matrix(logits, ascent.classes)
    s = matrix.sum(axis=0) / (matrix.shape[0] - 1)
    return s, {"layer": layer, "matrix": np.round(matrix, 4).tolist()}
