import keras
import numpy as np
import pytest

from kcc import depthwise
from tests import backends


@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("kernel_size", [3, 5, (2, 3)])
@pytest.mark.parametrize("size", [(9, 9), (8, 11)])
def test_shifted_depthwise_equals_depthwise(strides, padding, kernel_size, size):
    config = dict(kernel_size=kernel_size, strides=strides, padding=padding, use_bias=True,
                  activation="relu")
    native = keras.layers.DepthwiseConv2D(**config)
    native.build((None, *size, 6))
    rng = np.random.default_rng(0)
    native.set_weights([rng.normal(size=w.shape).astype("float32") for w in native.weights])
    shifted = depthwise.ShiftedDepthwiseConv2D.from_config(native.get_config())
    shifted.build((None, *size, 6))
    shifted.set_weights(native.get_weights())
    x = rng.normal(size=(2, *size, 6)).astype("float32")
    expected = keras.ops.convert_to_numpy(native(x))
    got = keras.ops.convert_to_numpy(shifted(x))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_unshiftable_layers_fall_back_to_the_grouped_convolution():
    layer = depthwise.ShiftedDepthwiseConv2D(3, depth_multiplier=2, dilation_rate=2,
                                             padding="same")
    assert not depthwise.shiftable(layer)
    x = np.random.default_rng(0).normal(size=(1, 9, 9, 4)).astype("float32")
    assert keras.ops.convert_to_numpy(layer(x)).shape == (1, 9, 9, 8)


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_twin_swaps_depthwise_layers_on_jax_only(backend):
    result = backends.run(backend, """
        import json, keras, numpy as np
        from kcc import depthwise
        inputs = keras.Input((16, 16, 3))
        y = keras.layers.Conv2D(8, 3, padding="same")(inputs)
        y = keras.layers.BatchNormalization()(y)
        y = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False)(y)
        y = keras.layers.DepthwiseConv2D(3, dilation_rate=2, padding="same")(y)
        y = keras.layers.GlobalAveragePooling2D()(y)
        model = keras.Model(inputs, keras.layers.Dense(4)(y))
        twin = depthwise.twin(model)
        x = np.random.default_rng(0).random((4, 16, 16, 3)).astype("float32")
        print(json.dumps({
            "same_object": twin is model,
            "types": [type(l).__name__ for l in twin.layers if "Depthwise" in type(l).__name__],
            "original": [type(l).__name__ for l in model.layers
                         if "Depthwise" in type(l).__name__],
            "diff": float(np.abs(np.asarray(twin(x)) - np.asarray(model(x))).max())}))
    """)
    assert result["original"] == ["DepthwiseConv2D", "DepthwiseConv2D"]
    assert result["diff"] < 1e-5
    if backend == "jax":  # the dilated one keeps XLA's grouped convolution
        assert not result["same_object"]
        assert result["types"] == ["ShiftedDepthwiseConv2D", "DepthwiseConv2D"]
    else:
        assert result["same_object"]


def test_purify_returns_native_depthwise_layers_with_the_trained_weights():
    result = backends.run("jax", """
        import json, math, keras, numpy as np
        from kcc import recipe, rewrite
        keras.utils.set_random_seed(0)
        inputs = keras.Input((16, 16, 3))
        y = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
        y = keras.layers.BatchNormalization()(y)
        y = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(y)
        y = keras.layers.BatchNormalization()(y)
        y = keras.layers.ReLU()(y)
        y = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(y)
        y = keras.layers.BatchNormalization()(y)
        y = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(y))
        model = keras.Model(inputs, keras.layers.Dense(3)(y))
        student, report = recipe.purify_kcc(
            model, cr=1.5, num_images=32, synthesis_steps=2, synthesis_batch_size=16, epochs=1,
            batch_size=16, scan_settings=dict(margin_images=1, margin_steps=2, num_images=8,
                                              inversion_steps=2, inversion_batch_size=4),
            verbose=False)
        truncated, _ = rewrite.compress(model, 1.5, math.inf)
        print(json.dumps({
            "types": sorted({type(l).__name__ for l in student.layers}),
            "changed": any(not np.allclose(a, b) for a, b in
                           zip(student.get_weights(), truncated.get_weights()))}))
    """)
    assert "DepthwiseConv2D" in result["types"]
    assert "ShiftedDepthwiseConv2D" not in result["types"]
    assert result["changed"]  # what the recipe did to the twin came back
