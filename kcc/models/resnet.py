"""ResNet-18/34 and pre-activation ResNet-18, CIFAR variants (3x3 stem, no max-pool).

Reference: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, and
"Identity Mappings in Deep Residual Networks", ECCV 2016.
"""

import keras

from kcc.models import common


def _basic_block(x, filters, strides, name):
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = common.conv_bn(x, filters, 1, strides, f"{name}_shortcut", relu=False)
    y = common.conv_bn(x, filters, 3, strides, f"{name}_1")
    y = common.conv_bn(y, filters, 3, 1, f"{name}_2", relu=False)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def _preact_block(x, filters, strides, name):
    y = keras.layers.BatchNormalization(name=f"{name}_1_bn")(x)
    y = keras.layers.ReLU(name=f"{name}_1_relu")(y)
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(
            filters, 1, strides=strides, use_bias=False, name=f"{name}_shortcut_conv"
        )(y)
    y = keras.layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_1_conv"
    )(y)
    y = keras.layers.BatchNormalization(name=f"{name}_2_bn")(y)
    y = keras.layers.ReLU(name=f"{name}_2_relu")(y)
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    return keras.layers.Add(name=f"{name}_add")([y, shortcut])


def _resnet(blocks, name, num_classes, width, dataset, input_size, preact=False):
    inputs, x = common.inputs_and_normalize(dataset, input_size)
    if preact:
        x = keras.layers.Conv2D(
            common.channels(64, width), 3, padding="same", use_bias=False, name="stem_conv"
        )(x)
    else:
        x = common.conv_bn(x, common.channels(64, width), 3, 1, "stem")
    block = _preact_block if preact else _basic_block
    for stage, (count, base) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        for i in range(count):
            strides = 2 if stage > 1 and i == 0 else 1
            x = block(x, common.channels(base, width), strides, f"stage{stage}_block{i + 1}")
    if preact:
        x = keras.layers.BatchNormalization(name="final_bn")(x)
        x = keras.layers.ReLU(name="final_relu")(x)
    return keras.Model(inputs, common.classifier(x, num_classes), name=name)


def resnet18(num_classes=10, width=64, dataset="cifar10", input_size=common.INPUT_SIZE):
    """ResNet-18 for 32x32 inputs in [0, 1]; width 64 is the paper's 11.17M-parameter model.

    Args:
        num_classes: number of output logits.
        width: channels of the first stage (64 = paper size; later stages double it).
        dataset: name whose mean/std the built-in `normalize` layer uses.
        input_size: input height and width in pixels; the CIFAR stem keeps full resolution, so
            every layer's cost grows with `input_size ** 2` (global pooling before the logits).

    Returns:
        A functional `keras.Model` mapping `(batch, input_size, input_size, 3)` pixels to
        `(batch, num_classes)` logits.
    """
    return _resnet((2, 2, 2, 2), "resnet18", num_classes, width, dataset, input_size)


def resnet34(num_classes=10, width=64, dataset="cifar10", input_size=common.INPUT_SIZE):
    """ResNet-34 for 32x32 inputs; arguments as `resnet18`."""
    return _resnet((3, 4, 6, 3), "resnet34", num_classes, width, dataset, input_size)


def preact_resnet18(num_classes=10, width=64, dataset="cifar10", input_size=common.INPUT_SIZE):
    """Pre-activation ResNet-18 (BN-ReLU-conv blocks) for 32x32 inputs; arguments as `resnet18`."""
    return _resnet((2, 2, 2, 2), "preact_resnet18", num_classes, width, dataset, input_size,
                   preact=True)
