import keras
import numpy as np
import pytest

from kcc import layers
from kcc import tucker


def _conv(filters, kernel_size, strides, padding, use_bias, in_channels=6, dilation=1):
    conv = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                               use_bias=use_bias, dilation_rate=dilation)
    conv.build((None, 9, 9, in_channels))
    rng = np.random.default_rng(0)
    conv.set_weights([rng.normal(size=w.shape).astype("float32") for w in conv.weights])
    return conv


@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("kernel_size", [3, 1])
def test_full_rank_equals_the_original_conv(strides, padding, use_bias, kernel_size):
    conv = _conv(8, kernel_size, strides, padding, use_bias)
    d = tucker.tucker2(keras.ops.convert_to_numpy(conv.kernel))
    layer = layers.TuckerConv2D.from_conv(conv, ranks=(len(d.sigma1), len(d.sigma2)))
    x = np.random.default_rng(1).normal(size=(2, 9, 9, 6)).astype("float32")
    expected = keras.ops.convert_to_numpy(conv(x))
    got = keras.ops.convert_to_numpy(layer(x))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_dilation_is_carried():
    conv = _conv(4, 3, 1, "same", True, dilation=2)
    layer = layers.TuckerConv2D.from_conv(conv, ranks=(4, 6))
    x = np.random.default_rng(1).normal(size=(1, 9, 9, 6)).astype("float32")
    np.testing.assert_allclose(layer(x), conv(x), atol=1e-4)


def test_truncated_layer_matches_its_reconstructed_kernel():
    conv = _conv(8, 3, 1, "same", True)
    layer = layers.TuckerConv2D.from_conv(conv, ranks=(3, 2))
    assert layer.kernel().shape == (3, 3, 6, 8)
    dense = keras.layers.Conv2D(8, 3, padding="same")
    dense.build((None, 9, 9, 6))
    dense.set_weights([layer.kernel().astype("float32"), keras.ops.convert_to_numpy(conv.bias)])
    x = np.random.default_rng(2).normal(size=(1, 9, 9, 6)).astype("float32")
    np.testing.assert_allclose(layer(x), dense(x), atol=1e-4)
    assert sum(int(np.prod(w.shape)) for w in layer.weights) == tucker.tucker_params((3, 3, 6, 8), 3, 2, True)


def test_config_round_trip_and_serialisation(tmp_path):
    inputs = keras.Input((9, 9, 6))
    outputs = layers.TuckerConv2D(8, 3, ranks=(4, 3), strides=2, padding="same", name="t")(inputs)
    model = keras.Model(inputs, outputs)
    config = model.get_layer("t").get_config()
    clone = layers.TuckerConv2D.from_config(config)
    assert clone.get_config() == config
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(0).normal(size=(2, 9, 9, 6)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert isinstance(loaded.get_layer("t"), layers.TuckerConv2D)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="ranks must be a positive int"):
        layers.TuckerConv2D(8, 3, ranks=(0, 2))
    with pytest.raises(ValueError, match="padding must be"):
        layers.TuckerConv2D(8, 3, ranks=2, padding="causal")
    depthwise = keras.layers.DepthwiseConv2D(3)
    depthwise.build((None, 9, 9, 6))
    with pytest.raises(ValueError, match="Expected a keras.layers.Conv2D"):
        layers.TuckerConv2D.from_conv(depthwise, ranks=(2, 2))
    grouped = keras.layers.Conv2D(8, 3, groups=2)
    grouped.build((None, 9, 9, 6))
    with pytest.raises(ValueError, match="Grouped convolutions"):
        layers.TuckerConv2D.from_conv(grouped, ranks=(2, 2))
