import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from kcc import saving


def test_atomic_writes_get_the_usual_file_mode_and_leave_no_temporaries(tmp_path):
    old = os.umask(0o022)
    try:
        saving.write_json({"a": 1}, str(tmp_path / "r.json"))
        saving.write_text("x", str(tmp_path / "r.md"))
    finally:
        os.umask(old)
    for name in ("r.json", "r.md"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["r.json", "r.md"]


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "r.json"
    saving.write_json({"a": 1}, str(path))
    with pytest.raises(TypeError):
        saving.write_json({"a": object()}, str(path))
    assert path.read_text().strip().startswith("{")
    assert os.listdir(tmp_path) == ["r.json"]


def test_existing_outputs_are_refused_naming_the_flags(tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"Refusing to overwrite the input file .*with --output"):
        saving.check_output(str(path), overwrite=True, inputs=[str(path)])
    with pytest.raises(FileExistsError,
                       match=r"m.keras exists: pass --overwrite \(overwrite=True\) to replace it, "
                             r"or choose another path with --output\."):
        saving.check_output(str(path))


# ------------------------------------------------------------------------------- plain Keras

# Loads a model with Keras while any import of kcc fails, then predicts on the saved inputs.
_LOAD_WITHOUT_KCC = """
import sys
class _NoKcc:
    def find_spec(self, name, path=None, target=None):
        if name == "kcc" or name.startswith("kcc."):
            raise ImportError("kcc is not installed here: " + name)
sys.meta_path.insert(0, _NoKcc())
import keras
import numpy as np
model = keras.saving.load_model(sys.argv[1])
with np.load(sys.argv[2]) as f:
    np.save(sys.argv[3], model.predict(f["x"], verbose=0))
print(sorted({type(layer).__name__ for layer in model.layers}))
try:  # the same model with kcc's layer: the hook must make it fail
    keras.saving.load_model(sys.argv[4])
except Exception as e:
    print("refused:", " ".join(str(e).split()))
"""


def _factored(sequential=False):
    """Every `TuckerConv2D` setting `to_plain` must carry: strides, padding, dilation, bias,
    activation, a pointwise layer, a frozen layer."""
    import keras

    from kcc.layers import TuckerConv2D

    layers = [
        TuckerConv2D(6, 3, ranks=(4, 3), strides=2, padding="same", activation="relu", name="a"),
        TuckerConv2D(7, 1, ranks=(3, 2), strides=2, use_bias=False, name="b", trainable=False),
        keras.layers.BatchNormalization(name="bn"),
        TuckerConv2D(5, (3, 2), ranks=(2, 2), dilation_rate=2, name="c"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, name="logits"),
    ]
    if sequential:
        model = keras.Sequential([keras.Input((17, 17, 5)), *layers])
    else:
        x = inputs = keras.Input((17, 17, 5))
        for layer in layers:
            x = layer(x)
        model = keras.Model(inputs, x)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") if "variance" not in w.path
                       else rng.uniform(0.5, 2, w.shape).astype("float32") for w in model.weights])
    return model


def _inputs():
    return np.random.default_rng(1).random((4, 17, 17, 5)).astype("float32")


@pytest.mark.parametrize("sequential", [False, True])
def test_to_plain_gives_the_same_predictions_with_builtin_layers_only(sequential):
    import keras

    from kcc import flops

    model = _factored(sequential)
    plain = saving.to_plain(model)
    leaves = [l for l in flops.iterate_layers(plain) if not isinstance(l, keras.layers.InputLayer)]
    assert {type(l).__name__ for l in leaves} == {"Conv2D", "BatchNormalization",
                                                 "GlobalAveragePooling2D", "Dense"}
    assert [l.name for l in leaves if l.name.startswith("b_")] == [
        "b_input_factor", "b_core", "b_output_factor"]
    assert all(not l.trainable for l in leaves if l.name.startswith("b_"))
    assert sum(l.count_params() for l in leaves) == model.count_params()
    x = _inputs()
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    plain.get_layer("logits").kernel.assign(np.zeros((5, 3), "float32"))  # shares no weights
    assert np.abs(keras.ops.convert_to_numpy(model.get_layer("logits").kernel)).sum() > 0


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_the_plain_file_loads_where_kcc_cannot_be_imported(tmp_path, backend):
    model = _factored()
    paths = [str(tmp_path / "plain.keras"), str(tmp_path / "x.npz"), str(tmp_path / "y.npy"),
             str(tmp_path / "factored.keras")]
    saving.save_model(saving.to_plain(model), paths[0])
    saving.save_model(model, paths[3])
    np.savez(paths[1], x=_inputs())
    script = tmp_path / "load.py"
    script.write_text(_LOAD_WITHOUT_KCC)
    # -I: no current folder or PYTHONPATH on sys.path; the meta-path hook refuses the installed kcc.
    proc = subprocess.run(
        [sys.executable, "-I", str(script), *paths], capture_output=True, text=True, timeout=300,
        env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    listed, refused = proc.stdout.strip().splitlines()[-2:]
    assert "Conv2D" in listed and "TuckerConv2D" not in listed
    assert refused.startswith("refused:") and "TuckerConv2D" in refused  # the hook does block kcc
    np.testing.assert_allclose(np.load(paths[2]), model.predict(_inputs(), verbose=0), atol=1e-5)


def test_the_kcc_file_loads_after_import_kcc_alone(tmp_path):
    path = str(tmp_path / "factored.keras")
    saving.save_model(_factored(), path)
    code = f"import kcc, keras; keras.saving.load_model({path!r}); print('loaded')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0 and "loaded" in proc.stdout, proc.stderr[-3000:]
