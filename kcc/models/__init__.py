"""The paper's architectures for 32x32 inputs (other sizes by `input_size`), as functional Keras
models.

Every model takes pixels in [0, 1] and normalises them itself (first layer `normalize`), and
has stable, readable layer names such as `stage2_block1_1_conv`. `width` scales channels;
`width=64` is the paper-size model (ResNet-18: 11,173,962 trainable parameters).
"""

import contextlib
import math

import keras

from kcc.models import common
from kcc.models.mobilenet_v2 import mobilenet_v2
from kcc.models.resnet import preact_resnet18
from kcc.models.resnet import resnet18
from kcc.models.resnet import resnet34
from kcc.models.vgg import vgg19_bn

ARCHITECTURES = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "preact_resnet18": preact_resnet18,
    "vgg19_bn": vgg19_bn,
    "mobilenet_v2": mobilenet_v2,
}


def get(name, num_classes=10, width=64, dataset="cifar10", input_size=common.INPUT_SIZE):
    """Builds an architecture by name (one of `ARCHITECTURES`) for square RGB inputs of
    `input_size` pixels (32: CIFAR-10 and the zoo's GTSRB)."""
    if name not in ARCHITECTURES:
        raise ValueError(
            f"Unknown architecture. Expected one of {sorted(ARCHITECTURES)}. Received name={name!r}."
        )
    return ARCHITECTURES[name](num_classes=num_classes, width=width, dataset=dataset,
                               input_size=input_size)


def trainable_params(model):
    """Number of trainable weights (the figure the paper reports; excludes BN moving stats)."""
    return int(sum(math.prod(w.shape) for w in model.trainable_weights))


@contextlib.contextmanager
def trainable_restored(*models):
    """Context manager: on exit every model in `models`, each model nested in it and each of
    their layers has the `trainable` flag it had on entry, whatever the code inside set.

    Keras's `trainable` setter passes a model's flag down to every layer, so restoring only a
    model's own flag unfreezes layers that had been frozen one by one, and restoring only the
    layers leaves the model's own flag as the code inside set it (on TensorFlow a later `fit`
    then trains with it). Flags are restored outermost first, so each layer ends with its own.
    """
    def walk(layer):
        yield layer
        if isinstance(layer, keras.Model):
            for inner in layer.layers:
                yield from walk(inner)

    saved = [(layer, layer.trainable) for model in models for layer in walk(model)]
    try:
        yield
    finally:
        for layer, flag in saved:
            layer.trainable = flag
