"""Probe: prune the BatchNorm channels the inverted trigger excites most (Neural Cleanse's
patching by pruning, on synthetic images), then measure ACC/ASR before and after truncation+refit.

usage: python benchmarks/work/probe_prune.py MODEL SCOPE   (SCOPE: all | last)
"""
import json, math, pickle, sys, time
sys.path.insert(0, "benchmarks")
import numpy as np, keras
import zoo
from kcc import metrics, rewrite, refit, distillation
from kcc.unlearning import SyntheticValidation

name, scope = sys.argv[1], sys.argv[2]
model, attack, x, y, _ = zoo.load_entry(name, 100)
images = np.load(f"benchmarks/work/probe_images_{name}.npz")["images"]
val, train = images[:128], images[128:]
triggers = pickle.load(open(f"benchmarks/work/probe_triggers_{name}.pkl", "rb"))
ev = lambda m: {k: round(100 * float(v), 2) for k, v in metrics.evaluate(m, x, y, attack).items()
                if k != "n_triggered"}
bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
if scope == "last":
    bns = bns[-5:]
probe = keras.Model(model.inputs, [l.output for l in bns])


def channel_stats(imgs):
    outs = probe.predict(imgs, batch_size=128, verbose=0)
    return [(o.mean(axis=(0, 1, 2)), o.std(axis=(0, 1, 2)), o.mean(axis=(1, 2))) for o in outs]


clean = channel_stats(train)
scores = []
for trig in triggers:
    stamped = channel_stats(trig.apply(train))
    s = []
    for (mc, sc, _), (ms, _, _) in zip(clean, stamped):
        s.append((ms - mc) / (sc + 1e-6))
    scores.append(s)
score = [np.max([s[i] for s in scores], axis=0) for i in range(len(bns))]
flat = [(float(v), li, ci) for li, s in enumerate(score) for ci, v in enumerate(s)]
flat.sort(reverse=True)
print("top scores", [(round(v, 2), bns[li].name, ci) for v, li, ci in flat[:15]], flush=True)
original = [(l.gamma.numpy().copy(), l.beta.numpy().copy()) for l in bns]


def prune(k):
    for l, (g, b) in zip(bns, original):
        l.gamma.assign(g); l.beta.assign(b)
    for _, li, ci in flat[:k]:
        g = bns[li].gamma.numpy(); b = bns[li].beta.numpy()
        g[ci] = 0; b[ci] = 0
        bns[li].gamma.assign(g); bns[li].beta.assign(b)


out = {"scope": scope, "channels": len(flat), "rows": []}
check = SyntheticValidation(keras.models.clone_model(model), model, val, triggers)
ref = keras.models.clone_model(model); ref.set_weights(model.get_weights())
check = SyntheticValidation(ref, model, val, triggers)
for k in [0, 2, 5, 10, 20, 40, 80]:
    prune(k)
    agree, rate = check.measure()
    row = {"k": k, **ev(model), "agree": agree, "trigger_rate": rate}
    out["rows"].append(row)
    print(row, flush=True)
json.dump(out, open(f"benchmarks/work/probe_prune_{name}_{scope}.json", "w"), indent=1)
