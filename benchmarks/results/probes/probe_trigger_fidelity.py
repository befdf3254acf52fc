"""Probe: how close are the triggers the recipe inverts for `lf_all2one`'s target to LF's own
trigger, and does inverting with more seeds or a larger budget bring them closer?

Run from the repository root (about 10 minutes on one core):
    KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax python \\
        benchmarks/results/probes/probe_trigger_fidelity.py
On the 896 + 128 synthetic images of `probe_lf.py` (benchmarks/work/lf/images.npz, made there
if missing): the share of the real trigger's energy in the span of the smooth kind's 8 x 8
bicubic grid; class 0's global and smooth triggers (`kcc.scan.inversion.invert_triggers`, the
scan's CPU budget of 100 steps x 8 images, seeds 0-5, and 300 x 32 at seed 0): size, cosine
with the real trigger, flip rate on the held-aside synthetic images and on the test slice, and
the cosine of the running mean over seeds. Writes benchmarks/results/probes/trigger_fidelity.json.
"""
import os
import sys

sys.path.insert(0, "benchmarks")
import numpy as np  # noqa: E402

import zoo  # noqa: E402
from kcc import saving, synthesis, training  # noqa: E402
from kcc.scan import inversion  # noqa: E402

model, attack, x, y, _ = zoo.load_entry("lf_all2one", 100)
cache = "benchmarks/work/lf/images.npz"
if not os.path.exists(cache):
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    np.savez(cache, images=synthesis.synthesize(model, 1024, 100, 0.3, 256, 0)[0])
images = np.load(cache)["images"]
val, train = images[:128], images[128:]
labels, val_labels = training.predict_labels(model, train), training.predict_labels(model, val)
test_labels = training.predict_labels(model, x)
real = attack.trigger.astype(np.float32)


def cos(a, b):
    return float(np.sum(a * b) / np.linalg.norm(a) / np.linalg.norm(b))


grid = inversion.bicubic_matrix(inversion.SMOOTH_GRID, real.shape[0]).astype(np.float32)
span = grid @ np.linalg.pinv(grid)
projected = np.einsum("hi,ijc,wj->hwc", span, real, span)
result = {
    "command": "KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax python "
               "benchmarks/results/probes/probe_trigger_fidelity.py",
    "machine": zoo.machine(),
    "real": {"l2": float(np.linalg.norm(real)),
             "share_in_smooth_span": float(np.sum(projected ** 2) / np.sum(real ** 2)),
             "flip_synthetic_val": inversion.flip_rate(
                 model, inversion.Trigger("smooth", 0, real), val, val_labels),
             "flip_test_slice": inversion.flip_rate(
                 model, inversion.Trigger("smooth", 0, real), x, test_labels)},
    "inverted": [], "running_mean": [],
}
found = {"global": [], "smooth": []}
for steps, batch, seed in [(100, 8, s) for s in range(6)] + [(300, 32, 0)]:
    triggers = inversion.invert_triggers(model, train, labels, steps, batch, classes=[0],
                                         seed=seed, verbose=False)
    for kind in found:
        t = triggers[kind][0]
        result["inverted"].append({
            "steps": steps, "batch": batch, "seed": seed, "kind": kind, "size": float(t.size),
            "cosine_with_real": cos(t.pattern, real),
            "flip_synthetic_val": inversion.flip_rate(model, t, val, val_labels),
            "flip_test_slice": inversion.flip_rate(model, t, x, test_labels)})
        if steps == 100:
            found[kind].append(t.pattern)
            mean = np.mean(found[kind], axis=0)
            result["running_mean"].append({"seeds": len(found[kind]), "kind": kind,
                                           "cosine_with_real": cos(mean, real),
                                           "l2": float(np.linalg.norm(mean))})
        print(result["inverted"][-1], flush=True)
saving.write_json(result, "benchmarks/results/probes/trigger_fidelity.json")
