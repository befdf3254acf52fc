import json
import math
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from kcc import adversarial
from kcc import distillation
from kcc import models
from kcc import rewrite
from kcc import synthesis


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(0)  # not whatever earlier tests left the global RNG at
    model = models.resnet18(width=4)
    # Give BatchNorm non-trivial statistics so synthesis has something to match.
    rng = np.random.default_rng(0)
    for layer in synthesis.batchnorm_layers(model):
        layer.moving_mean.assign(rng.normal(0, 0.3, layer.moving_mean.shape).astype("float32"))
        layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape).astype("float32"))
    return model


def test_synthesis_lowers_the_bn_statistics_loss(tiny):
    images, labels, info = synthesis.synthesize(tiny, num_images=32, steps=30, batch_size=32, verbose=False)
    assert images.shape == (32, 32, 32, 3) and labels.shape == (32,)
    assert images.min() >= 0 and images.max() <= 1
    assert info["bn_loss_last"][0] < 0.7 * info["bn_loss_first"][0]


def test_synthesis_is_seeded(tiny):
    a = synthesis.synthesize(tiny, num_images=4, steps=2, batch_size=4, seed=3, verbose=False)
    b = synthesis.synthesize(tiny, num_images=4, steps=2, batch_size=4, seed=3, verbose=False)
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    np.testing.assert_array_equal(a[1], b[1])


def test_synthesis_learning_rate_schedule_starts_again_for_every_batch(tiny):
    # One step at 0.1, then a rate of 0: every batch must move once, as one step at 0.1 does
    # (a schedule that ran on across batches would leave the second batch at its noise).
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([0], [0.1, 0.0])
    scheduled = synthesis.synthesize(tiny, num_images=8, steps=3, learning_rate=schedule,
                                     batch_size=4, seed=1, verbose=False)[0]
    once = synthesis.synthesize(tiny, num_images=8, steps=1, learning_rate=0.1, batch_size=4,
                                seed=1, verbose=False)[0]
    noise = synthesis.synthesize(tiny, num_images=8, steps=1, learning_rate=0.0, batch_size=4,
                                 seed=1, verbose=False)[0]
    np.testing.assert_allclose(scheduled, once, atol=1e-5)
    assert np.abs(scheduled[4:] - noise[4:]).max() > 1e-3


def test_synthesis_needs_batchnorm():
    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no BatchNormalization layer.*scaling-only mode for "
                                         "models without BatchNorm: --epochs=0 on the command "
                                         r"line, purify\(..., epochs=0\) in Python"):
        synthesis.synthesize(plain, num_images=2, steps=1, batch_size=2)


def test_pgd_respects_the_l2_radius_and_pixel_range(tiny):
    x = np.random.default_rng(0).random((8, 32, 32, 3)).astype("float32")
    y = np.arange(8) % 10
    adv = adversarial.l2_pgd(tiny, x, y, epsilon=0.5, steps=5)
    norms = np.sqrt(((adv - x) ** 2).reshape(8, -1).sum(1))
    assert np.all(norms <= 0.5 + 1e-4) and norms.max() > 0.4
    assert adv.min() >= 0 and adv.max() <= 1
    loss = lambda z: float(np.mean(keras.losses.sparse_categorical_crossentropy(  # noqa: E731
        y, tiny.predict(z, verbose=0), from_logits=True)))
    assert loss(adv) > loss(x)


def test_bn_only_distillation_leaves_every_other_weight_bit_identical(tiny):
    student, _ = rewrite.compress(tiny, cr=2)
    student.get_layer("stage1_block1_1_conv").trainable = False  # the user's own frozen layer
    flags_before = {l.name: l.trainable for l in student.layers}
    images = np.random.default_rng(1).random((32, 32, 32, 3)).astype("float32")
    labels = np.arange(32) % 10
    before = {w.path: keras.ops.convert_to_numpy(w).copy() for w in student.weights}
    teacher_before = [keras.ops.convert_to_numpy(w).copy() for w in tiny.weights]
    distillation.distill(tiny, student, images, labels, epochs=1, batch_size=16, pgd_steps=1, verbose=0)
    changed = set()
    for w in student.weights:
        if not np.array_equal(before[w.path], keras.ops.convert_to_numpy(w)):
            changed.add(w.path.split("/")[-1])
    assert changed and changed <= {"gamma", "beta", "moving_mean", "moving_variance"}
    assert {l.name: l.trainable for l in student.layers} == flags_before  # restored afterwards
    for b, w in zip(teacher_before, tiny.weights):
        np.testing.assert_array_equal(b, keras.ops.convert_to_numpy(w))


def test_distillation_statistics_follow_the_synthetic_batches(tiny):
    # PyTorch's running-average momentum (the paper's code), not Keras' 0.99: after 12 updates the
    # stem BN's moving mean must have covered most of the way to the images' statistics.
    student, _ = rewrite.compress(tiny, cr=2)
    images = np.random.default_rng(2).random((64, 32, 32, 3)).astype("float32")
    bn = synthesis.batchnorm_layers(student)[0]
    target = keras.Model(student.inputs, bn.input).predict(images, verbose=0).mean(axis=(0, 1, 2))
    gap = lambda: np.abs(keras.ops.convert_to_numpy(bn.moving_mean) - target).mean()  # noqa: E731
    before = gap()
    distillation.distill(tiny, student, images, np.arange(64) % 10, epochs=3, batch_size=32,
                         epsilon=0.05, pgd_steps=1, verbose=0)
    assert gap() < 0.5 * before
    assert bn.momentum == 0.99  # the student keeps Keras' momentum for later training


def test_adversarial_cap_bounds_the_loss():
    d = distillation.Distiller(models.resnet18(width=4), gamma=1.5, adversarial_cap=2.0)
    t = np.zeros((4, 10), "float32")
    s_adv = np.full((4, 10), 100.0, "float32")
    loss = d.compute_loss(y=(t, t), y_pred=(t, s_adv))
    assert float(loss) == pytest.approx(-3.0)
    uncapped = distillation.Distiller(models.resnet18(width=4), gamma=1.5)
    assert float(uncapped.compute_loss(y=(t, t), y_pred=(t, s_adv))) < -1000


def _purify_tiny(tiny, **kwargs):
    from kcc.cc import purify

    settings = dict(cr=2, num_images=32, synthesis_steps=2, synthesis_batch_size=16, epochs=1,
                    batch_size=16, pgd_steps=1, verbose=False)
    settings.update(kwargs)
    return purify(tiny, **settings)


@pytest.fixture(scope="module")
def purified_tiny(tiny):
    return _purify_tiny(tiny)


def test_purify_returns_a_smaller_loadable_model(tiny, purified_tiny, tmp_path):
    purified, report = purified_tiny
    assert models.trainable_params(purified) <= models.trainable_params(tiny) / 2
    path = str(tmp_path / "p.keras")
    purified.save(path)
    from kcc import intake

    loaded = intake.load_suspect(path)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), purified.predict(x, verbose=0), atol=1e-5)
    json.dumps(report)
    assert set(report["seconds"]) == {"rewrite", "synthesis", "distillation", "total"}
    assert report["rewrite"]["relative"] is False  # the paper's Eq. 8, raw singular values


def test_a_loaded_purified_model_fine_tunes_every_layer(tiny, purified_tiny, tmp_path):
    purified, _ = purified_tiny
    assert [l.trainable for l in purified.layers] == [l.trainable for l in tiny.layers]
    path = str(tmp_path / "p.keras")
    purified.save(path)
    model = keras.saving.load_model(path)  # conftest imported kcc, as a user would
    assert len(model.trainable_weights) == len(purified.trainable_weights)
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    model.fit(rng.random((8, 32, 32, 3)).astype("float32"), np.arange(8) % 10, epochs=1,
              batch_size=8, verbose=0)
    changed = {w.path.split("/")[-1] for w, value in zip(model.trainable_weights, before)
               if not np.array_equal(value, keras.ops.convert_to_numpy(w))}
    assert {"core", "input_factor", "output_factor", "kernel"} <= changed


def test_purify_scaling_only_and_bad_arguments(tiny):
    purified, report = _purify_tiny(tiny, epochs=0, cr=None, tau_scale=0.5)
    assert "synthesis" not in report and report["rewrite"]["operation"] == "constrain"
    with pytest.raises(ValueError, match="cr must be greater than 1"):
        _purify_tiny(tiny, cr=0.5)
    with pytest.raises(ValueError, match="tau_scale must be strictly positive"):
        _purify_tiny(tiny, tau_scale=-1)
    with pytest.raises(ValueError, match="epochs must be non-negative"):
        _purify_tiny(tiny, epochs=-1)
    with pytest.raises(ValueError, match="cannot be reached"):
        _purify_tiny(tiny, cr=500)
    _purify_tiny(tiny, epochs=0, tau_scale=math.inf)  # fine-tuning-only ablation: no scaling


def test_the_intake_corpus_is_refused_by_purify(tmp_path):
    """Every exploit file of the intake corpus through purify's command-line entry point."""
    from tests import intake_corpus

    cases = intake_corpus.build_corpus(str(tmp_path))
    # One subprocess runs kcc.purify's main once per case (absl flags re-parsed each time), so the
    # real CLI code path is exercised without paying a Python + Keras start-up per case.
    script = f"""
import contextlib, io, json
from absl import flags
from kcc import cli
from kcc import purify
results = {{}}
for name, path in {[(c.name, c.path) for c in cases]!r}:
    flags.FLAGS.unparse_flags()
    argv = ["kcc.purify", "--model=" + path, "--recipe=paper", "--epochs=0",
            "--output=" + path + ".out.keras"]
    err = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            cli.call_main(purify.main, "kcc.purify", cli.parse_flags("kcc.purify", argv))
        except SystemExit as e:
            code = e.code
    results[name] = [code, err.getvalue()[-2000:]]
print(json.dumps(results))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for case in cases:
        code, stderr = results[case.name]
        assert code == 2, (case.name, stderr)
        assert "Traceback" not in stderr, (case.name, stderr)
        assert re.search(case.match, stderr, re.S), (case.name, case.match, stderr)
    assert not os.path.exists(intake_corpus.canary_path(str(tmp_path)))
