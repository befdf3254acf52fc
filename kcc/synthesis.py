"""Data-free synthetic images from BatchNorm statistics (C&C Eq. 9, a ZeroQ variant).

Images are optimised so that, at every BatchNormalization layer, the per-channel mean and
standard deviation of the layer's input over the batch match the layer's moving mean and
`sqrt(moving_variance)`, plus a cross-entropy term towards randomly drawn labels:

    min_x  sum_j ||mu_j(x) - mu_j||^2 + ||sigma_j(x) - sigma_j||^2 + CE(F(x), y)      (Eq. 9)

The optimisation variable lives in the model's normalised input space (as in ZeroQ and the
paper, where the learning rate 0.1 refers to normalised units) and images are kept in [0, 1].

Reference: Cai et al., "ZeroQ: A Novel Zero Shot Quantization Framework", CVPR 2020;
Phan et al., "Clean and Compact", ECCV 2024, Sect. 4.2.
"""

import time

import keras
import numpy as np
from keras import ops

from kcc import flops
from kcc import gradients


def batchnorm_layers(model):
    """The `BatchNormalization` layers of a model's own graph, in order."""
    return [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]


def input_statistics(model):
    """Per-channel `(mean, std)` the model normalises its [0, 1] inputs with.

    Read from a leading `Normalization` layer when there is one (every kcc model has one);
    otherwise `(0.5, 0.25)` per channel, a neutral guess for [0, 1] images.
    """
    for layer in model.layers[:3]:
        if isinstance(layer, keras.layers.Normalization):
            mean = np.ravel(ops.convert_to_numpy(layer.mean)).astype(np.float32)
            std = np.sqrt(np.ravel(ops.convert_to_numpy(layer.variance))).astype(np.float32)
            return mean, std
    channels = model.inputs[0].shape[-1]
    return np.full(channels, 0.5, np.float32), np.full(channels, 0.25, np.float32)


def bn_statistics_loss(bn_inputs, targets):
    """Eq. 9's first two terms: `sum_j ||mu_j - mean_j||^2 + ||sigma_j - std_j||^2`.

    Args:
        bn_inputs: list of tensors, the inputs of each BN layer for one batch `(B, ..., C_j)`.
        targets: list of `(mean_j (C_j,), std_j (C_j,))` from the BN moving statistics.

    Returns:
        a scalar tensor.
    """
    total = 0.0
    for h, (mean, std) in zip(bn_inputs, targets):
        axes = tuple(range(len(h.shape) - 1))
        mu = ops.mean(h, axis=axes)
        sigma = ops.sqrt(ops.var(h, axis=axes) + 1e-5)
        total = total + ops.sum(ops.square(mu - mean)) + ops.sum(ops.square(sigma - std))
    return total


def _probe(model):
    """A model returning `[logits, input of BN 1, ..., input of BN L]`."""
    from keras.src.models.functional import Functional

    if not isinstance(model, (Functional, keras.Sequential)):
        raise ValueError(f"synthesize needs a functional or Sequential model. Received {type(model).__name__}.")
    nested = [l.name for l in flops.iterate_layers(model) if isinstance(l, keras.layers.BatchNormalization)]
    bns = batchnorm_layers(model)
    if not bns:
        raise ValueError(
            f"Model {model.name!r} has no BatchNormalization layer: there are no statistics to "
            "synthesise data from (Eq. 9). Use the scaling-only mode (purify(..., epochs=0) / "
            "--finetune=false) for models without BatchNorm."
        )
    if len(nested) != len(bns):
        raise ValueError("synthesize reads BatchNorm layers of the top-level graph only; this model has "
                         "BatchNorm inside nested models. Flatten it first.")
    return keras.Model(model.inputs, [model.outputs[0]] + [bn.input for bn in bns]), bns


def synthesize(model, num_images=5120, steps=500, learning_rate=0.1, batch_size=256, seed=0,
               verbose=True):
    """Synthesises images that match the model's BatchNorm statistics (Eq. 9).

    Args:
        model: a functional or Sequential classifier on [0, 1] images with BatchNorm layers.
        num_images: how many images to make (paper: 5120).
        steps: Adam steps per batch (paper: 500).
        learning_rate: Adam learning rate in normalised input units (paper: 0.1).
        batch_size: images optimised together (the BN statistics are batch statistics).
        seed: seeds the initial noise and the labels.
        verbose: show a Keras progress bar over batches.

    Returns:
        `(images, labels, info)`: images float32 `(num_images, H, W, C)` in [0, 1], labels int32
        `(num_images,)` drawn uniformly, and `info` with the BN-statistics loss per batch at the
        first and last step and the throughput in image-steps per second.
    """
    if num_images < 1 or steps < 1 or batch_size < 2:
        raise ValueError(f"Need num_images >= 1, steps >= 1, batch_size >= 2. Received "
                         f"num_images={num_images}, steps={steps}, batch_size={batch_size}.")
    probe, bns = _probe(model)
    targets = [
        (ops.convert_to_numpy(bn.moving_mean).astype(np.float32),
         np.sqrt(ops.convert_to_numpy(bn.moving_variance) + bn.epsilon).astype(np.float32))
        for bn in bns
    ]
    num_classes = int(model.outputs[0].shape[-1])
    mean, std = input_statistics(model)

    def objective(outputs, labels):
        logits, bn_inputs = outputs[0], outputs[1:]
        ce = ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        return bn_statistics_loss(bn_inputs, targets) + ce

    def bn_only(outputs, labels):
        return bn_statistics_loss(outputs[1:], targets)

    value_and_grad = gradients.input_gradient_fn(probe, objective)
    bn_loss = gradients.input_gradient_fn(probe, bn_only)
    rng = np.random.default_rng(seed)
    shape = tuple(model.inputs[0].shape[1:])
    images = np.empty((num_images, *shape), np.float32)
    labels = rng.integers(0, num_classes, num_images).astype(np.int32)
    info = {"bn_loss_first": [], "bn_loss_last": []}
    bar = keras.utils.Progbar(-(-num_images // batch_size), unit_name="batch") if verbose else None
    start = time.time()
    for b, first in enumerate(range(0, num_images, batch_size)):
        y = labels[first:first + batch_size]
        z = rng.standard_normal((len(y), *shape)).astype(np.float32)
        low, high = (0.0 - mean) / std, (1.0 - mean) / std
        z = np.clip(z, low, high)
        m, v = np.zeros_like(z), np.zeros_like(z)
        for t in range(1, steps + 1):
            x = mean + std * z
            loss, grad = value_and_grad(x, y)
            if t == 1:
                info["bn_loss_first"].append(bn_loss(x, y)[0])
            g = grad * std  # chain rule: the variable is z, x = mean + std * z
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            step = learning_rate * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
            z = np.clip(z - step, low, high)
        x = (mean + std * z).astype(np.float32)
        info["bn_loss_last"].append(bn_loss(x, y)[0])
        images[first:first + len(y)] = np.clip(x, 0.0, 1.0)
        if bar:
            bar.update(b + 1, [("bn_loss", info["bn_loss_last"][-1])])
    seconds = time.time() - start
    info.update(seconds=round(seconds, 2), image_steps_per_second=round(num_images * steps / seconds, 1))
    return images, labels, info
