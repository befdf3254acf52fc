"""Pieces shared by kcc's model families: the input block and channel scaling."""

import keras

from kcc import data

INPUT_SIZE = 32  # CIFAR-10 and the zoo's GTSRB: 32 x 32 RGB


def inputs_and_normalize(dataset, input_size=INPUT_SIZE):
    """The model input (pixels in [0, 1]) and its normalisation by the dataset's statistics.

    Normalisation lives inside every kcc model, so attacks, triggers, synthetic images and
    adversarial perturbations all work in [0, 1] pixel space.

    Args:
        dataset: name whose channel mean/std the `normalize` layer uses.
        input_size: height and width of the RGB input in pixels (at least 1).

    Returns:
        `(inputs, normalized)`: a `keras.Input` of shape `(input_size, input_size, 3)` and the
        normalised tensor.
    """
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise ValueError(f"input_size must be an integer >= 1 (pixels). Received "
                         f"input_size={input_size!r}.")
    mean, std = data.normalization(dataset)
    inputs = keras.Input((input_size, input_size, 3), name="pixels")
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
