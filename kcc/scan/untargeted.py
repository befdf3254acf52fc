"""Untargeted triggers: the smallest input change that moves images out of their own class.

An all-to-all backdoor sends class `c` to another class (`c + 1` in the zoo), so every class is
the target of one source class and no class needs a smaller trigger than the others: the scan's
per-class inversion (`kcc.scan.inversion`) finds nothing anomalous. One trigger that moves every
image, to whichever class, does not have that blind spot. Here one trigger of each kind of
`kcc.scan.inversion.KINDS` is inverted over the images `x` with the model's classes `y`:

    min  -log(1 - softmax(F(x'))_y) + lambda_kind * size_kind(trigger),

with `x'` stamped as in `kcc.scan.inversion` and the same penalties; as there, the triggers are
checked `inversion.CHECKS` times and each kind keeps its smallest one that moves
`inversion.FLIP_GOAL` of the images (else the one that moves most). Such a trigger has
`target=None`; its flip rate is the share of images whose class it changes.

What it finds on the zoo (CPU scan budget: 32 synthetic images to fit on, 32 held aside;
`benchmarks/results/probes/untargeted.json`, all 24 models): on `badnets_all2all` the local
trigger, a mask of 29 pixels, moves 84% of the held-aside images, no class receiving more than
37% of them, and, stamped on test images (diagnosis only), sends 70% of them to `y + 1` as the
attack's 3x3 patch does. On the five clean models it moves 16-41%, on the all-to-one models
16-69% (`trojan_all2one` 69%, `bpp_all2one` 66%): `MIN_FLIP_RATE` lies between, a margin of
two held-aside images over the nearest, so a larger budget should be checked before it is
trusted on other architectures. The other kinds move many images of clean models too (global
81-91%, smooth 69-78%: universal adversarial perturbations exist without a backdoor), and none
of them found the Blended, WaNet or InputAware all-to-all triggers (at most 33% of test images
sent to `y + 1`). So only the local kind is evidence (`all_to_all`). On the tests' tiny task
(`tests/planted.py`) it does not find the planted 4x4 patch, all-to-all or all-to-one: it moves
the images to one easy class with a mask of 48-62 pixels.

References: Wang et al., "Neural Cleanse", IEEE S&P 2019 (mask and pattern); Moosavi-Dezfooli et
al., "Universal adversarial perturbations", CVPR 2017 (one perturbation that changes most
images' classes, untargeted). The untargeted inversion of a mask and pattern as an all-to-all
test is kcc's.
"""

import numpy as np
from keras import ops

from kcc import training
from kcc.scan import inversion

#: An untargeted local trigger that moves at least this share of held-aside images, spread so
#: that no class receives more than `MAX_DOMINANT` of them, is evidence of an all-to-all
#: backdoor (`all_to_all`). Set on the zoo's scans (`benchmarks/results/probes/
#: untargeted.json`).
MIN_FLIP_RATE = 0.75
#: The most of the moved images one class may receive for `all_to_all`: an all-to-one trigger
#: sends them all to its target (that backdoor is the per-class signals' to find).
MAX_DOMINANT = 0.5


class UntargetedInversion(inversion.TriggerInversion):
    """One trigger of every kind towards any class but the image's own (module docstring).

    Trainable weights as `kcc.scan.inversion.TriggerInversion` with one candidate; `fit` takes
    images `(B, H, W, C)` and the model's classes of them `(B,)`.
    """

    def __init__(self, classifier, **kwargs):
        super().__init__(classifier, classes=[-1], **kwargs)

    def _terms(self, y, logits):
        """`(len(KINDS), 1)`: per kind, the mean of `-log(1 - p_y)` over the batch."""
        labels = ops.tile(y, len(inversion.KINDS))
        own = ops.one_hot(labels, ops.shape(logits)[-1], dtype=logits.dtype)
        others = ops.logsumexp(logits - 1e9 * own, axis=-1)
        loss = ops.logsumexp(logits, axis=-1) - others
        return ops.mean(ops.reshape(loss, (len(inversion.KINDS), 1, -1)), axis=-1)

    def triggers(self):
        found = super().triggers()
        for kind in found:
            for trigger in found[kind]:
                trigger.target = None
        return found


def invert_untargeted(model, images, labels, steps=200, batch_size=32, learning_rate=0.1,
                      seed=0, verbose=True, distribution=None):
    """One untargeted trigger of every kind of `kcc.scan.inversion.KINDS` (module docstring).

    Args:
        model: a Keras classifier on [0, 1] images producing logits (not modified).
        images: images to fit the triggers on `(N, H, W, C)` in [0, 1] (synthetic).
        labels: the model's classes of `images` `(N,)`.
        steps, batch_size, learning_rate, seed, verbose, distribution: as
            `kcc.scan.inversion.invert_triggers` (penalties: its defaults).

    Returns:
        `{kind: Trigger}` with `target=None` (flip rates not yet measured).
    """
    found = inversion.optimise(lambda: UntargetedInversion(model), model, images, labels, steps,
                               batch_size, learning_rate, seed, verbose, distribution,
                               "untargeted trigger inversion")
    return {kind: found[kind][0] for kind in inversion.KINDS}


def dominant_share(model, trigger, images, labels):
    """Of `images` `(N, H, W, C)` whose class (`labels` `(N,)`) `trigger` changes, the share
    that goes to the most common new class; NaN when it changes none."""
    labels = np.asarray(labels)
    moved = training.predict_labels(model, trigger.apply(images))
    moved = moved[moved != labels]
    return float(np.bincount(moved).max() / len(moved)) if len(moved) else float("nan")


def all_to_all(trigger, dominant):
    """Whether an untargeted local `trigger` (flip rate measured on held-aside images) and the
    `dominant_share` of the images it moves are evidence of an all-to-all backdoor."""
    return (trigger.flip_rate is not None and trigger.flip_rate >= MIN_FLIP_RATE
            and dominant <= MAX_DOMINANT)


__all__ = ["MAX_DOMINANT", "MIN_FLIP_RATE", "UntargetedInversion", "all_to_all",
           "dominant_share", "invert_untargeted"]
