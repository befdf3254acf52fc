"""Supervised training of a classifier, shared by the attacks and the baseline defenses.

Runs on every Keras backend with NumPy batches (no TensorFlow needed): SGD with momentum 0.9,
weight decay in one of `DECAYS` (Keras' decoupled decay on kernels, or the PyTorch reference's
coupled L2 decay), a cosine or one-cycle learning-rate schedule, the standard crop(pad 4)+flip
augmentation, and a Keras progress bar.
"""

import math
import os
import time

import keras
import numpy as np

from kcc import data

SCHEDULES = ("cosine", "onecycle", "constant")

#: How weight decay enters the update (see `sgd`):
#: - `"decoupled"`: Keras' `weight_decay`, `w -= lr * wd * w` after each step, on kernels only
#:   (BatchNorm gamma/beta and biases exempt). The recipe of the zoo's first models.
#: - `"coupled"`: the PyTorch reference (`torch.optim.SGD(weight_decay=wd)`, as in
#:   BackdoorBench): `wd * w` is added to the gradient of *every* parameter, BatchNorm and biases
#:   included, before momentum, so in steady state it acts about `1 / (1 - momentum)` times as
#:   strongly as the decoupled form.
#: - `"coupled_kernels"`: coupled, with BatchNorm gamma/beta and biases exempt.
DECAYS = ("decoupled", "coupled", "coupled_kernels")
_EXEMPT = ("gamma", "beta", "bias")


class Batches(keras.utils.PyDataset):
    """Shuffled, augmented NumPy batches of `(image, label)` for `Model.fit`.

    Args:
        x: images `(N, H, W, C)` in [0, 1].
        y: integer labels `(N,)`.
        batch_size: images per batch.
        augment: apply crop(pad 4)+flip to every batch.
        shuffle: reshuffle at the start of every epoch.
        transform: optional `f(x_batch, y_batch, rng) -> (x_batch, y_batch)` applied after
            augmentation, e.g. an attack that poisons batches on the fly.
        seed: seed of the shuffling and augmentation stream.
    """

    def __init__(self, x, y, batch_size=128, augment=True, shuffle=True, transform=None, seed=0):
        super().__init__()
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} != {len(y)}.")
        self.x, self.y = x, np.asarray(y)
        self.batch_size = batch_size
        self.augment, self.shuffle, self.transform = augment, shuffle, transform
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x)) if shuffle else np.arange(len(x))

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        idx = np.sort(self.order[index * self.batch_size:(index + 1) * self.batch_size])
        xb, yb = self.x[idx], self.y[idx]
        if self.augment:
            xb = data.augment(xb, self.rng)
        if self.transform is not None:
            xb, yb = self.transform(xb, yb, self.rng)
        return xb.astype(np.float32), yb

    def on_epoch_end(self):
        if self.shuffle:
            self.order = self.rng.permutation(len(self.x))


def epoch_feed(dataset, initial_epoch, epochs):
    """What `fit` should consume for `dataset` (a `keras.utils.PyDataset`) from `initial_epoch`.

    On JAX (and PyTorch) that is the `PyDataset` itself: its batches are made in Python on the
    thread that trains. On TensorFlow, Keras feeds a `PyDataset` through
    `tf.data.Dataset.from_generator`, a Python call on another thread for every batch; on a
    one- or two-core machine the handover costs as much as the training step (measured on
    this project's 2-core machines: 40% of the training process's CPU time in the kernel).
    There the batches of one whole epoch are made in one Python call, in the same order and
    from the same random stream, and sliced by `tf.data` (one epoch of CIFAR-10 is 614 MB of
    float32 images).

    Returns:
        `(data, steps_per_epoch)` for `fit(data, steps_per_epoch=..., initial_epoch=...)`.
    """
    if keras.backend.backend() != "tensorflow":
        return dataset, None
    import tensorflow as tf

    def one_epoch(_):
        parts = [dataset[i] for i in range(len(dataset))]
        dataset.on_epoch_end()
        return tuple(np.concatenate(p) for p in zip(*parts))

    # The structure and dtypes of a batch, from a first batch whose random draws are undone.
    rng = getattr(dataset, "rng", None)
    state = rng.bit_generator.state if rng is not None else None
    first = dataset[0]
    if rng is not None:
        rng.bit_generator.state = state
    dtypes = tuple(tf.as_dtype(np.asarray(t).dtype) for t in first)
    shapes = tuple((None, *np.shape(t)[1:]) for t in first)

    def batches(epoch):  # rebatched within the epoch: the same batches, the last one short
        arrays = tf.numpy_function(one_epoch, [epoch], dtypes, stateful=True)
        arrays = tuple(tf.ensure_shape(a, s) for a, s in zip(arrays, shapes))
        return tf.data.Dataset.from_tensor_slices(arrays).batch(dataset.batch_size)

    feed = tf.data.Dataset.range(initial_epoch, epochs).flat_map(batches)
    return feed.prefetch(1), len(dataset)


def learning_rate_schedule(learning_rate, total_steps, schedule="cosine"):
    """The learning rate over `total_steps` optimizer steps.

    `"cosine"` decays from `learning_rate` to 0; `"onecycle"` warms up from `learning_rate / 25`
    to `learning_rate` over the first 15% of steps, then decays as a cosine; `"constant"` keeps it.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}. Received schedule={schedule!r}.")
    if schedule == "constant":
        return learning_rate
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, total_steps)
    warmup = max(1, int(0.15 * total_steps))
    return keras.optimizers.schedules.CosineDecay(
        learning_rate / 25, max(1, total_steps - warmup), warmup_target=learning_rate,
        warmup_steps=warmup,
    )


@keras.saving.register_keras_serializable(package="kcc")
class CoupledSGD(keras.optimizers.SGD):
    """SGD with momentum and coupled L2 weight decay, as PyTorch's `torch.optim.SGD`.

    Each step adds `l2 * w` to the gradient `g` of a decayed variable before the momentum
    update (Keras' form of momentum, identical to PyTorch's at a constant learning rate):

        m <- momentum * m - lr * (g + l2 * w);   w <- w + m

    Keras' own `weight_decay` is decoupled instead (`w -= lr * wd * w`, outside the momentum).

    Args:
        learning_rate: a float or a `keras.optimizers.schedules.LearningRateSchedule`.
        momentum: momentum coefficient.
        l2: decay coefficient (PyTorch's `weight_decay`).
        exempt: variable names (e.g. `("gamma", "beta", "bias")`) that get no decay; empty
            decays every trainable variable, as PyTorch does by default.
        **kwargs: other `keras.optimizers.SGD` arguments (not `weight_decay`).
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, l2=5e-4, exempt=(), **kwargs):
        if kwargs.get("weight_decay"):
            raise ValueError("CoupledSGD takes its decay as `l2`; Keras' decoupled "
                             f"`weight_decay` cannot be combined with it. Received {kwargs}.")
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, momentum=momentum, **kwargs)
        self.l2 = float(l2)
        self.exempt = tuple(exempt)

    def _decays(self, variable):
        # TensorFlow passes its own variables here, named like "dense/bias:0".
        name = variable.name.rpartition("/")[2].partition(":")[0]
        return self.l2 > 0 and name not in self.exempt

    def update_step(self, gradient, variable, learning_rate):
        if self._decays(variable):
            gradient = keras.ops.add(gradient, keras.ops.multiply(
                keras.ops.cast(self.l2, variable.dtype), variable))
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2, "exempt": list(self.exempt)}


def sgd(learning_rate, total_steps, schedule="cosine", weight_decay=5e-4, momentum=0.9,
        decay="decoupled"):
    """SGD with momentum and weight decay `weight_decay` applied as `decay` (one of `DECAYS`)."""
    if decay not in DECAYS:
        raise ValueError(f"decay must be one of {DECAYS}. Received decay={decay!r}.")
    rate = learning_rate_schedule(learning_rate, total_steps, schedule)
    if decay != "decoupled":
        return CoupledSGD(rate, momentum=momentum, l2=weight_decay,
                          exempt=_EXEMPT if decay == "coupled_kernels" else ())
    optimizer = keras.optimizers.SGD(rate, momentum=momentum, weight_decay=weight_decay or None)
    optimizer.exclude_from_weight_decay(var_names=list(_EXEMPT))
    return optimizer


def compile_classifier(model, optimizer):
    """Compiles `model` (logits out) with sparse cross-entropy and accuracy."""
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
    )


def train(
    model,
    x,
    y,
    epochs,
    batch_size=128,
    learning_rate=0.1,
    weight_decay=5e-4,
    schedule="cosine",
    augment=True,
    transform=None,
    validation_data=None,
    callbacks=None,
    seed=0,
    verbose="auto",
    checkpoint=None,
    decay="decoupled",
):
    """Trains a classifier in place with `Model.fit`.

    Args:
        model: a Keras model producing logits; trained in place.
        x: images `(N, 32, 32, 3)` in [0, 1].
        y: integer labels `(N,)`.
        epochs: passes over the data.
        batch_size: images per step.
        learning_rate: peak learning rate.
        weight_decay: weight-decay coefficient (0 disables it), applied as `decay`.
        schedule: one of `SCHEDULES`.
        augment: crop(pad 4)+flip augmentation.
        transform: per-batch `f(x, y, rng) -> (x, y)`, see `Batches`.
        validation_data: optional `(x_val, y_val)` evaluated after every epoch.
        callbacks: extra Keras callbacks.
        seed: seeds weights' randomness, shuffling and augmentation.
        verbose: passed to `fit` (a progress bar by default).
        checkpoint: optional path prefix; weights and optimizer state are saved there after
            every epoch, and a later call with the same prefix resumes from the last epoch.
        decay: how weight decay enters the update, one of `DECAYS`.

    Returns:
        The `keras.callbacks.History` of the run.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1. Received epochs={epochs}.")
    keras.utils.set_random_seed(seed)
    batches = Batches(x, y, batch_size, augment=augment, transform=transform, seed=seed)
    compile_classifier(model, sgd(learning_rate, epochs * len(batches), schedule, weight_decay,
                                  decay=decay))
    callbacks = list(callbacks or [])
    initial_epoch = 0
    if checkpoint:
        saver = EpochCheckpoint(checkpoint)
        initial_epoch = saver.restore(model)
        batches.rng = np.random.default_rng([seed, initial_epoch])
        callbacks.append(saver)
    feed, steps_per_epoch = epoch_feed(batches, initial_epoch, epochs)
    return model.fit(
        feed,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        shuffle=False,  # `Batches` shuffles
        initial_epoch=initial_epoch,
        validation_data=validation_data,
        validation_batch_size=512,
        callbacks=callbacks,
        verbose=verbose,
    )


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves weights, optimizer state and the epoch count after every epoch, atomically.

    Files: `{prefix}.weights.h5` and `{prefix}.state.npz`. `restore(model)` (call after
    `compile`) loads them if present and returns the epoch to resume from (0 if none).
    """

    def __init__(self, prefix):
        super().__init__()
        self.prefix = prefix
        self.seconds = 0.0  # training time over all runs so far, restored with the state

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def restore(self, model):
        state = f"{self.prefix}.state.npz"
        if not os.path.exists(state):
            return 0
        model.optimizer.build(model.trainable_variables)  # so its state loads with the weights
        model.load_weights(f"{self.prefix}.weights.h5")
        with np.load(state) as f:
            self.seconds = float(f["seconds"])
            return int(f["epoch"])

    def on_epoch_end(self, epoch, logs=None):
        folder = os.path.dirname(os.path.abspath(self.prefix))
        os.makedirs(folder, exist_ok=True)
        tmp = f"{self.prefix}.tmp"
        self.model.save_weights(f"{tmp}.weights.h5")
        self.seconds += time.time() - self._start
        np.savez(f"{tmp}.state.npz", epoch=epoch + 1, seconds=self.seconds)
        os.replace(f"{tmp}.weights.h5", f"{self.prefix}.weights.h5")
        os.replace(f"{tmp}.state.npz", f"{self.prefix}.state.npz")


def predict_labels(model, x, batch_size=512):
    """Top-1 class indices `(N,)` of `model` on images `x`."""
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return np.argmax(logits, axis=-1)


def accuracy(model, x, y, batch_size=512):
    """Top-1 accuracy of `model` on `(x, y)`, a float in [0, 1]."""
    return float(np.mean(predict_labels(model, x, batch_size) == np.asarray(y)))
