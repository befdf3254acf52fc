"""Baseline defenses that learn from the defender's data: FT, FP, NAD, I-BAU, gradient pruning."""

import json
import os

import keras
import numpy as np
import pytest

from kcc import attacks, gradients, metrics, models
from kcc.defenses import fp, ft, grad_prune, ibau, nad
from kcc.defenses.data import defender_split
from tests import backends
from tests.conftest import cifar10_or_skip

ZOO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "zoo")

DEFENSES = {
    "ft": lambda m, d: ft.fine_tune(m, d, epochs=1, verbose=0),
    "fp": lambda m, d: fp.fine_pruning(m, d, epochs=1, verbose=0),
    "nad": lambda m, d: nad.nad(m, d, epochs=1, teacher_epochs=1, verbose=0),
    "ibau": lambda m, d: ibau.ibau(m, d, n_rounds=1, max_steps=1),
    "grad_prune": lambda m, d: grad_prune.grad_prune(m, d, attack=attacks.BadNets(), max_rounds=1,
                                                     finetune_max_epochs=1, verbose=0),
}


@pytest.fixture(scope="module")
def one_percent():
    """1% of the CIFAR-10 training split (500 images, 50 of them for validation)."""
    return defender_split("cifar10", fraction=0.01, data_dir=cifar10_or_skip())


@pytest.fixture(scope="module")
def ten_per_class():
    """Ten training images per class, one of each held out (gradient pruning's SPC=10 setting)."""
    return defender_split("cifar10", per_class=10, data_dir=cifar10_or_skip())


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


def _check_defended(original, before, defended, report, defender_data, tmp_path):
    """What every defense promises: input untouched, output saveable, report JSON with its data."""
    for b, w in zip(before, original.get_weights()):
        np.testing.assert_array_equal(b, w)
    assert defended is not original
    path = str(tmp_path / "defended.keras")
    defended.save(path)
    reloaded = keras.saving.load_model(path)
    x = defender_data.x_val[:16]
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), defended.predict(x, verbose=0),
                               atol=1e-5)
    report = json.loads(json.dumps(report))
    assert report["data"] == json.loads(json.dumps(defender_data.describe()))
    assert {"method", "hyperparameters", "selected", "seconds"} <= set(report)


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_defenses_refuse_bare_arrays(name):
    model = models.resnet18(width=4)
    x = np.zeros((4, 32, 32, 3), np.float32)
    with pytest.raises(TypeError, match="must be a kcc.defenses.DefenderData"):
        DEFENSES[name](model, (x, np.zeros(4, np.int32)))


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_defenses_need_validation_images(name):
    x = np.random.default_rng(0).random((20, 32, 32, 3)).astype(np.float32)
    no_validation = defender_split((x, np.arange(20) % 10), per_class=2, validation=0)
    with pytest.raises(ValueError, match="validation images, but defender_data has none"):
        DEFENSES[name](models.resnet18(width=4), no_validation)


@pytest.mark.slow  # trains the session's backdoored fixture (minutes) first
def test_fine_tuning_keeps_the_best_validation_epoch(backdoored, one_percent, tmp_path):
    model = backdoored.load()
    before = _weights(model)
    defended, report = ft.fine_tune(model, one_percent, epochs=3, verbose=0)
    _check_defended(model, before, defended, report, one_percent, tmp_path)
    accs = [h["val_acc"] for h in report["history"]]
    assert [h["epoch"] for h in report["history"]] == [1, 2, 3]
    assert report["selected"]["val_acc"] == max(accs)
    restored, _ = ft.evaluate_clean(defended, one_percent.x_val, one_percent.y_val)
    assert restored == max(accs)


@pytest.mark.slow  # trains the session's backdoored fixture (minutes) first
def test_fine_pruning_zeroes_the_least_active_channels(backdoored, one_percent, tmp_path):
    model = backdoored.load()
    before = _weights(model)
    defended, report = fp.fine_pruning(model, one_percent, epochs=1, verbose=0)
    _check_defended(model, before, defended, report, one_percent, tmp_path)
    pruning = report["pruning"]
    assert pruning["pooling_layer"] == "pool" and pruning["dense_layer"] == "logits"
    assert pruning["last_conv_layers"] == ["stage4_block1_2_conv", "stage4_block1_shortcut_conv",
                                           "stage4_block2_2_conv"]
    channels = pruning["pruned_channels"]
    assert 0 < len(channels) < pruning["num_channels"]
    # The pruned channels are the least active on the defender's clean training images ...
    pooled = keras.Model(model.inputs, model.get_layer("pool").output)
    activation = pooled.predict(one_percent.x, verbose=0).mean(axis=0)
    assert set(channels) == set(np.argsort(activation, kind="stable")[:len(channels)].tolist())
    # ... they are silenced in the returned, fine-tuned model ...
    kernel = defended.get_layer("logits").get_weights()[0]
    assert np.all(kernel[channels] == 0) and np.all(np.any(np.delete(kernel, channels, 0), 1))
    # ... and pruning stopped within the validation-accuracy budget, before the next step broke it.
    assert pruning["val_acc_pruned"] >= 0.9 * pruning["val_acc_unpruned"]
    if len(pruning["val_acc_per_step"]) > len(channels):
        assert pruning["val_acc_per_step"][len(channels)] < 0.9 * pruning["val_acc_unpruned"]


def test_fine_pruning_needs_a_pooling_head():
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="global pooling layer feeding the final Dense"):
        fp.classifier_head(model)


def test_attention_loss_matches_a_numpy_reference():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    t = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)

    def attention(f, p):
        a = (np.abs(f) ** p).sum(axis=-1).reshape(len(f), -1)  # the reference code sums channels
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    for p in (2.0, 1.0):
        expected = np.mean((attention(s, p) - attention(t, p)) ** 2)
        got = float(keras.ops.convert_to_numpy(nad.attention_loss(s, t, p)))
        np.testing.assert_allclose(got, expected, rtol=1e-4)
    maps = keras.ops.convert_to_numpy(nad.attention_map(s))
    assert maps.shape == (3, 20)
    np.testing.assert_allclose(np.linalg.norm(maps, axis=1), 1.0, rtol=1e-5)


def test_default_attention_layers_are_the_last_three_stage_outputs():
    assert nad.default_attention_layers(models.resnet18(width=4)) == [
        "stage2_block2_out", "stage3_block2_out", "stage4_block2_out"]
    assert nad.default_attention_layers(models.preact_resnet18(width=4)) == [
        "stage2_block2_add", "stage3_block2_add", "stage4_block2_add"]
    with pytest.raises(ValueError, match="pass attention_layers"):
        nad.default_attention_layers(models.vgg19_bn(width=4))


@pytest.mark.slow  # trains the session's backdoored fixture (minutes) first
def test_nad_trains_the_student_against_the_teacher(backdoored, one_percent, tmp_path):
    model = backdoored.load()
    before = _weights(model)
    defended, report = nad.nad(model, one_percent, epochs=1, teacher_epochs=1, verbose=0)
    _check_defended(model, before, defended, report, one_percent, tmp_path)
    assert report["teacher"]["method"] == "ft"
    (epoch,) = report["history"]
    assert epoch["attention"] > 0 and np.isfinite(epoch["ce"])
    assert not all(np.array_equal(a, b) for a, b in zip(before, defended.get_weights()))


@pytest.mark.slow  # trains the session's backdoored fixture (minutes) first
def test_gradient_pruning_zeroes_the_filters_it_reports(backdoored, ten_per_class, tmp_path):
    model = backdoored.load()
    before = _weights(model)
    # No accuracy stop, two rounds: what is kept then depends on the unlearning loss alone.
    defended, report = grad_prune.grad_prune(model, ten_per_class, attack=backdoored.attack,
                                             accuracy_threshold=1.0, max_rounds=2,
                                             finetune_max_epochs=2, verbose=0)
    _check_defended(model, before, defended, report, ten_per_class, tmp_path)
    pruning, selected = report["pruning"], report["selected"]
    assert pruning["rounds"] == 2 and len(pruning["history"]) == 3
    losses = [h["val_unlearning_loss"] for h in pruning["history"]]
    assert selected["val_unlearning_loss"] == min(losses)
    pruned = pruning["pruned_filters"]
    assert pruned == pruning["all_rounds"][:selected["round"]]
    if selected["round"] == 0:
        # The fixture is retrained every session (TensorFlow's CPU training is not
        # bit-reproducible); on 3 of the 5 instances seen so far pruning lowered the validation
        # unlearning loss within two rounds, on the other 2 neither round did (each xfails here).
        pytest.xfail("no pruning round lowered the validation unlearning loss: nothing to check")
    assert selected["val_unlearning_loss"] < losses[0]
    for item in pruned:  # the filter and its BN channel are still exactly zero after fine-tuning
        kernel = defended.get_layer(item["layer"]).get_weights()[0]
        gamma, beta = defended.get_layer(item["layer"].replace("_conv", "_bn")).get_weights()[:2]
        assert not kernel[..., item["filter"]].any()
        assert gamma[item["filter"]] == 0 and beta[item["filter"]] == 0
    assert selected["fine_tuning"]["epochs_run"] == 2


@pytest.mark.slow
def test_gradient_pruning_removes_the_backdoor(backdoored, ten_per_class):
    """The paper's 10-images-per-class setting with its defaults (20 s to 4 minutes here).

    Measured on three instances of the test model (the fixture is retrained every session and
    TensorFlow's CPU training is not bit-reproducible): ASR 94% -> 12% and 93% -> 2% (ACC 47% ->
    35% and 50% -> 44%) where filters were pruned; on the third, the second round's stem filter
    cost 2 of the 10 validation images, no filter was kept, and fine-tuning alone left ASR at 73%.
    With 1% of CIFAR-10 instead, the first two instances came back unchanged.
    """
    defended, report = grad_prune.grad_prune(backdoored.load(), ten_per_class,
                                             attack=backdoored.attack, verbose=0)
    if not report["pruning"]["pruned_filters"]:
        pytest.xfail("validation accuracy stopped pruning before any filter was kept "
                     "(1 of 3 measured instances of the test model)")
    after = metrics.evaluate(defended, backdoored.x_test, backdoored.y_test, backdoored.attack)
    assert after["asr"] < 0.5 * backdoored.metrics["asr"], after
    assert after["acc"] > backdoored.metrics["acc"] - 0.2, after


def test_ibau_hypergradient_matches_a_numpy_reference():
    """One implicit hypergradient on a softmax-regression 'image' model, against closed forms."""
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    w = rng.normal(size=(4, 3)).astype(np.float32)
    b = rng.normal(size=3).astype(np.float32)
    model.set_weights([w, b])
    x0, x = (rng.uniform(0.3, 0.7, (n, 2, 2, 1)).astype(np.float32) for n in (5, 6))
    y0, y = np.array([0, 1, 2, 0, 1], np.int32), np.array([2, 2, 1, 0, 0, 1], np.int32)
    delta = rng.uniform(-0.1, 0.1, (1, 2, 2, 1)).astype(np.float32)
    mask = np.array([1, 0, 0, 1, 0, 0], np.float32).reshape(-1, 1, 1, 1)
    reg, eta, k = 1e-3, 0.1, 5
    grads = ibau.HypergradientSteps(model, reg, eta, k).hypergradient(delta, x0, y0, x, y, mask)
    grads = [keras.ops.convert_to_numpy(g) for g in grads]

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    d = delta.reshape(-1).astype(np.float64)
    # Outer loss H = mean CE((x_i + m_i d) W + b, y_i) and its partial gradients.
    u = x.reshape(6, -1) + mask.reshape(-1, 1) * d
    r = softmax(u @ w + b) - np.eye(3)[y]
    g_d = (mask.reshape(-1, 1) * (r @ w.T)).mean(0)
    g_w, g_b = u.T @ r / 6, r.mean(0)
    # Inner loss G = -mean CE((x0_i + d) W + b, y0_i) + reg ||d||^2: Hessian in d and mixed terms.
    u0 = x0.reshape(5, -1) + d
    p0 = softmax(u0 @ w + b)
    s0 = np.stack([np.diag(p) - np.outer(p, p) for p in p0])
    hessian = -np.mean([w @ s @ w.T for s in s0], axis=0) + 2 * reg * np.eye(4)
    v = np.zeros(4)
    for _ in range(k):
        v = v - eta * hessian @ v + g_d
    a = w.T @ v  # d/dW and d/db of (grad_d G . v) = -mean_i (p_i - e_i) . (W^T v) + const
    e0 = p0 - np.eye(3)[y0]
    mixed_w = -np.mean([np.outer(ui, si @ a) + np.outer(v, ei) for ui, si, ei in zip(u0, s0, e0)],
                       axis=0)
    mixed_b = -np.mean([si @ a for si in s0], axis=0)
    np.testing.assert_allclose(grads[0], g_w - eta * mixed_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads[1], g_b - eta * mixed_b, rtol=1e-4, atol=1e-6)


def test_ibau_respects_its_budget(one_percent, tmp_path):
    # The zoo's BadNets model loads in seconds; the session's `backdoored` fixture trains for
    # minutes, which the unlearning test below needs but a budget check does not.
    from kcc import intake

    model = intake.load_suspect(os.path.join(ZOO, "badnets_all2one.keras"))
    before = _weights(model)
    defended, report = ibau.ibau(model, one_percent, n_rounds=2, max_steps=2)
    _check_defended(model, before, defended, report, one_percent, tmp_path)
    (start, first) = report["history"]  # the budget ran out within the first round
    assert start["round"] == 0 and first["outer_steps"] == 2
    assert 0 < first["perturbation_l2"] <= 10 + 1e-3
    assert not all(np.array_equal(a, b) for a, b in zip(before, defended.get_weights()))


@pytest.mark.slow
def test_ibau_unlearns_the_backdoor(backdoored, one_percent, tmp_path):
    """The reference's defaults, 5 rounds on 1% of CIFAR-10 (1-2 minutes here).

    Measured on two instances of the test model: ASR 94% -> 40% and 93% -> 20%, ACC 47% -> 42%
    and 50% -> 38%.
    """
    model = backdoored.load()
    defended, report = ibau.ibau(model, one_percent)
    assert len(report["history"]) == 6
    assert all(h["perturbation_l2"] <= 10 + 1e-3 for h in report["history"][1:])
    after = metrics.evaluate(defended, backdoored.x_test, backdoored.y_test, backdoored.attack)
    assert after["asr"] < 0.6 * backdoored.metrics["asr"], after
    assert after["acc"] > backdoored.metrics["acc"] - 0.2, after


def test_second_order_gradients_match_a_closed_form():
    a = np.random.default_rng(0).normal(size=(5, 5)).astype(np.float32)
    x = np.linspace(-1, 1, 5).astype(np.float32)
    v = np.arange(5, dtype=np.float32)

    def f(z, a):
        return 0.5 * keras.ops.sum(z * keras.ops.matmul(a, z)) + keras.ops.sum(z ** 3)

    grad = gradients.value_and_grad(f)
    hvp = gradients.value_and_grad(lambda z, a, v: keras.ops.sum(grad(z, a)[1] * v), jit=True)
    _, got = hvp(x, a, v)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), 0.5 * (a + a.T) @ v + 6 * x * v,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # trains the session's backdoored fixture (minutes) first
def test_fine_pruning_and_weight_gradients_on_jax(backdoored):
    result = backends.run("jax", f"""
        import json
        import keras
        import numpy as np
        from kcc import gradients
        from kcc.defenses import fp
        from kcc.defenses.data import defender_split
        model = keras.saving.load_model({backdoored.path!r})
        before = [np.array(w) for w in model.get_weights()]
        data = defender_split("cifar10", fraction=0.01)
        defended, report = fp.fine_pruning(model, data, epochs=1, verbose=0)
        unchanged = all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
        channels = report["pruning"]["pruned_channels"]
        kernel = defended.get_layer("logits").get_weights()[0]
        grad = gradients.value_and_grad(lambda z: keras.ops.sum(z ** 3))
        hvp = gradients.value_and_grad(lambda z, v: keras.ops.sum(grad(z)[1] * v), jit=True)
        _, hv = hvp(np.array([1.0, 2.0], np.float32), np.array([1.0, 1.0], np.float32))
        print(json.dumps({{"backend": keras.backend.backend(), "unchanged": unchanged,
                          "pruned": len(channels) > 0, "zero": not kernel[channels].any(),
                          "hvp": np.asarray(hv).tolist()}}))
    """)
    assert result == {"backend": "jax", "unchanged": True, "pruned": True, "zero": True,
                      "hvp": [6.0, 12.0]}
