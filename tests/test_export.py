"""TFLite export (float, data-free int8, builtin ops only) and the FLOPs closed form."""

import os

import keras
import numpy as np
import pytest

from kcc import flops
from kcc import layers as kcc_layers
from kcc import models
from kcc import rewrite

from tests import backends

ZOO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "zoo")

tensorflow_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TFLite export needs the TensorFlow backend."
)


@pytest.fixture(scope="module")
def compact(tmp_path_factory):
    """A ResNet-18 width 4 compressed 2x, its float TFLite export, and 32 test images."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TFLite export needs the TensorFlow backend.")
    pytest.importorskip("ai_edge_litert")
    from kcc import export

    keras.utils.set_random_seed(0)
    model, report = rewrite.compress(models.resnet18(width=4), cr=2)
    path = str(tmp_path_factory.mktemp("export") / "compact.tflite")
    info = export.to_tflite(model, path)
    with np.load(os.path.join(ZOO, "cifar10_test_slice.npz")) as f:
        x = f["x"][:32].astype(np.float32) / 255.0
    return model, report, x, info


@tensorflow_only
def test_float_export_matches_keras(compact):
    from kcc import export

    model, report, x, info = compact
    path = info["path"]
    assert os.path.getsize(path) == info["size_bytes"] and info["quantization"] is None
    # Every factored conv is three builtin CONV_2D ops (plus the RGB stem); BN folded away.
    factored = sum(layer.factored for layer in report.layers)
    assert info["ops"]["CONV_2D"] == 1 + 3 * factored + (len(report.layers) - factored)
    assert info["ops"]["ADD"] == 8  # the residual adds only: BN is folded into the convs
    assert not any(name.startswith("CUSTOM") for name in info["ops"])
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(export.predict(path, x), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(FileExistsError, match="exists"):
        export.to_tflite(model, path)


@tensorflow_only
def test_int8_export_with_synthetic_calibration(compact, tmp_path):
    from kcc import export

    model, _, x, float_info = compact
    path = str(tmp_path / "int8.tflite")
    info = export.to_tflite(model, path, quantization="int8", num_calibration_images=32,
                            calibration_steps=5)
    assert info["calibration"]["source"].startswith("synthetic")
    assert info["ops"].get("QUANTIZE") == 1 and info["ops"].get("DEQUANTIZE") == 1
    assert info["size_bytes"] < 0.7 * float_info["size_bytes"]  # int8 weights
    agreement = np.mean(export.predict(path, x).argmax(-1) == model.predict(x, verbose=0).argmax(-1))
    assert agreement >= 0.75, f"int8 top-1 agreement {agreement:.2f} with the float model"


@tensorflow_only
def test_unsupported_op_fails_instead_of_flex():
    pytest.importorskip("ai_edge_litert")
    from kcc import export

    # A determinant has a TF kernel (a Flex op would run it) but no TFLite builtin.
    inputs = keras.Input((4, 4, 3))
    det = keras.layers.Lambda(
        lambda x: keras.ops.linalg.det(keras.ops.transpose(x, (0, 3, 1, 2))), output_shape=(3,))
    with pytest.raises(ValueError, match="no builtin kernel for MatrixDeterminant"):
        export.convert(keras.Model(inputs, det(inputs)))


def test_export_refuses_other_backends():
    message = "TFLite export needs the TensorFlow backend of Keras; the active backend is 'jax'"
    if keras.backend.backend() == "jax":
        from kcc import export

        with pytest.raises(RuntimeError, match=message):
            export.convert(keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)]))
        return
    pytest.importorskip("jax")
    result = backends.run("jax", """
        import json
        import keras
        from kcc import export
        try:
            export.convert(keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)]))
            print(json.dumps({"error": None}))
        except RuntimeError as e:
            print(json.dumps({"error": str(e)}))
    """)
    assert result["error"] and result["error"].startswith(message)


@pytest.mark.parametrize(
    "case",
    [
        {"shape": (9, 11, 5), "filters": 7, "kernel": (3, 2), "strides": 2, "padding": "valid",
         "out": (4, 5)},
        {"shape": (9, 11, 5), "filters": 7, "kernel": (3, 3), "strides": 2, "padding": "same",
         "out": (5, 6)},
        {"shape": (8, 8, 16), "filters": 32, "kernel": (1, 1), "strides": 1, "padding": "valid",
         "out": (8, 8)},
    ],
)
def test_conv_flops_closed_form(case):
    inputs = keras.Input(case["shape"])
    conv = keras.layers.Conv2D(case["filters"], case["kernel"], strides=case["strides"],
                               padding=case["padding"])
    keras.Model(inputs, conv(inputs))
    h, w = case["out"]
    k1, k2 = case["kernel"]
    assert flops.layer_flops(conv) == 2 * h * w * k1 * k2 * case["shape"][-1] * case["filters"]


def test_tucker_flops_closed_form():
    inputs = keras.Input((8, 8, 16))
    layer = kcc_layers.TuckerConv2D(32, 3, ranks=(6, 4), strides=2, padding="same")
    model = keras.Model(inputs, layer(inputs))
    # 1x1 16->4 at 8x8, 3x3 4->6 at 4x4 (stride 2), 1x1 6->32 at 4x4.
    expected = 2 * (8 * 8 * 16 * 4 + 4 * 4 * 9 * 4 * 6 + 4 * 4 * 6 * 32)
    assert flops.layer_flops(layer) == expected
    assert flops.model_flops(model) == (expected, {layer.name: expected})
