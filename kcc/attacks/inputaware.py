"""InputAware: a generator network draws a different trigger for every image.

Two encoder-decoder networks look at the clean image `x`: the pattern generator `G(x)` (RGB in
[0, 1]) and the mask generator `M(x)` (one channel, a steep sigmoid so the mask is nearly
binary). The triggered image is `x + (G(x) - x) * M(x)`.

Training has two stages, both plain `Model.fit` calls on subclassed models whose `call` uses
only `keras.ops` and `add_loss` (so they run on every Keras backend):

1. Mask pre-training (`mask_epochs`, 25 in the paper): `M` alone, Adam, with the norm loss
   `lambda_norm * mean(relu(M(x1) - mask_density))` and the diversity loss
   `lambda_div * mean(||x1 - x2|| / ||M(x1) - M(x2)||)` over pairs of different images. `M` is
   then frozen.
2. Joint training of the classifier and `G`: in every batch, `poison_ratio` of the images carry
   their own trigger and the attacker's label (backdoor samples), `cross_ratio * poison_ratio`
   carry the trigger generated from a *different* image and keep their true label (cross
   samples), the rest are clean. The loss is the cross-entropy plus the diversity loss of `G`,
   `lambda_div * mean(||x1 - x2|| / ||G(x1) - G(x2)||)`. One SGD optimizer (kcc's schedule)
   updates both networks; the paper used Adam for `G`.

The trained generators are what the trigger is, so they must be kept with the model: see
`save_generators` / `load_generators`, and `generator_weights`, which `get_config` records.

Reference: Nguyen and Tran, "Input-Aware Dynamic Backdoor Attack", NeurIPS 2020.
"""

import os
import time

import keras
import numpy as np
from keras import ops

from kcc import data
from kcc import training
from kcc.attacks import base

EPSILON = 1e-7


def _conv_block(x, filters, name, relu=True):
    x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def generator(out_channels, channels=32, steps=3, in_channels=3, mask=False, name="generator"):
    """The encoder-decoder of the paper's pattern and mask generators.

    `steps` times two 3x3 conv-BN-ReLU blocks and a 2x2 max-pool (channels `channels`,
    `2 * channels`, ...), a middle block, then `steps` times a 2x upsampling and two blocks back
    to `out_channels`. The output is `(tanh(z) + 1) / 2` in [0, 1]; for a mask it goes once more
    through the steep threshold `(tanh(20 m - 10) + 1) / 2`.

    Args:
        out_channels: output channels (3 for a pattern, 1 for a mask).
        channels: channels of the first stage (32 in the paper for CIFAR-10 and GTSRB).
        steps: down/up-sampling stages; image sides must be multiples of `2 ** steps`.
        in_channels: channels of the input images.
        mask: apply the mask threshold to the output.
        name: model name, also the prefix of its layer names.

    Returns:
        A functional `keras.Model` `(batch, H, W, in_channels)` -> `(batch, H, W, out_channels)`.
    """
    inputs = keras.Input((None, None, in_channels), name=f"{name}_pixels")
    x, width = inputs, channels
    for step in range(steps):
        x = _conv_block(x, width, f"{name}_down{step}_1")
        x = _conv_block(x, width, f"{name}_down{step}_2")
        x = keras.layers.MaxPooling2D(2, name=f"{name}_pool{step}")(x)
        if step < steps - 1:
            width *= 2
    x = _conv_block(x, width, f"{name}_middle")
    for step in range(steps):
        last = step == steps - 1
        x = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up{step}")(x)
        x = _conv_block(x, width, f"{name}_up{step}_1")
        width = out_channels if last else width // 2
        x = _conv_block(x, width, f"{name}_up{step}_2", relu=not last)
    x = keras.layers.Activation("tanh", name=f"{name}_tanh")(x)
    x = keras.layers.Rescaling(0.5, offset=0.5, name=f"{name}_unit")(x)
    if mask:
        x = keras.layers.Rescaling(20.0, offset=-10.0, name=f"{name}_threshold_scale")(x)
        x = keras.layers.Activation("tanh", name=f"{name}_threshold_tanh")(x)
        x = keras.layers.Rescaling(0.5, offset=0.5, name=f"{name}_threshold_unit")(x)
    return keras.Model(inputs, x, name=name)


def _diversity(x1, x2, g1, g2):
    """`mean(||x1 - x2|| / ||g1 - g2||)` with RMS distances per sample (the paper's Eq. 3)."""
    d_images = ops.sqrt(ops.mean(ops.square(x1 - x2), axis=(1, 2, 3)))
    d_outputs = ops.sqrt(ops.mean(ops.square(g1 - g2), axis=(1, 2, 3)))
    return ops.mean(d_images / (d_outputs + EPSILON))


def stamp(x, patterns, masks):
    """`x + (patterns - x) * masks` (works on NumPy arrays and backend tensors)."""
    return x + (patterns - x) * masks


class _MaskTrainer(keras.Model):
    """Stage 1: trains the mask generator alone; inputs `(x1, x2)`, losses by `add_loss`."""

    def __init__(self, mask_generator, lambda_div, lambda_norm, mask_density, **kwargs):
        super().__init__(**kwargs)
        self.mask_generator = mask_generator
        self.lambda_div, self.lambda_norm, self.mask_density = lambda_div, lambda_norm, mask_density

    def call(self, inputs, training=False):
        x1, x2 = inputs
        m1 = self.mask_generator(x1, training=training)
        m2 = self.mask_generator(x2, training=training)
        norm = ops.mean(ops.relu(m1 - self.mask_density))
        self.add_loss(self.lambda_norm * norm + self.lambda_div * _diversity(x1, x2, m1, m2))
        return m1


class _JointTrainer(keras.Model):
    """Stage 2: classifier and pattern generator; inputs `(x1, x2)`, outputs the logits.

    Rows `[0, n_backdoor)` of `x1` get their own trigger, rows `[n_backdoor, n_backdoor +
    n_cross)` get the trigger of the same rows of `x2`, the rest stay clean; the labels come
    already arranged so by `_PairBatches`.
    """

    def __init__(
        self,
        classifier,
        pattern_generator,
        mask_generator,
        n_backdoor,
        n_cross,
        lambda_div,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.pattern_generator, self.mask_generator = pattern_generator, mask_generator
        self.n_backdoor, self.n_cross, self.lambda_div = n_backdoor, n_cross, lambda_div

    def call(self, inputs, training=False):
        x1, x2 = inputs
        nb, nc = self.n_backdoor, self.n_cross
        own, cross_base, other = x1[:nb], x1[nb : nb + nc], x2[nb : nb + nc]
        sources = ops.concatenate([own, other], axis=0)
        patterns = self.pattern_generator(sources, training=training)
        masks = self.mask_generator(sources, training=False)
        x = ops.concatenate(
            [
                stamp(own, patterns[:nb], masks[:nb]),
                stamp(cross_base, patterns[nb:], masks[nb:]),
                x1[nb + nc :],
            ],
            axis=0,
        )
        pairs = min(nb, nc)
        if pairs and self.lambda_div:
            self.add_loss(
                self.lambda_div
                * _diversity(
                    own[:pairs], other[:pairs], patterns[:pairs], patterns[nb : nb + pairs]
                )
            )
        return self.classifier(x, training=training)


class _PairBatches(keras.utils.PyDataset):
    """Batches of two independently shuffled, augmented image sets `(x1, x2)`.

    With `attack` set, also the labels: the first `n_backdoor` rows relabelled with
    `attack.targets`, the others true. Incomplete last batches are dropped so every batch has
    the same, static layout.
    """

    def __init__(self, x, y, batch_size, attack=None, n_backdoor=0, seed=0):
        super().__init__()
        self.x, self.y, self.attack, self.n_backdoor = x, np.asarray(y), attack, n_backdoor
        self.batch_size = min(batch_size, len(x))
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self):
        return len(self.x) // self.batch_size

    def __getitem__(self, index):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        i1, i2 = self.order1[rows], self.order2[rows]
        x1 = data.augment(self.x[i1], self.rng).astype(np.float32)
        x2 = data.augment(self.x[i2], self.rng).astype(np.float32)
        if self.attack is None:
            return ((x1, x2),)
        y = self.y[i1].copy()
        y[: self.n_backdoor] = self.attack.targets(y[: self.n_backdoor])
        return (x1, x2), y

    def on_epoch_end(self):
        self.order1 = self.rng.permutation(len(self.x))
        shift = self.rng.integers(1, len(self.x)) if len(self.x) > 1 else 0
        self.order2 = np.roll(self.order1, shift)  # a different image in every row


class InputAware(base.Attack):
    """Input-aware dynamic backdoor: sample-specific patterns and masks from generators.

    Args:
        cross_ratio: cross samples per backdoor sample in each batch (1: the paper's
            `p_cross = p_attack = 0.1`).
        lambda_div: weight of the diversity losses (1).
        lambda_norm: weight of the mask norm loss (100).
        mask_density: mask values above it are penalised (0.032).
        mask_epochs: epochs of mask-generator pre-training (25 in the paper; fewer on CPU).
        mask_learning_rate: Adam learning rate of the mask pre-training (0.01, betas 0.5/0.9,
            divided by 10 after 40% and 80% of it, as the paper's steps at epochs 10 and 20).
        generator_channels: first-stage channels of both generators (32 in the paper; 16 makes
            them 4x cheaper on CPU).
        generator_steps: down/up-sampling stages of the generators (3 in the paper for 32x32
            images, 2 for MNIST); image sides must be multiples of `2 ** generator_steps`.
        generator_weights: optional `.weights.h5` path of trained generators: loaded on first
            use when it exists, and written by `train` when given. `get_config` records it; in
            a zoo sidecar it is relative to the sidecar's folder (see
            `kcc.attacks.save_infected`).
        **kwargs: see `kcc.attacks.base.Attack`.

    Example:

    >>> attack = InputAware(mask_epochs=2, generator_channels=16)
    >>> attack.train(model, x, y, epochs=20)
    >>> attack.save_generators("inputaware.generators.weights.h5")
    >>> x_triggered = attack.apply(x_test)
    """

    name = "inputaware"

    def __init__(
        self,
        cross_ratio=1.0,
        lambda_div=1.0,
        lambda_norm=100.0,
        mask_density=0.032,
        mask_epochs=25,
        mask_learning_rate=0.01,
        generator_channels=32,
        generator_steps=3,
        generator_weights=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if cross_ratio < 0:
            raise ValueError(
                f"cross_ratio must be non-negative. Received cross_ratio={cross_ratio}."
            )
        if lambda_div < 0 or lambda_norm < 0:
            raise ValueError(
                "lambda_div and lambda_norm must be non-negative. "
                f"Received lambda_div={lambda_div}, "
                f"lambda_norm={lambda_norm}."
            )
        if not 0 < mask_density < 1:
            raise ValueError(
                f"mask_density must be in (0, 1). Received mask_density={mask_density}."
            )
        if int(mask_epochs) != mask_epochs or mask_epochs < 0:
            raise ValueError(
                f"mask_epochs must be a non-negative integer. Received mask_epochs={mask_epochs}."
            )
        if int(generator_channels) != generator_channels or generator_channels < 1:
            raise ValueError(
                "generator_channels must be a positive integer. "
                f"Received generator_channels={generator_channels}."
            )
        if int(generator_steps) != generator_steps or generator_steps < 1:
            raise ValueError(
                "generator_steps must be a positive integer. "
                f"Received generator_steps={generator_steps}."
            )
        if generator_weights is not None and not str(generator_weights).endswith(".weights.h5"):
            raise ValueError(
                "generator_weights must end in .weights.h5. "
                f"Received generator_weights={generator_weights!r}."
            )
        self.cross_ratio, self.lambda_div, self.lambda_norm = (
            float(cross_ratio),
            float(lambda_div),
            float(lambda_norm),
        )
        self.mask_density, self.mask_epochs = float(mask_density), int(mask_epochs)
        self.mask_learning_rate, self.generator_channels = (
            float(mask_learning_rate),
            int(generator_channels),
        )
        self.generator_steps = int(generator_steps)
        self.generator_weights = None if generator_weights is None else str(generator_weights)
        self.pattern_generator = self.mask_generator = self._generators = None

    # Generators ---------------------------------------------------------------------------------

    def build_generators(self, in_channels=3):
        """Creates fresh (untrained) generators; `train` and `load_generators` call it."""
        self._generators = None
        self.pattern_generator = generator(
            in_channels,
            self.generator_channels,
            self.generator_steps,
            in_channels,
            name="pattern_generator",
        )
        self.mask_generator = generator(
            1,
            self.generator_channels,
            self.generator_steps,
            in_channels,
            mask=True,
            name="mask_generator",
        )

    def _pair(self):
        """Both generators as one model `x -> (patterns, masks)` (cached)."""
        if self._generators is None:
            inputs = keras.Input(self.pattern_generator.input_shape[1:], name="pixels")
            self._generators = keras.Model(
                inputs,
                [self.pattern_generator(inputs), self.mask_generator(inputs)],
                name="inputaware_generators",
            )
        return self._generators

    def save_generators(self, path):
        """Writes both generators to one `.weights.h5` file, atomically."""
        if self.pattern_generator is None:
            raise RuntimeError(
                "InputAware has no generators yet: call train() or load_generators()."
            )
        if not str(path).endswith(".weights.h5"):
            raise ValueError(f"path must end in .weights.h5. Received path={path!r}.")
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
        self._pair().save_weights(tmp)
        os.replace(tmp, path)

    def load_generators(self, path, in_channels=3):
        """Loads generators written by `save_generators` (same `generator_channels` and steps)."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"No InputAware generator weights at {path}.")
        self.build_generators(in_channels)
        self._pair().load_weights(path)

    # Trigger --------------------------------------------------------------------------------------

    def generate(self, x, batch_size=256):
        """Patterns `(N, H, W, C)` and masks `(N, H, W, 1)` of images `x`, NumPy in and out."""
        x = base.check_images(x)
        if self.pattern_generator is None:
            if self.generator_weights and os.path.exists(self.generator_weights):
                self.load_generators(self.generator_weights, x.shape[-1])
            else:
                raise RuntimeError(
                    "InputAware has no trained generators: call train(), load_generators(path), or "
                    "pass generator_weights= naming an existing file "
                    f"(got {self.generator_weights!r})."
                )
        if len(x) == 0:
            return x.copy(), x[..., :1].copy()
        patterns, masks = self._pair().predict(x, batch_size=batch_size, verbose=0)
        return np.asarray(patterns, np.float32), np.asarray(masks, np.float32)

    def apply(self, x):
        x = base.check_images(x)
        patterns, masks = self.generate(x)
        return np.clip(stamp(x, patterns, masks), 0, 1).astype(np.float32)

    def apply_cross(self, x, x_other):
        """`x` with the triggers generated from `x_other` (the paper's cross test; true labels)."""
        x, x_other = base.check_images(x), base.check_images(x_other)
        if x.shape != x_other.shape:
            raise ValueError(f"x and x_other differ in shape: {x.shape} != {x_other.shape}.")
        patterns, masks = self.generate(x_other)
        return np.clip(stamp(x, patterns, masks), 0, 1).astype(np.float32)

    def batch_counts(self, batch_size):
        """`(backdoor, cross)` sample counts in a training batch of `batch_size` images."""
        n_backdoor = int(round(self.poison_ratio * batch_size))
        n_cross = int(round(self.cross_ratio * self.poison_ratio * batch_size))
        return n_backdoor, min(n_cross, batch_size - n_backdoor)

    # Training -------------------------------------------------------------------------------------

    def train_mask(self, x, batch_size=128, seed=0, verbose="auto"):
        """Stage 1: pre-trains the mask generator for `mask_epochs` epochs (no labels needed)."""
        batches = _PairBatches(x, np.zeros(len(x)), batch_size, seed=seed)
        trainer = _MaskTrainer(
            self.mask_generator,
            self.lambda_div,
            self.lambda_norm,
            self.mask_density,
            name="inputaware_mask_trainer",
        )
        steps = self.mask_epochs * len(batches)
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
            [max(1, int(0.4 * steps)), max(2, int(0.8 * steps))],
            [self.mask_learning_rate, self.mask_learning_rate / 10, self.mask_learning_rate / 100],
        )
        trainer.compile(optimizer=keras.optimizers.Adam(schedule, beta_1=0.5, beta_2=0.9))
        return trainer.fit(batches, epochs=self.mask_epochs, verbose=verbose)

    def train(
        self,
        model,
        x,
        y,
        epochs,
        batch_size=128,
        learning_rate=0.1,
        weight_decay=5e-4,
        schedule="cosine",
        seed=0,
        verbose="auto",
        checkpoint=None,
        decay="decoupled",
    ):
        """Trains the generators and backdoors `model` in place (the two stages above).

        Args:
            model: a Keras classifier producing logits on [0, 1] images; trained in place.
            x: training images `(N, H, W, C)` in [0, 1], sides multiples of `2 ** generator_steps`.
            y: integer labels `(N,)`.
            epochs: epochs of joint training.
            batch_size, learning_rate, weight_decay, schedule: as `kcc.training.train` (one SGD
                optimizer for the classifier and the pattern generator).
            seed: seeds the generators' initialisation, shuffling and augmentation.
            verbose: Keras progress-bar setting.
            decay: how weight decay enters the update (`kcc.training.DECAYS`).
            checkpoint: optional path prefix: `{checkpoint}.mask.weights.h5` after stage 1 and
                per-epoch `{checkpoint}.weights.h5` / `.state.npz` in stage 2; a later call with
                the same prefix resumes.

        Returns:
            The `keras.callbacks.History` of the joint training.
        """
        if epochs < 1:
            raise ValueError(f"epochs must be at least 1. Received epochs={epochs}.")
        x = base.check_images(x)
        side = 2**self.generator_steps
        if x.shape[1] % side or x.shape[2] % side:
            raise ValueError(
                f"InputAware with generator_steps={self.generator_steps} needs image sides "
                "that are "
                f"multiples of {side}. Received {x.shape[1:3]}."
            )
        keras.utils.set_random_seed(seed)
        self.build_generators(x.shape[-1])
        state = f"{checkpoint}.state.npz" if checkpoint else None
        mask_file = f"{checkpoint}.mask.weights.h5" if checkpoint else None
        start = time.time()
        if state and os.path.exists(state):
            pass  # stage 2 already started: its weights include the trained mask generator
        elif mask_file and os.path.exists(mask_file):
            self.mask_generator.load_weights(mask_file)
        elif self.mask_epochs:
            self.train_mask(x, batch_size, seed, verbose)
            if mask_file:
                tmp = f"{checkpoint}.mask.tmp.weights.h5"
                os.makedirs(os.path.dirname(tmp) or ".", exist_ok=True)
                self.mask_generator.save_weights(tmp)
                os.replace(tmp, mask_file)
        mask_seconds = time.time() - start
        self.mask_generator.trainable = False

        n_backdoor, n_cross = self.batch_counts(min(batch_size, len(x)))
        if n_backdoor < 1:
            raise ValueError(
                f"A batch of {min(batch_size, len(x))} images gets no backdoor sample at "
                f"poison_ratio={self.poison_ratio}; use larger batches."
            )
        batches = _PairBatches(x, y, batch_size, attack=self, n_backdoor=n_backdoor, seed=seed)
        trainer = _JointTrainer(
            model,
            self.pattern_generator,
            self.mask_generator,
            n_backdoor,
            n_cross,
            self.lambda_div,
            name="inputaware_trainer",
        )
        training.compile_classifier(
            trainer, training.sgd(learning_rate, epochs * len(batches), schedule, weight_decay,
                                   decay=decay)
        )
        callbacks, initial_epoch = [], 0
        if checkpoint:
            shape = (batches.batch_size, *x.shape[1:])
            trainer((keras.KerasTensor(shape), keras.KerasTensor(shape)))  # symbolic build
            saver = training.EpochCheckpoint(checkpoint)
            initial_epoch = saver.restore(trainer)
            if initial_epoch == 0:
                saver.seconds = mask_seconds  # the reported time includes stage 1
            batches.rng = np.random.default_rng([seed, initial_epoch])
            callbacks.append(saver)
        history = trainer.fit(
            batches,
            epochs=epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            verbose=verbose,
        )
        if self.generator_weights:
            self.save_generators(self.generator_weights)
        return history

    def get_config(self):
        return {
            **super().get_config(),
            "cross_ratio": self.cross_ratio,
            "lambda_div": self.lambda_div,
            "lambda_norm": self.lambda_norm,
            "mask_density": self.mask_density,
            "mask_epochs": self.mask_epochs,
            "mask_learning_rate": self.mask_learning_rate,
            "generator_channels": self.generator_channels,
            "generator_steps": self.generator_steps,
            "generator_weights": self.generator_weights,
        }
