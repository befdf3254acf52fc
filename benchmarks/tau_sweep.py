"""The paper's Fig. 3 on kcc's zoo: ACC and ASR against tau_scale, scaling only, both readings.

For each zoo model and each reading of Eq. 5, `kcc.rewrite.constrain` at a range of tau_scale
values (no truncation, no fine-tuning), evaluated on a class-balanced slice of the test split.
Each point also records the paper's Fig. 1 quantity (mean activation of the last conv block on
clean and on triggered images, h_clean and h_trigger) and, as a diagnostic, ACC/ASR after the
BatchNorm statistics are re-estimated on clean *training* images: if the backdoor comes back,
the scaling had only left the stored statistics stale rather than removed what carries it.
Resumable: finished (model, reading, tau) points are kept in the JSON.

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=tensorflow \
        python benchmarks/tau_sweep.py --models=badnets_all2one
"""

import json
import os

import numpy as np
from absl import app
from absl import flags

from kcc import data
from kcc import saving

import zoo  # benchmarks/zoo.py, beside this script

_MODELS = flags.DEFINE_list("models", ["badnets_all2one"], "Zoo entries to sweep.")
_TAUS = flags.DEFINE_list("taus", ["8", "6", "5", "4", "3", "2.5", "2", "1.5", "1", "0.5"],
                          "tau_scale values.")
_PER_CLASS = flags.DEFINE_integer("per_class", 200, "Test images per class.")
_RECAL_PER_CLASS = flags.DEFINE_integer("recal_per_class", 50,
                                        "Training images per class for the BN re-estimation.")


def main(argv):
    del argv
    results = {}
    out = zoo.output("tau_sweep")
    if os.path.exists(out + ".json"):
        with open(out + ".json") as f:
            results = json.load(f)["points"]
    entries = {name: zoo.load_entry(name, _PER_CLASS.value) for name in _MODELS.value}
    for name, (_, _, _, y, _) in entries.items():
        per_class = len(y) // len(np.unique(y))
        if per_class < _PER_CLASS.value:
            raise app.UsageError(f"{name}: its smallest test class has {per_class} images, fewer "
                                 f"than --per_class={_PER_CLASS.value}, and tau_sweep.json keeps "
                                 "one evaluation size for all its models.")
    for name, (model, attack, x, y, sidecar) in entries.items():
        x_train, y_train = data.load(sidecar["dataset"], "train")
        x_recal = data.subset(x_train, y_train, per_class=_RECAL_PER_CLASS.value, seed=1)[0]
        key = f"{name}/none/inf"
        if "recalibrated" not in results.get(key, {}):
            results[key] = zoo.scaling_point(model, float("inf"), "text", x, y, attack, x_recal)
        for reading in ("text", "literal"):
            for tau in _TAUS.value:
                key = f"{name}/{reading}/{tau}"
                if "recalibrated" in results.get(key, {}):
                    continue
                results[key] = zoo.scaling_point(model, float(tau), reading, x, y, attack, x_recal)
                print(key, results[key], flush=True)
                saving.write_json({"points": results, "per_class": _PER_CLASS.value}, out + ".json")
    saving.write_json({"points": results, "per_class": _PER_CLASS.value}, out + ".json")
    lines = ["# ACC / ASR against tau_scale, scaling only (the paper's Fig. 3)", "",
             "`KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=tensorflow python benchmarks/tau_sweep.py "
             f"--models={','.join(_MODELS.value)} --taus={','.join(_TAUS.value)}` (the JSON keeps the "
             f"points of earlier runs, so rows may come from other --taus); {_PER_CLASS.value} test "
             "images per class; "
             "`scaled` = rank components scaled over all layers; h = mean activation of the last conv "
             "block (Fig. 1); *after BN re-estimation* = the same model once its BatchNorm statistics "
             f"are re-estimated on {_RECAL_PER_CLASS.value} clean training images per class "
             "(a diagnostic, not a defense).", "",
             "| model | reading | tau | components scaled | ACC % | ASR % | RA % | h_clean | h_trigger "
             "| ACC % after BN re-estimation | ASR % after BN re-estimation |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    pct = lambda r, k: f"{100 * r[k]:.2f}" if k in r else "-"
    num = lambda r, k: f"{r[k]:.3f}" if k in r else "-"
    for key, r in results.items():
        name, reading, tau = key.split("/")
        recal = r.get("recalibrated", {})
        lines.append(f"| {name} | {reading} | {tau} | {r.get('scaled', 0)} | {pct(r, 'acc')} | "
                     f"{pct(r, 'asr')} | {pct(r, 'ra')} | {num(r, 'h_clean')} | {num(r, 'h_trigger')} | "
                     f"{pct(recal, 'acc')} | {pct(recal, 'asr')} |")
    saving.write_text("\n".join(lines) + "\n", out + ".md")
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
    fig, axes = plt.subplots(2, len(names), figsize=(5 * len(names), 7), squeeze=False)
    for ax, fig1, name in zip(axes[0], axes[1], names):
        for reading, style in (("text", "-"), ("literal", "--")):
            pts = sorted((float(k.split("/")[2]), r) for k, r in results.items()
                         if k.startswith(f"{name}/{reading}/"))
            if not pts:
                continue
            taus = [t for t, _ in pts]
            ax.plot(taus, [100 * r["acc"] for _, r in pts], "b" + style, label=f"ACC ({reading})")
            ax.plot(taus, [100 * r.get("asr", 0) for _, r in pts], "r" + style, label=f"ASR ({reading})")
            fig1.plot(taus, [r.get("h_clean", float("nan")) for _, r in pts], "g" + style,
                      label=f"h_clean ({reading})")
            fig1.plot(taus, [r.get("h_trigger", float("nan")) for _, r in pts], "m" + style,
                      label=f"h_trigger ({reading})")
        ax.set_xlabel("tau_scale")
        ax.set_ylabel("%")
        ax.set_title(f"{name}: Fig. 3, scaling only")
        fig1.set_title(f"{name}: Fig. 1, last-block activation")
        fig1.set_xlabel("tau_scale")
        for a in (ax, fig1):
            a.invert_xaxis()
            a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(zoo.output("tau_sweep") + ".png", dpi=120)


if __name__ == "__main__":
    app.run(main)
