"""Channel pruning helpers shared by the pruning defenses (ANP, CLP and their 2x variants).

All functions work on the graph of a functional (or Sequential) Keras model, never on layer
order: "the conv feeding a BatchNorm" is the layer whose output *is* the BN's input, found by
walking the model's nodes, so pre-activation ResNets (where the next BN in layer order belongs
to another branch) pair correctly.

* `conv_bn_pairs`: every `(conv, bn)` with the conv's output feeding the BN directly.
* `removable_chains`: convs whose output channels can be removed physically
  (conv -> BN -> channel-wise layers -> one conv, nothing else reading them).
* `clone`: a copy with weights, optionally with layers replaced or re-configured.
* `zero_bn_channels`: a copy with chosen BN channels' gamma (and beta) set to 0.
* `shrink_channels`: a copy with chosen channels of removable chains physically removed.
* `effective_params`: trainable parameters that still matter (non-zero, and not feeding a
  channel whose BN gamma is 0).

Parameters are trainable weights, as everywhere in kcc (`kcc.models.trainable_params`).
"""

import dataclasses

import keras
import numpy as np
from keras import ops

# Layers that act on each channel separately: a removed channel's values flow through them
# without touching other channels.
_CHANNELWISE = (
    keras.layers.ReLU,
    keras.layers.Activation,
    keras.layers.Dropout,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
)


@dataclasses.dataclass(frozen=True)
class Chain:
    """A conv whose output channels can be removed: `conv -> bn -> between... -> next_conv`.

    Removing output channel k of `conv` removes `conv`'s filter k, channel k of every weight of
    `bn`, and input channel k of `next_conv`; nothing else reads the channel.
    """

    conv: str
    bn: str
    between: tuple
    next_conv: str


def is_plain_conv(layer):
    """A channels-last `Conv2D` (not a subclass such as a Tucker or depthwise conv)."""
    return type(layer) is keras.layers.Conv2D and layer.data_format == "channels_last"


def graph(model):
    """Producers and consumers of every layer in `model`'s own graph.

    Returns:
        `(producers, consumers)`: dicts `{layer name: [layer, ...]}`; a layer called more than
        once appears once per call.

    Raises:
        ValueError: for a subclassed model, or one with nested models.
    """
    from keras.src.models.functional import Functional

    producers = {l.name: [] for l in model.layers}
    consumers = {l.name: [] for l in model.layers}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            raise ValueError(
                f"Pruning works on flat models; layer {layer.name!r} is a nested model. "
                "Rebuild the model as one functional graph."
            )
    if isinstance(model, keras.Sequential):
        for before, after in zip(model.layers, model.layers[1:]):
            producers[after.name].append(before)
            consumers[before.name].append(after)
        return producers, consumers
    if not isinstance(model, Functional):
        raise ValueError(
            f"Pruning needs a functional or Sequential model (it walks the layer graph). "
            f"Received a subclassed model {type(model).__name__!r}."
        )
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            name = node.operation.name
            if name not in producers:
                continue
            for parent in node.parent_nodes:
                producers[name].append(parent.operation)
                consumers.setdefault(parent.operation.name, []).append(node.operation)
    return producers, consumers


def conv_bn_pairs(model):
    """Every BatchNormalization whose input is the output of a conv, with that conv.

    Args:
        model: functional or Sequential Keras model.

    Returns:
        list of `(conv, bn)` layer pairs in model order; `conv` is a plain `Conv2D` or a
        `DepthwiseConv2D`. BNs fed by anything else (an `Add`, a ReLU, the input) are left out;
        a conv may feed other layers too.

    Raises:
        ValueError: if a BatchNormalization layer is called more than once, or is not
            channels-last (`axis` -1).
    """
    producers, _ = graph(model)
    pairs = []
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        _check_bn(layer, producers)
        (source,) = producers[layer.name]
        if is_plain_conv(source) or type(source) is keras.layers.DepthwiseConv2D:
            pairs.append((source, layer))
    return pairs


def removable_chains(model):
    """The convs whose output channels can be physically removed (see `Chain`).

    A conv qualifies when it is a plain `Conv2D` with `groups=1`, its only consumer is a
    BatchNormalization, the BN's output passes through channel-wise layers only (ReLU,
    activations, dropout, pooling), each with one consumer, and ends in one plain `Conv2D` with
    `groups=1`. In a ResNet basic block this is the block's first conv (conv1 -> BN -> ReLU ->
    conv2); channels that reach a residual `Add` are tied to other layers and do not qualify.

    Returns:
        list of `Chain`, in model order.
    """
    producers, consumers = graph(model)
    chains = []
    for layer in model.layers:
        if not (is_plain_conv(layer) and layer.groups == 1):
            continue
        nxt = consumers.get(layer.name, [])
        if len(nxt) != 1 or not isinstance(nxt[0], keras.layers.BatchNormalization):
            continue
        bn = nxt[0]
        _check_bn(bn, producers)
        between, current = [], bn
        while True:
            nxt = consumers.get(current.name, [])
            if len(nxt) != 1:
                break
            current = nxt[0]
            if isinstance(current, _CHANNELWISE):
                between.append(current.name)
                continue
            if is_plain_conv(current) and current.groups == 1:
                chains.append(Chain(layer.name, bn.name, tuple(between), current.name))
            break
    return chains


def clone(model, replace=None):
    """A copy of `model` with its weights; the input model is not modified.

    Args:
        model: functional or Sequential Keras model.
        replace: optional `f(layer) -> None | (new_layer, weights | None)`: `None` copies the
            layer; otherwise `new_layer` takes its place and gets `weights` (a list as
            `set_weights` takes) or keeps its own initial weights when `weights` is None.

    Returns:
        the new `keras.Model`.
    """
    pending = []

    def clone_function(layer):
        result = replace(layer) if replace is not None else None
        if result is None:
            new = layer.__class__.from_config(layer.get_config())
            weights = layer.get_weights()
        else:
            new, weights = result
        if weights is not None:
            pending.append((new, weights))
        return new

    new_model = keras.models.clone_model(model, clone_function=clone_function)
    for layer, weights in pending:
        layer.set_weights(weights)
    return new_model


def zero_bn_channels(model, channels, beta=False):
    """A copy of `model` with BN gamma (and optionally beta) of the given channels set to 0.

    Args:
        model: functional or Sequential Keras model (not modified).
        channels: `{bn layer name: indices}` of the channels to zero.
        beta: also zero the shift (CLP does; ANP keeps it).

    Returns:
        the new model.

    Raises:
        ValueError: for a name that is not a BatchNormalization layer with a scale.
    """
    names = {l.name: l for l in model.layers}
    for name in channels:
        layer = names.get(name)
        if not isinstance(layer, keras.layers.BatchNormalization) or not layer.scale:
            raise ValueError(f"{name!r} is not a BatchNormalization layer with a scale (gamma).")

    def replace(layer):
        indices = np.asarray(channels.get(layer.name, []), int)
        if not len(indices):
            return None
        new = layer.__class__.from_config(layer.get_config())
        gamma = ops.convert_to_numpy(layer.gamma).copy()
        gamma[indices] = 0
        weights = [gamma]
        if layer.center:
            b = ops.convert_to_numpy(layer.beta).copy()
            if beta:
                b[indices] = 0
            weights.append(b)
        weights += [ops.convert_to_numpy(layer.moving_mean),
                    ops.convert_to_numpy(layer.moving_variance)]
        return new, weights

    return clone(model, replace)


def shrink_channels(model, keep):
    """A physically smaller copy of `model`: only the kept output channels of some chains.

    Args:
        model: functional or Sequential Keras model (not modified).
        keep: `{conv name: indices of output channels to keep}`; every name must be the `conv`
            of a `removable_chains(model)` entry, and at least one channel must stay.

    Returns:
        the new model: those convs have fewer filters, their BNs fewer channels and the convs
        reading them fewer input channels. Outputs are unchanged when the removed channels were
        zero after their BN and activation (e.g. gamma = beta = 0 before a ReLU).

    Raises:
        ValueError: for a name that is not a removable chain, or an empty keep set.
    """
    chains = {c.conv: c for c in removable_chains(model)}
    out_keep, bn_keep, in_keep = {}, {}, {}
    for name, indices in keep.items():
        if name not in chains:
            raise ValueError(
                f"{name!r} is not a conv whose output channels can be removed "
                f"(conv -> BN -> channel-wise layers -> one conv). Removable: {sorted(chains)}."
            )
        indices = np.unique(np.asarray(indices, int))
        if not len(indices):
            raise ValueError(f"At least one output channel of {name!r} must be kept.")
        chain = chains[name]
        out_keep[chain.conv] = bn_keep[chain.bn] = in_keep[chain.next_conv] = indices

    def replace(layer):
        name = layer.name
        if name not in out_keep and name not in bn_keep and name not in in_keep:
            return None
        config = layer.get_config()
        weights = [ops.convert_to_numpy(w) for w in layer.weights]
        if name in bn_keep:
            weights = [w[bn_keep[name]] for w in weights]
        else:
            kernel = weights[0]
            if name in in_keep:
                kernel = kernel[:, :, in_keep[name], :]
            if name in out_keep:
                kernel = kernel[..., out_keep[name]]
                config["filters"] = len(out_keep[name])
                if layer.use_bias:
                    weights[1] = weights[1][out_keep[name]]
            weights[0] = kernel
        return layer.__class__.from_config(config), weights

    return clone(model, replace)


def filter_params(conv):
    """Trainable parameters of one output filter of a conv (kernel slice plus bias)."""
    kh, kw, cin, _ = conv.kernel.shape
    return int(kh * kw * cin) + (1 if conv.use_bias else 0)


def effective_params(model):
    """Trainable parameters that still affect the output after zeroing-style pruning.

    A parameter is counted unless it is exactly 0, or it belongs to the filter of a conv whose
    only consumer is a BatchNormalization with gamma 0 on that channel (the BN then outputs its
    shift, whatever the filter computes).

    Returns:
        an int, at most `kcc.models.trainable_params(model)`.
    """
    _, consumers = graph(model)
    dead = {}
    for conv, bn in conv_bn_pairs(model):
        if not is_plain_conv(conv) or len(consumers.get(conv.name, [])) != 1 or not bn.scale:
            continue
        zero = ops.convert_to_numpy(bn.gamma) == 0
        if zero.any():
            dead[conv.name] = zero
    total = 0
    for layer in model.layers:
        for weight in layer.trainable_weights:
            alive = ops.convert_to_numpy(weight) != 0
            if layer.name in dead and alive.ndim in (1, 4):
                alive = alive & ~dead[layer.name]  # broadcasts over (..., O) and (O,)
            total += int(alive.sum())
    return total


def _check_bn(layer, producers):
    if len(producers[layer.name]) != 1:
        raise ValueError(
            f"BatchNormalization layer {layer.name!r} is called {len(producers[layer.name])} "
            "times; pruning needs each BN layer used once."
        )
    if layer.axis not in (-1, len(layer.input.shape) - 1):
        raise ValueError(
            f"Pruning needs channels-last BatchNormalization (axis -1). Received axis={layer.axis} "
            f"in {layer.name!r}."
        )
