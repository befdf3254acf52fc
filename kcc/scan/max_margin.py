"""Maximum achievable margin per class, the statistic of MM-BD (data-free).

For every class `k`, images are optimised from uniform noise to maximise the logit margin

    m_k(x) = z_k(x) - max_{j != k} z_j(x),        r_k = max over the images of m_k(x),

with `x` kept in [0, 1]. A backdoor makes its target class reachable by a small, universal
input pattern, so the target's `r_k` is abnormally large compared with the other classes'
(`kcc.scan.anomaly` turns the `r_k` into a p-value).

Reference: Wang, Miller and Kesidis, "MM-BD: Post-Training Detection of Backdoor Attacks with
Arbitrary Backdoor Pattern Types Using a Maximum Margin Statistic", IEEE S&P 2024.
"""

import keras
import numpy as np
from keras import ops

from kcc import progress as progress_lib


class _Clip01(keras.constraints.Constraint):
    def __call__(self, w):
        return ops.clip(w, 0.0, 1.0)


class MarginAscent(keras.Model):
    """`images_per_class` images per class whose mean class margin `fit` maximises.

    The classifier is frozen and runs in inference mode; the images, `(K * n, H, W, C)` in
    [0, 1], are the only trainable weight, so every backend's compiled train step runs the
    ascent. `fit`'s inputs are ignored placeholders `(steps, 1)`.

    Args:
        classifier: a Keras classifier producing logits `(B, K)` from `(B, H, W, C)` images.
        images_per_class: images optimised for each class (MM-BD: 30).
        seed: seeds the uniform initial images.
    """

    def __init__(self, classifier, images_per_class=30, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.num_classes = int(classifier.outputs[0].shape[-1])
        self.images_per_class = int(images_per_class)
        shape = tuple(classifier.inputs[0].shape[1:])
        self.images = self.add_weight(
            shape=(self.num_classes * self.images_per_class, *shape), name="images",
            initializer=keras.initializers.RandomUniform(0.0, 1.0, seed=seed),
            constraint=_Clip01())
        self.classes = np.repeat(np.arange(self.num_classes), self.images_per_class)

    def call(self, inputs, training=False):
        return self.classifier(self.images, training=False)

    def margins(self, logits):
        """`z_k - max_{j != k} z_j` of every image for its own class `k`, `(K * n,)`."""
        own = ops.one_hot(self.classes, self.num_classes)
        target = ops.sum(logits * own, axis=-1)
        others = ops.max(logits - 1e9 * own, axis=-1)
        return target - others

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return -ops.mean(self.margins(y_pred))


def ascend(ascent, steps, learning_rate, label, verbose=True):
    """Runs `steps` Adam steps of an ascent model whose only weights are its optimised inputs
    (its `fit` inputs are ignored placeholders) and returns its output after them.

    Args:
        ascent: a compiled-by-this-function `keras.Model` such as `MarginAscent`.
        steps: Adam steps; learning_rate: its learning rate.
        label: the progress line's name; verbose: show it.
    """
    ascent.compile(optimizer=keras.optimizers.Adam(learning_rate),
                   steps_per_execution=min(steps, 10))
    ascent.fit(np.zeros((steps, 1), np.float32), batch_size=1, epochs=1, shuffle=False,
               verbose=0, callbacks=progress_lib.callbacks(label, steps, verbose))
    return ascent(np.zeros((1, 1), np.float32))


def max_margin(model, images_per_class=30, steps=300, learning_rate=0.01, seed=0,
               verbose=True):
    """The maximum achievable margin `r_k` of every class (MM-BD's detection statistic).

    Args:
        model: a Keras classifier on [0, 1] images, producing logits (not modified).
        images_per_class: random starting images per class (MM-BD: 30).
        steps: Adam steps (MM-BD: 300).
        learning_rate: Adam learning rate, in [0, 1] pixel units.
        seed: seeds the starting images.
        verbose: show a progress line that updates while the ascent runs.

    Returns:
        float64 array `(K,)`: `r_k`, the largest margin reached by an image of class `k`, in
        logit units.
    """
    if images_per_class < 1 or steps < 1:
        raise ValueError(f"Need images_per_class >= 1 and steps >= 1. Received "
                         f"images_per_class={images_per_class}, steps={steps}.")
    trainable = model.trainable
    model.trainable = False
    try:
        ascent = MarginAscent(model, images_per_class, seed)
        logits = ascend(ascent, steps, learning_rate, "max margin", verbose)
        margins = ops.convert_to_numpy(ascent.margins(logits)).astype(np.float64)
    finally:
        model.trainable = trainable
    return margins.reshape(ascent.num_classes, images_per_class).max(axis=1)
