"""Tests of the attacks: trigger functions, labelling, poisoning fractions, training smoke runs."""

import contextlib
import io
import json
import os
import textwrap

import keras
import numpy as np
import pytest
from scipy import ndimage

from kcc import attacks
from kcc import data
from kcc import metrics
from kcc import models
from kcc import training
from kcc.attacks import bpp
from kcc.attacks import wanet
from tests import backends

H = W = 32


def images(n=16, seed=0):
    return np.random.default_rng(seed).random((n, H, W, 3), dtype=np.float32)


def gray(n=4):
    return np.full((n, H, W, 3), 0.5, np.float32)


def labels(n=1000, num_classes=10, seed=0):
    return np.random.default_rng(seed).integers(0, num_classes, n).astype(np.int32)


def trojan(**kwargs):
    pattern = np.random.default_rng(1).random((5, 5, 3)).astype(np.float32)
    return attacks.Trojan(pattern=pattern, **kwargs)


# Attacks whose trigger needs no training (Trojan with a given patch).
STATIC = {
    "badnets": attacks.BadNets,
    "blended": attacks.Blended,
    "wanet": attacks.WaNet,
    "sig": attacks.SIG,
    "lf": attacks.LowFrequency,
    "bpp": attacks.BPP,
    "cla": attacks.LabelConsistent,
    "trojan": trojan,
}
DIRTY_LABEL = ["badnets", "blended", "wanet", "lf", "bpp", "trojan"]


def test_registry_names():
    assert set(attacks.ATTACKS) == {
        "badnets",
        "blended",
        "wanet",
        "inputaware",
        "sig",
        "lf",
        "bpp",
        "cla",
        "trojan",
    }
    for name, cls in attacks.ATTACKS.items():
        assert cls.name == name
    with pytest.raises(ValueError, match="Unknown attack.*Received name='nope'"):
        attacks.get("nope")


@pytest.mark.parametrize("name", sorted(STATIC))
def test_trigger_shape_range_copy_and_determinism(name):
    x = images()
    x_before = x.copy()
    out = STATIC[name](seed=3).apply(x)
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(x, x_before)  # input untouched
    assert not np.array_equal(out, x)  # the trigger changes something
    np.testing.assert_array_equal(out, STATIC[name](seed=3).apply(x))


@pytest.mark.parametrize("name", sorted(STATIC))
def test_config_is_json(name):
    config = STATIC[name]().get_config()
    assert config["name"] == name
    json.dumps(config)


@pytest.mark.parametrize("name", sorted(STATIC))
def test_from_config_recreates_the_trigger(name):
    original = STATIC[name](seed=4, target=2)
    rebuilt = attacks.from_config(json.loads(json.dumps(original.get_config())))
    assert type(rebuilt) is type(original)
    assert rebuilt.get_config() == original.get_config()
    x = images(4)
    np.testing.assert_array_equal(rebuilt.apply(x), original.apply(x))


def test_from_config_resolves_generator_weights_against_folder(tmp_path):
    config = attacks.InputAware(generator_weights="m.generators.weights.h5").get_config()
    rebuilt = attacks.from_config(config, folder=str(tmp_path))
    assert rebuilt.generator_weights == str(tmp_path / "m.generators.weights.h5")
    with pytest.raises(ValueError, match="Received name='nope'"):
        attacks.from_config({"name": "nope"})


def changed(a, b):
    return np.any(a != b, axis=(0, 3))  # (H, W) map of touched pixels


def test_badnets_changes_only_bottom_right_3x3():
    x = gray()
    mask = changed(attacks.BadNets().apply(x), x)
    expected = np.zeros((H, W), bool)
    expected[-3:, -3:] = True
    np.testing.assert_array_equal(mask, expected)


def test_cla_stamps_the_four_corners_only():
    x = gray()
    mask = changed(attacks.LabelConsistent().apply(x), x)
    expected = np.zeros((H, W), bool)
    for rows in (slice(0, 3), slice(-3, None)):
        for cols in (slice(0, 3), slice(-3, None)):
            expected[rows, cols] = True
    # The checkerboard's 0/1 cells differ from 0.5 everywhere.
    np.testing.assert_array_equal(mask, expected)
    mask = changed(attacks.LabelConsistent(corners="bottom_right").apply(x), x)
    assert mask.sum() == 9 and mask[-3:, -3:].all()


def test_trojan_changes_only_its_patch():
    x = gray()
    attack = trojan()
    out = attack.apply(x)
    mask = changed(out, x)
    assert mask.sum() == 25 and mask[-5:, -5:].all()
    np.testing.assert_array_equal(out[:, -5:, -5:], np.broadcast_to(attack.pattern, (4, 5, 5, 3)))
    with pytest.raises(RuntimeError, match="not optimised"):
        attacks.Trojan().apply(x)


def test_sig_adds_the_sinusoid():
    x = gray()
    out = attacks.SIG().apply(x)
    column = 40 / 255 * np.sin(2 * np.pi * np.arange(W) * 6 / W)
    np.testing.assert_allclose(
        out - x, np.broadcast_to(column[None, None, :, None], x.shape), atol=1e-6
    )


def test_lf_adds_the_packaged_trigger():
    x = gray()
    trigger = np.load(attacks.assets.path("lowfreq_cifar10.npy")).astype(np.float32) / 255
    np.testing.assert_allclose(
        attacks.LowFrequency().apply(x) - x, np.broadcast_to(trigger, x.shape), atol=1e-6
    )


def test_wanet_warp_matches_scipy_reference():
    x = images(2)
    attack = attacks.WaNet(seed=5)
    grid = attack.grid(H, W)
    rows, cols = (grid[..., 1] + 1) / 2 * (H - 1), (grid[..., 0] + 1) / 2 * (W - 1)
    expected = np.stack(
        [ndimage.map_coordinates(x[0, ..., c], [rows, cols], order=1) for c in range(3)], axis=-1
    )
    np.testing.assert_allclose(attack.apply(x)[0], expected, atol=1e-5)


def test_wanet_grid_properties():
    np.testing.assert_array_equal(wanet.warp(images(2), wanet.identity_grid(H, W)), images(2))
    attack = attacks.WaNet(seed=0)
    assert np.mean(np.abs(attack.noise)) == pytest.approx(1.0)
    displacement = attack.grid(H, W) - wanet.identity_grid(H, W)
    assert 0 < np.abs(displacement).max() <= attack.s * np.abs(attack.noise).max() * 1.3 / H
    assert not np.array_equal(attacks.WaNet(seed=1).grid(H, W), attack.grid(H, W))
    # Bicubic upsampling interpolates the control points (corners aligned).
    m = wanet.bicubic_matrix(4, 31)
    np.testing.assert_allclose(m.sum(axis=1), 1)
    np.testing.assert_allclose(m[::10], np.eye(4), atol=1e-12)


def test_bpp_squeeze():
    x = images(4)
    for dither in (False, True):
        out = bpp.squeeze(x, 8, dither)
        np.testing.assert_allclose(out * 7, np.round(out * 7), atol=1e-5)  # on the 8-level lattice
    np.testing.assert_allclose(bpp.squeeze(x, 8, dither=False), np.round(x * 7) / 7, atol=1e-6)
    # Dithering keeps local averages: a smooth ramp stays a ramp after 4x4 averaging.
    ramp = np.broadcast_to(np.linspace(0.2, 0.4, W)[None, None, :, None], (1, H, W, 3)).astype(
        np.float32
    )

    def blocks(a):
        return a.reshape(1, 8, 4, 8, 4, 3).mean(axis=(2, 4))

    dithered = np.abs(blocks(bpp.squeeze(ramp, 8, True)) - blocks(ramp)).mean()
    plain = np.abs(blocks(bpp.squeeze(ramp, 8, False)) - blocks(ramp)).mean()
    assert dithered < plain / 2


@pytest.mark.parametrize("name", DIRTY_LABEL)
def test_all2all_targets(name):
    y = labels(100)
    attack = STATIC[name](mode="all2all")
    np.testing.assert_array_equal(attack.targets(y), (y + 1) % 10)
    np.testing.assert_array_equal(STATIC[name](target=4).targets(y), np.full(100, 4))


@pytest.mark.parametrize("name", ["badnets", "lf", "trojan"])
@pytest.mark.parametrize("mode", ["all2one", "all2all"])
def test_dirty_label_poisoning_fraction(name, mode):
    x, y = images(200), labels(200)
    attack = STATIC[name](mode=mode, poison_ratio=0.1, target=2)
    xp, yp, idx = attack.poison(x, y, seed=1)
    assert len(idx) == 20 and len(np.unique(idx)) == 20
    np.testing.assert_array_equal(yp[idx], attack.targets(y[idx]))
    rest = np.setdiff1d(np.arange(200), idx)
    np.testing.assert_array_equal(yp[rest], y[rest])
    np.testing.assert_array_equal(xp[rest], x[rest])
    np.testing.assert_array_equal(xp[idx], attack.apply(x[idx]))
    np.testing.assert_array_equal(attack.poison(x, y, seed=1)[2], idx)  # deterministic


def test_sig_clean_label_poisoning():
    x, y = images(200), labels(200)
    attack = attacks.SIG(target=3, poison_ratio=0.05)
    xp, yp, idx = attack.poison(x, y, seed=0)
    assert len(idx) == 10 and np.all(y[idx] == 3)
    np.testing.assert_array_equal(yp, y)  # labels unchanged
    assert np.all(np.any(xp[idx] != x[idx], axis=(1, 2, 3)))
    rest = np.setdiff1d(np.arange(200), idx)
    np.testing.assert_array_equal(xp[rest], x[rest])
    with pytest.raises(ValueError, match="target-class images only"):
        attacks.SIG(target=3, poison_ratio=0.5).poison(x, y)


@pytest.mark.parametrize("cls", [attacks.SIG, attacks.LabelConsistent])
def test_clean_label_attacks_refuse_all2all(cls):
    with pytest.raises(ValueError, match="clean-label.*Received mode='all2all'"):
        cls(mode="all2all")


def test_cla_poison_perturbs_target_images_within_epsilon():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((H, W, 3))
    x = keras.layers.Conv2D(4, 3, strides=4)(inputs)
    clean = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(x)))
    x, y = images(40), labels(40)
    attack = attacks.LabelConsistent(
        target=1, poison_ratio=0.05, steps=3, corners="bottom_right", clean_model=clean
    )
    xp, yp, idx = attack.poison(x, y, seed=0)
    assert len(idx) == 2 and np.all(y[idx] == 1)
    np.testing.assert_array_equal(yp, y)
    delta = (xp[idx] - x[idx])[:, :-3]  # outside the bottom-right patch rows
    assert 0 < np.abs(delta).max() <= 16 / 255 + 1e-6
    np.testing.assert_array_equal(
        xp[idx][:, -3:, -3:], np.broadcast_to(attack.pattern, (2, 3, 3, 3))
    )
    with pytest.raises(RuntimeError, match="needs a clean model"):
        attacks.LabelConsistent().poison(x, y)


@pytest.mark.parametrize("name", ["wanet", "bpp"])
def test_per_batch_transform_fraction(name):
    attack = attacks.get(name, mode="all2all", poison_ratio=0.1)
    x, y = images(100), labels(100)
    xt, yt = attack.transform(x, y, np.random.default_rng(0))
    n_backdoor, n_other = attack.batch_counts(100)
    assert (n_backdoor, n_other) == ((10, 20) if name == "wanet" else (10, 10))
    relabelled = yt != y  # all-to-all changes every poisoned label
    assert relabelled.sum() == n_backdoor
    np.testing.assert_array_equal(yt[relabelled], (y[relabelled] + 1) % 10)
    np.testing.assert_array_equal(xt[relabelled], attack.apply(x[relabelled]))
    touched = np.any(xt != x, axis=(1, 2, 3))
    assert touched.sum() == n_backdoor + n_other
    xt2, yt2 = attack.transform(x, y, np.random.default_rng(0))
    np.testing.assert_array_equal(xt, xt2)
    np.testing.assert_array_equal(yt, yt2)


def test_wanet_cross_samples_are_not_the_trigger():
    attack = attacks.WaNet()
    x, y = images(100), labels(100)
    xt, yt = attack.transform(x, y, np.random.default_rng(0))
    cross = np.any(xt != x, axis=(1, 2, 3)) & (yt == y)
    assert cross.sum() >= 18  # 20 noise samples (some backdoor labels may equal y's target)
    assert not np.allclose(xt[cross], attack.apply(x[cross]))


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: attacks.WaNet(k=1), "k must be an integer of at least 2. Received k=1"),
        (lambda: attacks.WaNet(s=0), "s must be strictly positive. Received s=0"),
        (lambda: attacks.BPP(squeeze_num=1), "Received squeeze_num=1"),
        (lambda: attacks.BPP(negative_ratio=1.5), "Received negative_ratio=1.5"),
        (lambda: attacks.SIG(delta=0), "Received delta=0"),
        (lambda: attacks.LabelConsistent(corners="top"), "Received corners='top'"),
        (lambda: attacks.Trojan(size=0), "Received size=0"),
        (lambda: attacks.InputAware(mask_density=2), "Received mask_density=2"),
        (lambda: attacks.InputAware(generator_weights="g.h5"), "Received generator_weights='g.h5'"),
        (lambda: attacks.BadNets(poison_ratio=0), "Received poison_ratio=0"),
        (lambda: attacks.BadNets(target=10), "Received target=10"),
    ],
)
def test_parameter_validation(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_inputaware_needs_generators():
    with pytest.raises(RuntimeError, match="no trained generators"):
        attacks.InputAware().apply(images(2))


# Training smoke tests on both backends ----------------------------------------------------------

# Runs in this process for the current backend, in a subprocess for the other one.
SMOKE = textwrap.dedent("""
    import json, os, tempfile
    import numpy as np
    import keras
    from kcc import attacks, metrics, models, training

    def classifier():
        if ARCHITECTURE == "resnet18":
            return models.resnet18(width=4)
        inputs = keras.Input((32, 32, 3))
        x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inputs)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))

    rng = np.random.default_rng(0)
    x = rng.random((IMAGES, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, IMAGES).astype(np.int32)
    out = {"backend": keras.backend.backend()}
    history = training.train(classifier(), x, y, 1, batch_size=64,
                             transform=attacks.WaNet().transform, verbose=0)
    out["wanet_loss"] = history.history["loss"][0]
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "g.weights.h5")
    small = {"generator_channels": 2, "generator_steps": STEPS}
    ia = attacks.InputAware(mask_epochs=1, generator_weights=path, **small)
    model = classifier()
    history = ia.train(model, x, y, 1, batch_size=64, verbose=0,  # into a folder not made yet
                       checkpoint=os.path.join(folder, "work", "ck"))
    out["loss"] = history.history["loss"][0]
    triggered = ia.apply(x[:8])
    config = {**ia.get_config(), "generator_weights": "g.weights.h5"}
    reloaded = attacks.from_config(config, folder=folder).apply(x[:8])
    out["files"] = sorted(os.listdir(folder) + os.listdir(os.path.join(folder, "work")))
    out["reload_error"] = float(np.abs(triggered - reloaded).max())
    out["changed"] = float(np.abs(triggered - x[:8]).mean())
    out["asr"] = metrics.evaluate(model, x[:32], y[:32], ia)["asr"]
    print(json.dumps(out))
""")


def run_smoke(backend, architecture, images, steps):
    """Runs `SMOKE` in this process for the current backend, else in a subprocess."""
    script = f"ARCHITECTURE = {architecture!r}\nIMAGES = {images}\nSTEPS = {steps}\n" + SMOKE
    if backend != keras.backend.backend():
        return backends.run(backend, script)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(script, {})
    return json.loads(buffer.getvalue().strip().splitlines()[-1])


def check_smoke(result, backend):
    assert result["backend"] == backend
    assert np.isfinite(result["wanet_loss"]) and np.isfinite(result["loss"])
    assert {"g.weights.h5", "ck.mask.weights.h5", "ck.weights.h5", "ck.state.npz"} <= set(
        result["files"]
    )
    assert result["reload_error"] < 1e-5  # saved generators give the same trigger
    assert result["changed"] > 0
    assert 0 <= result["asr"] <= 1


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_wanet_and_inputaware_train_on_backend(backend):
    """One epoch of WaNet and of InputAware (1 mask epoch, small generators) with a tiny CNN."""
    check_smoke(run_smoke(backend, "cnn", 128, steps=1), backend)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_wanet_and_inputaware_train_resnet18_on_backend(backend):
    """The same with a width-4 ResNet-18 on 256 images (about a minute per backend on CPU)."""
    check_smoke(run_smoke(backend, "resnet18", 256, steps=3), backend)


def tiny_cnn():
    inputs = keras.Input((H, W, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))


def test_cla_and_trojan_train_and_resume(tmp_path):
    """The multi-stage `train` of CLA and Trojan, with checkpoints, on the current backend."""
    x, y = images(128), np.arange(128, dtype=np.int32) % 10
    kwargs = dict(batch_size=64, learning_rate=0.01, seed=0, verbose=0)
    cla = attacks.LabelConsistent(poison_ratio=0.05, steps=2, clean_epochs=1)
    cla.train(tiny_cnn(), x, y, 1, checkpoint=str(tmp_path / "cla"), **kwargs)
    assert {"cla.clean.weights.h5", "cla.poison.npz", "cla.weights.h5"} <= set(os.listdir(tmp_path))
    with np.load(tmp_path / "cla.poison.npz") as f:
        assert len(f["indices"]) == 6 and np.all(y[f["indices"]] == 0)
    trojan = attacks.Trojan(trigger_steps=3, trigger_images=32)
    model = tiny_cnn()
    trojan.train(model, x, y, 2, checkpoint=str(tmp_path / "trojan"), **kwargs)
    assert trojan.pattern.shape == (5, 5, 3) and len(trojan.neurons) == 1
    assert {"trojan.pretrain.weights.h5", "trojan.trigger.npz"} <= set(os.listdir(tmp_path))
    weights = [w.copy() for w in model.get_weights()]
    resumed = attacks.Trojan(trigger_steps=3, trigger_images=32)
    resumed.train(model, x, y, 2, checkpoint=str(tmp_path / "trojan"), **kwargs)  # all done
    np.testing.assert_array_equal(resumed.pattern, trojan.pattern)
    for before, after in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


# End to end -------------------------------------------------------------------------------------


def small_cnn():
    inputs = keras.Input((H, W, 3))
    x = inputs
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))


@pytest.mark.slow
def test_badnets_end_to_end_on_cifar10():
    """2,000 CIFAR-10 images, a small CNN, 6 short epochs (about 50 s on 2 busy cores)."""
    data_dir = os.environ.get("KCC_DATA_DIR")
    if not data_dir or not os.path.isfile(os.path.join(data_dir, "cifar10.zip")):
        pytest.skip("CIFAR-10 archive not available (set KCC_DATA_DIR).")
    x, y = data.load("cifar10", "train", data_dir)
    x, y, _ = data.subset(x, y, per_class=200, seed=0)
    x_test, y_test = data.load("cifar10", "test", data_dir)
    x_test, y_test, _ = data.subset(x_test, y_test, per_class=100, seed=0)  # the split is sorted
    attack = attacks.BadNets()
    results = {}
    for poisoned in (False, True):
        xs, ys = attack.poison(x, y, seed=0)[:2] if poisoned else (x, y)
        model = small_cnn()
        training.train(
            model,
            xs,
            ys,
            6,
            batch_size=64,
            learning_rate=0.02,
            augment=False,
            schedule="constant",
            seed=0,
            verbose=0,
        )
        results[poisoned] = metrics.evaluate(model, x_test, y_test, attack)
        # How often clean non-target images go to the target: a collapsed model is no backdoor.
        clean_to_target = training.predict_labels(model, x_test[y_test != 0]) == 0
        results[poisoned]["clean_to_target"] = float(np.mean(clean_to_target))
    assert results[True]["asr"] > 0.6, results
    assert results[True]["clean_to_target"] < 0.3, results
    assert results[True]["acc"] > 0.2, results
    assert results[False]["asr"] < 0.3, results


def test_adaptive_attack_constrains_the_model_after_every_epoch():
    from kcc import rewrite

    model = models.resnet18(width=4)
    x = np.random.default_rng(0).uniform(0, 1, (32, 32, 32, 3)).astype("float32")
    expected = rewrite.constrain(model, 1.0)[0].predict_on_batch(x)
    callback = attacks.ConstrainEachEpoch(tau_scale=1.0)
    callback.set_model(model)
    logs = {}
    callback.on_epoch_end(0, logs)
    assert logs["constrained_components"] == callback.scaled[0] > 0
    np.testing.assert_allclose(model.predict_on_batch(x), expected, rtol=1e-4, atol=1e-4)
    # Through fit: one count per epoch, and the count is reset by a new fit.
    y = np.arange(32) % 10
    training.train(model, x, y, 2, batch_size=16, callbacks=[callback], verbose=0)
    assert len(callback.scaled) == 2


def test_adaptive_attack_refuses_multi_stage_attacks():
    with pytest.raises(ValueError, match="plain supervised training"):
        attacks.infect(attacks.InputAware(), train_subset=100, epochs=1, adaptive_tau_scale=2.0)
