"""Probe: do the triggers kcc inverts for a suspected target excite the same penultimate
channels as the attack's own trigger, and does silencing the channels they excite (Neural
Cleanse's patching by pruning, data-free here) remove the backdoor?

Run from the repository root (a few minutes on one core):
    KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax python \\
        benchmarks/results/probes/probe_features.py MODEL [TARGET]
On the suspect (uncompressed) and 896 + 128 synthetic images (benchmarks/work/feat/MODEL.npz,
made if missing, 100 steps at rate 0.3 as the recipe's): the triggers of every kind inverted
for TARGET at the scan's CPU budget; per channel of the `pool` features, the gap between the
mean on stamped and on clean synthetic images in units of the clean standard deviation; the
overlap of the top-k channels with the attack's own trigger's (that trigger used for diagnosis
only); then ACC / ASR on the test slice and on a training-split slice (100 per class, seed 1)
after replacing the top-k channels by their clean synthetic mean. Writes
benchmarks/results/probes/features.json (one entry per model).
"""
import json
import os
import sys

sys.path.insert(0, "benchmarks")
sys.path.insert(0, os.path.dirname(__file__))
import keras  # noqa: E402
import numpy as np  # noqa: E402

import probe_setup  # noqa: E402
import zoo  # noqa: E402
from kcc import metrics, saving  # noqa: E402
from kcc.scan import inversion  # noqa: E402

name = sys.argv[1]
target = int(sys.argv[2]) if len(sys.argv) > 2 else 0
OUT = "benchmarks/results/probes/features.json"
(model, attack, x, y, sidecar, xt, yt, val, train,
 labels) = probe_setup.feature_setup(name)
found = inversion.invert_triggers(model, train, labels, 100, 8, classes=[target], seed=0,
                                  verbose=False)
triggers = {kind: ts[0] for kind, ts in found.items()}

features = keras.Model(model.inputs, model.get_layer("pool").output)
others = train[labels != target]


def feats(batch):
    return np.asarray(features.predict(batch, batch_size=256, verbose=0))


clean = feats(others)
mu, sd = clean.mean(0), clean.std(0) + 1e-6


def gap(stamped):
    return (feats(stamped).mean(0) - mu) / sd


gaps = {kind: gap(t.apply(others)) for kind, t in triggers.items()}
real_x = attack.apply(xt[yt != target][:400])
clean_real = feats(xt[yt != target][:400])
real_gap = (feats(real_x).mean(0) - clean_real.mean(0)) / (clean_real.std(0) + 1e-6)


def top(g, k):
    return set(np.argsort(-g)[:k].tolist())


dense = model.get_layer("logits")
kernel, bias = [np.asarray(w) for w in dense.get_weights()]


def silenced(channels):
    probe = keras.models.clone_model(model)
    probe.set_weights(model.get_weights())
    w, b = kernel.copy(), bias.copy()
    for c in channels:
        b += w[c] * mu[c]
        w[c] = 0.0
    probe.get_layer("logits").set_weights([w, b])
    return probe


def pct(e):
    return {k: round(100 * float(v), 2) for k, v in e.items() if k != "n_triggered"}


combined = np.max(np.stack(list(gaps.values())), 0)
entry = {
    "command": "KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax python " + " ".join(sys.argv),
    "machine": zoo.machine(), "target": target,
    "triggers": {k: {"size": float(t.size)} for k, t in triggers.items()},
    "real_top8": sorted(top(real_gap, 8)), "real_gap_top8": sorted(
        np.round(real_gap[list(top(real_gap, 8))], 2).tolist(), reverse=True),
    "overlap_top8_with_real": {k: len(top(g, 8) & top(real_gap, 8)) for k, g in gaps.items()},
    "overlap_top16_with_real": {k: len(top(g, 16) & top(real_gap, 16)) for k, g in gaps.items()},
    "cosine_with_real": {k: float(g @ real_gap / np.linalg.norm(g) / np.linalg.norm(real_gap))
                         for k, g in gaps.items()},
    "suspect": {"test": pct(metrics.evaluate(model, x, y, attack)),
                "train": pct(metrics.evaluate(model, xt, yt, attack))},
    "pruned": [],
}
for source, g in list(gaps.items()) + [("max", combined), ("real (oracle)", real_gap)]:
    for k in (2, 4, 8, 16):
        probe = silenced(sorted(top(g, k)))
        entry["pruned"].append({"by": source, "k": k,
                                "test": pct(metrics.evaluate(probe, x, y, attack)),
                                "train": pct(metrics.evaluate(probe, xt, yt, attack))})
        print(source, k, entry["pruned"][-1]["test"], entry["pruned"][-1]["train"], flush=True)
rows = json.load(open(OUT)) if os.path.exists(OUT) else {}
rows[name] = entry
saving.write_json(rows, OUT)
print(json.dumps({k: entry[k] for k in ("overlap_top8_with_real", "cosine_with_real")}))
