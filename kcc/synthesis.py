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

from kcc import depthwise
from kcc import flops
from kcc import models
from kcc import parallel
from kcc import progress as progress_lib


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


def require_batchnorm(model):
    """The model's `BatchNormalization` layers; raises `ValueError` when it has none."""
    bns = batchnorm_layers(model)
    if not bns:
        raise ValueError(
            f"Model {model.name!r} has no BatchNormalization layer: there are no statistics to "
            "synthesise data from (Eq. 9). Use the scaling-only mode for models without "
            "BatchNorm: --epochs=0 on the command line, purify(..., epochs=0) in Python."
        )
    return bns


def _probe(model):
    """A model returning `[logits, input of BN 1, ..., input of BN L]`."""
    from keras.src.models.functional import Functional

    if not isinstance(model, (Functional, keras.Sequential)):
        raise ValueError(f"synthesize needs a functional or Sequential model. Received {type(model).__name__}.")
    nested = [l.name for l in flops.iterate_layers(model) if isinstance(l, keras.layers.BatchNormalization)]
    bns = require_batchnorm(model)
    if len(nested) != len(bns):
        raise ValueError("synthesize reads BatchNorm layers of the top-level graph only; this model has "
                         "BatchNorm inside nested models. Flatten it first.")
    return keras.Model(model.inputs, [model.outputs[0]] + [bn.input for bn in bns]), bns


class _Clip(keras.constraints.Constraint):
    """Keeps the normalised images inside the image of [0, 1] (per channel, last axis)."""

    def __init__(self, low, high):
        self.low, self.high = low, high

    def __call__(self, w):
        return ops.clip(w, self.low, self.high)


class Synthesizer(keras.Model):
    """Eq. 9 as a Keras model whose only trainable weight is one batch of images.

    `fit` with Adam optimises the images (so every backend's compiled train step runs it, with no
    host round trip per step); the classifier stays frozen and runs in inference mode. The inputs
    given to `fit` are ignored placeholders `(B, 1)`; the targets are the labels `(B,)`.

    Args:
        probe: model returning `[logits, input of BN 1, ..., input of BN L]` (`_probe`).
        targets: per BN layer `(moving mean (C_j,), sqrt(moving variance + eps) (C_j,))`.
        mean, std: per-channel input normalisation `(C,)`; the images are stored normalised,
            `x = mean + std * z`, as in ZeroQ.
        batch_size: images optimised together.
    """

    def __init__(self, probe, targets, mean, std, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.probe, self.targets = probe, targets
        self.mean, self.std = mean, std
        self.low, self.high = (0.0 - mean) / std, (1.0 - mean) / std
        self.normalised_images = self.add_weight(
            shape=(batch_size, *probe.inputs[0].shape[1:]), initializer="zeros",
            constraint=_Clip(self.low, self.high), name="normalised_images")

    def images(self):
        """The current batch as [0, 1] images, NumPy `(B, H, W, C)`."""
        z = ops.convert_to_numpy(self.normalised_images)
        return np.clip(self.mean + self.std * z, 0.0, 1.0).astype(np.float32)

    def call(self, inputs, training=False):
        x = ops.add(ops.multiply(self.normalised_images, self.std), self.mean)
        return self.probe(x, training=False)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        logits, bn_inputs = y_pred[0], y_pred[1:]
        ce = ops.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        return bn_statistics_loss(bn_inputs, self.targets) + ce

    def bn_loss(self):
        """Eq. 9's BN-statistics terms for the current batch, a float."""
        outputs = self(ops.zeros((1, 1)))
        return float(ops.convert_to_numpy(bn_statistics_loss(outputs[1:], self.targets)))


def _steps_per_execution(steps):
    """Adam steps per compiled call: up to 25 on an accelerator (fewer host round trips), 1 on a
    CPU, where a step takes long enough (2-3 s for 256 images at width 16 on one core) that the
    calls cost nothing and progress can be shown after every step."""
    on_cpu = all(d.lower().startswith("cpu") for d in keras.distribution.list_devices())
    return 1 if on_cpu else min(steps, 25)


def synthesize(model, num_images=5120, steps=500, learning_rate=0.1, batch_size=256, seed=0,
               verbose=True, distribution=None):
    """Synthesises images that match the model's BatchNorm statistics (Eq. 9).

    Images are made in full batches of `batch_size` (the BN statistics are batch statistics);
    when `num_images` is not a multiple of it, the last batch is made whole and cut.

    Args:
        model: a functional or Sequential classifier on [0, 1] images with BatchNorm layers
            (not modified).
        num_images: how many images to make (paper: 5120).
        steps: Adam steps per batch (paper: 500).
        learning_rate: Adam learning rate in normalised input units (paper: 0.1), or a
            `keras.optimizers.schedules.LearningRateSchedule` of the step within a batch (it
            starts again at step 0 for every batch).
        batch_size: images optimised together.
        seed: seeds the initial noise and the labels.
        verbose: show progress over all optimisation steps (`kcc.progress`).
        distribution: where the optimisation runs (`kcc.parallel.get`): None or `"off"` on one
            device; `"data_parallel"`, `"auto"` or a `keras.distribution.DataParallel` splits
            each batch of images (the variable, `kcc.parallel.shard_first_axis`) over the
            devices (JAX only; their count must divide the batch size). The images are the
            single-device ones up to float rounding.

    Returns:
        `(images, labels, info)`: images float32 `(num_images, H, W, C)` in [0, 1], labels int32
        `(num_images,)` drawn uniformly, and `info` with the BN-statistics loss per batch at the
        first and last step, the seconds of every batch (the first includes compilation) and
        the throughput in image-steps per second.
    """
    if num_images < 1 or steps < 1 or batch_size < 2:
        raise ValueError(f"Need num_images >= 1, steps >= 1, batch_size >= 2. Received "
                         f"num_images={num_images}, steps={steps}, batch_size={batch_size}.")
    model = depthwise.twin(model)  # XLA's grouped convolutions are slow (kcc.depthwise)
    probe, bns = _probe(model)
    targets = [
        (ops.convert_to_numpy(bn.moving_mean).astype(np.float32),
         np.sqrt(ops.convert_to_numpy(bn.moving_variance) + bn.epsilon).astype(np.float32))
        for bn in bns
    ]
    num_classes = int(model.outputs[0].shape[-1])
    mean, std = input_statistics(model)
    batch_size = max(2, min(batch_size, num_images))
    num_batches = -(-num_images // batch_size)
    rng = np.random.default_rng(seed)
    shape = tuple(model.inputs[0].shape[1:])
    labels = rng.integers(0, num_classes, num_batches * batch_size).astype(np.int32)
    images = np.empty((num_batches * batch_size, *shape), np.float32)

    distribution = parallel.get(distribution)
    parallel.check_batch_size(distribution, batch_size, batch_size)
    distribution = parallel.shard_first_axis(distribution, ".*normalised_images")

    info = {"bn_loss_first": [], "bn_loss_last": [], "batch_seconds": []}
    progress = progress_lib.Progress(num_batches * steps, "synthesis") if verbose else None
    start = time.time()
    with models.trainable_restored(model), parallel.scope(distribution, model):
        probe.trainable = False  # the images are the only trainable weight
        synthesizer = Synthesizer(probe, targets, mean, std, batch_size)
        optimizer = keras.optimizers.Adam(learning_rate, epsilon=1e-8)
        synthesizer.compile(optimizer=optimizer,
                            steps_per_execution=_steps_per_execution(steps))
        placeholder = np.zeros((steps * batch_size, 1), np.float32)
        for b in range(num_batches):
            batch_start = time.time()
            y = labels[b * batch_size:(b + 1) * batch_size]
            z = rng.standard_normal((batch_size, *shape)).astype(np.float32)
            synthesizer.normalised_images.assign(np.clip(z, synthesizer.low, synthesizer.high))
            for variable in optimizer.variables:  # a fresh Adam for every batch
                variable.assign(ops.zeros(variable.shape, variable.dtype))
            if not isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
                optimizer.learning_rate = learning_rate
            info["bn_loss_first"].append(synthesizer.bn_loss())
            synthesizer.fit(placeholder, np.tile(y, steps), batch_size=batch_size, epochs=1,
                            shuffle=False, verbose=0,
                            callbacks=[progress.callback(b * steps)] if progress else None)
            info["bn_loss_last"].append(synthesizer.bn_loss())
            images[b * batch_size:(b + 1) * batch_size] = synthesizer.images()
            info["batch_seconds"].append(round(time.time() - batch_start, 3))
            if progress:
                progress.update((b + 1) * steps, [("bn_loss", info["bn_loss_last"][-1])])
    seconds = time.time() - start
    info.update(seconds=round(seconds, 2),
                image_steps_per_second=round(num_batches * batch_size * steps / seconds, 1))
    return images[:num_images], labels[:num_images], info
