"""Tests of ACC / ASR / RA (`kcc.metrics`)."""

import keras
import numpy as np
import pytest

from kcc import attacks
from kcc import metrics


def constant_model(label, num_classes=10):
    """A classifier that ignores its input and always predicts `label`."""
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    bias = np.zeros(num_classes, np.float32)
    bias[label] = 5.0
    logits = keras.layers.Dense(
        num_classes, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(bias)
    )(pooled)
    return keras.Model(inputs, logits)


def make_data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 32, 32, 3), dtype=np.float32)
    y = np.arange(n, dtype=np.int32) % 10  # 6 images of each class
    return x, y


def test_asr_excludes_target_class_images():
    y = np.array([0, 0, 1, 2, 3])
    predictions = np.array([0, 0, 0, 2, 0])
    asr, ra, n = metrics.backdoor_rates(predictions, y, attacks.BadNets(target=0))
    assert n == 3  # the two target-class images do not count
    assert asr == pytest.approx(2 / 3)
    assert ra == pytest.approx(1 / 3)


def test_all2all_counts_every_image():
    y = np.array([0, 1, 2, 9])
    predictions = np.array([1, 2, 0, 0])
    asr, ra, n = metrics.backdoor_rates(predictions, y, attacks.BadNets(mode="all2all"))
    assert n == 4
    assert asr == pytest.approx(3 / 4)  # 0->1, 1->2, 9->0 hit; 2->0 does not
    assert ra == 0


@pytest.mark.parametrize("mode", ["all2one", "all2all"])
def test_ra_plus_asr_at_most_one(mode):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 500)
    predictions = rng.integers(0, 10, 500)
    asr, ra, _ = metrics.backdoor_rates(predictions, y, attacks.BadNets(mode=mode))
    assert 0 < asr and 0 < ra and asr + ra <= 1


def test_no_image_outside_target_class():
    with pytest.raises(ValueError, match="No test image outside the target class"):
        metrics.backdoor_rates(np.zeros(3), np.zeros(3, int), attacks.BadNets(target=0))
    x, _ = make_data(4)
    with pytest.raises(ValueError, match="No test image outside the target class"):
        metrics.evaluate(constant_model(0), x, np.zeros(4, np.int32), attacks.BadNets(target=0))


def test_model_predicting_the_target_always_has_full_asr():
    x, y = make_data()
    result = metrics.evaluate(constant_model(0), x, y, attacks.BadNets(target=0))
    assert result["asr"] == 1.0
    assert result["ra"] == 0.0
    assert result["acc"] == pytest.approx(0.1)
    assert result["n_triggered"] == 54


def test_model_predicting_another_class_has_zero_asr():
    x, y = make_data()
    result = metrics.evaluate(constant_model(3), x, y, attacks.BadNets(target=0))
    assert result["asr"] == 0.0
    assert result["ra"] == pytest.approx(6 / 54)  # the class-3 images are "robust"
    assert result["acc"] == pytest.approx(0.1)


def test_all2all_constant_model():
    x, y = make_data()
    result = metrics.evaluate(constant_model(3), x, y, attacks.BadNets(mode="all2all"))
    assert result["n_triggered"] == 60
    assert result["asr"] == pytest.approx(6 / 60)  # only true class 2 maps to 3
    assert result["asr"] + result["ra"] <= 1


def test_evaluate_without_attack_reports_accuracy_only():
    x, y = make_data()
    assert metrics.evaluate(constant_model(7), x, y) == {"acc": pytest.approx(0.1)}
