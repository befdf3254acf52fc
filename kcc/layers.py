"""`TuckerConv2D`: a 2D convolution in Tucker-2 form (C&C Eq. 7-8).

Reference: Phan et al., "Clean and Compact", ECCV 2024; Kim et al., "Compression of Deep
Convolutional Neural Networks for Fast and Low Power Mobile Applications", ICLR 2016.
"""

import keras
import numpy as np
from keras import ops

from kcc import tucker


@keras.saving.register_keras_serializable(package="kcc")
class TuckerConv2D(keras.layers.Layer):
    """A `Conv2D` factored as 1x1 conv `I -> R2`, KxK core conv `R2 -> R1`, 1x1 conv `R1 -> O`.

    The three kernels are the Tucker-2 factors of a conv kernel `W (K, K, I, O)`:
    `input_factor (1, 1, I, R2)` holds `U2`, `core (K, K, R2, R1)` the core `G`, and
    `output_factor (1, 1, R1, O)` holds `U1^T`; the core conv carries the original strides,
    padding and dilation, and the optional bias is added after the last conv. With full ranks
    the layer computes exactly what the original `Conv2D` does.

    Args:
        filters: output channels `O`.
        kernel_size: int or `(K1, K2)`.
        ranks: `(R1, R2)`, the output-mode and input-mode ranks.
        strides, padding, dilation_rate: as in `keras.layers.Conv2D` (channels-last only).
        use_bias: whether to add a bias of shape `(O,)`.
        activation: optional activation, as in `Conv2D`.
        kernel_initializer: initializer of the three factor kernels (they are usually set
            from a decomposition right after building).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, height, width, I)`.

    Output shape:
        `(batch, new_height, new_width, O)`, as the original `Conv2D`.

    Example:

    >>> conv = keras.layers.Conv2D(32, 3, padding="same")
    >>> conv.build((None, 8, 8, 16))
    >>> layer = TuckerConv2D.from_conv(conv, ranks=(16, 8))
    """

    def __init__(
        self,
        filters,
        kernel_size,
        ranks,
        strides=1,
        padding="valid",
        dilation_rate=1,
        use_bias=True,
        activation=None,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.ranks = _pair(ranks, "ranks")
        self.strides = _pair(strides, "strides")
        self.dilation_rate = _pair(dilation_rate, "dilation_rate")
        self.padding = str(padding).lower()
        if self.filters <= 0:
            raise ValueError(f"filters must be strictly positive. Received filters={filters}.")
        if self.padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same'. Received padding={padding!r}.")
        self.use_bias = bool(use_bias)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        in_channels = input_shape[-1]
        rank1, rank2 = self.ranks
        self.input_factor = self.add_weight(
            name="input_factor", shape=(1, 1, in_channels, rank2), initializer=self.kernel_initializer
        )
        self.core = self.add_weight(
            name="core", shape=(*self.kernel_size, rank2, rank1), initializer=self.kernel_initializer
        )
        self.output_factor = self.add_weight(
            name="output_factor", shape=(1, 1, rank1, self.filters), initializer=self.kernel_initializer
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: in_channels})

    def call(self, inputs):
        # A pointwise (1x1) layer subsamples before its first factor, not in the core: the
        # same pixels are kept, and the input factor runs at the output resolution.
        pointwise = tuple(self.kernel_size) == (1, 1)
        x = ops.conv(inputs, self.input_factor, strides=self.strides if pointwise else 1,
                     padding="valid")
        x = ops.conv(
            x, self.core, strides=1 if pointwise else self.strides, padding=self.padding,
            dilation_rate=self.dilation_rate,
        )
        x = ops.conv(x, self.output_factor, strides=1, padding="valid")
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def compute_output_shape(self, input_shape):
        spatial = []
        for size, k, s, d in zip(input_shape[1:3], self.kernel_size, self.strides, self.dilation_rate):
            if size is None:
                spatial.append(None)
            elif self.padding == "same":
                spatial.append(-(-size // s))
            else:
                spatial.append((size - d * (k - 1) - 1) // s + 1)
        return (input_shape[0], *spatial, self.filters)

    def kernel(self):
        """The equivalent dense kernel `(K1, K2, I, O)` as a NumPy array (Eq. 7)."""
        u2 = ops.convert_to_numpy(self.input_factor)[0, 0]
        u1 = ops.convert_to_numpy(self.output_factor)[0, 0].T
        return tucker.reconstruct(ops.convert_to_numpy(self.core), u1, u2)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            ranks=self.ranks,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            use_bias=self.use_bias,
            activation=keras.activations.serialize(self.activation) if self.activation else None,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config

    @classmethod
    def from_conv(cls, conv, ranks, factors=None, name=None):
        """A built `TuckerConv2D` equivalent to `conv` truncated to `ranks`.

        Args:
            conv: a built `keras.layers.Conv2D` (groups 1, channels-last).
            ranks: `(R1, R2)`.
            factors: optional `(core (K, K, R2, R1), u1 (O, R1), u2 (I, R2))` to use instead of
                the plain truncated Tucker-2 of `conv`'s kernel (e.g. a scaled core).
            name: layer name (default: `conv`'s name).

        Returns:
            the new layer, built, with the factors and `conv`'s bias as weights.
        """
        check_decomposable(conv)
        config = conv.get_config()
        layer = cls(
            filters=config["filters"],
            kernel_size=config["kernel_size"],
            ranks=ranks,
            strides=config["strides"],
            padding=config["padding"],
            dilation_rate=config["dilation_rate"],
            use_bias=config["use_bias"],
            activation=config["activation"],
            name=name or conv.name,
            dtype=conv.dtype_policy,
            kernel_initializer="zeros",
        )
        kernel = ops.convert_to_numpy(conv.kernel)
        if factors is None:
            decomposition = tucker.tucker2(kernel)
            factors = tucker.truncate(decomposition.core, decomposition.u1, decomposition.u2, *ranks)
        layer.build((None, None, None, kernel.shape[2]))
        layer.set_factors(*factors, bias=ops.convert_to_numpy(conv.bias) if conv.use_bias else None)
        return layer

    def set_factors(self, core, u1, u2, bias=None):
        """Sets the weights from Tucker-2 factors `core (K, K, R2, R1)`, `u1 (O, R1)`, `u2 (I, R2)`."""
        weights = [np.asarray(u2)[None, None], np.asarray(core), np.asarray(u1).T[None, None]]
        if self.use_bias:
            weights.append(np.zeros(self.filters) if bias is None else np.asarray(bias))
        self.set_weights([w.astype(self.variable_dtype) for w in weights])


def check_decomposable(layer):
    """Raises `ValueError` unless `layer` is a built, ungrouped, channels-last `Conv2D`."""
    if not isinstance(layer, keras.layers.Conv2D):
        raise ValueError(f"Expected a keras.layers.Conv2D. Received {type(layer).__name__} {layer.name!r}.")
    config = layer.get_config()
    if config.get("groups", 1) != 1:
        raise ValueError(f"Grouped convolutions are not decomposable. Received groups={config['groups']} "
                         f"in layer {layer.name!r}.")
    if config.get("data_format", "channels_last") != "channels_last":
        raise ValueError(f"Only channels_last convolutions are supported. Layer {layer.name!r} is channels_first.")
    if not layer.built:
        raise ValueError(f"Layer {layer.name!r} is not built.")


def _pair(value, name):
    if isinstance(value, int):
        value = (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) <= 0:
        raise ValueError(f"{name} must be a positive int or a pair of them. Received {name}={value}.")
    return value
