"""Image-classification datasets as NumPy arrays in [0, 1] pixel space.

Every image in kcc lives in [0, 1] RGB pixel space, shape `(N, 32, 32, 3)`, `float32`;
input normalisation is part of each model (see `kcc.models`), so triggers, synthetic images and
adversarial perturbations never need to know a dataset's mean and standard deviation.

Where the images come from, in this order:

1. an explicit `data_dir`, or the `KCC_DATA_DIR` environment variable, naming a folder with
   `<name>.zip` archives in the image-folder layout `<name>/<split>/<class>/<file>` (offline use);
2. `tensorflow-datasets` (online use; downloads on first call).

Decoded arrays are cached once as `.npz` under `$KCC_CACHE_DIR` (default `~/.cache/kcc`).
"""

import hashlib
import io
import os
import zipfile

import numpy as np

DATASETS = {
    # name: (num_classes, TFDS name, per-channel mean, per-channel std) of the training split.
    "cifar10": (10, "cifar10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "gtsrb": (43, None, (0.3403, 0.3121, 0.3214), (0.2724, 0.2608, 0.2669)),
    "cifar100": (100, "cifar100", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
SPLITS = ("train", "test")

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


class DatasetNotFoundError(FileNotFoundError):
    """Neither an offline archive nor `tensorflow-datasets` could provide a dataset."""


def num_classes(name):
    """Number of classes of a dataset known to kcc."""
    return DATASETS[_check_name(name)][0]


def normalization(name):
    """Per-channel `(mean, std)` of a dataset's training split, in [0, 1] pixel units."""
    _, _, mean, std = DATASETS[_check_name(name)]
    return mean, std


def load(name, split="train", data_dir=None):
    """Loads a dataset split as arrays.

    Args:
        name: one of `"cifar10"`, `"gtsrb"`, `"cifar100"`.
        split: `"train"` or `"test"`.
        data_dir: folder holding `<name>.zip`; defaults to `$KCC_DATA_DIR`.

    Returns:
        `(x, y)`: `x` float32 `(N, 32, 32, 3)` in [0, 1], `y` int32 `(N,)` class indices.

    Raises:
        ValueError: unknown dataset or split.
        DatasetNotFoundError: no archive and no usable `tensorflow-datasets`; the message names
            both ways to fix it.
    """
    name = _check_name(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}. Received split={split!r}.")
    x, y = _load_uint8(name, split, data_dir)
    return x.astype(np.float32) / 255.0, y.astype(np.int32)


def _check_name(name):
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset. Expected one of {sorted(DATASETS)}. Received name={name!r}.")
    return name


def _cache_dir():
    root = os.environ.get("KCC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "kcc")
    os.makedirs(root, exist_ok=True)
    return root


def _load_uint8(name, split, data_dir):
    data_dir = data_dir or os.environ.get("KCC_DATA_DIR")
    archive = os.path.join(data_dir, f"{name}.zip") if data_dir else None
    if archive and os.path.isfile(archive):
        stat = os.stat(archive)
        key = hashlib.sha1(f"{os.path.abspath(archive)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        cache = os.path.join(_cache_dir(), f"{name}_{split}_{key.hexdigest()[:12]}.npz")
        if os.path.isfile(cache):
            with np.load(cache) as f:
                return f["x"], f["y"]
        x, y = _decode_archive(archive, name, split)
        _save_atomic(cache, x=x, y=y)
        return x, y
    tfds_error = _tfds_unavailable_reason(name)
    if tfds_error is None:
        return _load_tfds(name, split)
    where = f"no file {archive}" if archive else "neither data_dir nor KCC_DATA_DIR is set"
    raise DatasetNotFoundError(
        f"Dataset {name!r} is not available: {where}, and {tfds_error}. Fix one of: (1) pass "
        f"data_dir= or set KCC_DATA_DIR to a folder holding {name}.zip in the layout "
        f"{name}/<split>/<class>/<image>; (2) install tensorflow-datasets on a machine with "
        "internet access so it can download the dataset."
    )


def _decode_archive(archive, name, split):
    from PIL import Image

    prefix = f"{name}/{split}/"
    with zipfile.ZipFile(archive) as zf:
        members = sorted(
            m for m in zf.namelist() if m.startswith(prefix) and not m.endswith("/")
        )
        if not members:
            raise DatasetNotFoundError(f"{archive} has no images under {prefix!r}.")
        classes = sorted({m[len(prefix):].split("/")[0] for m in members})
        index = {c: i for i, c in enumerate(classes)}
        x = np.empty((len(members), 32, 32, 3), np.uint8)
        y = np.empty((len(members),), np.int32)
        for i, member in enumerate(members):
            with Image.open(io.BytesIO(zf.read(member))) as image:
                x[i] = np.asarray(image.convert("RGB").resize((32, 32)))
            y[i] = index[member[len(prefix):].split("/")[0]]
    return x, y


def _tfds_unavailable_reason(name):
    tfds_name = DATASETS[name][1]
    if tfds_name is None:
        return f"tensorflow-datasets has no {name!r} builder that kcc can use"
    try:
        import tensorflow_datasets  # noqa: F401
    except ImportError as e:
        return f"tensorflow-datasets cannot be imported ({e})"
    return None


def _load_tfds(name, split):
    import tensorflow_datasets as tfds

    try:
        ds = tfds.load(DATASETS[name][1], split=split, as_supervised=True, batch_size=-1)
    except Exception as e:  # TFDS raises many types for a failed download.
        hint = " (there is no offline archive for CIFAR-100)" if name == "cifar100" else ""
        raise DatasetNotFoundError(
            f"tensorflow-datasets could not load {name!r}{hint}: {e}. Set KCC_DATA_DIR to a folder "
            f"holding {name}.zip, or run on a machine with internet access."
        ) from e
    x, y = tfds.as_numpy(ds)
    return x.astype(np.uint8), y.astype(np.int32)


def _save_atomic(path, **arrays):
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def subset(x, y, per_class=None, fraction=None, seed=0):
    """A class-balanced random subset.

    Args:
        x: images `(N, ...)`.
        y: labels `(N,)`.
        per_class: samples per class; or
        fraction: fraction of each class (rounded, at least one).
        seed: random seed.

    Returns:
        `(x_subset, y_subset, indices)`.
    """
    if (per_class is None) == (fraction is None):
        raise ValueError("Pass exactly one of per_class= and fraction=.")
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n = per_class if per_class is not None else max(1, int(round(fraction * len(idx))))
        if n > len(idx):
            raise ValueError(f"Class {c} has {len(idx)} samples, fewer than per_class={n}.")
        picked.append(rng.choice(idx, n, replace=False))
    indices = np.sort(np.concatenate(picked))
    return x[indices], y[indices], indices


def augment(x, rng, pad=4):
    """The standard CIFAR augmentation on a batch: random crop after zero-padding, random flip.

    Args:
        x: images `(B, H, W, C)` in [0, 1].
        rng: a `numpy.random.Generator`.
        pad: padding in pixels on each side.

    Returns:
        augmented copy of `x`, same shape and dtype.
    """
    b, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dy = rng.integers(0, 2 * pad + 1, b)
    dx = rng.integers(0, 2 * pad + 1, b)
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    out = padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]
    flip = rng.random(b) < 0.5
    out[flip] = out[flip, :, ::-1]
    return out


def tf_dataset(x, y, batch_size=128, training=True, seed=0):
    """A `tf.data.Dataset` of `(image, label)` batches with crop(pad 4)+flip when training.

    For TensorFlow users who prefer `tf.data`; kcc's own training uses `kcc.training.Batches`,
    which needs no TensorFlow.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)

        def _augment(image, label):
            image = tf.image.resize_with_crop_or_pad(image, 40, 40)
            image = tf.image.random_crop(image, (32, 32, 3), seed=seed)
            image = tf.image.random_flip_left_right(image, seed=seed)
            return image, label

        ds = ds.map(_augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
