"""Depthwise convolutions at XLA's speed: `ShiftedDepthwiseConv2D` and `twin(model)`.

XLA lowers a depthwise convolution to a grouped convolution (`feature_group_count` = channels),
which its CPU backend runs far slower than a dense one of the same size (jax-ml/jax#13800,
#23713). On the zoo's width-16 MobileNetV2 (17 depthwise layers, 0.17 M parameters) a forward
pass of 128 images took 0.57 s on the JAX backend against 0.09 s on TensorFlow, and the gradient
with respect to the images 1.64 s against 0.21 s, on one core of the AVX-512 machine; its scan
took 771-991 s against 130-200 s for the ResNet-18s (`benchmarks/results/scan_zoo.md`). A
`K x K` depthwise convolution is also the sum of `K * K` shifted copies of its (padded) input,
each scaled per channel:

    y[n, i, j, c] = sum_{a, b} x_pad[n, s_h * i + a, s_w * j + b, c] * W[a, b, c] (+ bias[c])

which XLA fuses into elementwise work: 0.09 s forward and 0.61 s for the gradient
(`benchmarks/results/probes/depthwise.json`, `probe_depthwise.py`). `twin(model)` swaps every
such layer of a model for that form (same weights, same outputs up to float rounding) when the
backend is JAX; scan and synthesis run on the suspect's twin, and kcc's recipe on the suspect's and
the student's (it copies the student's weights back into a model of the original layers).
"""

import keras
from keras import ops

from kcc import flops
from kcc import rewrite


@keras.saving.register_keras_serializable(package="kcc")
class ShiftedDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` computed as a sum of shifted, per-channel scaled inputs.

    Same arguments, weights and config as `DepthwiseConv2D`; the sum (module docstring) is used
    for channels-last inputs of known height and width with depth multiplier 1 and no dilation,
    the parent's grouped convolution otherwise.

    Input shape:
        `(batch, height, width, channels)`.

    Output shape:
        `(batch, new_height, new_width, channels)`, as `DepthwiseConv2D`.
    """

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        if not shiftable(self) or height is None or width is None:
            return super().call(inputs)
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        if self.padding == "same":  # TensorFlow's rule: the extra row or column goes after
            out_h, out_w = -(-height // sh), -(-width // sw)
            pad_h = max((out_h - 1) * sh + kh - height, 0)
            pad_w = max((out_w - 1) * sw + kw - width, 0)
            inputs = ops.pad(inputs, [[0, 0], [pad_h // 2, pad_h - pad_h // 2],
                                      [pad_w // 2, pad_w - pad_w // 2], [0, 0]])
        else:
            out_h, out_w = (height - kh) // sh + 1, (width - kw) // sw + 1
        kernel = self.kernel[..., 0]  # (kh, kw, C)
        outputs = None
        for a in range(kh):
            for b in range(kw):
                term = inputs[:, a:a + (out_h - 1) * sh + 1:sh,
                              b:b + (out_w - 1) * sw + 1:sw, :] * kernel[a, b]
                outputs = term if outputs is None else outputs + term
        if self.use_bias:
            outputs = outputs + self.bias
        return outputs if self.activation is None else self.activation(outputs)


def shiftable(layer):
    """Whether `layer` is a `DepthwiseConv2D` that `ShiftedDepthwiseConv2D` computes by shifts."""
    return (isinstance(layer, keras.layers.DepthwiseConv2D) and layer.depth_multiplier == 1
            and tuple(layer.dilation_rate) == (1, 1) and layer.data_format == "channels_last")


def twin(model):
    """`model` with every shiftable `DepthwiseConv2D` as a `ShiftedDepthwiseConv2D` (a copy,
    weights copied), on the JAX backend; `model` itself on other backends (TensorFlow's own
    depthwise kernels are fast) or when it has no such layer. Outputs equal `model`'s up to
    float rounding; use the twin only to read the model (it does not share its variables).
    """
    if keras.backend.backend() != "jax":
        return model
    plan = {id(layer): None for layer in flops.iterate_layers(model)
            if type(layer) is keras.layers.DepthwiseConv2D and shiftable(layer)}
    if not plan:
        return model

    def replace(layer, _):
        new = ShiftedDepthwiseConv2D.from_config(layer.get_config())
        return new, lambda: new.set_weights(layer.get_weights())

    return rewrite.clone(model, plan, replace)
