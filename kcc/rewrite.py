"""The model-rewrite pass of C&C: `constrain` (scaling only) and `compress` (scaling + truncation).

Both take a functional or Sequential Keras model (nested models included), never modify it, and
return a new model plus a `RewriteReport` saying what was done to every layer.

Which layers are rewritten ("decomposable"): every `keras.layers.Conv2D` with `groups == 1`,
channels-last, and more than 3 input channels. That excludes

* the 3-channel stem, whose input mode is RGB (rank at most 3, nothing to compress, and its
  3 singular values make Eq. 2's per-layer normalisation meaningless);
* depthwise and grouped convolutions (no Tucker-2 form across channels);
* `Dense` layers, which C&C does not factor.

1x1 convolutions (e.g. ResNet shortcuts) are included: their scaling follows Eq. 5-7 like any
other conv, and the global truncation keeps them plain whenever the factored form is not smaller
(for a 1x1 conv that needs `R1 * R2 + I * R2 + R1 * O < I * O`).

Parameter counts are trainable weights, as the paper (PyTorch) counts them; BatchNorm moving
statistics are not parameters.
"""

import dataclasses
import json

import keras
import numpy as np
from keras import ops

from kcc import flops
from kcc import layers as kcc_layers
from kcc import models
from kcc import tucker


@dataclasses.dataclass
class LayerReport:
    """What the rewrite did to one decomposable conv."""

    name: str
    kernel_shape: tuple
    full_ranks: tuple  # (r1, r2)
    ranks: tuple  # (R1, R2) kept; equal to full_ranks when not truncated
    scaled: tuple  # components scaled in mode 1 and mode 2
    factored: bool  # replaced by TuckerConv2D
    params_before: int
    params_after: int


@dataclasses.dataclass
class RewriteReport:
    """Per-layer and total effect of `constrain` or `compress`."""

    operation: str
    tau_scale: float
    reading: str
    cr: float | None
    rank_multiple: int | None  # ranks rounded up to multiples of this (compress only)
    relative: bool | None  # tau_trunc on singular values relative to their layer's norm
    tau_trunc: float | None
    layers: list
    params_before: int
    params_after: int
    flops_before: int
    flops_after: int

    @property
    def ratio(self):
        """Achieved compression ratio `params_before / params_after`."""
        return self.params_before / self.params_after

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["ratio"] = round(self.ratio, 4)
        d["flops_ratio"] = round(self.flops_before / self.flops_after, 4)
        return d

    def to_json(self, **kwargs):
        return json.dumps(self.to_dict(), **kwargs)

    def __str__(self):
        head = f"{'layer':<34}{'kernel':>20}{'r1,r2':>12}{'R1,R2':>12}{'scaled':>9}{'params':>20}"
        lines = [head, "-" * len(head)]
        for l in self.layers:
            shape = "x".join(str(s) for s in l.kernel_shape)
            kept = f"{l.ranks[0]},{l.ranks[1]}" + ("" if l.factored else "*")
            lines.append(
                f"{l.name:<34}{shape:>20}{l.full_ranks[0]:>7},{l.full_ranks[1]:<4}{kept:>12}"
                f"{l.scaled[0]:>5},{l.scaled[1]:<3}{l.params_before:>10} -> {l.params_after:<8}"
            )
        lines += [
            "-" * len(head),
            f"{self.operation}: tau_scale={self.tau_scale} ({self.reading} reading of Eq. 5)"
            + (f", cr={self.cr}, tau_trunc={self.tau_trunc:.4g}" if self.cr else "")
            + (", relative to each layer's norm" if self.relative else "")
            + (f", rank_multiple={self.rank_multiple}" if (self.rank_multiple or 1) > 1 else ""),
            f"parameters {self.params_before:,} -> {self.params_after:,} ({self.ratio:.2f}x); "
            f"FLOPs {self.flops_before:,} -> {self.flops_after:,} "
            f"({self.flops_before / self.flops_after:.2f}x)",
        ]
        if any(not l.factored and l.ranks != l.full_ranks for l in self.layers):
            lines.append("* kept as a plain conv: its factored form would not be smaller")
        return "\n".join(lines)


def is_decomposable(layer):
    """Whether the rewrite touches `layer` (see the module docstring)."""
    if type(layer) is not keras.layers.Conv2D:
        return False
    config = layer.get_config()
    return (
        config.get("groups", 1) == 1
        and config.get("data_format") == "channels_last"
        and layer.kernel.shape[2] > 3
    )


def constrain(model, tau_scale=4.0, reading="text"):
    """Scaling only: every decomposable conv's kernel becomes `W_constrain` (Eq. 5-7).

    Same architecture and ranks; used for the ablation ("scaling only") and the paper's
    Fig. 1/3.

    Args:
        model: functional or Sequential `keras.Model` (not modified).
        tau_scale: threshold of Eq. 5, > 0 (paper default 4).
        reading: `"text"` or `"literal"`, see `kcc.tucker.scale_factors`.

    Returns:
        `(constrained_model, RewriteReport)`.
    """
    plan = _plan(model, tau_scale, reading)

    new_model = clone(model, plan, _constrained_conv)
    reports = [
        LayerReport(
            e["layer"].name, e["kernel_shape"], e["full_ranks"], e["full_ranks"], e["scaled"],
            False, e["params"], e["params"],
        )
        for e in plan.values()
    ]
    return new_model, _report(model, new_model, "constrain", tau_scale, reading, None, None, None,
                              None, reports)


def constrain_weights(model, tau_scale=4.0, reading="text"):
    """Scaling in place: every decomposable conv's kernel is replaced by `W_constrain` (Eq. 7).

    What the C&C-aware adaptive attacker of the paper's Table 7 applies at the end of every
    training epoch (`kcc.attacks.ConstrainEachEpoch`).

    Returns:
        the number of rank components scaled, over all layers.
    """
    plan = _plan(model, tau_scale, reading)
    for entry in plan.values():
        kernel = entry["layer"].kernel
        kernel.assign(tucker.reconstruct(entry["core"], entry["u1"], entry["u2"]).astype(kernel.dtype))
    return int(sum(sum(e["scaled"]) for e in plan.values()))


def compress(model, cr, tau_scale=4.0, reading="text", rank_multiple=1, relative=False):
    """Scaling (Eq. 5-7) then global rank truncation (Eq. 8): a clean(er) and compact model.

    Decomposable convs whose factored form is smaller become `TuckerConv2D` layers built from
    the scaled, truncated core; the others keep a plain conv with `W_constrain`. Every other
    layer and weight is carried over unchanged.

    Args:
        model: functional or Sequential `keras.Model` (not modified).
        cr: target compression ratio of the whole model's parameters, > 1.
        tau_scale: threshold of Eq. 5, > 0 (paper default 4).
        reading: `"text"` or `"literal"`, see `kcc.tucker.scale_factors`.
        rank_multiple: integer >= 1; every rank is rounded up to a multiple of it (at most the
            layer's full rank) within the same parameter budget, e.g. 8 for XNNPACK's channel
            blocks; 1 (default) keeps C&C's ranks. See `kcc.tucker.select_ranks`.
        relative: truncate singular values relative to their layer's Frobenius norm (kcc's
            recipe); False (default) is Eq. 8's raw values. See `kcc.tucker.select_ranks`.

    Returns:
        `(compressed_model, RewriteReport)`; the report's `params_after <= params_before / cr`.

    Raises:
        ValueError: bad arguments, a subclassed model, no decomposable conv, non-finite
            weights, or an unreachable `cr` (the message gives the largest reachable ratio).
    """
    if not cr > 1:
        raise ValueError(f"cr must be greater than 1. Received cr={cr}.")
    rank_multiple = tucker.check_rank_multiple(rank_multiple)  # before the decompositions
    plan = _plan(model, tau_scale, reading)
    entries = list(plan.values())
    conv_total = sum(e["params"] for e in entries)
    other = models.trainable_params(model) - conv_total
    ranks, tau_trunc, _ = tucker.select_ranks(
        [
            {"sigma1": e["sigma1"], "sigma2": e["sigma2"], "kernel_shape": e["kernel_shape"],
             "use_bias": e["use_bias"]}
            for e in entries
        ],
        other,
        cr,
        rank_multiple,
        relative,
    )
    for entry, (r1, r2) in zip(entries, ranks):
        entry["ranks"] = (r1, r2)
        entry["factored"] = tucker.tucker_params(entry["kernel_shape"], r1, r2, entry["use_bias"]) < \
            entry["params"]

    def replace(layer, entry):
        if not entry["factored"]:
            # Plain conv: the full-rank constrained kernel (truncating it would not save anything).
            return _constrained_conv(layer, entry)
        factors = tucker.truncate(entry["core"], entry["u1"], entry["u2"], *entry["ranks"])
        config = layer.get_config()
        new = kcc_layers.TuckerConv2D(
            filters=config["filters"], kernel_size=config["kernel_size"], ranks=entry["ranks"],
            strides=config["strides"], padding=config["padding"],
            dilation_rate=config["dilation_rate"], use_bias=config["use_bias"],
            activation=config["activation"], name=layer.name, dtype=layer.dtype_policy,
            kernel_initializer="zeros",  # replaced by the factors right after cloning
        )
        bias = ops.convert_to_numpy(layer.bias) if config["use_bias"] else None
        return new, lambda: new.set_factors(*factors, bias=bias)

    new_model = clone(model, plan, replace)
    reports = []
    for e in entries:
        after = (tucker.tucker_params(e["kernel_shape"], *e["ranks"], e["use_bias"])
                 if e["factored"] else e["params"])
        ranks_kept = e["ranks"] if e["factored"] else e["full_ranks"]
        reports.append(LayerReport(e["layer"].name, e["kernel_shape"], e["full_ranks"], ranks_kept,
                                   e["scaled"], e["factored"], e["params"], after))
    return new_model, _report(model, new_model, "compress", tau_scale, reading, cr, rank_multiple,
                              relative, tau_trunc, reports)


def largest_ratio(model, rank_multiple=1):
    """The largest `cr` that `compress(..., rank_multiple=rank_multiple)` can reach on `model`.

    Every decomposable conv at its lowest rank per mode, `tucker.round_rank(1, rank_multiple,
    full rank)` (or kept plain where that is smaller), every other parameter unchanged.
    Computed from the layer shapes alone, without decomposing anything, so a command line can
    refuse an unreachable ratio at once.

    Returns:
        `params_before / smallest params_after`, a float >= 1.

    Raises:
        ValueError: the model has no decomposable conv.
    """
    m = tucker.check_rank_multiple(rank_multiple)
    convs = [(tuple(l.kernel.shape), bool(l.use_bias)) for l in _decomposable_layers(model)]
    total = models.trainable_params(model)
    smallest = total - sum(
        tucker.conv_params(shape, bias)
        - tucker.layer_params(shape, tucker.round_rank(1, m, shape[3]),
                              tucker.round_rank(1, m, shape[2]), bias)
        for shape, bias in convs)
    return total / smallest


def _constrained_conv(layer, entry):
    """A plain copy of conv `layer` whose kernel is `W_constrain` (Eq. 7) at full rank."""
    kernel = tucker.reconstruct(entry["core"], entry["u1"], entry["u2"])
    new = layer.__class__.from_config(layer.get_config())
    return new, lambda: new.set_weights(
        [kernel.astype(new.variable_dtype)] + [ops.convert_to_numpy(w) for w in layer.weights[1:]]
    )


def _check_model(model):
    from keras.src.models.functional import Functional

    if not isinstance(model, (keras.Sequential, Functional)):
        raise ValueError(
            f"kcc rewrites functional and Sequential models only. Received a subclassed model "
            f"{type(model).__name__!r}: its call() is arbitrary Python that kcc cannot rewrite. "
            "Rebuild it as a functional model (keras.Model(inputs, outputs)) and copy the weights."
        )
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _check_model(layer)
            continue
        for weight in layer.weights:
            if not np.all(np.isfinite(ops.convert_to_numpy(weight))):
                raise ValueError(
                    f"Layer {layer.name!r} has non-finite values (NaN or inf) in weight "
                    f"{weight.path!r}; refusing to decompose a corrupted model."
                )


def _plan(model, tau_scale, reading):
    """Tucker-2 and scaling of every decomposable conv, keyed by `id(layer)`."""
    if reading not in tucker.READINGS:
        raise ValueError(f"reading must be one of {tucker.READINGS}. Received reading={reading!r}.")
    if not tau_scale > 0:
        raise ValueError(f"tau_scale must be strictly positive. Received tau_scale={tau_scale}.")
    _check_model(model)
    plan = {}
    for layer in _decomposable_layers(model):
        kernel = ops.convert_to_numpy(layer.kernel)
        d = tucker.tucker2(kernel)
        core, scaled1, scaled2 = tucker.scale_core(d.core, d.sigma1, d.sigma2, tau_scale, reading)
        use_bias = bool(layer.use_bias)
        plan[id(layer)] = {
            "layer": layer,
            "kernel_shape": tuple(int(s) for s in kernel.shape),
            "use_bias": use_bias,
            "core": core,
            "u1": d.u1,
            "u2": d.u2,
            "sigma1": d.sigma1,
            "sigma2": d.sigma2,
            "full_ranks": (len(d.sigma1), len(d.sigma2)),
            "scaled": (scaled1, scaled2),
            "params": tucker.conv_params(kernel.shape, use_bias),
        }
    return plan


def _decomposable_layers(model):
    """The decomposable convs of `model`, each once (a shared layer is one layer)."""
    found = {id(l): l for l in flops.iterate_layers(model) if is_decomposable(l)}
    if not found:
        raise ValueError(
            f"Model {model.name!r} has no decomposable Conv2D layer (groups 1, channels-last, "
            "more than 3 input channels); C&C has nothing to scale or compress."
        )
    return list(found.values())


def clone(model, plan, replace, call_function=None):
    """Clones `model` with its weights; the layers in `plan` are swapped for others.

    Args:
        model: functional or Sequential model (nested ones included).
        plan: dict `{id(layer): entry}` of the layers to replace.
        replace: `replace(layer, entry) -> (new_layer, set_weights)`; `set_weights()` is called
            once the new model is built.
        call_function: optional `keras.models.clone_model` call function (functional models).

    Returns:
        the new model; `model` is not modified.
    """
    pending = []

    def clone_function(layer):
        if id(layer) in plan:
            new, set_weights = replace(layer, plan[id(layer)])
            pending.append(set_weights)
            return new
        new = layer.__class__.from_config(layer.get_config())
        pending.append(lambda: new.set_weights(layer.get_weights()))
        return new

    new_model = keras.models.clone_model(model, clone_function=clone_function,
                                         call_function=call_function, recursive=True)
    for set_weights in pending:
        set_weights()
    return new_model


def _report(old, new, operation, tau_scale, reading, cr, rank_multiple, relative, tau_trunc,
            layer_reports):
    return RewriteReport(
        operation=operation,
        tau_scale=float(tau_scale),
        reading=reading,
        cr=float(cr) if cr else None,
        rank_multiple=rank_multiple,
        relative=relative,
        tau_trunc=tau_trunc,
        layers=layer_reports,
        params_before=models.trainable_params(old),
        params_after=models.trainable_params(new),
        flops_before=flops.model_flops(old)[0],
        flops_after=flops.model_flops(new)[0],
    )
