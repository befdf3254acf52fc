"""The data-free scan: a planted trigger is found with its target, its clean twin is not flagged.

The models are trained inside the test on `tests.planted`'s 8-class task, so the test needs no
dataset and takes seconds per model.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from kcc import scan as scan_lib
from kcc.scan import anomaly
from kcc.scan import feature_posteriors
from kcc.scan import inversion
from kcc.scan import max_margin
from kcc.scan import quantisation
from kcc.scan import untargeted
from tests import backends
from tests.planted import (CLASSES, PATCH, PATCH_COLS, PATCH_ROWS, TARGET, stamp,
                           swapping_model, task, train)

BUDGET = dict(margin_images=10, margin_steps=200, feature_steps=100, num_images=96,
              synthesis_steps=80, inversion_steps=120, inversion_batch_size=16)


@pytest.fixture(scope="module")
def models():
    return {"backdoored": train(True), "clean": train(False)}


@pytest.fixture(scope="module")
def reports(models):
    return {name: scan_lib.scan(model, verbose=False, **BUDGET) for name, model in models.items()}


def test_the_planted_backdoor_works(models):
    x, y = task(500, seed=7)
    keep = y != TARGET
    for name, model in models.items():
        acc = np.mean(np.argmax(model.predict(x, verbose=0), -1) == y)
        asr = np.mean(np.argmax(model.predict(stamp(x[keep]), verbose=0), -1) == TARGET)
        assert acc > 0.95, name
        assert (asr > 0.95) if name == "backdoored" else (asr < 0.3), (name, asr)


def test_scan_flags_the_backdoor_and_names_its_target(reports):
    report = reports["backdoored"]
    assert report.backdoored and report.target_classes == [TARGET], report.per_class
    assert report.p_value < scan_lib.ALPHA
    assert report.per_class[TARGET]["p"] == report.p_value


def test_scan_does_not_flag_the_clean_twin(reports):
    report = reports["clean"]
    assert not report.backdoored and report.target_classes == [], report.per_class
    assert report.p_value >= scan_lib.ALPHA


def test_neither_twin_is_reported_all_to_all(reports):
    for report in reports.values():
        assert not report.all_to_all, report.untargeted
        assert [row["kind"] for row in report.untargeted] == list(inversion.KINDS)
        for row in report.untargeted:
            assert row["size"] > 0 and 0.0 <= row["flip_rate"] <= 1.0
        assert "all-to-all" not in report.verdict()


def test_inverted_trigger_overlaps_the_planted_patch(reports):
    local = [t for t in reports["backdoored"].triggers["local"] if t.target == TARGET][0]
    mask = local.mask[..., 0]
    true = np.zeros_like(mask, bool)
    true[PATCH_ROWS, PATCH_COLS] = True
    top = np.argsort(mask.ravel())[::-1][:PATCH * PATCH]
    overlap = true.ravel()[top].mean()
    assert overlap >= 0.5, (overlap, np.round(mask, 2))
    assert local.flip_rate > 0.8


def test_per_class_rows_and_trigger_files(reports, tmp_path):
    report = reports["backdoored"]
    assert len(report.per_class) == CLASSES
    for row in report.per_class:
        for name in report.settings["signals"]:
            assert np.isfinite(row[name]) and 0.0 <= row[f"{name}_p"] <= 1.0
        assert row["local_trigger_size"] > 0 and 0.0 <= row["local_trigger_flip_rate"] <= 1.0
        assert row["blend_trigger_size"] in max_margin.BLEND_WEIGHTS
        assert 0.0 <= row["blend_trigger_p"] <= 1.0
        assert any(row["quantise_trigger_size"] == pytest.approx(1 / (n - 1))
                   for n in quantisation.LEVELS)
        assert 0.0 <= row["quantise_trigger_flip_rate"] <= 1.0
    paths = scan_lib.save_triggers(report, str(tmp_path))
    assert len(paths) == 1 + len(report.target_classes) + len(inversion.KINDS) * CLASSES
    assert all(os.path.isfile(p) for p in paths)
    assert os.path.join(str(tmp_path), f"margin_class{TARGET}.png") in paths
    stored = np.load(paths[0])
    local = [t for t in report.triggers["local"] if t.target == TARGET][0]
    np.testing.assert_array_equal(stored[f"local_{TARGET}_mask"], local.mask)
    np.testing.assert_array_equal(stored[f"margin_{TARGET}_image"], report.margin_images[TARGET])
    json.dumps(report.to_dict(paths))  # serialisable


def test_anomaly_test_flags_one_outlier_and_not_a_spread():
    rng = np.random.default_rng(0)
    null = rng.gamma(8.0, 2.0, 10)
    p, flagged = anomaly.p_values(null)
    assert flagged == [] and p.min() > 0.05
    spiked = null.copy()
    spiked[4] = 10 * null.max()
    p, flagged = anomaly.p_values(spiked)
    assert flagged == [4] and p[4] < 1e-3
    two = spiked.copy()
    two[7] = 9 * null.max()
    assert anomaly.p_values(two)[1] == [4, 7]


def test_a_trigger_that_flips_few_held_aside_images_does_not_count():
    # Class 1's warp trigger is anomalously small but works only on its fitting images; class
    # 2's local trigger is anomalous and flips most held-aside images; class 0 has the margin.
    p = {"max_margin": np.array([1e-4, 1.0, 1.0]),
         "local_trigger": np.array([1.0, 1.0, 1e-3]),
         "warp_trigger": np.array([1.0, 1e-3, 1.0])}
    flips = {"local_trigger": np.array([0.9, 0.9, scan_lib.MIN_FLIP_RATE]),
             "warp_trigger": np.array([0.1, scan_lib.MIN_FLIP_RATE - 0.01, np.nan])}
    combined = scan_lib.combined_p_values(p, flips)
    np.testing.assert_allclose(combined, [3e-4, 1.0, 3e-3])
    # Without flip rates every signal counts: plain Bonferroni over the three.
    np.testing.assert_allclose(scan_lib.combined_p_values(p, {}), [3e-4, 3e-3, 3e-3])


def test_max_margin_keeps_the_image_that_reached_each_margin(models):
    model = models["backdoored"]
    margins, images = max_margin.max_margin(model, images_per_class=3, steps=20, verbose=False)
    assert images.shape == (CLASSES, *model.inputs[0].shape[1:]) and margins.shape == (CLASSES,)
    assert images.min() >= 0.0 and images.max() <= 1.0
    logits = model.predict(images, verbose=0)
    own = logits[np.arange(CLASSES), np.arange(CLASSES)]
    others = np.where(np.eye(CLASSES, dtype=bool), -np.inf, logits).max(-1)
    np.testing.assert_allclose(own - others, margins, rtol=1e-3, atol=1e-3)


def test_blend_trigger_takes_the_smallest_weight_that_flips():
    inputs = keras.Input((4, 4, 1))
    brightness = keras.layers.GlobalAveragePooling2D()(inputs)  # class 1 once the mean > 0.12
    logits = keras.layers.Dense(2, kernel_initializer=keras.initializers.Constant([[-1.0, 1.0]]),
                                bias_initializer=keras.initializers.Constant([0.12, -0.12]))(
        brightness)
    model = keras.Model(inputs, logits)
    dark = np.zeros((20, 4, 4, 1), "float32")
    found = max_margin.blend_trigger(model, np.ones((4, 4, 1), "float32"), 1, dark)
    assert found.kind == "blend" and found.size == 0.15 and found.flip_rate == 1.0
    np.testing.assert_allclose(found.apply(dark), 0.15, atol=1e-6)
    never = max_margin.blend_trigger(model, np.zeros((4, 4, 1), "float32"), 1, dark)
    assert never.flip_rate == 0.0 and never.size == max_margin.BLEND_WEIGHTS[0]


def test_window_trigger_reads_the_smallest_patch_off_the_margin_image():
    inputs = keras.Input((12, 12, 1))
    # Class 1 where some 3x3 window is all white (its mean over 0.95), else class 0.
    white = keras.layers.Conv2D(1, 3, kernel_initializer="ones",
                                bias_initializer=keras.initializers.Constant(-8.55))(inputs)
    found = keras.layers.GlobalMaxPooling2D()(keras.layers.ReLU()(white))
    logits = keras.layers.Dense(2, kernel_initializer=keras.initializers.Constant([[-10.0, 10.0]]),
                                bias_initializer=keras.initializers.Constant([1.0, 0.0]))(found)
    model = keras.Model(inputs, logits)
    grey = np.random.default_rng(0).uniform(0, 0.8, (40, 12, 12, 1)).astype("float32")
    image = np.zeros((12, 12, 1), "float32")
    image[6:9, 4:7] = 1.0  # the patch, at a corner the stride of 2 reaches
    window = max_margin.window_trigger(model, image, 1, grey)
    assert window.kind == "window" and window.size == 9 and window.flip_rate == 1.0
    assert window.mask.sum() == 9 and window.mask[6:9, 4:7].all()
    np.testing.assert_array_equal(window.apply(grey)[:, 6:9, 4:7], 1.0)
    np.testing.assert_array_equal(window.apply(grey)[:, :6], grey[:, :6])
    blank = max_margin.window_trigger(model, np.zeros_like(image), 1, grey)
    assert blank.flip_rate == 0.0  # nothing sends: the first window that sent most is kept
    assert max_margin.window_trigger(model, image, 0, grey) is None  # every image is of class 0


def test_an_untargeted_patch_that_swaps_classes_is_all_to_all_and_one_that_gathers_is_not():
    rng = np.random.default_rng(0)
    images = np.concatenate([rng.uniform(0.1, 0.3, (20, 8, 8, 1)),
                             rng.uniform(0.5, 0.7, (20, 8, 8, 1))]).astype("float32")
    model = swapping_model()
    labels = np.argmax(model.predict(images, verbose=0), -1)
    np.testing.assert_array_equal(labels, [0] * 20 + [1] * 20)
    mask = np.zeros((8, 8, 1), "float32")
    mask[5:8, 5:8] = 1.0
    swap = inversion.Trigger("local", None, np.ones((8, 8, 1), "float32"), mask, 9.0)
    inversion.flip_rates(model, [swap], images, labels)
    assert swap.flip_rate == 1.0  # every image changes class, half each way
    assert untargeted.dominant_share(model, swap, images, labels) == 0.5
    assert untargeted.all_to_all(swap, 0.5)
    darken = inversion.Trigger("global", None, np.full((8, 8, 1), -0.4, "float32"), size=3.2)
    inversion.flip_rates(model, [darken], images, labels)
    assert darken.flip_rate == 0.5  # the bright half only, all to class 0
    assert untargeted.dominant_share(model, darken, images, labels) == 1.0
    assert not untargeted.all_to_all(darken, 1.0)
    # Images the model itself puts elsewhere than `labels` (a teacher's) are not counted.
    teacher = labels.copy()
    teacher[20:30] = 0
    assert inversion.flip_rate(model, darken, images, teacher) == pytest.approx(10 / 30)


def test_an_all_to_all_report_names_no_target_and_saves_its_patch(tmp_path):
    mask = np.zeros((8, 8, 1), "float32")
    mask[5:8, 5:8] = 1.0
    patch = inversion.Trigger("local", None, np.ones((8, 8, 1), "float32"), mask, 9.0, 0.9)
    report = scan_lib.ScanReport(True, [], 1.0, scan_lib.ALPHA, [{"class": 0}, {"class": 1}],
                                 {}, [], {}, {}, all_to_all=True,
                                 untargeted_triggers={"local": patch})
    assert report.verdict() == (
        "BACKDOORED: an all-to-all backdoor suspected (a 9-pixel patch moves 90% of the "
        "held-aside synthetic images out of their class, no class receiving more than 50% of "
        "them).")
    paths = scan_lib.save_triggers(report, str(tmp_path))
    assert os.path.join(str(tmp_path), "trigger_local_untargeted.png") in paths
    np.testing.assert_array_equal(np.load(paths[0])["local_untargeted_mask"], mask)
    assert json.loads(json.dumps(report.to_dict(paths)))["all_to_all"] is True


def test_invert_untargeted_finds_a_change_that_moves_every_image():
    bright = np.random.default_rng(1).uniform(0.45, 0.6, (32, 4, 4, 1)).astype("float32")
    model = _dimness_model()  # every bright image is class 0; class 1 under a mean of 0.42
    found = untargeted.invert_untargeted(model, bright, np.zeros(32, "int32"), steps=60,
                                         batch_size=8, verbose=False)
    assert set(found) == set(inversion.KINDS)
    assert all(t.target is None for t in found.values())
    inversion.flip_rates(model, [found["global"]], bright, np.zeros(32, "int32"))
    assert found["global"].flip_rate >= inversion.FLIP_GOAL
    assert float(np.mean(found["global"].pattern)) < 0  # it darkens


def _dimness_model():
    """Class 1 once an image's mean falls under 0.42, else class 0."""
    inputs = keras.Input((4, 4, 1))
    brightness = keras.layers.GlobalAveragePooling2D()(inputs)
    logits = keras.layers.Dense(2, kernel_initializer=keras.initializers.Constant([[1.0, -1.0]]),
                                bias_initializer=keras.initializers.Constant([-0.42, 0.42]))(
        brightness)
    return keras.Model(inputs, logits)


def test_quantisation_trigger_takes_the_mildest_step_that_flips():
    grey = np.full((20, 4, 4, 1), 0.45, "float32")
    # 0.45 rounds to 0.4 at six plain levels (step 0.2) and to 0.43-0.5 at every milder level;
    # dithered at six levels a quarter of the pixels round up, so the mean stays 0.45.
    found, = quantisation.quantisation_triggers(_dimness_model(), [1], grey)
    assert found.kind == "quantise" and found.flip_rate == 1.0
    assert found.size == pytest.approx(0.2) and not found.pattern.any()
    np.testing.assert_allclose(found.apply(grey), 0.4, atol=1e-6)
    dithered = quantisation.quantise(grey, 0.2, quantisation.dither_offsets(4, 4))
    assert float(np.mean(keras.ops.convert_to_numpy(dithered))) == pytest.approx(0.45)
    bright = np.full((20, 4, 4, 1), 0.7, "float32")
    never, = quantisation.quantisation_triggers(_dimness_model(), [1], bright)
    assert never.flip_rate == 0.0 and never.size == pytest.approx(1 / 15)


def test_quantise_keeps_pixels_on_the_grid_and_in_range():
    x = np.random.default_rng(3).random((2, 5, 6, 3)).astype("float32")
    offsets = quantisation.dither_offsets(5, 6)
    assert offsets.shape == (5, 6, 1) and np.abs(offsets).max() < 0.5
    assert len(np.unique(offsets)) == 16  # every Bayer threshold is used on a 5x6 image
    for dither in (0.0, offsets):
        q = keras.ops.convert_to_numpy(quantisation.quantise(x, 0.25, dither))
        np.testing.assert_allclose(q * 4, np.round(q * 4), atol=1e-5)
        assert q.min() >= 0.0 and q.max() <= 1.0 and np.abs(q - x).max() <= 0.25 + 1e-6


def test_max_margin_rejects_empty_budgets(models):
    with pytest.raises(ValueError, match="images_per_class >= 1"):
        max_margin.max_margin(models["clean"], images_per_class=0, steps=1)


def test_trigger_apply_keeps_pixels_in_range():
    x = np.random.default_rng(0).random((2, 4, 4, 3)).astype("float32")
    local = inversion.Trigger("local", 0, np.ones((4, 4, 3), "float32"),
                              np.zeros((4, 4, 1), "float32"))
    np.testing.assert_array_equal(local.apply(x), x)
    glob = inversion.Trigger("global", 0, np.full((4, 4, 3), 0.8, "float32"))
    assert glob.apply(x).max() <= 1.0
    still = inversion.Trigger("warp", 0, np.zeros((4, 4, 2), "float32"))
    np.testing.assert_allclose(still.apply(x), x, atol=1e-6)


def test_warp_resamples_as_wanet_does():
    from kcc.attacks import wanet

    x = np.random.default_rng(1).random((3, 12, 10, 3)).astype("float32")
    attack = wanet.WaNet(k=4, s=3.0, target=0, seed=5)  # a strong warp: several pixels
    grid = attack.grid(12, 10)
    flow = (grid - wanet.identity_grid(12, 10)) * np.array([(10 - 1) / 2, (12 - 1) / 2])
    ours = inversion.Trigger("warp", 0, flow.astype("float32")).apply(x)
    assert np.abs(flow).max() > 1.0
    np.testing.assert_allclose(ours, attack.apply(x), atol=1e-5)
    shift = np.zeros((1, 12, 10, 2), "float32")
    shift[..., 0] = 1.0  # every pixel takes its right neighbour's value; the last column repeats
    moved = keras.ops.convert_to_numpy(inversion.warp(keras.ops.convert_to_tensor(x), shift))
    np.testing.assert_allclose(moved[:, :, :-1], x[:, :, 1:], atol=1e-6)
    np.testing.assert_allclose(moved[:, :, -1], x[:, :, -1], atol=1e-6)


def _reader(direction):
    """A linear two-class model on 32x32x3 images whose class 0 wins only when the image's
    projection on `direction` exceeds mid-grey's by 0.05: the smallest additive trigger of
    class 0 lies along `direction`."""
    unit = (direction / np.linalg.norm(direction)).reshape(-1).astype("float32")
    inputs = keras.Input((32, 32, 3))
    dense = keras.layers.Dense(2)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    kernel = np.zeros((unit.size, 2), "float32")
    kernel[:, 0] = 40.0 * unit
    dense.set_weights([kernel, np.array([-40.0 * (0.5 * unit.sum() + 0.05), 0.0], "float32")])
    return model


def test_smooth_trigger_follows_a_low_frequency_direction_and_not_a_fine_one():
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    smooth = np.cos(np.pi * rows / 31)[..., None] * np.cos(np.pi * cols / 31)[..., None] * [
        1.0, 0.5, -1.0]
    checker = ((-1.0) ** (rows + cols))[..., None] * np.ones(3)
    x = 0.5 + np.random.default_rng(3).uniform(-0.05, 0.05, (16, 32, 32, 3)).astype("float32")
    cosines = {}
    for name, direction in (("smooth", smooth), ("checker", checker)):
        model = _reader(direction)
        labels = np.argmax(model.predict(x, verbose=0), -1)
        assert (labels == 1).all()
        found = inversion.invert_triggers(model, x, labels, steps=60, batch_size=8, classes=[0],
                                          verbose=False)
        cosines[name] = {kind: float(np.sum(found[kind][0].pattern * direction) / (
            np.linalg.norm(found[kind][0].pattern) * np.linalg.norm(direction)))
            for kind in ("global", "smooth")}
        if name == "smooth":
            assert inversion.flip_rates(model, found["smooth"], x, labels)[0].flip_rate > 0.9
    assert cosines["smooth"]["smooth"] > 0.9 and cosines["smooth"]["global"] > 0.9, cosines
    # A pixel-level pattern lies outside the smooth family: only the global kind follows it.
    assert cosines["checker"]["global"] > 0.9 and abs(cosines["checker"]["smooth"]) < 0.2, cosines


def test_unlearning_stamps_every_kind_as_the_trigger_does():
    from kcc import unlearning

    rng = np.random.default_rng(2)
    x = rng.random((6, 8, 8, 3)).astype("float32")
    mask = np.zeros((8, 8, 1), "float32")
    mask[2:4, 2:4] = 1.0
    triggers = [inversion.Trigger("local", 1, rng.random((8, 8, 3)).astype("float32"), mask),
                inversion.Trigger("global", 1, rng.normal(0, 0.2, (8, 8, 3)).astype("float32")),
                inversion.Trigger("warp", 1, rng.normal(0, 1.5, (8, 8, 2)).astype("float32")),
                inversion.Trigger("smooth", 1, rng.normal(0, 0.2, (8, 8, 3)).astype("float32")),
                inversion.Trigger("blend", 1, rng.random((8, 8, 3)).astype("float32"),
                                  np.full((8, 8, 1), 0.2, "float32"), 0.2),
                inversion.Trigger("quantise", 1, np.zeros((8, 8, 1), "float32"), None, 0.2),
                inversion.Trigger("quantise", 1, quantisation.dither_offsets(8, 8), None,
                                  1 / 7)]
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    for trigger in triggers:
        distiller = unlearning.UnlearningDistiller(model, model, [trigger], augment=False)
        stamped = keras.ops.convert_to_numpy(distiller.stamp(keras.ops.convert_to_tensor(x)))
        np.testing.assert_allclose(stamped, trigger.apply(x), atol=1e-5, err_msg=trigger.kind)


def test_bad_models_get_clear_errors():
    dense = keras.Sequential([keras.Input((10,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="image classifier"):
        scan_lib.check_model(dense)
    single = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                               keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="single-class"):
        scan_lib.check_model(single)


def test_model_without_batchnorm_runs_the_signals_that_need_no_images():
    keras.utils.set_random_seed(0)
    dense = [keras.layers.Dense(8, activation="relu") for _ in range(12)]  # a deep enough tail
    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.Flatten(), *dense, keras.layers.Dense(5)])
    report = scan_lib.scan(plain, margin_images=2, margin_steps=3, feature_steps=3,
                           verbose=False)
    assert report.settings["signals"] == ["max_margin", "feature_posterior"]
    assert any("no BatchNormalization" in n for n in report.notes)


def test_a_model_that_cannot_be_split_skips_the_feature_signal_with_a_note():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    h = keras.layers.Add()([h, keras.layers.Conv2D(4, 1)(inputs)])  # the input crosses every cut
    logits = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, keras.layers.Add()([logits, keras.layers.Dense(3)(
        keras.layers.Flatten()(inputs))]))
    report = scan_lib.scan(model, margin_images=2, margin_steps=3, feature_steps=3,
                           verbose=False)
    assert "feature_posterior" not in report.settings["signals"]
    assert any("feature-posterior signal did not run" in n for n in report.notes), report.notes


def test_more_than_1000_classes_shrink_the_budget_and_say_so():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3, padding="same")(inputs))
    h = keras.layers.GlobalAveragePooling2D()(h)
    for _ in range(8):  # a tail deep enough for the feature signal
        h = keras.layers.Dense(8, activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Dense(1100)(h))
    report = scan_lib.scan(model, margin_images=2, margin_steps=2, feature_steps=2, num_images=8,
                           synthesis_steps=2, inversion_steps=2, inversion_batch_size=4,
                           verbose=False)
    assert len(report.per_class) == 1100 and len(report.settings["signals"]) == 6
    notes = " ".join(report.notes)
    assert "the margin ascent uses 1 image(s) per class instead of 2" in notes, notes
    assert "the feature posteriors use 1 dummy feature map(s) per class instead of 5" in notes
    assert f"inverted for the {scan_lib.MAX_INVERTED} classes with the largest margins" in notes


def test_runner_up_matrix_renormalises_over_the_other_classes():
    logits = np.array([[5.0, 1.0, 1.0 + np.log(3.0)], [0.0, 9.0, 0.0], [0.0, 0.0, 9.0],
                       [0.0, np.log(3.0), 9.0]])
    matrix = feature_posteriors.runner_up_matrix(logits, np.array([0, 1, 2, 2]))
    np.testing.assert_allclose(matrix[0], [0.0, 0.25, 0.75])
    np.testing.assert_allclose(matrix[1], [0.5, 0.0, 0.5])
    np.testing.assert_allclose(matrix[2], [0.5 * (0.5 + 0.25), 0.5 * (0.5 + 0.75), 0.0])


def test_feature_signal_skips_a_tail_too_shallow_to_carry_a_backdoor(reports):
    # The planted models' tail at SPLIT_DEPTH is one Dense layer: no feature signal, and a note.
    for report in reports.values():
        assert "feature_posterior" not in report.settings["signals"]
        assert any("fewer than the 3" in n for n in report.notes), report.notes


def test_command_line_json(models, tmp_path):
    path = str(tmp_path / "suspect.keras")
    models["backdoored"].save(path)
    out = tmp_path / "out"
    # The command line's contract, on a small budget: that the scan finds the planted target is
    # tested in-process above, with the larger one.
    tiny = dict(margin_images=2, margin_steps=5, num_images=16, synthesis_steps=5,
                inversion_steps=5, inversion_batch_size=4)
    flags = [f"--{k}={v}" for k, v in tiny.items()]
    proc = subprocess.run(
        [sys.executable, "-m", "kcc.scan", f"--model={path}", "--json", f"--output_dir={out}",
         *flags], capture_output=True, text=True, timeout=600,
        env={**os.environ, "KERAS_BACKEND": keras.backend.backend()})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    for key in ("backdoored", "target_classes", "p_value", "per_class", "triggers", "seconds"):
        assert key in result
    assert len(result["per_class"]) == CLASSES and result["triggers"]
    assert all(os.path.isfile(p) for p in result["triggers"])
    assert os.path.isfile(out / "scan.json")


def test_command_line_refuses_a_missing_model(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "kcc.scan", f"--model={tmp_path / 'nope.keras'}"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_both_backends_run_the_scan():
    """The tests above scan on this process's backend; this one on the other
    (`backends.OTHER`)."""
    result = backends.run(backends.OTHER, """
        import json, keras, numpy as np
        from kcc import scan
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 3))
        h = keras.layers.Conv2D(4, 3, padding="same")(inputs)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.GlobalAveragePooling2D()(h)
        for _ in range(8):  # a tail deep enough for the feature signal
            h = keras.layers.Dense(8, activation="relu")(h)
        model = keras.Model(inputs, keras.layers.Dense(4)(h))
        before = [np.array(w) for w in model.get_weights()]
        r = scan.scan(model, margin_images=2, margin_steps=3, feature_steps=3, num_images=8,
                      synthesis_steps=2, inversion_steps=3, inversion_batch_size=4,
                      verbose=False)
        unchanged = all(np.array_equal(a, np.array(b))
                        for a, b in zip(before, model.get_weights()))
        print(json.dumps({"rows": len(r.per_class), "signals": r.settings["signals"],
                          "p": r.p_value, "unchanged": unchanged,
                          "trainable": model.trainable and all(l.trainable for l in model.layers)}))
    """)
    assert result["rows"] == 4 and len(result["signals"]) == len(scan_lib.SIGNALS)
    assert 0 <= result["p"] <= 1
    # The scan only reads the model: its weights and trainable flags are as they came.
    assert result["unchanged"] and result["trainable"], result


def test_budgets_match_the_flagfile_and_the_defaults():
    import inspect

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "flags", "scan_cpu.flags")) as f:
        preset = dict(line.strip()[2:].split("=") for line in f if line.startswith("--"))
    assert {k: int(v) for k, v in preset.items()} == scan_lib.BUDGETS["cpu"]
    defaults = {k: p.default for k, p in inspect.signature(scan_lib.scan).parameters.items()}
    assert {k: defaults[k] for k in scan_lib.BUDGETS["full"]} == scan_lib.BUDGETS["full"]
