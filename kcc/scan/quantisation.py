"""Colour quantisation as a trigger: a family that no mask, perturbation or warp can express.

A quantisation trigger rounds every channel of every pixel to a multiple of a step `s` (in
[0, 1] pixel units, `1 / s + 1` levels), after adding an ordered-dither offset `d` in steps:

    q(x) = clip(s * round(x / s + d), 0, 1),

`d = 0` (plain rounding) or the 4x4 Bayer matrix tiled over the image, centred on 0 (ordered
dithering, a parallel stand-in for the error diffusion BppAttack uses). The change depends on
the image, so it is not an additive trigger, and it is everywhere at once, so it is not a
patch: the inversions of `kcc.scan.inversion` find something else for such a backdoor
(on `bpp_all2one` a patch flagged the target, and unlearning it left ASR at 20%).

`quantisation_triggers` measures per class which mild quantisation (at least `MIN_LEVELS`
levels) sends most images to it; a clean model's images hardly change class under it. On
synthetic images (`benchmarks/results/probes/quantise.json`, 256 images from the BatchNorm
statistics, no test image): six plain levels sent 85% of `bpp_all2one`'s images to its target,
and at six or more levels no class of `clean` collected more than 4.3%. Coarser quantisation
sends a clean model's images to one class too (two dithered levels: 96% to class 6 of
`clean`), so it is not tried.

References: Wang, Zhai and Ma, "BppAttack: Stealthy and Efficient Trojan Attacks against Deep
Neural Networks via Image Quantization and Contrastive Adversarial Learning", CVPR 2022 (the
trigger); Xu, Evans and Qi, "Feature Squeezing: Detecting Adversarial Examples in Deep Neural
Networks", NDSS 2018 (colour-depth reduction as a probe of a model); Bayer, "An optimum method
for two-level rendition of continuous-tone pictures", 1973 (the ordered-dither matrix).
"""

import numpy as np
from keras import ops

from kcc import training
from kcc.scan import inversion

#: Levels per channel tried, mildest first; fewer than `MIN_LEVELS` changes a clean model's
#: answers on its own (module docstring).
LEVELS = (16, 12, 8, 7, 6)
MIN_LEVELS = min(LEVELS)
#: The 4x4 Bayer index matrix; `(index + 0.5) / 16 - 0.5` is the dither offset in steps.
BAYER = np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]])


def quantise(x, step, dither=0.0):
    """`q(x)` of the module docstring.

    Args:
        x: images `(N, H, W, C)` in [0, 1] (a tensor or an array).
        step: the rounding step in [0, 1] pixel units, a scalar or `(N, 1, 1, 1)`.
        dither: offsets in steps added before rounding, broadcastable to `x`
            (e.g. `(H, W, 1)` from `dither_offsets`, or `(N, H, W, 1)`).

    Returns:
        `(N, H, W, C)` of `x`'s dtype (`keras.ops`; no gradient flows through the rounding).
    """
    x = ops.convert_to_tensor(x)
    step = ops.cast(step, x.dtype)
    return ops.clip(step * ops.round(x / step + ops.cast(dither, x.dtype)), 0.0, 1.0)


def dither_offsets(height, width):
    """`(height, width, 1)` float32: the Bayer matrix tiled over the image, in (-0.5, 0.5)."""
    tiles = np.tile(BAYER, (-(-height // 4), -(-width // 4)))[:height, :width]
    return ((tiles + 0.5) / 16.0 - 0.5)[..., None].astype(np.float32)


def quantisation_triggers(model, targets, images, labels=None):
    """For each class of `targets`, the mildest quantisation that sends `images` to it (module
    docstring).

    Every level of `LEVELS`, plain and dithered, is applied to all the images and predicted
    once, whatever the number of targets; a class's flip rate counts the images not already
    of it (as `inversion.flip_rates` does).

    Args:
        model: the classifier.
        targets: the classes, an iterable of int.
        images: images `(N, H, W, C)` in [0, 1] (synthetic: no data needed).
        labels: the model's predictions on `images` (computed when None).

    Returns:
        a list of `kcc.scan.Trigger` of kind `"quantise"`, one per target in order: of the
        variants, the one with the smallest step that sends `inversion.FLIP_GOAL` of the images
        to the target, else the one that sends most (`inversion.better`); `size` the step
        `1 / (levels - 1)`, `pattern` the dither offsets `(H, W, 1)` in steps (zeros for plain
        rounding), no mask, `flip_rate` on `images`.
    """
    images = np.asarray(images, np.float32)
    labels = np.asarray(training.predict_labels(model, images) if labels is None else labels)
    offsets = dither_offsets(*images.shape[1:3])
    variants = [(1.0 / (levels - 1), pattern)
                for levels in LEVELS for pattern in (np.zeros_like(offsets), offsets)]
    answers = [training.predict_labels(model, inversion.Trigger(
        "quantise", 0, pattern, None, step).apply(images)) for step, pattern in variants]
    found = []
    for target in targets:
        keep = labels != target
        best = None
        for (step, pattern), answer in zip(variants, answers):
            trigger = inversion.Trigger("quantise", int(target), pattern, None, step)
            trigger.flip_rate = (float(np.mean(answer[keep] == target)) if keep.any()
                                 else float("nan"))
            if best is None or inversion.better(trigger, best):
                best = trigger
        found.append(best)
    return found
