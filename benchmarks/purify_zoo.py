"""C&C on the zoo: no defense / scaling only / scaling + truncation / fine-tuning only / full C&C.

For each zoo model and compression ratio, one `kcc.purify.purify` run with the CPU budget of
`flags/purify_cpu.flags` reports ACC/ASR/RA after every stage (suspect, scaled, compressed,
purified), and a second run with `tau_scale=inf` gives "fine-tuning only" (no scaling, same
truncation and distillation). Evaluation uses a class-balanced slice of the test split, never
seen by purification. Resumable: finished rows are kept in the JSON.

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=tensorflow \
        python benchmarks/purify_zoo.py --models=badnets_all2one --crs=2
"""

import json
import math
import os
import sys
import time

import numpy as np
from absl import app
from absl import flags

from kcc import distillation
from kcc import saving
from kcc.cc import purify

import zoo  # benchmarks/zoo.py, beside this script

_MODELS = flags.DEFINE_list("models", ["badnets_all2one"], "Zoo entries.")
_CRS = flags.DEFINE_list("crs", ["2", "3", "4"], "Compression ratios.")
_TAU = flags.DEFINE_float("tau", 4.0, "tau_scale of full C&C.")
_READING = flags.DEFINE_enum("reading", "text", ["text", "literal"], "Reading of Eq. 5.")
_FT_ONLY = flags.DEFINE_bool("ft_only", True, "Also run fine-tuning only (tau_scale = inf).")
_PER_CLASS = flags.DEFINE_integer("per_class", 200, "Evaluation images per class (test split).")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 1024, "Synthetic images (CPU budget).")
_STEPS = flags.DEFINE_integer("synthesis_steps", 100, "Synthesis steps (CPU budget).")
_EPOCHS = flags.DEFINE_integer("epochs", 5, "Distillation epochs.")
_CAP = flags.DEFINE_float("adversarial_cap", None, "Cap of Eq. 10's adversarial term (None = paper).")


def main(argv):
    del argv
    rows = _read()
    budget = {"num_images": _NUM_IMAGES.value, "synthesis_steps": _STEPS.value, "epochs": _EPOCHS.value,
              "batch_size": 128, "pgd_steps": 10, "reading": _READING.value,
              "adversarial_cap": _CAP.value,
              "distillation_bn_momentum": distillation.PYTORCH_BN_MOMENTUM}
    for name in _MODELS.value:
        runs = [("cc", _TAU.value)] + ([("ft_only", math.inf)] if _FT_ONLY.value else [])
        missing = [(cr, kind, tau) for cr in _CRS.value for kind, tau in runs
                   if _key(name, cr, kind, tau, budget) not in rows]
        if not missing:
            continue
        model, attack, x, y, _ = zoo.load_entry(name, _PER_CLASS.value)
        per_class = len(y) // len(np.unique(y))
        for cr, kind, tau in missing:
            key = _key(name, cr, kind, tau, budget)
            start = time.time()
            _, report = purify(model, cr=float(cr), tau_scale=tau, evaluation=(x, y, attack),
                               seed=0, verbose=True, **{k: v for k, v in budget.items()
                                                        if k != "distillation_bn_momentum"})
            rows[key] = {"model": name, "cr": float(cr), "run": kind, **zoo.purify_row(report),
                         "budget": budget, "eval_per_class": per_class,
                         "machine": zoo.machine(), "command": " ".join(sys.argv),
                         "wall_seconds": round(time.time() - start, 1)}
            _write(rows)
    _write(rows)


def _key(name, cr, kind, tau, budget):
    """Row key: model, cr, run, tau, then every budget entry (so budgets never share a row)."""
    tau = "inf" if math.isinf(tau) else f"{tau:g}"
    parts = [f"{k}={v}" for k, v in sorted(budget.items())]
    return "/".join([name, f"cr{float(cr):g}", kind, f"tau{tau}", *parts])


def _read():
    """Finished rows; rows written before rows carried their own budget or evaluation size get
    the file's."""
    path = zoo.output("purify_zoo.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        saved = json.load(f)
    rows = {}
    for old_key, row in saved["rows"].items():
        if "budget" not in row:
            name, cr, kind, tau = old_key.split("/")[:4]
            row = {"model": name, "cr": float(cr[2:]), "run": kind,
                   "tau_scale": "inf" if tau == "tauinf" else float(tau[3:]),
                   # Distillation then kept Keras' default BN momentum.
                   "budget": dict(saved["budget"], reading=old_key.split("/")[4],
                                  distillation_bn_momentum=0.99),
                   "machine": saved["machine"], **row}
        row.setdefault("eval_per_class", saved["eval_per_class"])
        tau = math.inf if row["tau_scale"] == "inf" else row["tau_scale"]
        rows[_key(row["model"], row["cr"], row["run"], tau, row["budget"])] = row
    return rows


def _write(rows):
    saving.write_json({"rows": rows, "eval_per_class": _PER_CLASS.value}, zoo.output("purify_zoo.json"))
    machines = sorted({r["machine"] for r in rows.values()})
    lines = ["# C&C on the zoo (CPU budget)", "",
             "Evaluation on a class-balanced slice of the test split, never seen by purification: "
             f"{_PER_CLASS.value} images per class unless the budget column names another "
             "`eval_per_class`. Stages: suspect = no defense; scaled = Eq. 5-7 only; compressed = + "
             "truncation (Eq. 8); purified = + synthesis and BN-only distillation (Eq. 9-10). "
             "`ft_only` runs use tau_scale = inf (no scaling). Budget: reading of Eq. 5, synthetic "
             "images x synthesis steps, distillation epochs (batch 128, 10 PGD steps) and any "
             "non-default setting. Made by `benchmarks/purify_zoo.py` (command in its docstring).",
             "", "Machines: " + "; ".join(f"({i + 1}) {m}" for i, m in enumerate(machines)) + ".", "",
             "| model | cr | run | tau | budget | stage | ACC % | ASR % | RA % | params | "
             "seconds (rewrite/synth/distill) | machine |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows.values():
        b = r["budget"]
        budget = ", ".join([b["reading"], f"{b['num_images']}x{b['synthesis_steps']}",
                            f"{b['epochs']} ep"] + [f"{k}={v}" for k, v in sorted(b.items()) if
                                                   k not in _SHOWN and v is not None]
                           + ([f"eval_per_class={r['eval_per_class']}"]
                              if r["eval_per_class"] != _PER_CLASS.value else []))
        for stage in r["evaluation"]:
            lines.append(
                f"| {r['model']} | {r['cr']:g} | {r['run']} | {r['tau_scale']} | {budget} | {stage} | "
                f"{zoo.stage_cells(r, stage)} | ({machines.index(r['machine']) + 1}) |")
    saving.write_text("\n".join(lines) + "\n", zoo.output("purify_zoo.md"))


_SHOWN = ("reading", "num_images", "synthesis_steps", "epochs", "batch_size", "pgd_steps")


if __name__ == "__main__":
    app.run(main)
