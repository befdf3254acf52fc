"""Shared fixtures: a tiny BadNets-infected CIFAR-10 model, trained once per test session."""

import os

import pytest

from kcc import attacks
from kcc import data
from kcc import metrics
from kcc import models
from kcc import training


def cifar10_or_skip():
    """The CIFAR-10 archive folder, or skip the test (set `KCC_DATA_DIR`)."""
    data_dir = os.environ.get("KCC_DATA_DIR")
    if not data_dir or not os.path.isfile(os.path.join(data_dir, "cifar10.zip")):
        pytest.skip("CIFAR-10 archive not available (set KCC_DATA_DIR).")
    return data_dir


class Backdoored:
    """A ResNet-18 width 8 trained on 5,000 BadNets-poisoned CIFAR-10 images.

    Attributes: `path` (the saved `.keras` file; load a fresh copy per test), `attack`,
    `x_test, y_test` (1,000 balanced test images), `metrics` (its ACC/ASR/RA on them).
    """

    def __init__(self, folder):
        data_dir = cifar10_or_skip()
        x, y = data.load("cifar10", "train", data_dir)
        x, y, _ = data.subset(x, y, per_class=500, seed=1)
        x_test, y_test = data.load("cifar10", "test", data_dir)
        self.x_test, self.y_test, _ = data.subset(x_test, y_test, per_class=100, seed=0)
        self.attack = attacks.BadNets()
        xs, ys, _ = self.attack.poison(x, y, seed=0)
        model = models.resnet18(width=8, num_classes=10)
        training.train(model, xs, ys, 8, batch_size=64, learning_rate=0.05, augment=False,
                       schedule="onecycle", seed=0, verbose=0)
        self.path = os.path.join(folder, "backdoored.keras")
        model.save(self.path)
        self.metrics = metrics.evaluate(model, self.x_test, self.y_test, self.attack)

    def load(self):
        import keras

        return keras.saving.load_model(self.path)


@pytest.fixture(scope="session")
def backdoored(tmp_path_factory):
    return Backdoored(str(tmp_path_factory.mktemp("backdoored")))
