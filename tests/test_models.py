import keras
import numpy as np
import pytest

from kcc import models
from tests import backends


def test_resnet18_width64_has_the_papers_parameter_count():
    model = models.resnet18(width=64)
    assert abs(models.trainable_params(model) - 11.17e6) < 0.01e6
    assert models.trainable_params(model) == 11_173_962


@pytest.mark.parametrize("name", sorted(models.ARCHITECTURES))
@pytest.mark.parametrize("width", [64, 16])
def test_builds_and_gives_logits(name, width):
    model = models.get(name, num_classes=43, width=width)
    out = model(np.zeros((2, 32, 32, 3), np.float32))
    assert tuple(out.shape) == (2, 43)


@pytest.mark.parametrize("name", sorted(models.ARCHITECTURES))
def test_keras_round_trip_gives_identical_outputs(name, tmp_path):
    import keras

    model = models.get(name, width=16)
    x = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]


def test_layer_names_are_stable():
    names = [l.name for l in models.resnet18(width=8).layers]
    assert names[:4] == ["pixels", "normalize", "stem_conv", "stem_bn"]
    assert "stage4_block2_2_conv" in names and names[-1] == "logits"


def test_normalisation_lives_in_the_model():
    model = models.resnet18(width=8, dataset="gtsrb")
    layer = model.get_layer("normalize")
    np.testing.assert_allclose(np.ravel(layer.mean), [0.3403, 0.3121, 0.3214], atol=1e-6)


@pytest.mark.parametrize("name", sorted(models.ARCHITECTURES))
def test_other_input_sizes(name):
    model = models.get(name, width=8, input_size=64)
    assert tuple(model.inputs[0].shape) == (None, 64, 64, 3)
    assert tuple(model(np.zeros((2, 64, 64, 3), np.float32)).shape) == (2, 10)
    # the same weights as at 32 px: only the activations grow
    assert models.trainable_params(model) == models.trainable_params(models.get(name, width=8))


def test_bad_width_and_name():
    with pytest.raises(ValueError, match="width must be strictly positive"):
        models.resnet18(width=0)
    with pytest.raises(ValueError, match="Unknown architecture"):
        models.get("resnet50")
    with pytest.raises(ValueError, match="input_size must be an integer >= 1"):
        models.resnet18(width=8, input_size=(64, 64))


def test_every_architecture_runs_on_jax():
    result = backends.run("jax", """
        import json, numpy as np
        from kcc import models
        out = {n: list(models.get(n, width=16)(np.zeros((2, 32, 32, 3), np.float32)).shape)
               for n in models.ARCHITECTURES}
        print(json.dumps(out))
    """)
    assert result == {n: [2, 10] for n in models.ARCHITECTURES}


def _flags(model):
    return [model.trainable, model.layers[1].trainable,
            *(l.trainable for l in model.layers[1].layers), model.layers[2].trainable]


def test_trainable_restored_gives_back_every_flag_even_on_error():
    inner = keras.Sequential([keras.layers.Dense(3), keras.layers.Dense(3)], name="inner")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inner(inputs)))
    inner.layers[0].trainable = False  # one layer frozen on its own, inside a nested model
    before = _flags(model)
    assert before == [True, True, False, True, True]
    with models.trainable_restored(model):
        model.trainable = False
        assert not any(_flags(model))
    assert _flags(model) == before
    with pytest.raises(RuntimeError), models.trainable_restored(model):
        model.trainable = True  # would unfreeze the frozen layer if only the model were kept
        raise RuntimeError
    assert _flags(model) == before
    assert len(model.trainable_weights) == 4  # the frozen Dense's kernel and bias stay out
