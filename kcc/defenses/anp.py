"""Adversarial Neuron Pruning (ANP): prune the neurons that adversarial perturbations exploit.

One neuron is one BatchNorm channel. Every BN gets a mask `m` (initially 1) and perturbations
`delta` of its scale and `xi` of its shift, so a BN computes

    gamma * (m + delta) * x_hat + beta * (1 + xi),      x_hat = (x - mu_B) / sqrt(var_B + eps_BN)

with batch statistics (training mode). Per batch of the defender's clean images (crop+flip):

    delta, xi ~ U(-eps, eps);   delta += eps * sign(d L / d delta);   xi += eps * sign(d L / d xi)
    m <- clip(SGD_momentum(m, d/dm [alpha * L(m, 0, 0) + (1 - alpha) * L(m, delta, xi)]), 0, 1)

where `L` is the cross-entropy (Eq. 7-9 of the paper, one signed ascent step as in the reference
code, which does not clip the perturbation back into `[-eps, eps]` after the step). Neurons with
small masks are those the backdoor relies on: pruning sets their BN scale gamma to 0 and keeps
the shift beta. Nothing else in the model changes, and the returned model keeps the suspect's BN
moving statistics (training-mode passes never update state here).

`anp_masks` runs the mask optimisation; `anp` runs it (or takes given masks) and prunes by the
paper's threshold, by a fraction of neurons, by a threshold selected on the defender's validation
split, or until the effective parameter count falls by `target_ratio` ("ANP 2x" in Table 2 of
Clean & Compact; zeroing only, see `kcc.defenses.pruning.effective_params`).

Reference: Wu & Wang, "Adversarial Neuron Pruning Purifies Backdoored Deep Models",
NeurIPS 2021 (code: github.com/csdongxian/ANP_backdoor).
"""

import time

import keras
import numpy as np
from keras import ops

from kcc import gradients
from kcc import models
from kcc import training
from kcc.defenses import data as defense_data
from kcc.defenses import pruning

# Mask thresholds tried when the threshold is selected on validation data (the reference
# code's pruning_step 0.05 up to pruning_max 0.90).
THRESHOLDS = tuple(round(float(t), 2) for t in np.arange(0.05, 0.901, 0.05))


class _NoisyBatchNorm(keras.layers.Layer):
    """BatchNorm with a neuron mask and relative scale/shift perturbations (ANP's neuron).

    Used only inside `anp_masks`' working copy; never saved. In training mode it normalises with
    batch statistics and updates nothing; in inference mode it uses the moving statistics.
    Trainable variables, per channel: `neuron_mask`, `delta` (scale), `xi` (shift).

    Input shape: `(batch, ..., channels)`. Output shape: same.
    """

    def __init__(self, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        c = (input_shape[-1],)
        self.gamma = self.add_weight(shape=c, initializer="ones", trainable=False, name="gamma")
        self.beta = self.add_weight(shape=c, initializer="zeros", trainable=False, name="beta")
        self.moving_mean = self.add_weight(shape=c, initializer="zeros", trainable=False,
                                           name="moving_mean")
        self.moving_variance = self.add_weight(shape=c, initializer="ones", trainable=False,
                                               name="moving_variance")
        self.neuron_mask = self.add_weight(shape=c, initializer="ones", name="neuron_mask")
        self.delta = self.add_weight(shape=c, initializer="zeros", name="delta")
        self.xi = self.add_weight(shape=c, initializer="zeros", name="xi")

    def call(self, x, training=False, mask=None):
        del mask  # Keras passes BatchNormalization's `mask` argument through the graph
        if training:
            mean, variance = ops.moments(x, axes=tuple(range(len(x.shape) - 1)))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        x_hat = (x - mean) * ops.rsqrt(variance + self.epsilon)
        return x_hat * (self.gamma * (self.neuron_mask + self.delta)) + self.beta * (1.0 + self.xi)


def anp_masks(model, defender_data, *, eps=0.4, alpha=0.2, learning_rate=0.2, iterations=2000,
              batch_size=128, seed=0, verbose=False):
    """ANP's mask optimisation on the defender's clean images (Sect. 3.3 of the paper).

    Args:
        model: a functional or Sequential Keras classifier producing logits, with
            BatchNormalization layers (channels-last, with a scale); not modified.
        defender_data: a `kcc.defenses.DefenderData`; its training part `x, y` is used, with
            crop(pad 4)+flip augmentation.
        eps: perturbation budget of `delta` and `xi` (relative size, paper: 0.4).
        alpha: weight of the clean loss against the perturbed loss (paper: 0.2).
        learning_rate: SGD learning rate of the masks, momentum 0.9 (paper: 0.2).
        iterations: mask updates, one batch each (paper: 2000).
        batch_size: images per batch (paper: 128).
        seed: seeds batch order, augmentation and the random perturbation start.
        verbose: print the losses every 10% of the run.

    Returns:
        `(masks, info)`: `masks` is `{BN layer name: float32 (channels,) in [0, 1]}` in model
        order; `info` a JSON-serialisable dict (hyperparameters, losses, seconds).

    Runs repeat exactly on JAX. On TensorFlow (CPU) two processes can differ: its numerics are
    not bitwise reproducible between processes, and the sign of the noise gradient turns
    round-off into different perturbations, so masks drift apart over hundreds of iterations
    (ANP's paper reports means over 5 runs).

    Raises:
        TypeError: if `defender_data` is not a `DefenderData`.
        ValueError: for invalid hyperparameters or a model without usable BatchNorm layers.
    """
    defense_data.check(defender_data)
    if eps < 0 or not 0 <= alpha <= 1 or learning_rate <= 0 or iterations < 1 or batch_size < 1:
        raise ValueError(
            "Need eps >= 0, 0 <= alpha <= 1, learning_rate > 0, iterations >= 1 and "
            f"batch_size >= 1. Received eps={eps}, alpha={alpha}, learning_rate={learning_rate}, "
            f"iterations={iterations}, batch_size={batch_size}."
        )
    start = time.time()
    noisy, layers = _noisy_copy(model)
    variables = [v for layer in layers for v in (layer.neuron_mask, layer.delta, layer.xi)]
    if [id(v) for v in noisy.trainable_variables] != [id(v) for v in variables]:
        raise ValueError("Internal error: unexpected trainable variables in ANP's working copy.")
    grad_fn = _gradient_fn(noisy)

    rng = np.random.default_rng(seed)
    batches = training.Batches(defender_data.x, defender_data.y, batch_size, augment=True,
                               seed=seed)
    masks = [np.ones(layer.neuron_mask.shape, np.float32) for layer in layers]
    zeros = [np.zeros_like(m) for m in masks]
    momentum = [np.zeros_like(m) for m in masks]
    history = []
    for it in range(iterations):
        if it and it % len(batches) == 0:
            batches.on_epoch_end()
        x, y = batches[it % len(batches)]
        y = y.astype(np.int32)
        loss_robust, grad_robust = 0.0, None
        if eps > 0:
            delta = [rng.uniform(-eps, eps, m.shape).astype(np.float32) for m in masks]
            xi = [rng.uniform(-eps, eps, m.shape).astype(np.float32) for m in masks]
            _, grads = grad_fn(_interleave(masks, delta, xi), x, y)
            delta = [d + eps * np.sign(g) for d, g in zip(delta, grads[1::3])]
            xi = [d + eps * np.sign(g) for d, g in zip(xi, grads[2::3])]
            loss_robust, grads = grad_fn(_interleave(masks, delta, xi), x, y)
            grad_robust = grads[0::3]
        loss_natural, grads = grad_fn(_interleave(masks, zeros, zeros), x, y)
        for i, g in enumerate(grads[0::3]):
            g = alpha * g + ((1 - alpha) * grad_robust[i] if grad_robust is not None else 0.0)
            momentum[i] = 0.9 * momentum[i] + g
            masks[i] = np.clip(masks[i] - learning_rate * momentum[i], 0.0, 1.0)
        if it == 0 or (it + 1) % max(1, iterations // 10) == 0:
            history.append({"iteration": it + 1, "loss_natural": round(loss_natural, 4),
                            "loss_perturbed": round(loss_robust, 4)})
            if verbose:
                print(f"ANP {it + 1}/{iterations}: natural loss {loss_natural:.4f}, "
                      f"perturbed loss {loss_robust:.4f}", flush=True)
    info = {"eps": eps, "alpha": alpha, "learning_rate": learning_rate, "momentum": 0.9,
            "iterations": iterations, "batch_size": batch_size, "augment": "crop(pad 4)+flip",
            "seed": seed, "history": history, "seconds": round(time.time() - start, 1)}
    return {layer.name: m.astype(np.float32) for layer, m in zip(layers, masks)}, info


def anp(model, defender_data, *, eps=0.4, alpha=0.2, learning_rate=0.2, iterations=2000,
        batch_size=128, threshold=0.2, fraction=None, target_ratio=None, max_accuracy_drop=None,
        masks=None, seed=0, verbose=False):
    """Adversarial Neuron Pruning: optimise masks, then zero the BN scale of the weakest neurons.

    How many neurons are pruned (the first that is given wins):

    * `target_ratio`: the smallest-mask neurons until the effective parameter count falls by
      this factor ("ANP 2x" is `target_ratio=2`); zeroing, so the model keeps its physical size;
    * `max_accuracy_drop`: the largest threshold in `THRESHOLDS` whose pruned model, and every
      smaller threshold's, stays within this drop of the unpruned model's accuracy on
      `defender_data.x_val, y_val` (selected on the defender's validation split only);
    * `fraction`: this fraction of all neurons, smallest masks first (ANP's "by fraction");
    * `threshold`: every neuron with mask <= threshold (the paper's default rule, 0.2).

    Args:
        model: a functional or Sequential Keras classifier producing logits, with BatchNorm
            layers; not modified.
        defender_data: a `kcc.defenses.DefenderData` (see `anp_masks`).
        eps, alpha, learning_rate, iterations, batch_size, seed: see `anp_masks`.
        threshold: mask threshold in (0, 1).
        fraction: fraction of neurons in (0, 1), or None.
        target_ratio: effective parameter reduction (> 1), or None.
        max_accuracy_drop: validation accuracy drop allowed (fraction, e.g. 0.05), or None.
        masks: masks from an earlier `anp_masks` on this model (skips the optimisation).
        verbose: print progress.

    Returns:
        `(pruned_model, report)`; `report` is JSON-serialisable: hyperparameters, the defender
        data, pruned neurons per layer, physical and effective parameter counts, validation
        accuracy before and after, and the selection made on validation data.

    Raises:
        TypeError: if `defender_data` is not a `DefenderData`.
        ValueError: for invalid arguments.
    """
    defense_data.check(defender_data)
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1). Received threshold={threshold}.")
    if fraction is not None and not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1). Received fraction={fraction}.")
    if target_ratio is not None and not target_ratio > 1:
        raise ValueError(f"target_ratio must be greater than 1. Received {target_ratio}.")
    if max_accuracy_drop is not None and not 0 <= max_accuracy_drop < 1:
        raise ValueError(f"max_accuracy_drop must be in [0, 1). Received {max_accuracy_drop}.")
    start = time.time()
    if masks is None:
        masks, info = anp_masks(model, defender_data, eps=eps, alpha=alpha,
                                learning_rate=learning_rate, iterations=iterations,
                                batch_size=batch_size, seed=seed, verbose=verbose)
    else:
        info = {"masks": "given"}
        _check_masks(model, masks)

    names, channels, values = _flatten(masks)
    order = np.lexsort((np.arange(len(values)), values))  # ascending mask, stable
    effective_before = pruning.effective_params(model)
    selection = None
    if target_ratio is not None:
        rule = {"target_ratio": target_ratio}
        costs = _neuron_costs(model, names, channels)
        needed = effective_before - effective_before / target_ratio
        count = int(np.searchsorted(np.cumsum(costs[order]), needed)) + 1
    elif max_accuracy_drop is not None:
        rule = {"max_accuracy_drop": max_accuracy_drop}
        cut, selection = _select_threshold(model, masks, defender_data, max_accuracy_drop)
        count = int(np.sum(values <= cut)) if cut is not None else 0
    elif fraction is not None:
        rule = {"fraction": fraction}
        count = int(round(fraction * len(values)))
    else:
        rule = {"threshold": threshold}
        count = int(np.sum(values <= threshold))
    count = min(count, len(values))
    pruned = order[:count]
    per_layer = {name: [] for name in masks}
    for i in pruned:
        per_layer[names[i]].append(int(channels[i]))
    pruned_model = pruning.zero_bn_channels(model, per_layer, beta=False)

    params = models.trainable_params(model)
    effective_after = pruning.effective_params(pruned_model)
    report = {
        "method": "anp" if target_ratio is None else f"anp{target_ratio:g}x",
        "hyperparameters": {"eps": eps, "alpha": alpha, "learning_rate": learning_rate,
                            "iterations": iterations, "batch_size": batch_size, "seed": seed,
                            **rule},
        "data": defender_data.describe(),
        "mask_optimisation": info,
        "neurons_total": int(len(values)),
        "neurons_pruned": int(count),
        "mask_cutoff": float(values[pruned[-1]]) if count else None,
        "layers": [{"layer": name, "channels": int(len(m)), "pruned": len(per_layer[name]),
                    "mask_min": round(float(m.min()), 4), "mask_mean": round(float(m.mean()), 4)}
                   for name, m in masks.items()],
        "params_before": params,
        "params_after": models.trainable_params(pruned_model),
        "effective_params_before": effective_before,
        "effective_params_after": effective_after,
        "effective_ratio": round(effective_before / max(effective_after, 1), 4),
        "sparsity": round(1 - effective_after / params, 4),
        "validation": {
            "images": int(len(defender_data.x_val)),
            "acc_before": _val_accuracy(model, defender_data),
            "acc_after": _val_accuracy(pruned_model, defender_data),
            "selected": selection,
        },
        "seconds": round(time.time() - start, 1),
    }
    return pruned_model, report


def _cross_entropy(logits, labels):
    return ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def _gradient_fn(noisy):
    """`(values, x, y) -> (loss, gradients)`: the cross-entropy of `noisy` in training mode and
    its gradient with respect to each trainable value (masks, delta, xi), as NumPy."""
    non_trainable = [v.value for v in noisy.non_trainable_variables]

    def loss(values, non_trainable, x, y):
        logits, _ = noisy.stateless_call(values, non_trainable, x, training=True)
        return _cross_entropy(logits, y)

    step = gradients.value_and_grad(loss, argnums=0, jit=True)

    def run(values, x, y):
        value, grads = step([ops.convert_to_tensor(v) for v in values], non_trainable,
                            ops.convert_to_tensor(x), ops.convert_to_tensor(y))
        return float(ops.convert_to_numpy(value)), [ops.convert_to_numpy(g) for g in grads]

    return run


def _noisy_copy(model):
    """A copy whose BNs are `_NoisyBatchNorm` (the only trainable layers) and the list of them."""
    pruning.conv_bn_pairs(model)  # validates the BN layers (used once, channels-last)
    bns = {l.name: l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)}
    if not bns:
        raise ValueError(f"ANP prunes BatchNorm channels; model {model.name!r} has no "
                         "BatchNormalization layer in its top-level graph.")
    for bn in bns.values():
        if not bn.scale:
            raise ValueError(f"ANP masks BatchNorm scales; layer {bn.name!r} has scale=False.")

    def replace(layer):
        if layer.name in bns:
            return _NoisyBatchNorm(epsilon=layer.epsilon, name=layer.name), None
        new = layer.__class__.from_config(layer.get_config())
        new.trainable = False
        return new, layer.get_weights()

    noisy = pruning.clone(model, replace)
    layers = [l for l in noisy.layers if isinstance(l, _NoisyBatchNorm)]
    for layer in layers:
        bn = bns[layer.name]
        layer.gamma.assign(ops.convert_to_numpy(bn.gamma))
        if bn.center:
            layer.beta.assign(ops.convert_to_numpy(bn.beta))
        layer.moving_mean.assign(ops.convert_to_numpy(bn.moving_mean))
        layer.moving_variance.assign(ops.convert_to_numpy(bn.moving_variance))
    return noisy, layers


def _interleave(masks, delta, xi):
    return [v for triple in zip(masks, delta, xi) for v in triple]


def _flatten(masks):
    names = np.concatenate([[name] * len(m) for name, m in masks.items()])
    channels = np.concatenate([np.arange(len(m)) for m in masks.values()])
    values = np.concatenate([np.asarray(m, np.float32) for m in masks.values()])
    return names, channels, values


def _check_masks(model, masks):
    bns = {l.name: l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)}
    for name, m in masks.items():
        if name not in bns or bns[name].gamma.shape != np.shape(m):
            raise ValueError(f"masks[{name!r}] does not match a BatchNormalization layer of the "
                             f"model with {np.shape(m)} channels.")


def _neuron_costs(model, names, channels):
    """Effective parameters each neuron's pruning removes: gamma, plus the feeding conv filter
    when that conv feeds only this BN (see `pruning.effective_params`)."""
    _, consumers = pruning.graph(model)
    filters = {bn.name: pruning.filter_params(conv) for conv, bn in pruning.conv_bn_pairs(model)
               if pruning.is_plain_conv(conv) and len(consumers[conv.name]) == 1}
    return np.array([1 + filters.get(name, 0) for name in names], np.int64)


def _val_accuracy(model, defender_data):
    if not len(defender_data.x_val):
        return None
    return round(training.accuracy(model, defender_data.x_val, defender_data.y_val), 4)


def _select_threshold(model, masks, defender_data, max_accuracy_drop):
    """The largest threshold of `THRESHOLDS` within `max_accuracy_drop` on validation data."""
    if not len(defender_data.x_val):
        raise ValueError("max_accuracy_drop needs validation images; the DefenderData has none "
                         "(defender_split(..., validation=0)).")
    work = pruning.clone(model)
    bns = {l.name: l for l in work.layers if l.name in masks}
    gammas = {name: ops.convert_to_numpy(bn.gamma).copy() for name, bn in bns.items()}
    base = training.accuracy(work, defender_data.x_val, defender_data.y_val)
    curve, chosen = [], None
    for t in THRESHOLDS:
        for name, bn in bns.items():
            bn.gamma.assign(np.where(masks[name] <= t, 0.0, gammas[name]).astype(np.float32))
        acc = training.accuracy(work, defender_data.x_val, defender_data.y_val)
        curve.append({"threshold": t, "acc": round(acc, 4)})
        if acc < base - max_accuracy_drop:
            break
        chosen = t
    return chosen, {"threshold": chosen, "validation_acc_unpruned": round(base, 4), "curve": curve}
