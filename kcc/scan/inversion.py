"""Trigger inversion: the smallest input change that sends images to a class, for every class.

Two trigger shapes are reverse-engineered for every candidate target class `k`, jointly for all
classes in one batched optimisation over images `x` the model does not assign to `k`:

* a local (patch) trigger, Neural Cleanse's mask and pattern,
  `x' = (1 - m_k) * x + m_k * p_k`, with `m_k` `(H, W, 1)` and `p_k` `(H, W, C)` in [0, 1]:

      min  CE(F(x'), k) + lambda_mask * sum(m_k)                                   (NC Eq. 3)

* a global (image-wide) trigger, one additive perturbation `x' = clip(x + d_k, 0, 1)`:

      min  CE(F(x'), k) + lambda_global * ||d_k||_2

A backdoor target needs a much smaller trigger than the other classes (and its trigger still
flips images it was not fitted on). With a fixed penalty the optimisation settles where a
trigger flips only part of the images, so, as Neural Cleanse keeps the smallest mask that
reaches its attack-success goal, the triggers are checked `CHECKS` times on the images they are
fitted on and each class keeps the smallest trigger that flipped at least `FLIP_GOAL` of them
(or, if none did, the one that flipped most). `size` is the mask's L1 norm in pixels (local) or
the L2 norm of `d_k` in [0, 1] pixel units (global); `flip_rate` is measured on held-aside
images.

Reference: Wang et al., "Neural Cleanse: Identifying and Mitigating Backdoor Attacks in
Neural Networks", IEEE S&P 2019 (mask and pattern; here with a fixed penalty weight).
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from kcc import progress as progress_lib

KINDS = ("local", "global")
#: Times the triggers are checked during inversion (evenly spaced; the last at the end).
CHECKS = 5
#: Share of the fitting images a trigger must flip to be kept in preference to a larger one.
FLIP_GOAL = 0.9
#: Starting mask logit: sigmoid(-6) = 0.0025 per pixel, about 2.5 pixels on a 32x32 image, so a
#: mask grows to what its class needs rather than shrinking from an arbitrary start.
MASK_START = -6.0


@dataclasses.dataclass
class Trigger:
    """An inverted trigger for one target class.

    Attributes:
        kind: `"local"` (mask and pattern) or `"global"` (additive perturbation).
        target: the class the trigger sends images to.
        pattern: `(H, W, C)`: the pattern in [0, 1] (local) or the perturbation (global).
        mask: `(H, W, 1)` in [0, 1] for a local trigger, None for a global one.
        size: L1 norm of the mask in pixels (local), L2 norm of the perturbation (global).
        flip_rate: fraction of held-aside images (not of the target class) it sends to the
            target, or None before it is measured.
    """

    kind: str
    target: int
    pattern: np.ndarray
    mask: np.ndarray = None
    size: float = 0.0
    flip_rate: float = None

    def apply(self, x):
        """Stamps the trigger on images `x` `(N, H, W, C)` in [0, 1]; returns float32."""
        x = np.asarray(x, np.float32)
        if self.kind == "local":
            return ((1.0 - self.mask) * x + self.mask * self.pattern).astype(np.float32)
        return np.clip(x + self.pattern, 0.0, 1.0).astype(np.float32)


class TriggerInversion(keras.Model):
    """Local and global triggers for every class, optimised together by `fit`.

    Trainable weights: mask logits `(K', H, W, 1)`, pattern logits `(K', H, W, C)` (both
    through a sigmoid) and perturbations `(K', H, W, C)`. `fit` takes images `(B, H, W, C)` and
    their labels `(B,)` (the model's own predictions); every image is stamped with every
    candidate's two triggers, `2 * K' * B` images per step, and an image counts for target `k`
    only if its label is not `k`.

    Args:
        classifier: the suspect, producing logits `(B, K)` (frozen, inference mode).
        classes: the candidate target classes (default: all `K`); `K'` of them below.
        lambda_mask: penalty per unit of mask L1 norm (pixels).
        lambda_global: penalty per unit of perturbation L2 norm.
    """

    def __init__(self, classifier, classes=None, lambda_mask=0.01, lambda_global=0.1,
                 **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        num_classes = int(classifier.outputs[0].shape[-1])
        self.classes = np.arange(num_classes) if classes is None else np.asarray(classes)
        k = len(self.classes)
        h, w, c = classifier.inputs[0].shape[1:]
        self.lambda_mask, self.lambda_global = float(lambda_mask), float(lambda_global)
        self.mask_logits = self.add_weight(
            shape=(k, h, w, 1), initializer=keras.initializers.Constant(MASK_START),
            name="mask_logits")
        self.pattern_logits = self.add_weight(
            shape=(k, h, w, c), initializer="zeros", name="pattern_logits")
        self.perturbations = self.add_weight(
            shape=(k, h, w, c), initializer="zeros", name="perturbations")

    def masks(self):
        return ops.sigmoid(self.mask_logits)

    def patterns(self):
        return ops.sigmoid(self.pattern_logits)

    def stamp(self, x):
        """`x` `(B, H, W, C)` -> `(2 * K * B, H, W, C)`: local triggers, then global ones."""
        m, p = self.masks()[:, None], self.patterns()[:, None]
        local = (1.0 - m) * x[None] + m * p
        global_ = ops.clip(x[None] + self.perturbations[:, None], 0.0, 1.0)
        both = ops.concatenate([local, global_], axis=0)
        return ops.reshape(both, (-1, *x.shape[1:]))

    def call(self, x, training=False):
        return self.classifier(self.stamp(x), training=False)

    def _terms(self, y, logits):
        """Per-kind mean cross-entropy towards each target over images not of that target."""
        k = len(self.classes)
        batch = ops.shape(y)[0]
        classes = ops.convert_to_tensor(self.classes.astype(np.int32))
        targets = ops.tile(ops.repeat(classes, batch), 2)
        ce = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        ce = ops.reshape(ce, (2, k, batch))
        counts = ops.cast(ops.not_equal(y[None, :], classes[:, None]), ce.dtype)
        per_class = ops.sum(ce * counts[None], axis=-1) / ops.maximum(
            ops.sum(counts, axis=-1)[None], 1.0)
        return per_class  # (2, K)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        per_class = self._terms(ops.cast(y, "int32"), y_pred)
        mask_l1 = ops.sum(self.masks(), axis=(1, 2, 3))
        global_l2 = ops.sqrt(ops.sum(ops.square(self.perturbations), axis=(1, 2, 3)) + 1e-12)
        return ops.sum(ops.mean(per_class, axis=-1)) + ops.mean(
            self.lambda_mask * mask_l1 + self.lambda_global * global_l2)

    def triggers(self):
        """The current triggers, `{"local": [Trigger] * K', "global": [Trigger] * K'}`."""
        masks = ops.convert_to_numpy(self.masks()).astype(np.float32)
        patterns = ops.convert_to_numpy(self.patterns()).astype(np.float32)
        deltas = ops.convert_to_numpy(self.perturbations).astype(np.float32)
        return {
            "local": [Trigger("local", int(t), patterns[i], masks[i], float(masks[i].sum()))
                      for i, t in enumerate(self.classes)],
            "global": [Trigger("global", int(t), deltas[i], None,
                               float(np.sqrt((deltas[i] ** 2).sum())))
                       for i, t in enumerate(self.classes)],
        }


def flip_rates(model, triggers, images, labels, batch_size=512):
    """Sets each trigger's `flip_rate` on `images` whose `labels` differ from its target.

    Args:
        model: the classifier.
        triggers: iterable of `Trigger`.
        images: held-aside images `(N, H, W, C)` in [0, 1].
        labels: the model's predictions on them `(N,)`.

    Returns:
        the triggers, updated in place.
    """
    labels = np.asarray(labels)
    for trigger in triggers:
        keep = labels != trigger.target
        if not keep.any():
            trigger.flip_rate = float("nan")
            continue
        logits = model.predict(trigger.apply(images[keep]), batch_size=batch_size, verbose=0)
        trigger.flip_rate = float(np.mean(np.argmax(logits, -1) == trigger.target))
    return triggers


class KeepSmallestEffective(keras.callbacks.Callback):
    """After every epoch of `TriggerInversion.fit`, keeps per class and kind the smallest
    trigger that flips at least `FLIP_GOAL` of `images` (else the one that flips most).

    Args:
        classifier: the suspect.
        images: the images the triggers are fitted on `(N, H, W, C)`; `labels` `(N,)` the
            suspect's predictions on them.

    Attributes:
        best: `{"local": [Trigger], "global": [Trigger]}` after `fit` (flip rates reset to None,
            to be measured on held-aside images).
    """

    def __init__(self, classifier, images, labels):
        super().__init__()
        self.classifier, self.images, self.labels = classifier, images, labels
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        current = self.model.triggers()
        for kind in KINDS:
            flip_rates(self.classifier, current[kind], self.images, self.labels)
        if self.best is None:
            self.best = current
            return
        for kind in KINDS:
            for i, new in enumerate(current[kind]):
                old = self.best[kind][i]
                if _better(new, old):
                    self.best[kind][i] = new

    def on_train_end(self, logs=None):
        for kind in KINDS:
            for trigger in self.best[kind]:
                trigger.flip_rate = None


def _better(new, old):
    """Whether trigger `new` is preferred to `old` (both with flip rates measured)."""
    new_ok, old_ok = new.flip_rate >= FLIP_GOAL, old.flip_rate >= FLIP_GOAL
    if new_ok != old_ok:
        return new_ok
    return new.size < old.size if new_ok else new.flip_rate > old.flip_rate


def invert_triggers(model, images, labels, steps=200, batch_size=32, learning_rate=0.1,
                    lambda_mask=0.01, lambda_global=0.1, classes=None, seed=0, verbose=True):
    """Inverts a local and a global trigger for every class of `model` (see the module doc).

    Args:
        model: a Keras classifier on [0, 1] images, producing logits (not modified).
        images: images to fit the triggers on `(N, H, W, C)` in [0, 1] (e.g. synthesised
            from the model's BatchNorm statistics: no data needed).
        labels: the model's predictions on `images` `(N,)`.
        steps: Adam steps.
        batch_size: images per step (each is stamped with `2 * K` triggers).
        learning_rate: Adam learning rate (on logits and perturbations).
        lambda_mask, lambda_global: penalty weights (see `TriggerInversion`).
        classes: candidate target classes (default: every class).
        seed: seeds the batch order.
        verbose: show a progress line that updates while the optimisation runs.

    Returns:
        `{"local": [Trigger], "global": [Trigger]}`, one per candidate class, each the smallest
        that reached `FLIP_GOAL` at one of the `CHECKS` checks (flip rates not yet measured).
    """
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels, np.int32)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(images))
                            for _ in range(-(-steps * batch_size // len(images)))])
    order = order[:steps * batch_size]
    trainable = model.trainable
    model.trainable = False
    try:
        inversion = TriggerInversion(model, classes, lambda_mask, lambda_global)
        checks = min(CHECKS, steps)
        per_check = steps // checks
        inversion.compile(optimizer=keras.optimizers.Adam(learning_rate),
                          steps_per_execution=min(per_check, 10))
        keep = KeepSmallestEffective(model, images, labels)
        inversion.fit(images[order], labels[order], batch_size=batch_size, epochs=checks,
                      steps_per_epoch=per_check, shuffle=False, verbose=0,
                      callbacks=[keep, *progress_lib.callbacks("trigger inversion",
                                                               verbose=verbose)])
        return keep.best
    finally:
        model.trainable = trainable
