"""The paper's Fig. 3 on kcc's zoo: ACC and ASR against tau_scale, scaling only, both readings.

For each zoo model and each reading of Eq. 5, `kcc.rewrite.constrain` at a range of tau_scale
values (no truncation, no fine-tuning, no BN re-estimation), evaluated on a class-balanced
slice of the test split. Resumable: finished (model, reading, tau) points are kept in the JSON.

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=tensorflow \
        python benchmarks/tau_sweep.py --models=badnets_all2one
"""

import json
import os

from absl import app
from absl import flags

from kcc import metrics
from kcc import rewrite
from kcc import saving

import zoo  # benchmarks/zoo.py, beside this script

OUT = os.path.join(zoo.RESULTS, "tau_sweep")

_MODELS = flags.DEFINE_list("models", ["badnets_all2one"], "Zoo entries to sweep.")
_TAUS = flags.DEFINE_list("taus", ["8", "6", "5", "4", "3", "2.5", "2", "1.5", "1", "0.5"],
                          "tau_scale values.")
_PER_CLASS = flags.DEFINE_integer("per_class", 200, "Test images per class.")


def main(argv):
    del argv
    results = {}
    if os.path.exists(OUT + ".json"):
        with open(OUT + ".json") as f:
            results = json.load(f)["points"]
    for name in _MODELS.value:
        model, attack, x, y, _ = zoo.load_entry(name, _PER_CLASS.value)
        key = f"{name}/none/inf"
        if key not in results:
            results[key] = metrics.evaluate(model, x, y, attack)
        for reading in ("text", "literal"):
            for tau in _TAUS.value:
                key = f"{name}/{reading}/{tau}"
                if key in results:
                    continue
                constrained, report = rewrite.constrain(model, float(tau), reading)
                results[key] = {**metrics.evaluate(constrained, x, y, attack),
                                "scaled": sum(sum(l.scaled) for l in report.layers)}
                print(key, results[key], flush=True)
                saving.write_json({"points": results, "per_class": _PER_CLASS.value}, OUT + ".json")
    saving.write_json({"points": results, "per_class": _PER_CLASS.value}, OUT + ".json")
    lines = ["# ACC / ASR against tau_scale, scaling only (the paper's Fig. 3)", "",
             "`KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=tensorflow python benchmarks/tau_sweep.py "
             f"--models={','.join(_MODELS.value)}`; {_PER_CLASS.value} test images per class; "
             "`scaled` = rank components scaled over all layers.", "",
             "| model | reading | tau | components scaled | ACC % | ASR % | RA % |", "|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        name, reading, tau = key.split("/")
        lines.append(f"| {name} | {reading} | {tau} | {r.get('scaled', 0)} | {100 * r['acc']:.2f} | "
                     f"{100 * r.get('asr', float('nan')):.2f} | {100 * r.get('ra', float('nan')):.2f} |")
    saving.write_text("\n".join(lines) + "\n", OUT + ".md")
    _plot(results)


def _plot(results):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e '.[report]'): no figure")
        return
    names = sorted({k.split("/")[0] for k in results})
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        for reading, style in (("text", "-"), ("literal", "--")):
            pts = sorted((float(k.split("/")[2]), r) for k, r in results.items()
                         if k.startswith(f"{name}/{reading}/"))
            if not pts:
                continue
            taus = [t for t, _ in pts]
            ax.plot(taus, [100 * r["acc"] for _, r in pts], "b" + style, label=f"ACC ({reading})")
            ax.plot(taus, [100 * r.get("asr", 0) for _, r in pts], "r" + style, label=f"ASR ({reading})")
        ax.set_xlabel("tau_scale")
        ax.set_ylabel("%")
        ax.set_title(name)
        ax.invert_xaxis()
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT + ".png", dpi=120)


if __name__ == "__main__":
    app.run(main)
