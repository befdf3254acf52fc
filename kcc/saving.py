"""Writing models and reports: atomic writes, and a plain-Keras copy of a purified model.

An interrupted run never leaves a half-written file, and an existing file is replaced only when
the caller says so. `to_plain` turns kcc's `TuckerConv2D` layers into built-in `Conv2D` layers,
for a file that loads where kcc is not installed.
"""

import json
import os
import tempfile

import keras
import numpy as np
from keras import ops

from kcc import flops
from kcc import layers as kcc_layers
from kcc import rewrite


def check_output(path, overwrite=False, inputs=()):
    """Refuses an output path that exists (unless `overwrite`) or that names one of `inputs`.

    The messages name the command-line flags (`--output`, `--overwrite`) and, in brackets, the
    Python argument, since both kinds of caller meet them.
    """
    real = os.path.realpath(path)
    for src in inputs:
        if src and os.path.realpath(src) == real:
            raise ValueError(f"Refusing to overwrite the input file {src}: choose another path "
                             "with --output.")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists: pass --overwrite (overwrite=True) to replace it, "
                              "or choose another path with --output.")


def _atomic(path, write):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_model(model, path, overwrite=False):
    """Saves a Keras model to a `.keras` file atomically."""
    if not path.endswith(".keras"):
        raise ValueError(f"Model files must end in .keras. Received path={path!r}.")
    check_output(path, overwrite)
    _atomic(path, lambda tmp: model.save(tmp))


def write_json(obj, path, overwrite=True):
    """Writes `obj` as indented JSON atomically."""
    check_output(path, overwrite)

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")

    _atomic(path, write)


def write_text(text, path):
    """Writes a text file atomically (replacing any existing one)."""

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    _atomic(path, write)


def write_bytes(content, path, overwrite=False):
    """Writes `content` (bytes, e.g. a `.tflite` flatbuffer) atomically."""
    check_output(path, overwrite)

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(content)

    _atomic(path, write)


def write_npz(arrays, path, overwrite=True):
    """Writes a dict of NumPy arrays as a compressed `.npz` atomically."""
    import numpy as np

    if not path.endswith(".npz"):
        raise ValueError(f"NumPy archives must end in .npz. Received path={path!r}.")
    check_output(path, overwrite)
    _atomic(path, lambda tmp: np.savez_compressed(tmp, **arrays))


def to_plain(model):
    """A copy of `model` in which every `TuckerConv2D` is three built-in `Conv2D` layers.

    The copy needs nothing from kcc: it loads with `keras.saving.load_model` where kcc is not
    installed, and computes what `model` computes (to float rounding), since `TuckerConv2D` is by
    construction a 1x1 conv `I -> R2`, a KxK conv `R2 -> R1` with the layer's strides, padding
    and dilation, and a 1x1 conv `R1 -> O` with its bias and activation (a 1x1 layer strides in
    its first conv, as `TuckerConv2D.call` does). The three are named `<name>_input_factor`,
    `<name>_core` and `<name>_output_factor` and keep the layer's trainable flag and dtype
    policy. In a functional model they are inlined in the graph; in a Sequential model they form
    a nested Sequential named after the layer. Every other layer is copied with its weights.

    Args:
        model: a functional or Sequential Keras model (not modified).

    Returns:
        the plain model, which shares no weights with `model`.
    """
    plan = {id(l): l for l in flops.iterate_layers(model) if isinstance(l, kcc_layers.TuckerConv2D)}
    replacements = set()

    def replace(layer, _):
        block = _plain_convs(layer)
        replacements.add(id(block))
        return block, lambda: None

    def call_inline(layer, *args, **kwargs):
        if id(layer) not in replacements:
            return layer(*args, **kwargs)
        x = args[0]
        for conv in layer.layers:
            x = conv(x)
        return x

    sequential = isinstance(model, keras.Sequential)
    return rewrite.clone(model, plan, replace, None if sequential else call_inline)


def _plain_convs(layer):
    """`TuckerConv2D` `layer` as a built `keras.Sequential` of three `Conv2D` with its weights."""
    rank1, rank2 = layer.ranks
    pointwise = tuple(layer.kernel_size) == (1, 1)
    common = {"dtype": layer.dtype_policy, "trainable": layer.trainable}
    convs = [
        keras.layers.Conv2D(rank2, 1, strides=layer.strides if pointwise else 1, use_bias=False,
                            name=f"{layer.name}_input_factor", **common),
        keras.layers.Conv2D(rank1, layer.kernel_size, strides=1 if pointwise else layer.strides,
                            padding=layer.padding, dilation_rate=layer.dilation_rate,
                            use_bias=False, name=f"{layer.name}_core", **common),
        keras.layers.Conv2D(layer.filters, 1, use_bias=layer.use_bias,
                            activation=layer.activation, name=f"{layer.name}_output_factor",
                            **common),
    ]
    weights = [[layer.input_factor], [layer.core], [layer.output_factor]]
    if layer.use_bias:
        weights[2].append(layer.bias)
    channels = layer.input_factor.shape[2]
    for conv, values in zip(convs, weights):
        conv.build((None, None, None, channels))
        conv.set_weights([np.asarray(ops.convert_to_numpy(v)) for v in values])
        channels = conv.filters
    return keras.Sequential(convs, name=layer.name, trainable=layer.trainable)
