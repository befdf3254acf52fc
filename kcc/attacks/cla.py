"""Label-consistent (CLA): a clean-label patch attack made learnable by adversarial perturbation.

Target-class training images are first perturbed with projected gradient descent (PGD, L-inf)
against a clean model so that their natural features become hard to use, then stamped with a
small patch; their labels stay correct. The network falls back on the patch to classify them,
and at test time the patch alone sends any image to the target class.

Reference: Turner, Tsipras and Madry, "Label-Consistent Backdoor Attacks", arXiv:1912.02771,
2019.
"""

import os

import keras
import numpy as np
from keras import ops

from kcc import gradients
from kcc import intake
from kcc import training
from kcc.attacks import base

# The paper's 3x3 black-and-white patch.
CHECKERBOARD = ((1.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 1.0))
CORNERS = ("all", "bottom_right")


def pgd(model, x, y, epsilon=16 / 255, steps=10, step_size=None, batch_size=256, seed=0):
    """Untargeted L-inf PGD: pushes `model`'s cross-entropy on the true labels up.

    Args:
        model: Keras classifier producing logits on [0, 1] images.
        x: images `(N, H, W, C)` in [0, 1].
        y: true labels `(N,)`.
        epsilon: L-inf radius in [0, 1] pixel units.
        steps: gradient-sign steps after a uniform random start in the ball.
        step_size: size of each step (default `2.5 * epsilon / steps`).
        batch_size: images per gradient computation.
        seed: seed of the random start.

    Returns:
        float32 adversarial images `(N, H, W, C)` within `epsilon` of `x` and in [0, 1].
    """
    x = base.check_images(x)
    y = np.asarray(y, np.int32)
    if epsilon < 0 or steps < 0:
        raise ValueError(
            f"epsilon and steps must be non-negative. Received epsilon={epsilon}, steps={steps}."
        )
    step_size = 2.5 * epsilon / max(steps, 1) if step_size is None else step_size
    rng = np.random.default_rng(seed)

    def cross_entropy(logits, labels):
        return ops.sum(
            keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        )

    gradient = gradients.input_gradient_fn(model, cross_entropy)
    out = np.empty_like(x)
    for start in range(0, len(x), batch_size):
        clean, labels = x[start : start + batch_size], y[start : start + batch_size]
        adv = np.clip(clean + rng.uniform(-epsilon, epsilon, clean.shape), 0, 1).astype(np.float32)
        for _ in range(steps):
            _, grad = gradient(adv, labels)
            adv = adv + step_size * np.sign(grad)
            adv = np.clip(np.clip(adv, clean - epsilon, clean + epsilon), 0, 1).astype(np.float32)
        out[start : start + batch_size] = adv
    return out


class LabelConsistent(base.Attack):
    """Clean-label attack: PGD-perturbed target-class images stamped with corner patches.

    Args:
        epsilon: L-inf radius of the adversarial perturbation (16/255).
        steps: PGD steps (10).
        pattern: patch `(h, w)` or `(h, w, C)` in [0, 1], or `"checkerboard"` (the default 3x3
            black-and-white patch).
        corners: `"all"` (a patch in each of the four corners, the paper's) or
            `"bottom_right"`.
        clean_epochs: epochs of the clean model that `train` fits first (default the
            `epochs` given to `train`); ignored when `clean_model` is set.
        clean_model: optional clean Keras model, or the path of a `.keras` file, used for the
            perturbation instead of training one.
        **kwargs: see `kcc.attacks.base.Attack`; `mode` must be `"all2one"` and
            `poison_ratio` is a fraction of the whole training set taken from the target class.

    Raises:
        ValueError: for `mode="all2all"`, which a clean-label attack cannot express.
    """

    name = "cla"
    clean_label = True

    def __init__(
        self,
        epsilon=16 / 255,
        steps=10,
        pattern=None,
        corners="all",
        clean_epochs=None,
        clean_model=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if self.mode != "all2one":
            raise ValueError(
                "CLA is a clean-label attack: poisoned images keep their label, so it has no "
                f"all-to-all version. Expected mode='all2one'. Received mode={self.mode!r}."
            )
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1]. Received epsilon={epsilon}.")
        if int(steps) != steps or steps < 0:
            raise ValueError(f"steps must be a non-negative integer. Received steps={steps}.")
        if corners not in CORNERS:
            raise ValueError(f"corners must be one of {CORNERS}. Received corners={corners!r}.")
        if clean_epochs is not None and clean_epochs < 1:
            raise ValueError(
                f"clean_epochs must be at least 1. Received clean_epochs={clean_epochs}."
            )
        if pattern is None or (isinstance(pattern, str) and pattern == "checkerboard"):
            pattern = CHECKERBOARD
        pattern = np.asarray(pattern, np.float32)
        if pattern.ndim == 2:
            pattern = pattern[..., None]
        if pattern.ndim != 3 or pattern.min() < 0 or pattern.max() > 1:
            raise ValueError(
                f"pattern must be (h, w) or (h, w, C) in [0, 1]. Received shape={pattern.shape}."
            )
        self.epsilon, self.steps, self.pattern, self.corners = (
            float(epsilon),
            int(steps),
            pattern,
            corners,
        )
        self.clean_epochs = None if clean_epochs is None else int(clean_epochs)
        self.clean_model = clean_model

    def apply(self, x):
        x = base.check_images(x).copy()
        ph, pw = self.pattern.shape[:2]
        height, width = x.shape[1:3]
        if ph > height or pw > width:
            raise ValueError(f"A {ph}x{pw} pattern does not fit {height}x{width} images.")
        corners = [(height - ph, width - pw)]
        if self.corners == "all":
            corners += [(0, 0), (0, width - pw), (height - ph, 0)]
        for row, col in corners:
            x[:, row : row + ph, col : col + pw, :] = self.pattern
        return x

    def _clean_model(self):
        if isinstance(self.clean_model, str):
            self.clean_model = intake.load_suspect(self.clean_model)
        return self.clean_model

    def poison(self, x, y, seed=0):
        """Perturbs (with the clean model) and stamps the chosen target-class images.

        Returns:
            `(x_poisoned, y, indices)`; labels are unchanged.

        Raises:
            RuntimeError: without a clean model (pass `clean_model` or call `train`).
        """
        model = self._clean_model()
        if model is None:
            raise RuntimeError("CLA needs a clean model: pass clean_model= or call train().")
        indices = self.poison_indices(y, seed)
        x_poisoned = np.array(x, dtype=np.float32, copy=True)
        adversarial = pgd(
            model, x_poisoned[indices], np.asarray(y)[indices], self.epsilon, self.steps, seed=seed
        )
        x_poisoned[indices] = self.apply(adversarial)
        return x_poisoned, np.array(y, copy=True), indices

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
        """Fits a clean model (unless given), poisons the data with it, then trains `model`.

        Args:
            model: the Keras classifier to backdoor, trained in place; its architecture is
                cloned for the clean model.
            x, y: training images `(N, H, W, C)` in [0, 1] and labels `(N,)`.
            epochs, batch_size, learning_rate, weight_decay, schedule, seed, verbose: as
                `kcc.training.train`, for both trainings (`clean_epochs` for the first).
            decay: how weight decay enters the update (`kcc.training.DECAYS`).
            checkpoint: optional path prefix: `{checkpoint}.clean.*` for the clean model,
                `{checkpoint}.poison.npz` for the poisoned images, `{checkpoint}.*` for the
                backdoored model; a later call with the same prefix resumes.

        Returns:
            The `keras.callbacks.History` of the backdoor training.
        """
        cache = f"{checkpoint}.poison.npz" if checkpoint else None
        if cache and os.path.exists(cache):
            with np.load(cache) as f:
                indices, perturbed = f["indices"], f["images"]
            x_poisoned = np.array(x, dtype=np.float32, copy=True)
            x_poisoned[indices] = perturbed
        else:
            if self._clean_model() is None:
                clean = keras.models.clone_model(model)
                training.train(
                    clean,
                    x,
                    y,
                    self.clean_epochs or epochs,
                    batch_size,
                    learning_rate,
                    weight_decay,
                    schedule,
                    seed=seed,
                    verbose=verbose,
                    checkpoint=f"{checkpoint}.clean" if checkpoint else None,
                    decay=decay,
                )
                self.clean_model = clean
            x_poisoned, _, indices = self.poison(x, y, seed)
            if cache:
                tmp = f"{checkpoint}.poison.tmp.npz"
                os.makedirs(os.path.dirname(tmp) or ".", exist_ok=True)
                np.savez(tmp, indices=indices, images=x_poisoned[indices])
                os.replace(tmp, cache)
        return training.train(
            model,
            x_poisoned,
            y,
            epochs,
            batch_size,
            learning_rate,
            weight_decay,
            schedule,
            seed=seed,
            verbose=verbose,
            checkpoint=checkpoint,
            decay=decay,
        )

    @classmethod
    def from_config(cls, config):
        config = {k: v for k, v in config.items() if k != "name"}
        if config.get("clean_model") == "trained":
            config["clean_model"] = None  # trained in memory, not kept; the trigger needs none
        return cls(**config)

    def get_config(self):
        clean = (
            self.clean_model
            if isinstance(self.clean_model, str) or self.clean_model is None
            else "trained"
        )
        pattern = (
            "checkerboard"
            if np.array_equal(self.pattern, np.asarray(CHECKERBOARD)[..., None])
            else self.pattern.tolist()
        )
        return {
            **super().get_config(),
            "epsilon": self.epsilon,
            "steps": self.steps,
            "pattern": pattern,
            "corners": self.corners,
            "clean_epochs": self.clean_epochs,
            "clean_model": clean,
        }
