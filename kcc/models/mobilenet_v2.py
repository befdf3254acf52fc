"""MobileNetV2, CIFAR variant (stride 1 in the stem and in the second stage).

Reference: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018.
"""

import keras

from kcc.models import common

# (expansion, output channels at width 64, blocks, first stride)
_STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1))


def _inverted_residual(x, expansion, filters, strides, name):
    in_channels = x.shape[-1]
    y = common.conv_bn(x, expansion * in_channels, 1, 1, f"{name}_expand")
    y = keras.layers.DepthwiseConv2D(
        3, strides=strides, padding="same", use_bias=False, name=f"{name}_depthwise_conv"
    )(y)
    y = keras.layers.BatchNormalization(name=f"{name}_depthwise_bn")(y)
    y = keras.layers.ReLU(name=f"{name}_depthwise_relu")(y)
    y = common.conv_bn(y, filters, 1, 1, f"{name}_project", relu=False)
    if strides != 1:
        return y
    shortcut = x
    if in_channels != filters:
        shortcut = common.conv_bn(x, filters, 1, 1, f"{name}_shortcut", relu=False)
    return keras.layers.Add(name=f"{name}_add")([y, shortcut])


def mobilenet_v2(num_classes=10, width=64, dataset="cifar10", input_size=common.INPUT_SIZE):
    """MobileNetV2 for 32x32 inputs in [0, 1].

    Args:
        num_classes: number of output logits.
        width: 64 is the paper-size model (multiplier 1.0); channels scale by `width / 64`.
        dataset: name whose mean/std the built-in `normalize` layer uses.
        input_size: input height and width in pixels.

    Returns:
        A functional `keras.Model`, `(batch, input_size, input_size, 3)` -> `(batch,
        num_classes)` logits.
    """
    inputs, x = common.inputs_and_normalize(dataset, input_size)
    x = common.conv_bn(x, common.channels(32, width), 3, 1, "stem")
    for stage, (expansion, base, count, stride) in enumerate(_STAGES, start=1):
        for i in range(count):
            x = _inverted_residual(
                x, expansion, common.channels(base, width), stride if i == 0 else 1,
                f"stage{stage}_block{i + 1}",
            )
    x = common.conv_bn(x, common.channels(1280, width), 1, 1, "head")
    return keras.Model(inputs, common.classifier(x, num_classes), name="mobilenet_v2")
