"""`kcc.parallel`: synthesis, the scan and distillation on two virtual CPU devices equal one
device."""

import textwrap

import keras
import numpy as np
import pytest

from kcc import parallel
from tests import backends

#: Two virtual CPU devices for JAX: the same code path as two GPUs, on any machine.
TWO_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}

#: Defines `tiny(seed, classes=4)`, a small BatchNorm classifier on 8x8 images, in a subprocess.
TINY = """
import keras


def tiny(seed, classes=4):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(classes)(h))
"""


def test_names_and_batch_check():
    assert parallel.get(None) is None
    assert parallel.get("off") is None
    assert parallel.get("auto") is None  # no accelerators here, or not JAX
    with pytest.raises(ValueError, match="Unknown distribution.*Received 'ddp'"):
        parallel.get("ddp")
    parallel.check_batch_size(None, 16, 63)  # one device takes any batch


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="the refusal of other backends")
def test_other_backends_are_refused():
    with pytest.raises(ValueError, match="JAX backend only.*tf.distribute.*Received backend="):
        parallel.data_parallel()


def test_two_devices_equal_one():
    pytest.importorskip("jax")
    result = backends.run("jax", TINY + textwrap.dedent("""
        import json
        import jax
        import keras
        import numpy as np
        from kcc import parallel
        from kcc import synthesis
        from kcc import unlearning

        out = {"devices": len(jax.devices()), "fit_devices": [], "image_shards": []}
        fit = unlearning.UnlearningDistiller.fit
        synthesizer_fit = synthesis.Synthesizer.fit

        def spy(self, *args, **kwargs):  # on how many devices the student's weights train
            out["fit_devices"].append(len(self.student.weights[0].value.sharding.device_set))
            return fit(self, *args, **kwargs)

        def synthesizer_spy(self, *args, **kwargs):  # how many images each device holds
            value = self.normalised_images.value
            out["image_shards"].append(sorted(s.data.shape[0] for s in value.addressable_shards))
            return synthesizer_fit(self, *args, **kwargs)

        unlearning.UnlearningDistiller.fit = spy
        synthesis.Synthesizer.fit = synthesizer_spy
        rng = np.random.default_rng(0)
        images = rng.random((64, 8, 8, 3)).astype("float32")
        validation = rng.random((21, 8, 8, 3)).astype("float32")  # an odd count: padded
        teacher = tiny(0)
        distribution = parallel.data_parallel()
        teacher.layers[2].moving_mean.assign(np.linspace(-0.2, 0.2, 8, dtype="float32"))
        for name, where in (("one", None), ("two", distribution)):
            made, labels, _ = synthesis.synthesize(teacher, num_images=16, steps=5, batch_size=8,
                                                   verbose=False, distribution=where)
            out["synthesis_" + name] = made.tolist()
        for name, where in (("one", None), ("two", distribution)):
            student = tiny(1)
            history, chosen = unlearning.distill(
                teacher, student, images, validation, epochs=1, batch_size=16,
                learning_rate=1e-2, verbose=False, seed=3, distribution=where)
            out[name] = {"weights": [w.tolist() for w in student.get_weights()],
                         "loss": history.history["loss"], "epoch": chosen.chosen_epoch}
        # Back on one device afterwards: a batch of 5 would not split over two.
        out["after"] = [len(student.weights[0].value.sharding.device_set),
                        list(student.predict(images[:5], verbose=0).shape)]
        try:
            unlearning.distill(teacher, student, images[:63], validation, epochs=1,
                               batch_size=16, verbose=False, distribution=distribution)
        except ValueError as e:
            out["error"] = str(e)
        print(json.dumps(out))
    """), env=TWO_DEVICES)
    assert result["devices"] == 2
    assert result["image_shards"] == [[8]] * 2 + [[4, 4]] * 2  # two batches of 8 images
    np.testing.assert_allclose(np.array(result["synthesis_two"]),
                               np.array(result["synthesis_one"]), rtol=1e-4, atol=1e-5)
    assert result["fit_devices"] == [1, 2]
    one, two = result["one"], result["two"]
    assert one["epoch"] == two["epoch"] == 1  # the trained weights, not the starting ones
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    for a, b in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-4, atol=1e-5)
    assert result["after"] == [1, [5, 4]]
    assert result["error"].startswith("Data-parallel work over 2 devices splits every batch")
    assert "Received batch_size=16, num_images=63 (last batch: 15)." in result["error"]


def test_the_scan_on_two_devices_equals_one():
    pytest.importorskip("jax")
    result = backends.run("jax", TINY + textwrap.dedent("""
        import json
        import keras
        import numpy as np
        from kcc import parallel
        from kcc import scan
        from kcc.scan import inversion
        from kcc.scan import max_margin

        out = {"margin_shards": [], "inversion_devices": []}
        ascend, fit = max_margin.ascend, inversion.TriggerInversion.fit

        def ascend_spy(ascent, *args, **kwargs):  # how many margin images each device holds
            shards = ascent.images.value.addressable_shards
            out["margin_shards"].append(sorted(s.data.shape[0] for s in shards))
            return ascend(ascent, *args, **kwargs)

        def fit_spy(self, *args, **kwargs):  # on how many devices the triggers train
            out["inversion_devices"].append(len(self.mask_logits.value.sharding.device_set))
            return fit(self, *args, **kwargs)

        max_margin.ascend, inversion.TriggerInversion.fit = ascend_spy, fit_spy
        model = tiny(0, 4)
        model.layers[2].moving_mean.assign(np.linspace(-0.2, 0.2, 8, dtype="float32"))
        budget = dict(margin_images=2, margin_steps=5, num_images=16, synthesis_steps=5,
                      inversion_steps=4, inversion_batch_size=4, verbose=False)
        for name, where in (("one", None), ("two", "data_parallel")):
            report = scan.scan(model, distribution=where, **budget)
            out[name] = {"per_class": report.per_class, "notes": report.notes,
                         "untargeted": report.untargeted}
        # 3 classes x 1 image do not split over two devices: the ascent runs on one.
        odd = scan.scan(tiny(1, 3), distribution="data_parallel",
                        **{**budget, "margin_images": 1})
        out["odd_notes"] = odd.notes
        try:
            scan.scan(model, distribution="data_parallel", **{**budget, "num_images": 15})
        except ValueError as e:
            out["error"] = str(e)
        print(json.dumps(out))
    """), env=TWO_DEVICES)
    assert result["margin_shards"] == [[8], [4, 4], [3]]
    assert result["inversion_devices"] == [1, 1, 2, 2, 2, 2]  # targeted, then untargeted
    one, two = result["one"], result["two"]
    # The tiny model's tail is too shallow for the feature signal (one device in any case).
    shallow = [n for n in one["notes"] if n.startswith("The feature-posterior signal did not run")]
    assert one["notes"] == two["notes"] == shallow and len(shallow) == 1
    for a, b in zip(one["per_class"] + one["untargeted"], two["per_class"] + two["untargeted"]):
        assert a.keys() == b.keys()
        for key, value in a.items():
            if isinstance(value, float) and np.isfinite(value):
                np.testing.assert_allclose(b[key], value, rtol=1e-3, atol=1e-4, err_msg=key)
    assert len(result["odd_notes"]) == 2 and result["odd_notes"][0] == (
        "The margin ascent's 3 images do not split over 2 devices: it ran on one.")
    assert result["odd_notes"][1].startswith("The feature-posterior signal did not run: the tail")
    assert "Received batch_size=15, num_images=15 (last batch: 0)." in result["error"]
