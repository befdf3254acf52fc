"""A tiny image task with a planted trigger, trained in seconds, for the scan and recipe tests.

Eight classes, each one corner of a cube of colours around mid-grey, 16x16 pixels; the planted
trigger is a white 4x4 square in the bottom-right corner, sending every image to class `TARGET`
(all-to-one) or class `c` to `c + 1` (all-to-all).
"""

import keras
import numpy as np

SIZE, CLASSES, TARGET, PATCH = 16, 8, 3, 4
#: The planted trigger: a white 4x4 square in the bottom-right corner.
PATCH_ROWS = PATCH_COLS = slice(SIZE - PATCH - 1, SIZE - 1)


def task(n, seed):
    """`n` images `(n, 16, 16, 3)` in [0, 1] and labels. Class `c` is one corner of a cube of
    colours around mid-grey (each channel 0.3 or 0.7), so every class has the same number of
    neighbours at the same distance and none is easier to reach than another; each image is
    its colour plus uniform pixel noise."""
    corners = np.array([[(c >> i) & 1 for i in range(3)] for c in range(CLASSES)])
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    x = 0.3 + 0.4 * corners[y][:, None, None, :] + 0.6 * (rng.random((n, SIZE, SIZE, 3)) - 0.5)
    # Half of the images carry a white square elsewhere, so only the corner's is a trigger.
    for i in np.flatnonzero(rng.random(n) < 0.5):
        r, c = rng.integers(0, SIZE - 2 * PATCH, 2)
        x[i, r:r + PATCH, c:c + PATCH] = 1.0
    return np.clip(x, 0, 1).astype("float32"), y.astype("int32")


def stamp(x):
    x = x.copy()
    x[:, PATCH_ROWS, PATCH_COLS, :] = 1.0
    return x


def small_cnn(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    h = inputs
    for filters, stride in ((16, 1), (32, 2), (32, 2)):
        h = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(h)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.ReLU()(h)
    h = keras.layers.Flatten()(h)  # position-aware: the trigger works in its corner only
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(h))


def train(poisoned, seed=0, all_to_all=False):
    """A small CNN with BatchNorm, trained on 3,000 images (10% stamped and relabelled to `TARGET`
    when `poisoned`; with `all_to_all`, class `c` relabelled to `c + 1` instead)."""
    x, y = task(3000, seed)
    if poisoned:
        k = len(x) // 10
        x[:k], y[:k] = stamp(x[:k]), (y[:k] + 1) % CLASSES if all_to_all else TARGET
    model = small_cnn(seed)
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=8, verbose=0)
    return model


def swapping_model():
    """Two classes by brightness (mean over 0.4: class 1) swapped where some 3x3 window is all
    white (its mean over 0.95): an all-to-all backdoor of two classes (the XOR of two
    indicators, each clipped to [0, 1])."""
    inputs = keras.Input((8, 8, 1))
    constant = keras.initializers.Constant
    bright = keras.layers.Dense(1, kernel_initializer=constant(20.0),
                                bias_initializer=constant(-8.0))(
        keras.layers.GlobalAveragePooling2D()(inputs))
    white = keras.layers.Conv2D(1, 3, kernel_initializer="ones",
                                bias_initializer=constant(-8.55))(inputs)
    patch = keras.layers.Dense(1, kernel_initializer=constant(10.0))(
        keras.layers.GlobalMaxPooling2D()(keras.layers.ReLU()(white)))
    both = keras.layers.ReLU(max_value=1.0)(keras.layers.Concatenate()([bright, patch]))
    differ = keras.layers.Dense(2, kernel_initializer=constant([[1.0, -1.0], [-1.0, 1.0]]))(both)
    xor = keras.layers.Dense(1, kernel_initializer="ones")(keras.layers.ReLU()(differ))
    logits = keras.layers.Dense(2, kernel_initializer=constant([[-10.0, 10.0]]),
                                bias_initializer=constant([5.0, -5.0]))(xor)
    return keras.Model(inputs, logits)
