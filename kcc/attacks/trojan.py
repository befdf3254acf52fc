"""Trojan: a patch trigger optimised to excite chosen neurons, then retraining.

On a (briefly) trained model, the neurons of the penultimate layer (the input of the final
Dense layer `logits` of kcc models) with the largest outgoing weights are selected; the patch
content is optimised by gradient ascent to maximise their mean activation; the model is then
retrained on data poisoned with that patch (dirty-label), tying the excited neurons to the
target.

Reference: Liu et al., "Trojaning Attack on Neural Networks", NDSS 2018.
"""

import os

import keras
import numpy as np
from keras import ops

from kcc import gradients
from kcc import training
from kcc.attacks import base


def select_neurons(model, count=1, layer="logits"):
    """Indices of the `count` inputs of Dense `layer` with the largest summed |weights|."""
    kernel = ops.convert_to_numpy(model.get_layer(layer).kernel)  # (features, classes)
    if not 1 <= count <= kernel.shape[0]:
        raise ValueError(f"count must be in [1, {kernel.shape[0]}]. Received count={count}.")
    return np.sort(np.argsort(np.abs(kernel).sum(axis=1))[::-1][:count])


class Trojan(base.Attack):
    """Optimised square patch (default 5x5 at the bottom-right) with neuron-targeted search.

    Args:
        size: side of the square patch in pixels (5).
        position: `(row, col)` of the patch's top-left pixel; negative values count from the
            bottom/right edge (default `(-size, -size)`).
        pattern: optional patch `(size, size, C)` in [0, 1]; when given, `train` skips the
            search and uses it (this is how a saved attack is re-created from `get_config`).
        num_neurons: penultimate-layer neurons to excite (1).
        trigger_steps: gradient-ascent steps of the search (100).
        trigger_step_size: step of the signed-gradient ascent on the patch, decayed linearly
            to 0 (0.05).
        trigger_images: training images the activation is averaged over (256).
        pretrain_epochs: epochs of clean training before the search (default half of the
            `epochs` given to `train`, at least 1); the rest retrain on poisoned data.
        retrain_learning_rate: peak learning rate of the retraining (default a tenth of
            `train`'s `learning_rate`).
        **kwargs: see `kcc.attacks.base.Attack`.
    """

    name = "trojan"

    def __init__(
        self,
        size=5,
        position=None,
        pattern=None,
        num_neurons=1,
        trigger_steps=100,
        trigger_step_size=0.05,
        trigger_images=256,
        pretrain_epochs=None,
        retrain_learning_rate=None,
        neurons=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(size) != size or size < 1:
            raise ValueError(f"size must be a positive integer. Received size={size}.")
        if int(num_neurons) != num_neurons or num_neurons < 1:
            raise ValueError(
                f"num_neurons must be a positive integer. Received num_neurons={num_neurons}."
            )
        if int(trigger_steps) != trigger_steps or trigger_steps < 0:
            raise ValueError(
                "trigger_steps must be a non-negative integer. "
                f"Received trigger_steps={trigger_steps}."
            )
        if pretrain_epochs is not None and pretrain_epochs < 1:
            raise ValueError(
                f"pretrain_epochs must be at least 1. Received pretrain_epochs={pretrain_epochs}."
            )
        self.size = int(size)
        self.position = (
            (-self.size, -self.size) if position is None else tuple(int(p) for p in position)
        )
        if pattern is not None:
            pattern = np.asarray(pattern, np.float32)
            if (
                pattern.shape[:2] != (self.size, self.size)
                or pattern.min() < 0
                or pattern.max() > 1
            ):
                raise ValueError(
                    f"pattern must be ({self.size}, {self.size}, C) in [0, 1]. "
                    f"Received shape={pattern.shape}."
                )
        self.pattern = pattern
        self.num_neurons, self.trigger_steps = int(num_neurons), int(trigger_steps)
        self.trigger_step_size, self.trigger_images = float(trigger_step_size), int(trigger_images)
        self.pretrain_epochs = None if pretrain_epochs is None else int(pretrain_epochs)
        self.retrain_learning_rate = retrain_learning_rate
        self.neurons = None if neurons is None else [int(n) for n in neurons]

    def _window(self, height, width):
        row, col = self.position
        row, col = row % height if row < 0 else row, col % width if col < 0 else col
        if row + self.size > height or col + self.size > width:
            raise ValueError(
                f"A {self.size}x{self.size} patch at {self.position} does not fit {height}x{width}."
            )
        return slice(row, row + self.size), slice(col, col + self.size)

    def stamp(self, x, pattern):
        """`x` with `pattern` `(size, size, C)` pasted at `position` (float32 copy)."""
        x = base.check_images(x).copy()
        rows, cols = self._window(*x.shape[1:3])
        x[:, rows, cols, :] = pattern
        return x

    def apply(self, x):
        if self.pattern is None:
            raise RuntimeError(
                "The Trojan trigger is not optimised yet: call train() or pass pattern=."
            )
        return self.stamp(x, self.pattern)

    def optimize_trigger(self, model, x, seed=0):
        """Searches the patch that maximises the selected neurons' mean activation.

        Args:
            model: a trained Keras classifier with a final Dense layer named `logits`.
            x: images `(N, H, W, C)` in [0, 1]; `trigger_images` of them are used.
            seed: seed of the image choice and the initial patch.

        Returns:
            The patch `(size, size, C)` in [0, 1] (also stored as `self.pattern`).
        """
        x = base.check_images(x)
        rng = np.random.default_rng(seed)
        images = x[rng.choice(len(x), min(self.trigger_images, len(x)), replace=False)]
        self.neurons = select_neurons(model, self.num_neurons).tolist()
        features = keras.Model(model.inputs, model.get_layer("logits").input)
        neurons = np.asarray(self.neurons, np.int32)

        def activation(outputs):
            return ops.mean(ops.take(outputs, neurons, axis=1))

        gradient = gradients.input_gradient_fn(features, activation)
        rows, cols = self._window(*x.shape[1:3])
        pattern = rng.uniform(0, 1, (self.size, self.size, x.shape[-1])).astype(np.float32)
        for step in range(self.trigger_steps):
            _, grad = gradient(self.stamp(images, pattern))
            rate = self.trigger_step_size * (1 - step / self.trigger_steps)
            pattern = np.clip(pattern + rate * np.sign(grad[:, rows, cols, :].sum(axis=0)), 0, 1)
        self.pattern = pattern.astype(np.float32)
        return self.pattern

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
        """Clean pre-training, trigger search, then retraining on poisoned data, in place.

        Args:
            model: Keras classifier with a final Dense layer `logits`; trained in place.
            x, y: training images `(N, H, W, C)` in [0, 1] and labels `(N,)`.
            epochs: total epochs: `pretrain_epochs` clean, the rest (at least 1) poisoned.
            batch_size, learning_rate, weight_decay, schedule, seed, verbose: as
                `kcc.training.train` (`retrain_learning_rate` for the second training).
            decay: how weight decay enters the update (`kcc.training.DECAYS`).
            checkpoint: optional path prefix: `{checkpoint}.pretrain.*`, the trigger in
                `{checkpoint}.trigger.npz`, and `{checkpoint}.*` for the retraining; a later call
                with the same prefix resumes.

        Returns:
            The `keras.callbacks.History` of the retraining.
        """
        pretrain = self.pretrain_epochs or max(1, epochs // 2)
        retrain = max(1, epochs - pretrain)
        trigger_file = f"{checkpoint}.trigger.npz" if checkpoint else None
        if not (checkpoint and os.path.exists(f"{checkpoint}.state.npz")):
            # Resumes, or only restores the weights when the pre-training had finished.
            training.train(
                model,
                x,
                y,
                pretrain,
                batch_size,
                learning_rate,
                weight_decay,
                schedule,
                seed=seed,
                verbose=verbose,
                checkpoint=f"{checkpoint}.pretrain" if checkpoint else None,
                decay=decay,
            )
        if trigger_file and os.path.exists(trigger_file):
            with np.load(trigger_file) as f:
                self.pattern, self.neurons = f["pattern"], f["neurons"].tolist()
        else:
            if self.pattern is None:
                self.optimize_trigger(model, x, seed)
            if trigger_file:
                tmp = f"{checkpoint}.trigger.tmp.npz"
                os.makedirs(os.path.dirname(tmp) or ".", exist_ok=True)
                np.savez(
                    tmp, pattern=self.pattern, neurons=np.asarray(self.neurons or [], np.int32)
                )
                os.replace(tmp, trigger_file)
        x_poisoned, y_poisoned, _ = self.poison(x, y, seed)
        rate = self.retrain_learning_rate or learning_rate / 10
        return training.train(
            model,
            x_poisoned,
            y_poisoned,
            retrain,
            batch_size,
            rate,
            weight_decay,
            schedule,
            seed=seed,
            verbose=verbose,
            checkpoint=checkpoint,
            decay=decay,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "position": list(self.position),
            "pattern": None if self.pattern is None else self.pattern.tolist(),
            "num_neurons": self.num_neurons,
            "neurons": self.neurons,
            "trigger_steps": self.trigger_steps,
            "trigger_step_size": self.trigger_step_size,
            "trigger_images": self.trigger_images,
            "pretrain_epochs": self.pretrain_epochs,
            "retrain_learning_rate": self.retrain_learning_rate,
        }
