"""Channel Lipschitzness-based Pruning (CLP): data-free pruning of high-Lipschitz channels.

For a conv followed by a BatchNorm, output channel k computes
`gamma_k / sqrt(var_k + eps) * (W_k * x) + const`, so its Lipschitz constant with respect to the
conv's input is at most

    UCLC_k = sigma_max(W_k reshaped to (I, K*K)) * |gamma_k| / sqrt(var_k + eps)

(the upper bound of the channel Lipschitz constant). Backdoor channels are sensitive to a small
trigger, so their bound stands out: per layer, CLP prunes the channels with
`UCLC_k > mean + u * std` of that layer's bounds (u = 3), by setting the BN's gamma and beta of
the channel to 0. No data is used.

Differences from the reference code, on purpose: each BN is paired with the conv that feeds it in
the graph (the reference pairs by module order, which is wrong for pre-activation ResNets); the
BN's own epsilon is added to the variance (the reference uses `sqrt(var)`; Keras' default epsilon
is 1e-3, PyTorch's 1e-5). As in the reference, `std` is the sample standard deviation (ddof 1).

`clp(..., target_ratio=2)` is "CLP 2x" (Table 2 of Clean & Compact): after CLP, channels are
*removed physically*, in decreasing order of their standardised bound
`z_k = (UCLC_k - mean) / std` (i.e. CLP with a lower u), until the trainable parameter count
falls by `target_ratio`. Only channels of `kcc.defenses.pruning.removable_chains` can go (in a
ResNet, the first conv of each block); channels tied to a residual `Add` stay, and the report
says how close to the target the model got.

Reference: Zheng et al., "Data-free Backdoor Removal based on Channel Lipschitzness",
ECCV 2022 (code: github.com/rkteddy/channel-Lipschitzness-based-pruning).
"""

import time

import keras
import numpy as np
from keras import ops

from kcc import models
from kcc.defenses import pruning


def channel_bounds(conv_kernel, gamma, moving_variance, epsilon):
    """Upper bounds of the channel Lipschitz constants (UCLC) of a conv + BN pair.

    Args:
        conv_kernel: Keras conv kernel `(K_h, K_w, I, O)`.
        gamma: BN scale `(O,)`.
        moving_variance: BN moving variance `(O,)`.
        epsilon: the BN's epsilon.

    Returns:
        float64 `(O,)`: `sigma_max(W_k as (I, K_h*K_w)) * |gamma_k| / sqrt(var_k + epsilon)`.
    """
    kernel = np.asarray(conv_kernel, np.float64)
    kh, kw, cin, cout = kernel.shape
    per_channel = kernel.transpose(3, 2, 0, 1).reshape(cout, cin, kh * kw)
    sigma = np.linalg.norm(per_channel, ord=2, axis=(1, 2))  # largest singular value
    variance = np.asarray(moving_variance, np.float64)
    scale = np.abs(np.asarray(gamma, np.float64)) / np.sqrt(variance + epsilon)
    return sigma * scale


def clp(model, *, u=3.0, target_ratio=None):
    """Channel Lipschitzness-based Pruning; with `target_ratio`, also a physically smaller model.

    Args:
        model: a functional or Sequential Keras model with conv -> BatchNorm pairs; not
            modified.
        u: per-layer threshold in standard deviations above the mean bound (paper: 3).
        target_ratio: None for CLP itself (zeroing, same size), or the parameter reduction to
            reach by removing channels of removable chains (2.0 for "CLP 2x").

    Returns:
        `(model, report)`; `report` is JSON-serialisable: channels pruned per layer, physical
        parameters before and after, and for `target_ratio` the channels removed per conv,
        the ratio reached and the lowest standardised bound removed (`u_reached`).

    Raises:
        ValueError: for a model without conv -> BN pairs, or invalid arguments.
    """
    if not u >= 0:
        raise ValueError(f"u must be non-negative. Received u={u}.")
    if target_ratio is not None and not target_ratio > 1:
        raise ValueError(f"target_ratio must be greater than 1. Received {target_ratio}.")
    start = time.time()
    pairs = pruning.conv_bn_pairs(model)
    if not pairs:
        raise ValueError(f"CLP needs conv -> BatchNormalization pairs; model {model.name!r} "
                         "has none.")
    layers, zeroed, zscores = [], {}, {}
    for conv, bn in pairs:
        bounds = channel_bounds(_plain_kernel(conv), _gamma(bn),
                                ops.convert_to_numpy(bn.moving_variance), bn.epsilon)
        mean, std = float(bounds.mean()), float(bounds.std(ddof=1)) if len(bounds) > 1 else 0.0
        cut = mean + u * std
        index = np.flatnonzero(bounds > cut) if std > 0 else np.array([], int)
        zeroed[bn.name] = index
        zscores[conv.name] = (bounds - mean) / std if std > 0 else np.zeros_like(bounds)
        layers.append({"conv": conv.name, "bn": bn.name, "channels": int(len(bounds)),
                       "pruned": [int(i) for i in index], "bound_mean": round(mean, 5),
                       "bound_std": round(std, 5), "bound_max": round(float(bounds.max()), 5),
                       "threshold": round(cut, 5)})
    pruned = pruning.zero_bn_channels(model, {k: v for k, v in zeroed.items() if len(v)}, beta=True)
    params_before = models.trainable_params(model)
    report = {"method": "clp" if target_ratio is None else f"clp{target_ratio:g}x",
              "hyperparameters": {"u": u, "target_ratio": target_ratio},
              "data": None,
              "channels_total": int(sum(l["channels"] for l in layers)),
              "channels_pruned": int(sum(len(l["pruned"]) for l in layers)),
              "layers": layers,
              "params_before": params_before}
    if target_ratio is not None:
        pruned, removal = _remove_channels(pruned, zscores, params_before / target_ratio)
        report["removal"] = removal
    report["params_after"] = models.trainable_params(pruned)
    report["ratio"] = round(params_before / report["params_after"], 4)
    report["effective_params_after"] = pruning.effective_params(pruned)
    report["seconds"] = round(time.time() - start, 1)
    return pruned, report


def _plain_kernel(conv):
    """The kernel as `(K, K, I, O)`; a depthwise kernel `(K, K, C, M)` becomes `(K, K, 1, C*M)`."""
    kernel = ops.convert_to_numpy(conv.kernel)
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        kh, kw, c, m = kernel.shape
        kernel = kernel.reshape(kh, kw, 1, c * m)
    return kernel


def _gamma(bn):
    if not bn.scale:
        return np.ones(bn.moving_variance.shape, np.float32)
    return ops.convert_to_numpy(bn.gamma)


def _remove_channels(model, zscores, target):
    """Removes removable channels, highest standardised bound first, until params <= target.

    The parameter count after each removal is tracked exactly: a conv's parameters are
    `K_h * K_w * inputs * outputs (+ outputs)`, and a removal shrinks the outputs of the chain's
    conv, the BN, and the inputs of the next conv (which may itself head another chain).
    """
    chains = pruning.removable_chains(model)
    layer = {l.name: l for l in model.layers}
    outputs = {c.conv: layer[c.conv].filters for c in chains}
    inputs = {}
    for c in chains:
        for name in (c.conv, c.next_conv):
            inputs.setdefault(name, layer[name].kernel.shape[2])
            outputs.setdefault(name, layer[name].filters)
    bn_params = {c.conv: len(layer[c.bn].trainable_weights) for c in chains}

    candidates = [(-z, c.conv, k) for c in chains for k, z in enumerate(zscores[c.conv])]
    candidates.sort()
    chain_of = {c.conv: c for c in chains}
    params = models.trainable_params(model)
    removed = {c.conv: [] for c in chains}
    last_z = None
    for neg_z, name, k in candidates:
        if params <= target:
            break
        if outputs[name] - 1 < 1:
            continue  # keep at least one channel
        c, conv, nxt = chain_of[name], layer[name], layer[chain_of[name].next_conv]
        kh, kw = conv.kernel_size
        nh, nw = nxt.kernel_size
        params -= kh * kw * inputs[name] + (1 if conv.use_bias else 0) + bn_params[name]
        params -= nh * nw * outputs[c.next_conv]
        outputs[name] -= 1
        inputs[c.next_conv] -= 1
        removed[name].append(k)
        last_z = -neg_z
    keep = {name: np.setdiff1d(np.arange(layer[name].filters), r)
            for name, r in removed.items() if r}
    smaller = pruning.shrink_channels(model, keep) if keep else model
    reached = models.trainable_params(smaller)
    return smaller, {
        "removable_convs": len(chains),
        "channels_removable": int(sum(layer[c.conv].filters for c in chains)),
        "channels_removed": int(sum(len(r) for r in removed.values())),
        "per_conv": {name: len(r) for name, r in removed.items()},
        "u_reached": None if last_z is None else round(float(last_z), 4),
        "target_params": int(np.ceil(target)),
        "target_reached": bool(reached <= target),
    }
