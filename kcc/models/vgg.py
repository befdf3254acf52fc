"""VGG-19 with batch normalisation, CIFAR variant (one dense layer on 512 features).

Reference: Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015.
"""

import keras

from kcc.models import common

_VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M")


def vgg19_bn(num_classes=10, width=64, dataset="cifar10", input_size=common.INPUT_SIZE):
    """VGG-19-BN for 32x32 inputs in [0, 1].

    Args:
        num_classes: number of output logits.
        width: channels of the first block (64 = paper size; the others scale with it).
        dataset: name whose mean/std the built-in `normalize` layer uses.
        input_size: input height and width in pixels.

    Returns:
        A functional `keras.Model`, `(batch, input_size, input_size, 3)` -> `(batch,
        num_classes)` logits.
    """
    inputs, x = common.inputs_and_normalize(dataset, input_size)
    block, index = 1, 1
    for item in _VGG19:
        if item == "M":
            x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
            block, index = block + 1, 1
            continue
        x = common.conv_bn(x, common.channels(item, width), 3, 1, f"block{block}_{index}")
        index += 1
    return keras.Model(inputs, common.classifier(x, num_classes), name="vgg19_bn")
