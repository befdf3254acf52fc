"""kcc.interpolation: the weight mix, the blended max-margin image's curve, the stopping rule."""

import keras
import numpy as np

from kcc import interpolation
from kcc import unlearning
from kcc.scan import Trigger


def brightness_classifier(threshold):
    """Class 1 when an image's mean brightness is above `threshold`, else class 0."""
    inputs = keras.Input((4, 4, 1))
    dense = keras.layers.Dense(2)
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(inputs)))
    dense.set_weights([np.array([[-10.0, 10.0]], "float32"),
                       np.array([10 * threshold, -10 * threshold], "float32")])
    return model


def test_mix_is_start_at_zero_end_at_one_and_linear_between():
    start, end = [np.zeros((2, 3)), np.full(4, 2.0)], [np.ones((2, 3)), np.full(4, 4.0)]
    for alpha in (0.0, 0.3, 1.0):
        mixed = interpolation.mix(start, end, alpha)
        np.testing.assert_allclose(mixed[0], np.full((2, 3), alpha))
        np.testing.assert_allclose(mixed[1], np.full(4, 2.0 + 2.0 * alpha))
    state = interpolation.mix([np.array([1, 2], "uint32")], [np.array([5, 9], "uint32")], 0.5)
    np.testing.assert_array_equal(state[0], [5, 9])  # not a weight: the end's, unmixed


def test_blend_curve_is_the_share_sent_to_the_target_at_each_weight():
    model = brightness_classifier(0.41)
    images = np.full((6, 4, 4, 1), 0.2, "float32")  # all class 0
    curve = interpolation.blend_curve(model, np.ones((4, 4, 1), "float32"), 1, images)
    # blended brightness 0.2 + 0.8 a passes 0.41 from a = 0.2625 on
    expected = [float(0.2 + 0.8 * a > 0.41) for a in interpolation.BLEND_WEIGHTS]
    np.testing.assert_array_equal(curve, expected)
    assert curve[4] == 0 and curve[5] == 1  # a = 0.25, 0.3


def mixes_of(tolerance, triggers=()):
    """The brightness classifier distilled (threshold 0.41) from a start more easily sent to
    class 1 (0.21): the mixes' thresholds are 0.21 + 0.2 alpha. `triggers`: unlearned."""
    student = brightness_classifier(0.21)
    start = [np.array(w) for w in student.get_weights()]
    student.set_weights(brightness_classifier(0.41).get_weights())
    images = np.full((8, 4, 4, 1), 0.2, "float32")
    validation = unlearning.SyntheticValidation(student, student, images, triggers)
    margin_images = np.ones((2, 4, 4, 1), "float32")
    report = interpolation.interpolate(student, start, validation, margin_images, [1],
                                       tolerance=tolerance, verbose=False)
    return student, start, report


def test_interpolation_stops_at_the_first_mix_whose_blended_image_gains():
    student, _, report = mixes_of(interpolation.TOLERANCE)
    # alpha 0.9: threshold 0.39, so the blend at 0.25 now sends every image: rejected
    assert [m["alpha"] for m in report["mixes"]] == [1.0, 0.9]
    assert [m["accepted"] for m in report["mixes"]] == [True, False]
    assert report["mixes"][1]["blend"]["1"][4] == 1.0 and report["mixes"][0]["blend"]["1"][4] == 0
    assert report["alpha"] == 1.0
    np.testing.assert_allclose(student.get_weights()[1], [4.1, -4.1], rtol=1e-6)


def test_interpolation_goes_down_to_the_last_alpha_while_nothing_gains():
    student, start, report = mixes_of(tolerance=1.0)
    assert report["alpha"] == interpolation.ALPHAS[-1] == 0.5
    assert all(m["accepted"] for m in report["mixes"])
    np.testing.assert_allclose(student.get_weights()[1], [3.1, -3.1], rtol=1e-6)


def test_no_mix_is_tried_when_an_unlearned_trigger_has_no_target():
    """An all-to-all backdoor's untargeted patch: no max-margin image reads its return, so the
    distilled student is kept where the targeted rule alone would go down to 0.5."""
    mask = np.zeros((4, 4, 1), "float32")
    mask[3, 3] = 1.0
    patch = Trigger("local", None, np.ones((4, 4, 1), "float32"), mask, 1.0, 1.0)
    student, _, report = mixes_of(tolerance=1.0, triggers=[patch])
    assert report["alpha"] == 1.0 and [m["alpha"] for m in report["mixes"]] == [1.0]
    np.testing.assert_allclose(student.get_weights()[1], [4.1, -4.1], rtol=1e-6)
