"""Pieces shared by kcc's model families: the input block and channel scaling."""

import keras

from kcc import data

INPUT_SHAPE = (32, 32, 3)


def inputs_and_normalize(dataset, input_shape=INPUT_SHAPE):
    """The model input (pixels in [0, 1]) and its normalisation by the dataset's statistics.

    Normalisation lives inside every kcc model, so attacks, triggers, synthetic images and
    adversarial perturbations all work in [0, 1] pixel space.

    Returns:
        `(inputs, normalized)`: a `keras.Input` of `input_shape` and the normalised tensor.
    """
    mean, std = data.normalization(dataset)
    inputs = keras.Input(input_shape, name="pixels")
    x = keras.layers.Normalization(
        mean=list(mean), variance=[s * s for s in std], name="normalize"
    )(inputs)
    return inputs, x


def channels(base, width, reference=64):
    """`base` channels of the paper-size model scaled by `width / reference` (at least 1)."""
    if width <= 0:
        raise ValueError(f"width must be strictly positive. Received width={width}.")
    return max(1, int(round(base * width / reference)))


def conv_bn(x, filters, kernel_size, strides, name, relu=True):
    """`Conv2D` (no bias) -> `BatchNormalization` [-> ReLU], named `{name}_conv`, `{name}_bn`."""
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False,
        name=f"{name}_conv",
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    if relu:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def classifier(x, num_classes):
    """Global average pooling and the final dense layer producing logits."""
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.layers.Dense(num_classes, name="logits")(x)
