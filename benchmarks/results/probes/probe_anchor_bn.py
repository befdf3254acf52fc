"""Probe: after the kcc recipe, move the purified model's BatchNorm statistics back towards the
suspect's: `mean = suspect's mean + (student's mean - baseline's mean)` and `variance =
suspect's variance * (student's variance / baseline's variance)`, the student's and the
baseline's statistics both measured on the synthetic training images. Baseline "suspect": the
suspect itself; "truncated": the student before distillation. The synthetic images' bias in the
statistics (re-estimating the suspect on them costs it ACC) cancels; what distillation changed
stays. ACC/ASR of each, and after re-estimation on the held-aside synthetic images.
Usage: KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax python probe_anchor_bn.py NAME
"""
import json, math, sys, time
sys.path.insert(0, "benchmarks")
import numpy as np
import zoo
from kcc import metrics, recipe, rewrite, scan, synthesis

name = sys.argv[1]
model, attack, x, y, _ = zoo.load_entry(name, 100)
ev = lambda m: {k: round(100 * float(v), 2) for k, v in metrics.evaluate(m, x, y, attack).items()
                if k != "n_triggered"}
captured = {}
synthesize = synthesis.synthesize


def capture(*a, **k):
    captured["out"] = synthesize(*a, **k)
    return captured["out"]


synthesis.synthesize = capture
start = time.time()
student, report = recipe.purify_kcc(model, cr=2.0, num_images=1024, synthesis_steps=100,
                                    epochs=20, scan_settings=scan.BUDGETS["cpu"],
                                    evaluation=(x, y, attack))
images = captured["out"][0]
held = max(1, int(round(recipe.VALIDATION_SHARE * len(images))))
validation, train = images[:held], images[held:]
stats = lambda m: [(np.array(l.moving_mean), np.array(l.moving_variance))
                   for l in synthesis.batchnorm_layers(m)]
suspect_stats = stats(model)
baselines = {"suspect": recipe.refreshed(model, train),
             "truncated": recipe.refreshed(rewrite.compress(model, 2.0, math.inf)[0], train)}
learned = stats(recipe.refreshed(student, train))
pct = lambda e: {m: round(100 * v, 2) for m, v in e.items() if m != "n_triggered"}
out = {"name": name, "recipe": {k: pct(e) for k, e in report["evaluation"].items()},
       "chosen_epoch": report.get("distillation", {}).get("chosen_epoch", "refit"),
       "seconds": round(time.time() - start, 1)}
for label, base in baselines.items():
    anchored = recipe._copy(student)
    for layer, (m_s, v_s), (m_b, v_b), (m_l, v_l) in zip(
            synthesis.batchnorm_layers(anchored), suspect_stats, stats(base), learned):
        layer.moving_mean.assign(m_s + (m_l - m_b))
        layer.moving_variance.assign(v_s * v_l / np.maximum(v_b, 1e-8))
    out[f"anchored to {label}"] = ev(anchored)
    out[f"anchored to {label}, BN re-estimated"] = ev(recipe.refreshed(anchored, validation))
    out[f"anchored to {label}, fine-tuned"] = ev(recipe.fine_tuned(anchored, train))
    print(label, {k: v for k, v in out.items() if k.startswith(f"anchored to {label}")}, flush=True)
json.dump(out, open(f"benchmarks/work/probe_anchor_{name}.json", "w"), indent=1)
print(out)
