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
import platform
import time

from absl import app
from absl import flags

from kcc import saving
from kcc.cc import purify

import zoo  # benchmarks/zoo.py, beside this script

OUT = os.path.join(zoo.RESULTS, "purify_zoo")

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
    rows = {}
    if os.path.exists(OUT + ".json"):
        with open(OUT + ".json") as f:
            rows = json.load(f)["rows"]
    budget = {"num_images": _NUM_IMAGES.value, "synthesis_steps": _STEPS.value, "epochs": _EPOCHS.value,
              "batch_size": 128, "pgd_steps": 10, "reading": _READING.value,
              "adversarial_cap": _CAP.value}
    for name in _MODELS.value:
        model, attack, x, y, _ = zoo.load_entry(name, _PER_CLASS.value)
        for cr in _CRS.value:
            runs = [("cc", _TAU.value)] + ([("ft_only", math.inf)] if _FT_ONLY.value else [])
            for kind, tau in runs:
                key = f"{name}/cr{cr}/{kind}/tau{_TAU.value if kind == 'cc' else 'inf'}/{_READING.value}"
                if _CAP.value is not None:
                    key += f"/cap{_CAP.value:g}"
                if key in rows:
                    continue
                start = time.time()
                _, report = purify(model, cr=float(cr), tau_scale=tau, evaluation=(x, y, attack),
                                   seed=0, verbose=True, **{k: v for k, v in budget.items()})
                rows[key] = {"evaluation": report["evaluation"], "seconds": report["seconds"],
                             "params": [report["rewrite"]["params_before"], report["rewrite"]["params_after"]],
                             "scaled": sum(sum(l["scaled"]) for l in report["rewrite"]["layers"]),
                             "synthesis_throughput": report["synthesis"]["image_steps_per_second"],
                             "distillation_history": report["distillation"]["history"],
                             "stopped_on_divergence_at_epoch":
                                 report["distillation"]["stopped_on_divergence_at_epoch"],
                             "teacher_class_rates_on_adversarial":
                                 report["distillation"]["teacher_class_rates_on_adversarial"],
                             "wall_seconds": round(time.time() - start, 1)}
                _write(rows, budget)
    _write(rows, budget)


def _write(rows, budget):
    saving.write_json({"rows": rows, "budget": budget, "eval_per_class": _PER_CLASS.value,
                       "machine": f"{platform.machine()}, {os.cpu_count()} cores (CPU)"}, OUT + ".json")
    pct = lambda r, k: f"{100 * r[k]:.2f}" if k in r else "-"  # noqa: E731
    lines = ["# C&C on the zoo (CPU budget)", "",
             f"Budget: {budget}; evaluation on {_PER_CLASS.value} test images per class. Stages: "
             "suspect = no defense; scaled = Eq. 5-7 only; compressed = + truncation (Eq. 8); "
             "purified = + synthesis and BN-only distillation (Eq. 9-10). `ft_only` runs use "
             "tau_scale = inf (no scaling). Made by `benchmarks/purify_zoo.py` (command in its docstring).", "",
             "| model | cr | run | stage | ACC % | ASR % | RA % | params | seconds (rewrite/synth/distill) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, r in rows.items():
        name, cr, kind, tau, reading, *cap = key.split("/")
        reading = ", ".join([reading, *cap])
        s = r["seconds"]
        for stage, ev in r["evaluation"].items():
            lines.append(f"| {name} | {cr[2:]} | {kind} ({tau}, {reading}) | {stage} | {pct(ev, 'acc')} | "
                         f"{pct(ev, 'asr')} | {pct(ev, 'ra')} | {r['params'][0 if stage in ('suspect', 'scaled') else 1]:,} | "
                         f"{s.get('rewrite', 0)}/{s.get('synthesis', 0)}/{s.get('distillation', 0)} |")
    saving.write_text("\n".join(lines) + "\n", OUT + ".md")


if __name__ == "__main__":
    app.run(main)
