"""The clean data a defender is entitled to: a small split of the *training* set, never the test set.

Every data-using defense in `kcc.defenses` takes a `DefenderData` and nothing else as its data
argument. A `DefenderData` is made by `defender_split`, which draws from a dataset's training
split (or from images the user owns), holds part of it out for validation, and records exactly
what was drawn so that a report can say which data a defense saw. There is no way to build one
from a dataset's test split, and the defenses refuse bare arrays, so evaluation images cannot
leak into a defense by accident. Any threshold or stopping point a defense selects is selected
on `x_val, y_val`.
"""

import dataclasses

import numpy as np

from kcc import data


@dataclasses.dataclass(frozen=True, eq=False)
class DefenderData:
    """A defender's clean images, split into a part to learn from and a validation part.

    Attributes:
        x: float32 `(N, H, W, 3)` images in [0, 1] to optimise on.
        y: int32 `(N,)` labels.
        x_val: float32 `(M, H, W, 3)` held-out images for thresholds and early stopping.
        y_val: int32 `(M,)` labels.
        source: JSON-serialisable description of where the images came from (dataset, split,
            how many per class or what fraction, seed, sizes); copied into every report.
    """

    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    source: dict

    def __post_init__(self):
        for name in ("x", "x_val"):
            value = getattr(self, name)
            if value.ndim != 4 or value.dtype != np.float32:
                raise ValueError(f"DefenderData.{name} must be float32 (N, H, W, C). "
                                 f"Received {value.dtype} {value.shape}.")
        if len(self.x) != len(self.y) or len(self.x_val) != len(self.y_val):
            raise ValueError("DefenderData images and labels differ in length.")

    @property
    def num_classes(self):
        return int(self.source["num_classes"])

    def describe(self):
        """The `source` record plus sizes, for reports."""
        return {**self.source, "train_images": int(len(self.x)), "validation_images": int(len(self.x_val))}


def defender_split(dataset, fraction=None, per_class=None, validation=0.1, seed=0, data_dir=None):
    """Draws a class-balanced defender split from a dataset's training split.

    Args:
        dataset: a dataset name known to `kcc.data` (its *training* split is used), or a pair
            `(x, y)` of clean images the user owns (`x` uint8 or float in [0, 1]).
        fraction: fraction of each class to draw (e.g. 0.01 = the 1% of ANP's protocol); or
        per_class: images per class (e.g. 2 / 10 / 100 for gradient-based unlearning pruning).
        validation: fraction of the drawn images held out for validation (at least one image
            per class where a class has two or more; 0 disables validation).
        seed: random seed of the draw and of the hold-out.
        data_dir: folder with the offline archives (default `$KCC_DATA_DIR`).

    Returns:
        A `DefenderData`.
    """
    if not 0 <= validation < 1:
        raise ValueError(f"validation must be in [0, 1). Received validation={validation}.")
    if isinstance(dataset, str):
        x, y = data.load(dataset, "train", data_dir=data_dir)
        source = {"dataset": dataset, "split": "train", "num_classes": data.num_classes(dataset)}
    else:
        x, y = dataset
        x, y = np.asarray(x), np.asarray(y).astype(np.int32)
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        if x.min() < 0 or x.max() > 1:
            raise ValueError("User images must be uint8 or float in [0, 1].")
        source = {"dataset": "user-provided arrays", "split": "user", "num_classes": int(y.max()) + 1}
    x, y, indices = data.subset(x, y, per_class=per_class, fraction=fraction, seed=seed)
    rng = np.random.default_rng(seed + 1)
    held = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n = int(round(validation * len(idx)))
        if validation > 0 and len(idx) >= 2:
            n = max(n, 1)
        held.append(rng.choice(idx, min(n, len(idx) - 1), replace=False))
    val = np.zeros(len(y), bool)
    val[np.concatenate(held).astype(int)] = True
    source.update(fraction=fraction, per_class=per_class, validation=validation, seed=seed,
                  indices_sha1=_digest(indices))
    return DefenderData(x[~val], y[~val], x[val], y[val], source)


def check(defender_data, name="defender_data"):
    """Refuses anything but a `DefenderData` (bare arrays could be test images)."""
    if not isinstance(defender_data, DefenderData):
        raise TypeError(
            f"{name} must be a kcc.defenses.DefenderData made by defender_split() from a training "
            f"split or your own clean images; bare arrays are refused so test images cannot leak "
            f"into a defense. Received {type(defender_data).__name__}."
        )
    return defender_data


def _digest(indices):
    import hashlib

    return hashlib.sha1(np.asarray(indices, np.int64).tobytes()).hexdigest()
