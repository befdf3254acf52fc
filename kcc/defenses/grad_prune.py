"""Gradient-based unlearning pruning: prune the filters the unlearning loss points at, fine-tune.

Dunnett et al. treat backdoor removal as unlearning. With a few clean images per class and a
triggered copy of each (the trigger is known here, as in the paper's main setting), the
unlearning loss is `CE(f(x_triggered), y_true)`: its gradient says which parameters most push a
triggered image away from its true class. One pruning round:

1. accumulate the gradient of the unlearning loss over the defense set w.r.t. every conv kernel;
2. score each filter `i` of each conv layer `l` by its mean absolute gradient (paper Eq. 3)
   `xi_{l,i} = ||grad theta_{l,i}||_1 / numel(theta_{l,i})`;
3. zero the single highest-scoring filter: its kernel slice, its bias, and the channel of the
   BatchNormalization that reads the conv's output (gamma and beta), so the channel is exactly
   zero after the BN.

Rounds repeat while validation clean accuracy stays within `accuracy_threshold` (absolute, as in
the reference code: 0.1 = 10 percentage points) of its starting value and the validation
unlearning loss has improved within the last `pruning_patience` rounds (10); the round with the
lowest validation unlearning loss is kept. The pruned model is then fine-tuned on the clean images
and their triggered copies labelled with their true classes (SGD lr 1e-3, momentum 0.9, weight
decay 5e-4, constant rate, batch 128, no augmentation, as the reference code), keeping the epoch
of lowest validation clean loss, until it has not improved for `tuning_patience` epochs (10).

Gradients are taken as in the reference code (WhoDunnett/Grad-Prune), with BatchNormalization in
training mode (batch statistics of the triggered images), but statelessly: the reference's
forward passes also move the BN moving statistics towards triggered images, kcc's leave them
alone. Two further differences, on purpose: already-pruned filters are not scored again, and
pruned filters stay exactly zero during fine-tuning (`kcc.defenses.ft.keep_zeros`; the reference
lets gradients regrow them). Weight gradients come from `model.stateless_call` through
`kcc.gradients.value_and_grad`, the one backend-specific helper.

Reference:
    Dunnett, Arablouei, Miller, Dedeoglu and Jurdak, "Unlearning Backdoor Attacks through
    Gradient-Based Model Pruning", DSN Workshops 2024 (arXiv:2405.03918).
"""

import time

import keras
import numpy as np
from keras import ops

from kcc import flops
from kcc import gradients
from kcc.defenses import ft
from kcc.defenses import pruning


def grad_prune(model, defender_data, *, attack, accuracy_threshold=0.1, pruning_patience=10,
               max_rounds=None, tuning_patience=10, finetune_max_epochs=100, batch_size=128,
               learning_rate=1e-3, weight_decay=5e-4, seed=0, verbose="auto"):
    """Gradient-based unlearning pruning of a copy of `model`, with the trigger known.

    Args:
        model: the suspect Keras classifier (pixels in [0, 1] -> logits); not modified.
        defender_data: a `kcc.defenses.DefenderData` with a few clean images per class (the
            paper uses 2, 10 or 100 per class, e.g. `defender_split(name, per_class=10)`); 10% or
            more held out for validation.
        attack: a `kcc.attacks.Attack` whose `apply` stamps the trigger (known-trigger setting).
        accuracy_threshold: pruning stops once validation accuracy is this much (absolute) below
            its starting value.
        pruning_patience: pruning stops after this many rounds without a lower validation
            unlearning loss.
        max_rounds: CPU budget, at most this many pruning rounds (None: no limit).
        tuning_patience: fine-tuning stops after this many epochs without a lower validation
            clean loss.
        finetune_max_epochs: CPU budget, at most this many fine-tuning epochs (0 skips it).
        batch_size: images per gradient computation and per fine-tuning step (of clean images;
            each step also sees their triggered copies).
        learning_rate, weight_decay: fine-tuning SGD settings (momentum 0.9, constant rate).
        seed: seeds the fine-tuning shuffling.
        verbose: Keras progress-bar setting for fine-tuning.

    Returns:
        `(defended, report)`: a new Keras model and a JSON-serialisable report whose `pruning`
        entry lists every pruned filter in order (`layer`, `filter`, `score`) and the validation
        accuracy and unlearning loss after each round.

    Raises:
        TypeError: if `defender_data` is not a `DefenderData`.
        ValueError: if `defender_data` has no validation images or the model no Conv2D layer.
    """
    start = time.time()
    ft.require_validation(defender_data)
    pruned = pruning.clone(model)
    filters = _prunable_filters(pruned)
    x_val, y_val = defender_data.x_val, np.asarray(defender_data.y_val)
    x_trig, x_val_trig = attack.apply(defender_data.x), attack.apply(x_val)
    gradient = _kernel_gradient_fn(pruned, [f["kernel"] for f in filters])

    def validate():
        acc, _ = ft.evaluate_clean(pruned, x_val, y_val)
        _, unlearning = ft.evaluate_clean(pruned, x_val_trig, y_val)
        return acc, unlearning

    acc0, loss0 = validate()
    history = [{"round": 0, "val_acc": acc0, "val_unlearning_loss": loss0}]
    order, best = [], {"round": 0, "loss": loss0, "weights": pruned.get_weights()}
    acc, wait, done = acc0, 0, set()
    while (acc0 - acc < accuracy_threshold and wait < pruning_patience
           and (max_rounds is None or len(order) < max_rounds)):
        grads = gradient(x_trig, defender_data.y, batch_size)
        candidate = _top_filter(filters, grads, done)
        if candidate is None:
            break
        layer, index, score = candidate
        done.add((layer, index))
        _zero_filter(filters[layer], index)
        order.append({"layer": filters[layer]["conv"].name, "filter": int(index),
                      "score": float(score)})
        acc, loss = validate()
        history.append({"round": len(order), "val_acc": acc, "val_unlearning_loss": loss})
        if loss < best["loss"] and acc0 - acc < accuracy_threshold:
            best, wait = {"round": len(order), "loss": loss, "weights": pruned.get_weights()}, 0
        else:
            wait += 1
    pruned.set_weights(best["weights"])
    kept = order[:best["round"]]
    selected = {"round": best["round"], "val_unlearning_loss": best["loss"],
                "val_acc": history[best["round"]]["val_acc"]}
    if finetune_max_epochs:
        def with_triggered(xb, yb, rng):
            return np.concatenate([xb, attack.apply(xb)]), np.concatenate([yb, yb])

        selector = ft.fine_tune_on(
            pruned, defender_data, epochs=finetune_max_epochs, batch_size=batch_size,
            learning_rate=learning_rate, weight_decay=weight_decay, schedule="constant",
            augment=False, transform=with_triggered, monitor="loss", patience=tuning_patience,
            include_initial=True, masks=_masks(filters, kept), seed=seed, verbose=verbose)
        selected.update(fine_tuning=selector.summary(), fine_tuning_history=selector.history)
    report = {
        "method": "grad_prune",
        "hyperparameters": {"accuracy_threshold": accuracy_threshold,
                            "pruning_patience": pruning_patience, "max_rounds": max_rounds,
                            "tuning_patience": tuning_patience,
                            "finetune_max_epochs": finetune_max_epochs,
                            "batch_size": batch_size, "learning_rate": learning_rate,
                            "momentum": 0.9, "weight_decay": weight_decay, "seed": seed},
        "attack": attack.get_config(),
        "data": defender_data.describe(),
        "pruning": {"rounds": len(order), "pruned_filters": kept, "all_rounds": order,
                    "history": history},
        "selected": selected,
        "seconds": time.time() - start,
    }
    return pruning.clone(pruned), report


def _prunable_filters(model):
    """Every Conv2D layer with its kernel, bias and the BatchNormalization reading its output."""
    layers = list(flops.iterate_layers(model))
    batchnorm_by_input = {id(layer.input): layer for layer in layers
                          if isinstance(layer, keras.layers.BatchNormalization)}
    filters = []
    for layer in layers:
        if isinstance(layer, keras.layers.Conv2D):
            bn = batchnorm_by_input.get(id(layer.output))
            filters.append({"conv": layer, "kernel": layer.kernel,
                            "bias": layer.bias if layer.use_bias else None, "bn": bn})
    if not filters:
        raise ValueError(f"Gradient-based pruning prunes Conv2D filters; model {model.name!r} "
                         f"has none.")
    return filters


def _kernel_gradient_fn(model, kernels):
    """`f(x, y, batch_size)`: gradients of the summed CE over `(x, y)` for each kernel, as NumPy."""
    positions = [next(i for i, v in enumerate(model.trainable_variables) if v is k)
                 for k in kernels]

    def loss(trainable, non_trainable, x, y):
        # Training mode as the reference; the updated BN statistics returned are discarded.
        logits, _ = model.stateless_call(trainable, non_trainable, x, training=True)
        return ops.sum(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))

    step = gradients.value_and_grad(loss, argnums=0, jit=True)

    def run(x, y, batch_size):
        trainable = [ops.convert_to_tensor(v) for v in model.trainable_variables]
        non_trainable = [ops.convert_to_tensor(v) for v in model.non_trainable_variables]
        total = [np.zeros(k.shape, np.float32) for k in kernels]
        for first in range(0, len(x), batch_size):
            _, grads = step(trainable, non_trainable, x[first:first + batch_size],
                            np.asarray(y[first:first + batch_size], np.int32))
            for t, i in zip(total, positions):
                t += ops.convert_to_numpy(grads[i])
        return total

    return run


def _top_filter(filters, grads, done):
    """`(layer index, filter index, score)` of the unpruned filter of largest mean |gradient|."""
    best = None
    for layer, grad in enumerate(grads):
        scores = np.abs(grad).reshape(-1, grad.shape[-1]).mean(axis=0)
        for index in np.argsort(scores)[::-1]:
            if (layer, int(index)) not in done:
                if best is None or scores[index] > best[2]:
                    best = (layer, int(index), float(scores[index]))
                break
    return best


def _zero_filter(entry, index):
    """Zeroes one output filter of a conv, its bias, and its BN channel's gamma and beta."""
    for variable in _filter_variables(entry):
        value = ops.convert_to_numpy(variable).copy()
        value[..., index] = 0.0
        variable.assign(value)


def _filter_variables(entry):
    bn = entry["bn"]
    variables = [entry["kernel"], entry["bias"]]
    if bn is not None:
        variables += [bn.gamma if bn.scale else None, bn.beta if bn.center else None]
    return [v for v in variables if v is not None]


def _masks(filters, pruned):
    """`(variable, 0/1 mask)` pairs keeping the pruned filters at zero (`ft.keep_zeros`)."""
    by_name = {f["conv"].name: f for f in filters}
    masks = {}
    for item in pruned:
        for variable in _filter_variables(by_name[item["layer"]]):
            key = id(variable)
            if key not in masks:
                masks[key] = (variable, np.ones(variable.shape, np.float32))
            masks[key][1][..., item["filter"]] = 0.0
    return list(masks.values())
