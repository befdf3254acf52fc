"""Probe: refit, rev-8 distillation (BN re-estimated on synthetic images), then BN statistics moved
back to the suspect's plus the shift distillation caused (measured on synthetic images)."""
import json, math, os, pickle, sys, time
sys.path.insert(0, "benchmarks")
import numpy as np, keras
import zoo
from kcc import rewrite, metrics, refit, unlearning, distillation
name = sys.argv[1]; EPOCHS = int(sys.argv[2]); do_refit = sys.argv[3] == "refit"
model, attack, x, y, _ = zoo.load_entry(name, 100)
images = np.load(f"benchmarks/work/probe_images_{name}.npz")["images"]
val, train = images[:128], images[128:]
triggers = pickle.load(open(f"benchmarks/work/probe_triggers_{name}.pkl", "rb"))
ev = lambda m: {k: round(100 * float(v), 2) for k, v in metrics.evaluate(m, x, y, attack).items() if k != "n_triggered"}
bns = lambda m: [l for l in m.layers if isinstance(l, keras.layers.BatchNormalization)]
stats = lambda m: [(np.array(l.moving_mean), np.array(l.moving_variance)) for l in bns(m)]
def copy(m):
    c = keras.models.clone_model(m); c.set_weights(m.get_weights()); return c
keras.utils.set_random_seed(0)
student, _ = rewrite.compress(model, 2.0, math.inf)
if do_refit:
    refit.refit(model, student, train, verbose=False)
suspect_stats = stats(student)
probe = copy(student); distillation.reestimate_batchnorm(probe, train[::2]); synth0 = stats(probe)
out = {"start": ev(student), "start_bn_synth": ev(probe)}
print(out, flush=True)
h, v = unlearning.distill(model, student, train, val, triggers, EPOCHS, 128, 1e-3, verbose=False)
out["chosen_epoch"] = v.chosen_epoch; out["validation"] = v.history
out["distilled"] = ev(student)
synth1 = stats(student)
for mode in ("mean", "mean_var"):
    c = copy(student)
    for l, (m_s, v_s), (m0, v0), (m1, v1) in zip(bns(c), suspect_stats, synth0, synth1):
        l.moving_mean.assign(m_s + (m1 - m0))
        l.moving_variance.assign(v_s * (v1 / v0) if mode == "mean_var" else v_s)
    out["delta_" + mode] = ev(c)
    print(mode, out["delta_" + mode], flush=True)
print(out, flush=True)
json.dump(out, open(f"benchmarks/work/probe_delta_bn_{name}_{EPOCHS}_{sys.argv[3]}.json", "w"), indent=1)
