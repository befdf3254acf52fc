"""CLP (`kcc.defenses.clp.clp`, data-free) on zoo models at the thresholds u in $US (default
3): ACC / ASR / RA before and after on the test slice (100 per class; a diagnostic, which the
recipe chooses nothing with) and the channels pruned. Results, keyed `model|u<u>`, are added to
the JSON file given (`clp.json`). With SPLIT=train, 100 images per class of the training split
(seed 1) instead, keyed `model|u<u>|train`: the images the choice of u was made on. Run from
the repository root:

    KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax US=3,4 taskset -c 0 \
        python benchmarks/results/probes/probe_clp.py clean,bpp_all2one benchmarks/work/clp.json
"""
import json, os, sys, time
sys.path.insert(0, "benchmarks")
import zoo
from kcc import data, metrics
from kcc.defenses import clp



def _percent(evaluation):
    return {k: round(100 * float(v), 2) for k, v in evaluation.items()
            if k != "n_triggered" and v is not None}


SPLIT = os.environ.get("SPLIT", "test")
names = sys.argv[1].split(",")
out_path = sys.argv[2]
out = json.load(open(out_path)) if os.path.exists(out_path) else {}
for name in names:
    for u in [float(v) for v in os.environ.get("US", "3").split(",")]:
        key = f"{name}|u{u:g}" + ("|train" if SPLIT == "train" else "")
        if key in out:
            continue
        model, attack, x, y, sidecar = zoo.load_entry(name, 100)
        if SPLIT == "train":  # 100 per class of the training split (seed 1) instead
            x, y = data.load(sidecar["dataset"], "train")
            x, y, _ = data.subset(x, y, per_class=100, seed=1)
        t = time.time()
        before = metrics.evaluate(model, x, y, attack)
        pruned, rep = clp.clp(model, u=u)
        after = metrics.evaluate(pruned, x, y, attack)
        out[key] = {"suspect": _percent(before), "clp": _percent(after),
                    "channels_pruned": rep["channels_pruned"],
                    "channels_total": rep["channels_total"], "s": round(time.time() - t, 1)}
        print(key, out[key], flush=True)
        json.dump(out, open(out_path, "w"), indent=1)
