import os
import zipfile

import numpy as np
import pytest

from kcc import data

DATA_DIR = os.environ.get("KCC_DATA_DIR")
needs_data = pytest.mark.skipif(
    not DATA_DIR or not os.path.exists(os.path.join(DATA_DIR, "cifar10.zip")),
    reason="KCC_DATA_DIR with cifar10.zip/gtsrb.zip is not set (CI sets it)",
)


@needs_data
@pytest.mark.parametrize(
    "name, split, size, classes, per_class",
    [
        ("cifar10", "train", 50000, 10, 5000),
        ("cifar10", "test", 10000, 10, 1000),
        ("gtsrb", "train", 39209, 43, None),
        ("gtsrb", "test", 12630, 43, None),
    ],
)
def test_sizes_labels_and_range(name, split, size, classes, per_class):
    x, y = data.load(name, split)
    assert x.shape == (size, 32, 32, 3) and x.dtype == np.float32
    assert y.shape == (size,)
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.9
    counts = np.bincount(y, minlength=classes)
    assert len(counts) == classes and counts.min() > 0
    if per_class:
        assert np.all(counts == per_class)


@needs_data
def test_cifar10_label_zero_is_airplane():
    with zipfile.ZipFile(os.path.join(DATA_DIR, "cifar10.zip")) as zf:
        folders = sorted({n.split("/")[2] for n in zf.namelist() if n.startswith("cifar10/train/")
                          and n.count("/") >= 3})
    assert folders[0] == "airplane" == data.CIFAR10_CLASSES[0]
    assert tuple(folders) == data.CIFAR10_CLASSES


@needs_data
def test_cached_load_is_identical():
    x1, y1 = data.load("cifar10", "test")
    x2, y2 = data.load("cifar10", "test")
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)


def test_missing_archive_names_both_fixes(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match=r"no file .*gtsrb\.zip.*KCC_DATA_DIR.*tensorflow-datasets"):
        data.load("gtsrb", "test", data_dir=str(tmp_path))


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match="Unknown dataset"):
        data.load("mnist")
    with pytest.raises(ValueError, match="split must be one of"):
        data.load("cifar10", "validation")


def test_subset_is_class_balanced():
    y = np.repeat(np.arange(10), 50)
    x = np.arange(500)[:, None]
    xs, ys, idx = data.subset(x, y, per_class=7, seed=1)
    assert np.all(np.bincount(ys) == 7)
    np.testing.assert_array_equal(xs[:, 0], idx)
    with pytest.raises(ValueError, match="fewer than per_class"):
        data.subset(x, y, per_class=51)


def test_augment_shapes_and_content():
    rng = np.random.default_rng(0)
    x = np.random.default_rng(1).random((16, 32, 32, 3)).astype(np.float32)
    out = data.augment(x, rng)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not np.array_equal(out, x)
    # Every augmented image is a shifted (and maybe flipped) window of the zero-padded original.
    padded = np.pad(x[0], ((4, 4), (4, 4), (0, 0)))
    found = any(
        np.array_equal(out[0], w) or np.array_equal(out[0], w[:, ::-1])
        for dy in range(9) for dx in range(9) for w in [padded[dy:dy + 32, dx:dx + 32]]
    )
    assert found
