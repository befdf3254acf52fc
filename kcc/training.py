"""Supervised training of a classifier, shared by the attacks and the baseline defenses.

Runs on every Keras backend with NumPy batches (no TensorFlow needed): SGD with momentum 0.9,
decoupled weight decay on kernels only, a cosine or one-cycle learning-rate schedule, the
standard crop(pad 4)+flip augmentation, and a Keras progress bar.
"""

import math
import os
import time

import keras
import numpy as np

from kcc import data

SCHEDULES = ("cosine", "onecycle", "constant")


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


def sgd(learning_rate, total_steps, schedule="cosine", weight_decay=5e-4, momentum=0.9):
    """SGD with momentum and weight decay on kernels (not on BN parameters or biases)."""
    optimizer = keras.optimizers.SGD(
        learning_rate_schedule(learning_rate, total_steps, schedule),
        momentum=momentum,
        weight_decay=weight_decay or None,
    )
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
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
):
    """Trains a classifier in place with `Model.fit`.

    Args:
        model: a Keras model producing logits; trained in place.
        x: images `(N, 32, 32, 3)` in [0, 1].
        y: integer labels `(N,)`.
        epochs: passes over the data.
        batch_size: images per step.
        learning_rate: peak learning rate.
        weight_decay: decoupled weight decay on kernels (0 disables it).
        schedule: one of `SCHEDULES`.
        augment: crop(pad 4)+flip augmentation.
        transform: per-batch `f(x, y, rng) -> (x, y)`, see `Batches`.
        validation_data: optional `(x_val, y_val)` evaluated after every epoch.
        callbacks: extra Keras callbacks.
        seed: seeds weights' randomness, shuffling and augmentation.
        verbose: passed to `fit` (a progress bar by default).
        checkpoint: optional path prefix; weights and optimizer state are saved there after
            every epoch, and a later call with the same prefix resumes from the last epoch.

    Returns:
        The `keras.callbacks.History` of the run.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1. Received epochs={epochs}.")
    keras.utils.set_random_seed(seed)
    batches = Batches(x, y, batch_size, augment=augment, transform=transform, seed=seed)
    compile_classifier(model, sgd(learning_rate, epochs * len(batches), schedule, weight_decay))
    callbacks = list(callbacks or [])
    initial_epoch = 0
    if checkpoint:
        saver = EpochCheckpoint(checkpoint)
        initial_epoch = saver.restore(model)
        batches.rng = np.random.default_rng([seed, initial_epoch])
        callbacks.append(saver)
    return model.fit(
        batches,
        epochs=epochs,
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
