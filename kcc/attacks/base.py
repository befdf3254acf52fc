"""The interface every backdoor attack in kcc follows.

An attack is a trigger function on batches of [0, 1] images plus a labelling rule:

* `apply(x)` stamps the trigger on a batch `(N, H, W, C)` and returns a new float32 array;
* `targets(y)` gives the attacker's labels: `target` for all-to-one, `(y + 1) mod C` for
  all-to-all;
* `poison(x, y, seed)` returns a poisoned copy of a training set and the poisoned indices.

Attacks whose poisoning happens per batch (the trigger depends on randomness drawn at training
time) also provide `transform(x, y, rng)` for `kcc.training.Batches`; attacks that train extra
networks provide their own `fit`-based training (see each module).
"""

import numpy as np

MODES = ("all2one", "all2all")


class Attack:
    """Base class: validates the common parameters and implements dirty-label poisoning.

    Args:
        target: the all-to-one target class.
        mode: `"all2one"` or `"all2all"` (target `(y + 1) mod num_classes`).
        poison_ratio: fraction of the training set that is poisoned, in (0, 1].
        num_classes: number of classes of the dataset.
        seed: seed of any randomness in the trigger itself.
    """

    name = None
    clean_label = False

    def __init__(self, target=0, mode="all2one", poison_ratio=0.1, num_classes=10, seed=0):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}. Received mode={mode!r}.")
        if not 0 < poison_ratio <= 1:
            raise ValueError(f"poison_ratio must be in (0, 1]. Received poison_ratio={poison_ratio}.")
        if not 0 <= target < num_classes:
            raise ValueError(
                f"target must be a class index below num_classes={num_classes}. Received target={target}."
            )
        self.target, self.mode = int(target), mode
        self.poison_ratio, self.num_classes, self.seed = float(poison_ratio), int(num_classes), int(seed)

    def apply(self, x):
        """Stamps the trigger on images `x` `(N, H, W, C)` in [0, 1]; returns a float32 copy."""
        raise NotImplementedError

    def targets(self, y):
        """The attacker's labels for true labels `y` `(N,)`."""
        y = np.asarray(y)
        if self.mode == "all2all":
            return ((y + 1) % self.num_classes).astype(y.dtype)
        return np.full_like(y, self.target)

    def poison_indices(self, y, seed=0):
        """Which training samples get the trigger (sorted indices)."""
        rng = np.random.default_rng(seed)
        y = np.asarray(y)
        pool = np.flatnonzero(y == self.target) if self.clean_label else np.arange(len(y))
        n = int(round(self.poison_ratio * len(y)))
        if n > len(pool):
            raise ValueError(
                f"{self.name} poisons target-class images only: {len(pool)} available, "
                f"{n} requested (poison_ratio={self.poison_ratio})."
            )
        return np.sort(rng.choice(pool, n, replace=False))

    def poison(self, x, y, seed=0):
        """A poisoned copy of a training set.

        Returns:
            `(x_poisoned, y_poisoned, indices)`; dirty-label attacks relabel the poisoned
            samples with `targets(y)`, clean-label attacks keep their labels.
        """
        indices = self.poison_indices(y, seed)
        x_poisoned = np.array(x, dtype=np.float32, copy=True)
        y_poisoned = np.array(y, copy=True)
        x_poisoned[indices] = self.apply(x[indices])
        if not self.clean_label:
            y_poisoned[indices] = self.targets(y[indices])
        return x_poisoned, y_poisoned, indices

    def get_config(self):
        """The attack's parameters as a JSON-serialisable dict (recorded in zoo sidecars)."""
        return {
            "name": self.name,
            "target": self.target,
            "mode": self.mode,
            "poison_ratio": self.poison_ratio,
            "num_classes": self.num_classes,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        """Re-creates an attack from `get_config()` output (the `"name"` key is ignored)."""
        return cls(**{k: v for k, v in config.items() if k != "name"})


def check_images(x):
    """`x` as a float32 array `(N, H, W, C)`; raises `ValueError` otherwise."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"Expected images of shape (N, H, W, C). Received shape={x.shape}.")
    return x
