"""FT: fine-tuning all weights on the defender's clean data, and the machinery other defenses reuse.

The simplest backdoor defense (Liu et al., RAID 2018, Sect. 4; the "FT" baseline of NAD and of
BackdoorBench): train the suspect a few more epochs on a small clean set, hoping the backdoor
fades while clean accuracy holds. Defaults follow BackdoorBench's FT configuration (SGD, lr 0.01,
momentum 0.9, weight decay 5e-4, cosine schedule, crop+flip augmentation) with the epoch count
of NAD's fine-tuned teacher (10 epochs; NAD's authors fine-tune "for 5~10 epochs") instead of
BackdoorBench's 100, which is GPU-sized. The epoch kept is the one with the best accuracy on the
defender's validation images (`DefenderData.x_val`), never on test data.

Defenses never touch their input: each works on a `kcc.defenses.pruning.clone`. This module
also holds what Fine-Pruning, NAD and gradient-based pruning reuse: `SelectOnValidation`
(best-epoch selection and patience on validation data), `keep_zeros` (pruned weights stay
exactly zero while fine-tuning) and `fine_tune_on` (the training run itself, through
`kcc.training.train`).

Reference:
    Liu, Dolan-Gavitt and Garg, "Fine-Pruning: Defending Against Backdooring Attacks on Deep
    Neural Networks", RAID 2018. Wu et al., "BackdoorBench: A Comprehensive Benchmark of
    Backdoor Learning", NeurIPS 2022 Datasets and Benchmarks.
"""

import contextlib
import time

import keras
import numpy as np
from keras import ops

from kcc import training
from kcc.defenses import data as defender
from kcc.defenses import pruning


def fine_tune(model, defender_data, *, epochs=10, batch_size=128, learning_rate=0.01,
              weight_decay=5e-4, schedule="cosine", augment=True, seed=0, verbose="auto"):
    """FT: fine-tunes a copy of `model` on the defender's clean images.

    Args:
        model: the suspect Keras classifier (pixels in [0, 1] -> logits); not modified.
        defender_data: a `kcc.defenses.DefenderData`; its `x, y` are trained on and its
            `x_val, y_val` select the epoch.
        epochs: passes over `defender_data.x` (default 10, see the module docstring).
        batch_size: images per SGD step.
        learning_rate: peak learning rate of SGD with momentum 0.9 (BackdoorBench: 0.01).
        weight_decay: decoupled weight decay on kernels (BackdoorBench: 5e-4).
        schedule: a `kcc.training.SCHEDULES` name (BackdoorBench: cosine).
        augment: crop(pad 4)+flip augmentation.
        seed: seeds shuffling and augmentation.
        verbose: Keras progress-bar setting.

    Returns:
        `(defended, report)`: a new Keras model with the weights of the epoch of best validation
        accuracy, and a JSON-serialisable report (`method`, `hyperparameters`, `data`,
        `selected`, `history`, `seconds`).

    Raises:
        TypeError: if `defender_data` is not a `DefenderData` (bare arrays are refused).
        ValueError: if `defender_data` has no validation images.
    """
    start = time.time()
    require_validation(defender_data)
    hyperparameters = {"epochs": epochs, "batch_size": batch_size,
                       "learning_rate": learning_rate, "weight_decay": weight_decay,
                       "momentum": 0.9, "schedule": schedule, "augment": augment, "seed": seed}
    tuned = pruning.clone(model)
    selector = fine_tune_on(tuned, defender_data, epochs=epochs, batch_size=batch_size,
                            learning_rate=learning_rate, weight_decay=weight_decay,
                            schedule=schedule, augment=augment, seed=seed, verbose=verbose)
    report = {
        "method": "ft",
        "hyperparameters": hyperparameters,
        "data": defender_data.describe(),
        "selected": selector.summary(),
        "history": selector.history,
        "seconds": time.time() - start,
    }
    return pruning.clone(tuned), report


def require_validation(defender_data):
    """Checks `defender_data` (`kcc.defenses.data.check`) and that it holds validation images."""
    defender.check(defender_data)
    if len(defender_data.x_val) == 0:
        raise ValueError("This defense selects on validation images, but defender_data has none. "
                         "Draw it with defender_split(..., validation=0.1) or larger.")
    return defender_data


def fine_tune_on(model, defender_data, *, epochs, batch_size=128, learning_rate=0.01,
                 weight_decay=5e-4, schedule="cosine", augment=True, transform=None,
                 monitor="accuracy", patience=None, include_initial=False, masks=(), seed=0,
                 verbose="auto"):
    """Trains `model` in place on `defender_data.x, y` and restores its best validation epoch.

    Args:
        model: Keras classifier producing logits; trained in place.
        defender_data: the `DefenderData` to train on and select with.
        epochs: maximum number of epochs.
        batch_size, learning_rate, weight_decay, schedule, augment, seed, verbose: as in
            `kcc.training.train` (SGD with momentum 0.9).
        transform: per-batch `f(x, y, rng) -> (x, y)` (see `kcc.training.Batches`).
        monitor: `"accuracy"` (higher is better) or `"loss"` (clean cross-entropy, lower is
            better) on `x_val, y_val`.
        patience: stop after this many epochs without improvement (None: run all epochs).
        include_initial: let the weights before training win the selection.
        masks: `(variable, mask)` pairs whose zeros are kept during training (`keep_zeros`).

    Returns:
        the `SelectOnValidation` callback (its `summary()` and `history` go into reports).
    """
    selector = SelectOnValidation(model, defender_data.x_val, defender_data.y_val,
                                  monitor=monitor, patience=patience,
                                  include_initial=include_initial)
    with keep_zeros(masks):
        training.train(model, defender_data.x, defender_data.y, epochs, batch_size=batch_size,
                       learning_rate=learning_rate, weight_decay=weight_decay, schedule=schedule,
                       augment=augment, transform=transform, callbacks=[selector], seed=seed,
                       verbose=verbose)
    return selector


class SelectOnValidation(keras.callbacks.Callback):
    """Scores a model on validation images after every epoch and restores the best epoch at the end.

    Args:
        model: the model scored and restored (may differ from the one `fit` trains, e.g. the
            student inside a distiller).
        x_val: validation images `(M, H, W, C)` in [0, 1].
        y_val: labels `(M,)`.
        monitor: `"accuracy"` (maximised) or `"loss"` (clean cross-entropy, minimised).
        patience: epochs without improvement before `fit` is stopped (None: never).
        include_initial: score the weights before the first epoch too (epoch 0), so training
            that never helps returns the starting point.

    Attributes:
        history: `[{"epoch": e, "val_acc": ..., "val_loss": ...}, ...]` for every scored epoch.
        best_epoch: the epoch restored (0 = the starting weights).
    """

    MONITORS = ("accuracy", "loss")

    def __init__(self, model, x_val, y_val, monitor="accuracy", patience=None,
                 include_initial=False):
        super().__init__()
        if monitor not in self.MONITORS:
            raise ValueError(f"monitor must be one of {self.MONITORS}. "
                             f"Received monitor={monitor!r}.")
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be at least 1 or None. Received patience={patience}.")
        self.watched, self.x_val, self.y_val = model, x_val, np.asarray(y_val)
        self.monitor, self.patience, self.include_initial = monitor, patience, include_initial
        self.history, self.best_epoch = [], None

    def on_train_begin(self, logs=None):
        self.history, self.best_epoch = [], None
        self._best, self._best_weights, self._wait = None, None, 0
        if self.include_initial:
            self._score(0)

    def on_epoch_end(self, epoch, logs=None):
        if not self._score(epoch + 1):
            self._wait += 1
            if self.patience is not None and self._wait >= self.patience:
                self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._best_weights is not None:
            self.watched.set_weights(self._best_weights)

    def summary(self):
        """What was selected, for reports."""
        best = next(h for h in self.history if h["epoch"] == self.best_epoch)
        monitor = "val_acc" if self.monitor == "accuracy" else "val_loss"
        return {"epoch": self.best_epoch, "monitor": monitor,
                "val_acc": best["val_acc"], "val_loss": best["val_loss"],
                "epochs_run": max(h["epoch"] for h in self.history)}

    def _score(self, epoch):
        """Records the epoch's scores; returns whether it is the best so far."""
        acc, loss = evaluate_clean(self.watched, self.x_val, self.y_val)
        self.history.append({"epoch": epoch, "val_acc": acc, "val_loss": loss})
        score = acc if self.monitor == "accuracy" else -loss
        if self._best is None or score > self._best:
            self._best, self.best_epoch = score, epoch
            self._best_weights = self.watched.get_weights()
            self._wait = 0
            return True
        return False


def evaluate_clean(model, x, y, batch_size=512):
    """Top-1 accuracy and mean cross-entropy (nats) of `model` on `(x, y)`, as floats."""
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == np.asarray(y))), cross_entropy(logits, y)


def cross_entropy(logits, y):
    """Mean softmax cross-entropy (nats) of NumPy `logits` `(N, C)` against labels `(N,)`."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return float(-np.mean(log_probs[np.arange(len(logits)), np.asarray(y)]))


class _ZeroMask(keras.constraints.Constraint):
    """Multiplies a weight by a fixed 0/1 mask after every optimizer step (never serialised)."""

    def __init__(self, mask, previous=None):
        self.mask, self.previous = mask, previous

    def __call__(self, w):
        if self.previous is not None:
            w = self.previous(w)
        return w * ops.convert_to_tensor(self.mask, dtype=w.dtype)


@contextlib.contextmanager
def keep_zeros(masks):
    """Within the block, the zeros of each mask stay zero in its variable through optimizer steps.

    Pruning zeroes weights; plain fine-tuning would let gradients regrow them. Each variable gets
    a mask constraint, which Keras optimizers apply after every update on every backend
    (including JAX's stateless training step); the constraints are removed on exit, so nothing
    of them is saved with the model.

    Args:
        masks: iterable of `(variable, mask)`, `mask` a 0/1 array of the variable's shape.
    """
    masks = list(masks)
    previous = [v.constraint for v, _ in masks]
    for v, mask in masks:
        mask = np.asarray(mask, np.float32)
        v.assign(ops.convert_to_numpy(v) * mask)
        v.constraint = _ZeroMask(mask, v.constraint)
    try:
        yield
    finally:
        for (v, _), constraint in zip(masks, previous):
            v.constraint = constraint
