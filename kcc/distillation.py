"""BN-only adversarial distillation on synthetic data (C&C Eq. 10, Algorithm 1 lines 13-16).

    min_{BN params of S}  ||T(x) - S(x)||^2 - gamma * ||T(x + delta) - S(x + delta)||^2
    delta = argmax_{||delta||_2 <= eps} CE(S(x + delta), y)                            (Eq. 10)

`T` is the suspect (teacher) model, `S` the purified compressed (student) model, `x` synthetic
images with their synthetic labels `y`. Written the Keras way: `Distiller` is a `keras.Model`
whose `compute_loss` is Eq. 10 (so every backend's own `train_step` trains it), fed by
`DistillationData`, and driven by callbacks: `RefreshAdversarial` recomputes `x + delta` against
the current student and the teacher's logits before every epoch, `StopOnDivergence` stops a run
whose clean distance explodes, `BackdoorMonitor` reports ACC/ASR on a user-given evaluation set.

The second term is unbounded below: the student can lower the loss without limit by moving its
logits on `x + delta` away from the teacher's. `adversarial_cap` bounds it (per image,
`min(||T - S||^2, cap)`), so once the student disagrees with the teacher on an adversarial image
by `cap` there is no further reward; `None` is the paper's unbounded form.

Only BatchNormalization layers train; trainability is set before `compile()`, as Keras requires.
Their moving statistics follow the synthetic batches as in the paper's PyTorch code, whose BN
running averages use momentum 0.1 (`moving = 0.9 * moving + 0.1 * batch`): Keras' default 0.99
would keep two thirds of the suspect's statistics after the 40 steps of a CPU budget, and stale
statistics can hide a backdoor that is still in the weights (`benchmarks/results/cc_findings.md`).
"""

import contextlib
import math

import keras
import numpy as np
from keras import ops

from kcc import adversarial
from kcc import flops
from kcc import metrics
from kcc import models
from kcc import progress

# Keras momentum of PyTorch's default BatchNorm running average (torch momentum 0.1).
PYTORCH_BN_MOMENTUM = 0.9


def batchnorm_layers(model):
    """Every BatchNormalization layer of `model`, nested ones included (unlike
    `kcc.synthesis.batchnorm_layers`, which lists the model's own graph only)."""
    return [layer for layer in flops.iterate_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization)]


@contextlib.contextmanager
def batchnorm_momentum(model, momentum):
    """Sets the moving-statistics momentum of every BatchNormalization in `model` (nested ones
    too) for the duration of a `with` block, and restores each layer's own afterwards.

    Keras reads `momentum` when a training call is traced, so enter the block before `fit`.
    """
    layers = batchnorm_layers(model)
    saved = [l.momentum for l in layers]
    for layer in layers:
        layer.momentum = momentum
    try:
        yield
    finally:
        for layer, kept in zip(layers, saved):
            layer.momentum = kept


def reestimate_batchnorm(model, images, batch_size=256):
    """Sets every BatchNorm's moving statistics to those of `images` (in place): what a user's
    later fine-tuning does first, and what a backdoor hidden only in stale statistics survives.

    Args:
        model: a Keras model with BatchNormalization layers (nested ones too).
        images: `(N, H, W, C)` images; the per-channel means and variances of each batch of
            `batch_size` are averaged with equal weights (one batch when `batch_size >= N`).
    """
    images = np.asarray(images, np.float32)
    layers = batchnorm_layers(model)
    sums = [[0.0, 0.0] for _ in layers]
    batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
    with batchnorm_momentum(model, 0.0):
        for batch in batches:
            model(batch, training=True)
            for total, layer in zip(sums, layers):
                total[0] = total[0] + np.asarray(layer.moving_mean) / len(batches)
                total[1] = total[1] + np.asarray(layer.moving_variance) / len(batches)
    for (mean, variance), layer in zip(sums, layers):
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(variance)


def freeze_all_but_batchnorm(model):
    """Makes only BatchNormalization layers trainable (call before `compile`).

    Returns:
        the number of trainable parameters left.
    """
    for layer in flops.iterate_layers(model):
        layer.trainable = isinstance(layer, keras.layers.BatchNormalization)
    return int(sum(math.prod(w.shape) for w in model.trainable_weights))


class Distiller(keras.Model):
    """Trains a student with Eq. 10; inputs `(x, x_adv)`, targets the teacher's logits on both.

    Args:
        student: the model being purified; its non-BN layers must already be frozen
            (`freeze_all_but_batchnorm`).
        gamma: weight of the adversarial term (paper: 1.5).
        adversarial_cap: per-image cap on the adversarial squared distance, or None.
    """

    def __init__(self, student, gamma=1.5, adversarial_cap=None, **kwargs):
        super().__init__(**kwargs)
        if gamma < 0:
            raise ValueError(f"gamma must be non-negative. Received gamma={gamma}.")
        if adversarial_cap is not None and adversarial_cap <= 0:
            raise ValueError(f"adversarial_cap must be positive or None. Received {adversarial_cap}.")
        self.student = student
        self.gamma = float(gamma)
        self.adversarial_cap = adversarial_cap
        self.clean_tracker = keras.metrics.Mean(name="clean_distance")
        self.adversarial_tracker = keras.metrics.Mean(name="adversarial_distance")

    def call(self, inputs, training=False):
        x, x_adv = inputs
        # Two passes, so each batch normalises with its own statistics as in the paper's code.
        return self.student(x, training=training), self.student(x_adv, training=training)

    def _distances(self, y, y_pred):
        (t, t_adv), (s, s_adv) = y, y_pred
        clean = ops.sum(ops.square(t - s), axis=-1)
        adv = ops.sum(ops.square(t_adv - s_adv), axis=-1)
        return clean, adv

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        clean, adv = self._distances(y, y_pred)
        if self.adversarial_cap is not None:
            adv = ops.minimum(adv, self.adversarial_cap)
        return ops.mean(clean) - self.gamma * ops.mean(adv)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        clean, adv = self._distances(y, y_pred)
        self.clean_tracker.update_state(clean)
        self.adversarial_tracker.update_state(adv)
        return self.get_metrics_result()


class DistillationData(keras.utils.PyDataset):
    """Batches `((x, x_adv), (T(x), T(x_adv)))` of the synthetic set, shuffled every epoch.

    `x_adv` starts as `x` and is replaced by `RefreshAdversarial` before every epoch.
    """

    def __init__(self, teacher, images, labels, batch_size=128, seed=0):
        super().__init__()
        self.teacher = teacher
        self.images, self.labels = np.asarray(images, np.float32), np.asarray(labels, np.int32)
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(self.images))
        self.teacher_clean = teacher.predict(self.images, batch_size=512, verbose=0)
        self.set_adversarial(self.images.copy())

    def set_adversarial(self, adversarial):
        """Replaces `x_adv` and recomputes the teacher's logits on it."""
        self.adversarial = adversarial
        self.teacher_adversarial = self.teacher.predict(adversarial, batch_size=512, verbose=0)

    def __len__(self):
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index):
        idx = np.sort(self.order[index * self.batch_size:(index + 1) * self.batch_size])
        return ((self.images[idx], self.adversarial[idx]),
                (self.teacher_clean[idx], self.teacher_adversarial[idx]))

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.images))


class RefreshAdversarial(keras.callbacks.Callback):
    """Before every epoch: L2 PGD against the current student, and the teacher's logits on it.

    Args:
        student: the student (the `Distiller`'s `student`).
        data: the `DistillationData` being trained on.
        epsilon, steps: L2 PGD radius and steps (paper: 0.5, 10).
    """

    def __init__(self, student, data, epsilon=0.5, steps=10, verbose=False):
        super().__init__()
        self.student, self.data = student, data
        self.epsilon, self.steps, self.verbose = epsilon, steps, verbose
        self._grad = None
        self.target_rates = []  # fraction of adversarial images the teacher assigns to each class

    def on_train_begin(self, logs=None):
        self.target_rates = []
        self._grad = adversarial.cross_entropy_gradient_fn(self.student)

    def on_epoch_begin(self, epoch, logs=None):
        d = self.data
        d.set_adversarial(adversarial.l2_pgd(
            self.student, d.images, d.labels, self.epsilon, self.steps, seed=epoch,
            value_and_grad=self._grad, verbose=self.verbose,
        ))
        counts = np.bincount(np.argmax(d.teacher_adversarial, -1), minlength=d.teacher_clean.shape[-1])
        self.target_rates.append((counts / counts.sum()).tolist())


class StopOnDivergence(keras.callbacks.Callback):
    """Stops when the loss is not finite or the clean distance grows `factor` times its first value."""

    def __init__(self, factor=10.0):
        super().__init__()
        self.factor = factor
        self.stopped_epoch = None

    def on_train_begin(self, logs=None):
        self.first = None
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        clean = logs.get("clean_distance")
        if self.first is None:
            self.first = clean
        if not np.isfinite(logs.get("loss", 0.0)) or (
            clean is not None and self.first and clean > self.factor * self.first
        ):
            self.stopped_epoch = epoch
            self.model.stop_training = True


class BackdoorMonitor(keras.callbacks.Callback):
    """After every epoch: ACC (and ASR/RA with an attack) of the student on a user-given set.

    The evaluation set is the user's, never used for training; results land in `history` and
    in the epoch logs as `eval_acc`, `eval_asr`, `eval_ra`.
    """

    def __init__(self, student, x, y, attack=None):
        super().__init__()
        self.student, self.x, self.y, self.attack = student, x, y, attack
        self.history = []

    def on_train_begin(self, logs=None):
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        result = metrics.evaluate(self.student, self.x, self.y, self.attack)
        self.history.append(result)
        if logs is not None:
            logs.update({f"eval_{k}": v for k, v in result.items() if k != "n_triggered"})


def distill(teacher, student, images, labels, epochs=5, batch_size=128, learning_rate=3e-4,
            gamma=1.5, epsilon=0.5, pgd_steps=10, adversarial_cap=None, callbacks=None,
            seed=0, verbose="auto"):
    """Runs Eq. 10 on `student` in place (only its BatchNorm parameters and statistics change).

    Only BatchNorm trains while it runs; afterwards every layer of `student` has the
    `trainable` flag it came with, so a later `fit` trains the whole model again.

    Args:
        teacher: suspect model (unchanged).
        student: compressed purified model; trained in place.
        images, labels: synthetic data `(N, H, W, C)` in [0, 1] and `(N,)`.
        epochs, batch_size, learning_rate, gamma: paper defaults 5, 128, 3e-4, 1.5 (Adam).
        epsilon, pgd_steps: L2 attack radius and steps (paper: 0.5, 10).
        adversarial_cap: cap of the adversarial term (see the module docstring).
        callbacks: extra Keras callbacks.
        seed: shuffling seed.
        verbose: show progress (`kcc.progress`: a bar on a terminal, plain lines in a log) of the
            adversarial images and of every epoch.

    Returns:
        `(history, refresh)`: the Keras `History` and the `RefreshAdversarial` callback (its
        `target_rates` say which classes the teacher gave the adversarial images).
    """
    # the student leaves as trainable as it came, for whoever fine-tunes it next
    with models.trainable_restored(student):
        freeze_all_but_batchnorm(student)
        keras.utils.set_random_seed(seed)
        distiller = Distiller(student, gamma=gamma, adversarial_cap=adversarial_cap)
        distiller.compile(optimizer=keras.optimizers.Adam(learning_rate))
        data = DistillationData(teacher, images, labels, batch_size, seed)
        refresh = RefreshAdversarial(student, data, epsilon, pgd_steps, verbose=bool(verbose))
        shown = progress.callbacks("distillation", verbose=bool(verbose))
        with batchnorm_momentum(student, PYTORCH_BN_MOMENTUM):
            history = distiller.fit(data, epochs=epochs, verbose=0,
                                    callbacks=[refresh, *(callbacks or []), *shown])
    return history, refresh
