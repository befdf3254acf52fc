"""Floating-point operations of a model's layers, one implementation for every report.

FLOPs here count a multiply and an add as two operations (`FLOPs = 2 * MACs`) for
convolutions, `TuckerConv2D` and dense layers, at batch size 1; element-wise layers
(BatchNorm, ReLU, Add, pooling) are not counted, as is customary.
"""

import math

import keras

from kcc import layers as kcc_layers


def layer_flops(layer):
    """FLOPs of one call of `layer` at batch size 1 (0 for layers that are not counted).

    The layer must have been called once in a functional graph (its input and output shapes
    are read from it).
    """
    if isinstance(layer, kcc_layers.TuckerConv2D):
        _, h_in, w_in, c_in = layer.input.shape
        _, h, w, c_out = layer.output.shape
        r1, r2 = layer.ranks
        k1, k2 = layer.kernel_size
        if (k1, k2) == (1, 1):  # subsampled before the input factor (see TuckerConv2D.call)
            h_in, w_in = h, w
        return 2 * (h_in * w_in * c_in * r2 + h * w * k1 * k2 * r2 * r1 + h * w * r1 * c_out)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        _, h, w, c_out = layer.output.shape
        return 2 * h * w * math.prod(layer.kernel_size) * c_out
    if isinstance(layer, keras.layers.Conv2D):
        c_in = layer.input.shape[-1]
        _, h, w, c_out = layer.output.shape
        return 2 * h * w * math.prod(layer.kernel_size) * (c_in // layer.groups) * c_out
    if isinstance(layer, keras.layers.Dense):
        return 2 * layer.input.shape[-1] * layer.units
    return 0


def model_flops(model):
    """Per-layer FLOPs of a functional or Sequential model, nested models included.

    Returns:
        `(total, per_layer)`: an int and a dict `{layer name: FLOPs}` of the counted layers.
    """
    per_layer = {}
    for layer in iterate_layers(model):
        count = layer_flops(layer)
        if count:
            per_layer[layer.name] = int(count)
    return sum(per_layer.values()), per_layer


def iterate_layers(model):
    """All leaf layers of `model`, descending into nested models, in graph order."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from iterate_layers(layer)
        else:
            yield layer
