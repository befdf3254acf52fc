import json

import keras
import numpy as np
import pytest

from kcc import layers
from kcc import models
from kcc import rewrite
from kcc import tucker
from tests import backends

X = np.random.default_rng(0).random((4, 32, 32, 3)).astype("float32")


def _rank_deficient(model):
    """Zeroes the weaker half of the Tucker components of both modes of every decomposable conv.

    Truncation then has exact zeros to drop: a Tucker-2 form near full rank is larger than the
    plain 3x3 conv, so random full-rank kernels cannot be compressed without changing outputs.
    """
    for layer in models_layers(model):
        if rewrite.is_decomposable(layer):
            w = keras.ops.convert_to_numpy(layer.kernel)
            d = tucker.tucker2(w)
            core, u1, u2 = tucker.truncate(d.core, d.u1, d.u2, len(d.sigma1) // 2, len(d.sigma2) // 2)
            layer.kernel.assign(tucker.reconstruct(core, u1, u2).astype("float32"))
    return model


def models_layers(model):
    from kcc import flops

    return list(flops.iterate_layers(model))


def test_near_identity_compress_reproduces_the_model():
    model = _rank_deficient(models.resnet18(width=16))
    compressed, report = rewrite.compress(model, cr=1.2, tau_scale=1e9)
    assert report.params_after <= report.params_before / 1.2
    assert any(l.factored for l in report.layers)
    assert all(l.scaled == (0, 0) for l in report.layers)
    np.testing.assert_allclose(compressed.predict(X, verbose=0), model.predict(X, verbose=0),
                               atol=1e-4, rtol=1e-3)


def test_input_model_is_not_modified():
    model = models.resnet18(width=8)
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    rewrite.compress(model, cr=2)
    rewrite.constrain(model, tau_scale=0.5)
    for b, w in zip(before, model.weights):
        np.testing.assert_array_equal(b, keras.ops.convert_to_numpy(w))


@pytest.fixture(scope="module")
def resnet18_width64():
    return models.resnet18(width=64)


@pytest.mark.parametrize("cr, target", [(2, 5.58e6), (3, 3.72e6), (4, 2.79e6)])
def test_resnet18_width64_lands_on_the_papers_budgets(resnet18_width64, cr, target):
    compressed, report = rewrite.compress(resnet18_width64, cr=cr)
    params = models.trainable_params(compressed)
    assert params == report.params_after
    assert params <= 11_173_962 / cr
    assert abs(params - target) / target < 0.02


def test_report_is_printable_and_json():
    _, report = rewrite.compress(models.resnet18(width=8), cr=2)
    text = str(report)
    assert "stage4_block2_2_conv" in text and "parameters" in text
    d = json.loads(report.to_json())
    assert d["ratio"] >= 2 and len(d["layers"]) == 19
    assert d["layers"][0]["kernel_shape"] == [3, 3, 8, 8]
    # The stem (3 input channels) and the dense layer are never decomposed.
    assert "stem_conv" not in [l["name"] for l in d["layers"]]


def test_constrain_keeps_architecture_and_scales():
    model = models.resnet18(width=8)
    constrained, report = rewrite.constrain(model, tau_scale=0.5)
    assert [type(l) for l in constrained.layers] == [type(l) for l in model.layers]
    assert sum(sum(l.scaled) for l in report.layers) > 0
    assert report.params_after == report.params_before
    for l in report.layers:
        old = keras.ops.convert_to_numpy(model.get_layer(l.name).kernel)
        new = keras.ops.convert_to_numpy(constrained.get_layer(l.name).kernel)
        if sum(l.scaled):
            assert np.linalg.norm(new) < np.linalg.norm(old)
        else:
            np.testing.assert_allclose(new, old, atol=1e-5)


def test_compressed_model_round_trips_and_matches_across_backends(tmp_path):
    compressed, _ = rewrite.compress(models.resnet18(width=8), cr=3)
    assert any(isinstance(l, layers.TuckerConv2D) for l in compressed.layers)
    path = str(tmp_path / "c.keras")
    compressed.save(path)
    loaded = keras.saving.load_model(path)
    expected = compressed.predict(X, verbose=0)
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), expected)
    np.save(tmp_path / "x.npy", X)
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    result = backends.run(other, f"""
        import json, keras, numpy as np
        import kcc.layers
        m = keras.saving.load_model({path!r})
        print(json.dumps(m.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0).tolist()))
    """)
    np.testing.assert_allclose(np.array(result), expected, atol=1e-4)


def test_sequential_and_nested_models():
    inner = keras.Sequential([keras.Input((8, 8, 8)), keras.layers.Conv2D(16, 3, padding="same", name="a"),
                              keras.layers.ReLU(), keras.layers.Conv2D(16, 3, padding="same", name="b")],
                             name="inner")
    inputs = keras.Input((8, 8, 8))
    outputs = keras.layers.GlobalAveragePooling2D()(inner(inputs))
    outer = keras.Model(inputs, keras.layers.Dense(3)(outputs))
    compressed, report = rewrite.compress(outer, cr=1.5)
    assert {l.name for l in report.layers} == {"a", "b"}
    assert report.params_after <= report.params_before / 1.5
    assert compressed.predict(np.zeros((1, 8, 8, 8)), verbose=0).shape == (1, 3)
    seq_compressed, _ = rewrite.compress(inner, cr=1.5)
    assert isinstance(seq_compressed, keras.Sequential)


def _small_convnet(seed=0):
    """3 -> 12 (stem) -> 20 -> 36 -> 60 channels of 3x3 convs, then pooling and a dense layer."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3))
    x = inputs
    for i, filters in enumerate([12, 20, 36, 60]):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


@pytest.mark.parametrize("rank_multiple", [1, 8])
def test_largest_ratio_is_what_compress_reaches(rank_multiple):
    model = _small_convnet()
    largest = rewrite.largest_ratio(model, rank_multiple)
    _, report = rewrite.compress(model, cr=largest * 0.999, rank_multiple=rank_multiple)
    assert report.params_after <= report.params_before / (largest * 0.999)
    with pytest.raises(ValueError, match="cannot be reached"):
        rewrite.compress(model, cr=largest * 1.001, rank_multiple=rank_multiple)
    if rank_multiple > 1:
        assert largest < rewrite.largest_ratio(model)  # no rank below 8 to fall to


@pytest.mark.parametrize("cr", [2, 3])
def test_compress_rank_multiple(cr):
    model = _small_convnet()
    _, plain = rewrite.compress(model, cr=cr)
    _, same = rewrite.compress(model, cr=cr, rank_multiple=1)
    assert [l.ranks for l in same.layers] == [l.ranks for l in plain.layers]
    assert plain.rank_multiple == 1 and "rank_multiple" not in str(plain)
    # m=1 is C&C's selection: each rank counts the raw singular values >= tau_trunc.
    for l in plain.layers:
        d = tucker.tucker2(keras.ops.convert_to_numpy(model.get_layer(l.name).kernel))
        assert l.factored
        assert l.ranks == (max(1, int(np.sum(d.sigma1 >= plain.tau_trunc))),
                           max(1, int(np.sum(d.sigma2 >= plain.tau_trunc))))
    assert any(r % 8 for l in plain.layers for r in l.ranks)  # else rounding changes nothing

    compressed, report = rewrite.compress(model, cr=cr, rank_multiple=8)
    assert report.rank_multiple == 8 and report.to_dict()["rank_multiple"] == 8
    assert "rank_multiple=8" in str(report)
    assert report.params_after <= report.params_before / cr
    assert models.trainable_params(compressed) == report.params_after
    assert any(l.factored for l in report.layers)
    for l in report.layers:
        if l.factored:
            assert all(r % 8 == 0 or r == full for r, full in zip(l.ranks, l.full_ranks)), l
            assert tuple(compressed.get_layer(l.name).ranks) == l.ranks
    assert compressed.predict(X[:1, :16, :16], verbose=0).shape == (1, 10)


def test_compress_relative_ranks():
    model = _small_convnet()
    compressed, report = rewrite.compress(model, cr=2, tau_scale=np.inf, relative=True)
    assert report.relative and report.to_dict()["relative"] is True
    assert "relative to each layer's norm" in str(report)
    assert report.params_after <= report.params_before / 2
    assert models.trainable_params(compressed) == report.params_after
    # Each rank counts the singular values >= tau_trunc once divided by the layer's norm.
    for l in report.layers:
        d = tucker.tucker2(keras.ops.convert_to_numpy(model.get_layer(l.name).kernel))
        norm = np.sqrt(np.sum(np.square(d.sigma1)))
        if l.factored:
            assert l.ranks == (max(1, int(np.sum(d.sigma1 / norm >= report.tau_trunc))),
                               max(1, int(np.sum(d.sigma2 / norm >= report.tau_trunc))))
    assert rewrite.compress(model, cr=2)[1].relative is False


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(8, 3)

    def call(self, x):
        return self.conv(x)


def test_bad_inputs_get_specific_errors():
    model = models.resnet18(width=8)
    with pytest.raises(ValueError, match="cr must be greater than 1"):
        rewrite.compress(model, cr=1.0)
    with pytest.raises(ValueError, match="tau_scale must be strictly positive"):
        rewrite.compress(model, cr=2, tau_scale=0)
    with pytest.raises(ValueError, match=r"cannot be reached.*largest reachable ratio is \d+\.\d+"):
        rewrite.compress(model, cr=1000)
    for bad in [0, 2.5]:
        with pytest.raises(ValueError, match=r"rank_multiple must be an integer >= 1.*Received "
                                             rf"rank_multiple={bad}\."):
            rewrite.compress(model, cr=2, rank_multiple=bad)
    sub = _Subclassed()
    sub(np.zeros((1, 8, 8, 4)))
    with pytest.raises(ValueError, match="subclassed model '_Subclassed'.*functional"):
        rewrite.compress(sub, cr=2)
    inputs = keras.Input((8, 8, 4))
    wrapped = keras.Model(inputs, _Subclassed()(inputs))
    with pytest.raises(ValueError, match="subclassed model '_Subclassed'"):
        rewrite.compress(wrapped, cr=2)
    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no decomposable Conv2D"):
        rewrite.compress(plain, cr=2)
    broken = models.resnet18(width=8)
    kernel = broken.get_layer("stage2_block1_1_conv").kernel
    kernel.assign(keras.ops.convert_to_numpy(kernel) * np.nan)
    with pytest.raises(ValueError, match="'stage2_block1_1_conv' has non-finite values"):
        rewrite.compress(broken, cr=2)
