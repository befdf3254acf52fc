"""Probe: erase the inverted triggers' direction from the classifier head's features instead of
unlearning them by distillation.

At the features the final `Dense` reads (the `pool` output), the triggers kcc inverts for
`lf_all2one`'s target move the features as LF's own trigger does (cosine 0.95 of the mean
shifts; in pixel space the triggers' cosine is 0.22-0.45), so a linear map that removes that
shift from the features should neutralise both. For MODEL (its attack's target, TARGET, is read
from the sidecar: the scan flags it on every model probed here): synthetic images (896 + 128,
100 steps at rate 0.3, `benchmarks/work/feat/MODEL.npz`, made if missing); the triggers of every
kind inverted for TARGET at the scan's CPU budget; then, on the suspect and on the student
(truncated at cr 2 and refitted, `kcc.refit`: revision 22's path for an unflagged model), each
erasure below, measured on the test slice and on a training-split slice (100 per class, seed
1), and after the student's BatchNorm statistics are re-estimated and after the recipe's short
fine-tune:
* `mean`: features projected off the span of the mean shifts the triggers cause on the
  synthetic images of other classes (Euclidean), the removed part replaced by the clean mean;
* `leace`: LEACE's least-squares concept erasure (Belrose et al., NeurIPS 2023) of "stamped or
  not", in the whitened metric of the clean synthetic features.
Writes benchmarks/results/probes/erasure.json (one entry per model).

    KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax python \\
        benchmarks/results/probes/probe_erasure.py MODEL
"""
import json
import math
import os
import sys
import time

sys.path.insert(0, "benchmarks")
sys.path.insert(0, os.path.dirname(__file__))
import keras  # noqa: E402
import numpy as np  # noqa: E402

import probe_setup  # noqa: E402
import zoo  # noqa: E402
from kcc import metrics, recipe, refit, rewrite, saving  # noqa: E402
from kcc.scan import inversion  # noqa: E402

name = sys.argv[1]
OUT = "benchmarks/results/probes/erasure.json"
(model, attack, x, y, sidecar, xt, yt, val, train,
 labels) = probe_setup.feature_setup(name)
target = int(sidecar["attack"]["target"])
start = time.time()
found = inversion.invert_triggers(model, train, labels, 100, 8, classes=[target], seed=0,
                                  verbose=False)
triggers = [ts[0] for ts in found.values()]
others = train[labels != target]


def head(m):
    dense = m.layers[-1]
    return keras.Model(m.inputs, dense.input), dense


def erased(m, kind):
    """A copy of `m` whose final Dense reads the features with the triggers' shift erased."""
    features, dense = head(m)
    clean = np.asarray(features.predict(others, batch_size=256, verbose=0), np.float64)
    mu = clean.mean(0)
    shifts = np.stack([np.asarray(features.predict(t.apply(others), batch_size=256, verbose=0),
                                  np.float64).mean(0) - mu for t in triggers], 1)
    if kind == "mean":
        u, _, _ = np.linalg.svd(shifts, full_matrices=False)
        project = np.eye(len(mu)) - u @ u.T  # r(f) = P f + (I - P) mu
    else:  # LEACE: r(f) = f - W+ P_{W S} W (f - mu), W the whitening of the clean features
        cov = np.cov(clean, rowvar=False) + 1e-6 * np.eye(len(mu))
        vals, vecs = np.linalg.eigh(cov)
        whiten = vecs @ np.diag(vals ** -0.5) @ vecs.T
        unwhiten = vecs @ np.diag(vals ** 0.5) @ vecs.T
        u, _, _ = np.linalg.svd(whiten @ shifts, full_matrices=False)
        project = np.eye(len(mu)) - unwhiten @ (u @ u.T) @ whiten
    kernel, *bias = [np.asarray(w, np.float64) for w in dense.get_weights()]
    new_kernel = project.T @ kernel
    new_bias = (bias[0] if bias else 0) + (mu - project @ mu) @ kernel
    copy = keras.models.clone_model(m)
    copy.set_weights(m.get_weights())
    copy.layers[-1].set_weights([new_kernel.astype(np.float32), new_bias.astype(np.float32)])
    return copy


def pct(e):
    return {k: round(100 * float(v), 2) for k, v in e.items() if k != "n_triggered"}


def measure(m, follow_up=False):
    row = {"test": pct(metrics.evaluate(m, x, y, attack)),
           "train": pct(metrics.evaluate(m, xt, yt, attack))}
    if follow_up:
        row["test_bn_reestimated"] = pct(metrics.evaluate(recipe.refreshed(m, val), x, y, attack))
        row["test_fine_tuned"] = pct(metrics.evaluate(recipe.fine_tuned(m, train), x, y, attack))
    return row


student, _ = rewrite.compress(model, 2.0, math.inf)
refit.refit(model, student, train, verbose=False)
entry = {"command": "KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax python "
                    + " ".join(sys.argv),
         "machine": zoo.machine(), "target": target,
         "triggers": [{"kind": t.kind, "size": float(t.size)} for t in triggers]}
for label, m in (("suspect", model), ("refitted cr2", student)):
    entry[label] = {"none": measure(m, label != "suspect")}
    for kind in ("mean", "leace"):
        entry[label][kind] = measure(erased(m, kind), label != "suspect")
        print(label, kind, json.dumps(entry[label][kind]), flush=True)
entry["seconds"] = round(time.time() - start, 1)
rows = json.load(open(OUT)) if os.path.exists(OUT) else {}
rows[name] = entry
saving.write_json(rows, OUT)
print(json.dumps(entry["refitted cr2"]["none"]))
