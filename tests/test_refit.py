"""`kcc.refit`: the layer-wise reduced-rank refit of truncated Tucker-2 convolutions."""

import math

import keras
import numpy as np
import pytest

from kcc import models
from kcc import refit
from kcc import rewrite
from tests import backends
from tests.test_rewrite import _rank_deficient

IMAGES = np.random.default_rng(0).random((48, 32, 32, 3)).astype("float32")


def _factors(model):
    return {l.name: [np.array(w) for w in l.get_weights()] for l in refit.refittable(model)}


def test_refit_recovers_the_exact_layers_when_the_ranks_suffice():
    teacher = _rank_deficient(models.resnet18(width=8))
    student, _ = rewrite.compress(teacher, cr=1.2, tau_scale=math.inf)
    rng = np.random.default_rng(1)
    for layer in refit.refittable(student):  # spoil cores and output factors, not input factors
        w = layer.get_weights()
        w[1] = w[1] + 0.3 * rng.standard_normal(w[1].shape).astype("float32")
        w[2] = w[2] + 0.3 * rng.standard_normal(w[2].shape).astype("float32")
        layer.set_weights(w)
    spoiled = student.predict(IMAGES, verbose=0)
    target = teacher.predict(IMAGES, verbose=0)
    assert np.abs(spoiled - target).max() > 0.1
    reports = refit.refit(teacher, student, IMAGES, batch_size=16, verbose=False)
    assert all(r["after"] <= 1e-5 * r["variance"] for r in reports), reports
    np.testing.assert_allclose(student.predict(IMAGES, verbose=0), target, atol=2e-3, rtol=1e-3)


def test_refit_lowers_every_layers_error_and_keeps_ranks_and_input_factors():
    teacher = models.resnet18(width=8)
    student, _ = rewrite.compress(teacher, cr=2.0, tau_scale=math.inf)
    before = _factors(student)
    gap = np.mean((student.predict(IMAGES, verbose=0) - teacher.predict(IMAGES, verbose=0)) ** 2)
    reports = refit.refit(teacher, student, IMAGES, verbose=False)
    assert [r["name"] for r in reports] == list(before)
    for r in reports:
        assert r["after"] <= r["before"] * (1 + 1e-6), r
    assert sum(r["after"] < 0.9 * r["before"] for r in reports) >= len(reports) // 2
    after = _factors(student)
    for name, weights in before.items():
        assert [w.shape for w in after[name]] == [w.shape for w in weights]
        np.testing.assert_array_equal(after[name][0], weights[0])  # the input factor
    refit_gap = np.mean((student.predict(IMAGES, verbose=0)
                         - teacher.predict(IMAGES, verbose=0)) ** 2)
    assert refit_gap < gap


def test_refit_refuses_a_model_without_factored_layers():
    model = models.resnet18(width=8)
    with pytest.raises(ValueError, match="no TuckerConv2D"):
        refit.refit(model, model, IMAGES[:2], verbose=False)


def test_refit_runs_on_jax():  # the tests above run on the default backend (TensorFlow)
    result = backends.run("jax", """
        import json, math
        import numpy as np
        from kcc import models, refit, rewrite
        import keras
        keras.utils.set_random_seed(0)
        teacher = models.resnet18(width=8)
        student, _ = rewrite.compress(teacher, cr=2.0, tau_scale=math.inf)
        x = np.random.default_rng(0).random((16, 32, 32, 3)).astype("float32")
        reports = refit.refit(teacher, student, x, verbose=False)
        print(json.dumps({"before": [r["before"] for r in reports],
                          "after": [r["after"] for r in reports]}))
    """)
    assert all(a <= b * (1 + 1e-6) for a, b in zip(result["after"], result["before"]))
    assert sum(result["after"]) < 0.95 * sum(result["before"])
