"""Probe: refit with stamped rows (closed-form unlearning). usage: MODEL STAMPED_PER_CLEAN..."""
import json, math, os, pickle, sys, time
sys.path.insert(0, "benchmarks")
import numpy as np, keras
import zoo
from kcc import rewrite, metrics, refit, unlearning, distillation
import kcc.refit
name = sys.argv[1]
model, attack, x, y, _ = zoo.load_entry(name, 100)
images = np.load(f"benchmarks/work/probe_images_{name}.npz")["images"]
val, train = images[:128], images[128:]
triggers = pickle.load(open(f"benchmarks/work/probe_triggers_{name}.pkl", "rb"))
ev = lambda m: {k: round(100 * float(v), 2) for k, v in metrics.evaluate(m, x, y, attack).items() if k != "n_triggered"}
out = {}
for spc in sys.argv[2:]:
    kcc.refit.STAMPED_PER_CLEAN = int(spc)
    student, _ = rewrite.compress(model, 2.0, math.inf)
    t = time.time()
    refit.refit(model, student, train, triggers, verbose=False)
    v = unlearning.SyntheticValidation(model, student, val, triggers)
    out[spc] = {**ev(student), "val": v.measure(), "s": round(time.time() - t, 1)}
    print(spc, out[spc], flush=True)
json.dump(out, open(f"benchmarks/work/probe_refit_unlearn_{name}.json", "w"), indent=1)
