"""Baseline defenses on the zoo: ACC/ASR/RA before and after, with the budget of every row.

For each zoo model, the defender gets 1% of the CIFAR-10 *training* split (class-balanced, 10%
of it held out for validation, `kcc.defenses.defender_split`); ACC/ASR/RA are measured on the
full test split, which no defense sees. ANP's masks are optimised once per model and reused by
"anp2x" (saved under benchmarks/work/defend_zoo/ so a rerun does not redo them). Any method of
`kcc.defenses.DEFENSES` can be run; budget flags reach only the defenses that take them
(`kcc.defenses.defense_kwargs`, as in `kcc.defend`). Resumable: finished rows are kept in
benchmarks/results/defend_zoo.json.

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=tensorflow \
        python benchmarks/defend_zoo.py --models=badnets_all2one --methods=clp,clp2x,anp,anp2x
"""

import json
import os
import shlex
import sys
import time

import numpy as np
from absl import app
from absl import flags

from kcc import attacks
from kcc import data
from kcc import intake
from kcc import metrics
from kcc import saving
from kcc.defenses import DEFENSES
from kcc.defenses import anp as anp_lib
from kcc.defenses import defender_split
from kcc.defenses import defense_kwargs

import zoo  # benchmarks/zoo.py, beside this script

WORK = os.path.join(zoo.ROOT, "benchmarks", "work", "defend_zoo")

_MODELS = flags.DEFINE_list("models", ["badnets_all2one"], "Zoo entries.")
_METHODS = flags.DEFINE_list("methods", ["clp", "clp2x", "anp", "anp2x"],
                             f"Defenses, from {sorted(DEFENSES)}.")
_FRACTION = flags.DEFINE_float("fraction", 0.01,
                               "Defender's share of each class of the training split.")
_ITERATIONS = flags.DEFINE_integer("iterations", 300,
                                   "ANP mask iterations (CPU budget; paper 2000).")
_EPOCHS = flags.DEFINE_integer("epochs", None,
                               "Epochs, for defenses that take them (default: theirs).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the defender split and the defenses.")


def main(argv):
    del argv
    unknown = sorted(set(_METHODS.value) - set(DEFENSES))
    if unknown:
        raise app.UsageError(f"Unknown methods {unknown}; known: {sorted(DEFENSES)}.")
    rows = {}
    path = zoo.output("defend_zoo.json")
    if os.path.exists(path):
        with open(path) as f:
            rows = json.load(f)["rows"]
    budget = {"iterations": _ITERATIONS.value, "epochs": _EPOCHS.value}
    command = " ".join(shlex.quote(a) for a in ["python"] + sys.argv)
    for name in _MODELS.value:
        pending = [m for m in _METHODS.value if _key(name, m, budget) not in rows]
        if not pending:
            continue
        model, attack, x, y, sidecar = _load(name)
        defender_data = defender_split(sidecar["dataset"], fraction=_FRACTION.value,
                                       seed=_SEED.value)
        suspect = metrics.evaluate(model, x, y, attack)
        for method in pending:
            fn = DEFENSES[method]
            kwargs, _ = defense_kwargs(fn, {}, budget, _SEED.value, attack)
            row_budget = _budget(method, budget)
            mask_seconds = 0.0
            if getattr(fn, "func", fn) is anp_lib.anp:
                kwargs["masks"], mask_seconds = _anp_masks(name, model, defender_data, kwargs)
            start = time.time()
            if "defender_data" in _parameters(fn):
                defended, report = fn(model, defender_data, **kwargs)
            else:
                defended, report = fn(model, **kwargs)
            # The shared mask optimisation counts in full for both ANP rows.
            seconds = time.time() - start + mask_seconds
            rows[_key(name, method, budget)] = {
                "model": name, "method": method, "budget": row_budget,
                "data": report.get("data"), "suspect": suspect,
                "defended": metrics.evaluate(defended, x, y, attack),
                "params_before": report.get("params_before"),
                "params_after": report.get("params_after") or defended.count_params(),
                "ratio": report.get("ratio") or report.get("effective_ratio"),
                "sparsity": report.get("sparsity"),
                "validation": report.get("validation"),
                "seconds": round(seconds, 1), "command": command,
                "report": _summary(report),
            }
            _write(rows)  # only after a new row: a run with nothing to do keeps the file's machine


def _parameters(fn):
    import inspect

    return inspect.signature(fn).parameters


def _budget(method, budget):
    """What this method's row depends on: its budget arguments, seed and defender share."""
    fn = DEFENSES[method]
    kwargs, _ = defense_kwargs(fn, {}, budget, _SEED.value, attack="(from the sidecar)")
    kwargs.pop("attack", None)
    if "defender_data" in _parameters(fn):
        kwargs["fraction"] = _FRACTION.value
    return kwargs


def _key(name, method, budget):
    parts = [f"{k}{v}" for k, v in sorted(_budget(method, budget).items())]
    return "/".join([name, method, *parts])


def _load(name):
    """The zoo model (through the intake), its attack and the *full* test split."""
    with open(os.path.join(zoo.ZOO, f"{name}.json")) as f:
        sidecar = json.load(f)
    model = intake.load_suspect(os.path.join(zoo.ZOO, f"{name}.keras"))
    attack = attacks.from_config(sidecar["attack"], folder=zoo.ZOO) if sidecar["attack"] else None
    x, y = data.load(sidecar["dataset"], "test")
    return model, attack, x, y, sidecar


def _anp_masks(name, model, defender_data, kwargs):
    """ANP's masks for this model and budget and the seconds they took: from
    benchmarks/work/defend_zoo/ when an earlier run saved them, else optimised now and saved."""
    hyper = {k: kwargs[k] for k in ("iterations", "seed") if k in kwargs}
    path = os.path.join(WORK, f"{name}_masks_frac{_FRACTION.value}_it{hyper['iterations']}"
                              f"_seed{hyper['seed']}.npz")
    if os.path.exists(path):
        with np.load(path) as f:
            return {k: f[k] for k in f.files if k != "_seconds"}, float(f["_seconds"])
    masks, info = anp_lib.anp_masks(model, defender_data, verbose=True, **hyper)
    os.makedirs(WORK, exist_ok=True)
    tmp = path[:-len(".npz")] + ".tmp.npz"
    np.savez(tmp, _seconds=info["seconds"], **masks)
    os.replace(tmp, path)
    return masks, info["seconds"]


def _summary(report):
    """The report without per-layer lists (those stay in the defense's own report)."""
    return {k: v for k, v in report.items() if k not in ("layers", "data", "validation")}


def _write(rows):
    out, machine = zoo.output("defend_zoo"), zoo.machine()
    if os.path.exists(out + ".json"):  # keep rows another run wrote meanwhile
        with open(out + ".json") as f:
            rows = {**json.load(f)["rows"], **rows}
    saving.write_json({"rows": rows, "machine": machine}, out + ".json")
    pct = lambda r, k: f"{100 * r[k]:.2f}" if r and k in r else "-"  # noqa: E731
    lines = ["# Baseline defenses on the zoo (CPU budget)", "",
             "Defender data: 1% of the training split per class (10% of it held out for "
             "validation); ACC/ASR/RA on the full test split. Budget per row as run; paper "
             "defaults: ANP 2000 iterations. `ratio` is physical for CLP 2x, effective "
             "(zeroed filters removed) for ANP 2x. Made by `benchmarks/defend_zoo.py` "
             "(command per row in the JSON).", "", f"Machine: {machine}.", "",
             "| model | method | budget | ACC % | ASR % | RA % | params after | ratio | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows.values():
        s, d = r["suspect"], r["defended"]
        budget = ", ".join(f"{k}={v}" for k, v in r["budget"].items()) or "data-free"
        lines.append(
            f"| {r['model']} | {r['method']} | {budget} | {pct(s, 'acc')} -> {pct(d, 'acc')} | "
            f"{pct(s, 'asr')} -> {pct(d, 'asr')} | {pct(s, 'ra')} -> {pct(d, 'ra')} | "
            f"{format(r['params_after'], ',') if r['params_after'] else '-'} | {r['ratio'] or '-'} | {r['seconds']} |")
    saving.write_text("\n".join(lines) + "\n", out + ".md")


if __name__ == "__main__":
    app.run(main)
