"""Fine-Pruning: prune the last convolutional channels clean data leaves dormant, then fine-tune.

Liu et al. observe that backdoors hide in neurons of the last convolutional layer that clean
inputs barely activate. Fine-Pruning ranks that layer's channels by their mean activation on
clean data, prunes them in increasing order while clean validation accuracy holds, and fine-tunes
the pruned network (FT, `kcc.defenses.ft`) with the pruned channels kept at zero.

Which channels, and how they are silenced: the channels are those of the feature map the
classifier head pools, i.e. the output of the last convolutional stage (found from the graph:
the global pooling layer feeding the final `Dense`). In a ResNet that map is
`ReLU(BN(conv(x)) + shortcut)`, so zeroing the last conv's filters or its BN's gamma and beta
would not silence a channel (the shortcut still carries it). Pruning therefore zeroes the row of
the final `Dense` kernel that reads the channel: global pooling and `Dense` are linear, so this is
exactly the network with that channel of the pooled map removed, for any architecture with a
`GlobalPooling -> Dense` head. It is also how BackdoorBench prunes (a mask on the classifier's
input features). The pruning level is chosen on the defender's validation images: channels are
pruned one at a time and pruning stops before validation accuracy falls below
`(1 - max_accuracy_drop)` times its unpruned value (BackdoorBench's relative `acc_ratio` 0.1;
BackdoorBench selects on test data, kcc never does).

Reference:
    Liu, Dolan-Gavitt and Garg, "Fine-Pruning: Defending Against Backdooring Attacks on Deep
    Neural Networks", RAID 2018.
"""

import time

import keras
import numpy as np
from keras import ops

from kcc.defenses import ft
from kcc.defenses import pruning

_PASS_THROUGH = (keras.layers.Dropout, keras.layers.Flatten)
_POOLING = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)


def fine_pruning(model, defender_data, *, max_accuracy_drop=0.1, epochs=10, batch_size=128,
                 learning_rate=0.01, weight_decay=5e-4, schedule="cosine", augment=True, seed=0,
                 verbose="auto"):
    """Fine-Pruning of a copy of `model`.

    Args:
        model: the suspect Keras classifier with a `GlobalPooling2D -> [Dropout] -> Dense` head
            producing logits; not modified.
        defender_data: a `kcc.defenses.DefenderData`; mean activations are measured on its `x`,
            the pruning level and the fine-tuning epoch are selected on `x_val, y_val`.
        max_accuracy_drop: largest relative drop of validation accuracy pruning may cause
            (0.1 = pruning stops before accuracy falls below 90% of its unpruned value).
        epochs, batch_size, learning_rate, weight_decay, schedule, augment: fine-tuning settings,
            as `kcc.defenses.ft.fine_tune` (defaults identical); `epochs=0` skips fine-tuning.
        seed: seeds shuffling and augmentation.
        verbose: Keras progress-bar setting.

    Returns:
        `(defended, report)`: a new Keras model, and a JSON-serialisable report whose `pruning`
        entry lists the pruned channels (indices into the pooled feature map, pruned first to
        last), the layers found, and the validation accuracy after each pruning step.

    Raises:
        TypeError: if `defender_data` is not a `DefenderData`.
        ValueError: if the model has no global-pooling classifier head, if `max_accuracy_drop`
            is not in [0, 1), or if `defender_data` has no validation images.
    """
    start = time.time()
    ft.require_validation(defender_data)
    if not 0 <= max_accuracy_drop < 1:
        raise ValueError(f"max_accuracy_drop must be in [0, 1). Received {max_accuracy_drop}.")
    pruned = pruning.clone(model)
    pool, dense = classifier_head(pruned)
    channels, curve, base_acc = _select_channels(pruned, pool, dense, defender_data,
                                                 max_accuracy_drop)
    mask = np.ones(dense.kernel.shape, np.float32)
    mask[channels] = 0.0
    dense.kernel.assign(ops.convert_to_numpy(dense.kernel) * mask)
    pruned_acc, _ = ft.evaluate_clean(pruned, defender_data.x_val, defender_data.y_val)
    selected = {"num_pruned": len(channels)}
    if epochs:
        selector = ft.fine_tune_on(pruned, defender_data, epochs=epochs, batch_size=batch_size,
                                   learning_rate=learning_rate, weight_decay=weight_decay,
                                   schedule=schedule, augment=augment,
                                   masks=[(dense.kernel, mask)], seed=seed, verbose=verbose)
        selected.update(fine_tuning=selector.summary(), fine_tuning_history=selector.history)
    report = {
        "method": "fp",
        "hyperparameters": {"max_accuracy_drop": max_accuracy_drop, "epochs": epochs,
                            "batch_size": batch_size, "learning_rate": learning_rate,
                            "weight_decay": weight_decay, "momentum": 0.9, "schedule": schedule,
                            "augment": augment, "seed": seed},
        "data": defender_data.describe(),
        "pruning": {
            "pooling_layer": pool.name,
            "dense_layer": dense.name,
            "last_conv_layers": last_conv_layers(pruned, pool),
            "num_channels": int(dense.kernel.shape[0]),
            "pruned_channels": [int(c) for c in channels],
            "val_acc_unpruned": base_acc,
            "val_acc_per_step": curve,
            "val_acc_pruned": pruned_acc,
        },
        "selected": selected,
        "seconds": time.time() - start,
    }
    return pruning.clone(pruned), report


def classifier_head(model):
    """The global pooling layer and the final `Dense` layer of a classifier.

    Args:
        model: a Functional Keras model whose output is a `Dense` layer fed, through optional
            `Dropout`/`Flatten` layers, by a `GlobalAveragePooling2D` or `GlobalMaxPooling2D`.

    Returns:
        `(pooling_layer, dense_layer)`.

    Raises:
        ValueError: if the model has no such head.
    """
    dense = _producer(model, model.outputs[0])
    # A model of an unsupported structure, not an argument of the wrong type: ValueError.
    if not isinstance(dense, keras.layers.Dense):
        message = (f"Fine-Pruning needs a classifier ending in a Dense layer. Received a model "
                   f"whose output layer is {type(dense).__name__} {getattr(dense, 'name', '')!r}.")
        raise ValueError(message)  # noqa: TRY004
    layer = _producer(model, dense.input)
    while isinstance(layer, _PASS_THROUGH):
        layer = _producer(model, layer.input)
    if not isinstance(layer, _POOLING):
        message = (f"Fine-Pruning needs a global pooling layer feeding the final Dense layer "
                   f"{dense.name!r}. Received {type(layer).__name__} "
                   f"{getattr(layer, 'name', '')!r} there.")
        raise ValueError(message)  # noqa: TRY004
    return layer, dense


def last_conv_layers(model, pool):
    """Names of the convolutions whose outputs reach `pool` without passing another convolution."""
    found, seen, stack = [], set(), [pool.input]
    while stack:
        layer = _producer(model, stack.pop())
        if layer is None or id(layer) in seen:
            continue
        seen.add(id(layer))
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            found.append(layer.name)
        elif not isinstance(layer, keras.layers.InputLayer):
            inputs = layer.input
            stack.extend(inputs if isinstance(inputs, (list, tuple)) else [inputs])
    return sorted(found)


def _select_channels(model, pool, dense, defender_data, max_accuracy_drop):
    """Channels in increasing mean clean activation, as many as validation accuracy allows.

    Pruning a channel zeroes a row of the Dense kernel, so accuracies are computed from the
    pooled features in NumPy, exactly (one forward pass of each set in all).
    """
    features = keras.Model(model.inputs, pool.output)
    activation = features.predict(defender_data.x, batch_size=512, verbose=0).mean(axis=0)
    order = np.argsort(activation, kind="stable")
    pooled_val = features.predict(defender_data.x_val, batch_size=512, verbose=0)
    kernel = ops.convert_to_numpy(dense.kernel)
    bias = ops.convert_to_numpy(dense.bias) if dense.use_bias else 0.0
    y_val = np.asarray(defender_data.y_val)

    def accuracy(keep):
        return float(np.mean(np.argmax(pooled_val @ (kernel * keep[:, None]) + bias, -1) == y_val))

    keep = np.ones(len(order), np.float32)
    base = accuracy(keep)
    curve, count = [], 0
    for k, channel in enumerate(order[:-1], start=1):  # never prune every channel
        keep[channel] = 0.0
        acc = accuracy(keep)
        curve.append(acc)
        if acc < (1 - max_accuracy_drop) * base:
            break
        count = k
    return order[:count], curve, base


def _producer(model, tensor):
    """The layer of `model` whose output is `tensor` (None for a model input)."""
    for layer in model.layers:
        if not isinstance(layer, keras.layers.InputLayer) and layer.output is tensor:
            return layer
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer) and layer.output is tensor:
            return layer
    return None
