"""Probe: why revision 20 left `lf_all2one`'s backdoor in place (ASR 62%) although the scan
flagged its target, and whether a smooth (low-frequency) global trigger would remove it.

Run from the repository root:
    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax python benchmarks/results/probes/probe_lf.py

1. 1,024 synthetic images from the suspect's BatchNorm statistics as the recipe makes them
   (CPU budget, seed 0; first 128 held aside), cached in benchmarks/work/lf/.
2. The real LF trigger's flip rate on them and on the test slice (does the backdoor work on
   synthetic images?).
3. The recipe's global trigger for class 0 (re-inverted on the 896 images at the scan's CPU
   budget) against the real trigger: L2 norms, cosine, share of energy at low frequencies.
4. A smooth global trigger per class: an 8x8x3 grid upsampled bilinearly to 32x32, the same
   objective as the global kind (cross-entropy to the class + 0.1 x L2 norm). Norms and flip
   rates per class: does class 0 stand out, and does it point along the LF trigger?
5. Distillation with unlearning (the recipe's settings, cr 2) with the class-0 local and global
   triggers, with and without the smooth one added: test ACC / ASR (only measured on).
Writes benchmarks/results/probes/lf.json.
"""
import json
import math
import os
import sys
import time

sys.path.insert(0, "benchmarks")
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import zoo  # noqa: E402
from kcc import metrics, rewrite, saving, synthesis, training, unlearning  # noqa: E402
from kcc.scan import inversion  # noqa: E402

OUT = "benchmarks/results/probes/lf.json"
WORK = "benchmarks/work/lf"
GRID = 8
os.makedirs(WORK, exist_ok=True)
result = {"command": "KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax python "
                     "benchmarks/results/probes/probe_lf.py", "machine": zoo.machine()}

model, attack, x, y, _ = zoo.load_entry("lf_all2one", 100)
cache = os.path.join(WORK, "images.npz")
if os.path.exists(cache):
    images = np.load(cache)["images"]
else:
    images, _, _ = synthesis.synthesize(model, 1024, 100, 0.3, 256, 0, verbose=True)
    np.savez(cache, images=images)
val, train = images[:128], images[128:]
labels = training.predict_labels(model, train)
val_labels = training.predict_labels(model, val)
lf = attack.trigger.astype(np.float32)


def predict(m, a):
    return np.argmax(m.predict(a, batch_size=256, verbose=0), -1)


def flip(m, d, a, lab, target=0):
    keep = lab != target
    return float(np.mean(predict(m, np.clip(a[keep] + d, 0, 1)) == target))


def low_share(d, radius=4):
    """Share of the perturbation's energy at spatial frequencies within `radius` of zero."""
    f = np.abs(np.fft.fft2(d, axes=(0, 1))) ** 2
    fy = np.minimum(np.arange(32), 32 - np.arange(32))
    near = (fy[:, None] ** 2 + fy[None, :] ** 2) <= radius ** 2
    return float(f[near].sum() / f.sum())


def cosine(a, b):
    return float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


test_labels = predict(model, x)
result["real_trigger"] = {
    "l2": float(np.linalg.norm(lf)), "low_share": low_share(lf),
    "flip_synthetic_val": flip(model, lf, val, val_labels),
    "flip_test_slice": flip(model, lf, x, test_labels)}
print(result["real_trigger"], flush=True)

start = time.time()
fresh = inversion.invert_triggers(model, train, labels, 100, 8, classes=[0], seed=0,
                                  verbose=False)
g = fresh["global"][0]
local = fresh["local"][0]
result["recipe_global"] = {
    "l2": float(np.linalg.norm(g.pattern)), "low_share": low_share(g.pattern),
    "cosine_with_real": cosine(g.pattern, lf),
    "flip_synthetic_val": flip(model, g.pattern, val, val_labels),
    "flip_test_slice": flip(model, g.pattern, x, test_labels),
    "seconds": round(time.time() - start, 1)}
print(result["recipe_global"], flush=True)


class SmoothInversion(keras.Model):
    """One smooth additive perturbation per class: an (8, 8, 3) grid, upsampled bilinearly."""

    def __init__(self, classifier, num_classes, lam=0.1):
        super().__init__()
        self.classifier, self.k, self.lam = classifier, num_classes, lam
        self.grid = self.add_weight(shape=(num_classes, GRID, GRID, 3), initializer="zeros",
                                    name="grid")

    def perturbations(self):
        return ops.image.resize(ops.convert_to_tensor(self.grid), (32, 32),
                                interpolation="bilinear")

    def call(self, x, training=False):
        stamped = ops.clip(x[None] + self.perturbations()[:, None], 0.0, 1.0)
        return self.classifier(ops.reshape(stamped, (-1, 32, 32, 3)), training=False)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        b = ops.shape(x)[0]
        classes = ops.arange(self.k, dtype="int32")
        ce = keras.losses.sparse_categorical_crossentropy(ops.repeat(classes, b), y_pred,
                                                          from_logits=True)
        ce = ops.reshape(ce, (self.k, b))
        other = ops.cast(ops.not_equal(ops.cast(y, "int32")[None], classes[:, None]), ce.dtype)
        per_class = ops.sum(ce * other, 1) / ops.maximum(ops.sum(other, 1), 1.0)
        norms = ops.sqrt(ops.sum(ops.square(self.perturbations()), (1, 2, 3)) + 1e-12)
        return ops.mean(per_class) + self.lam * ops.mean(norms)


start = time.time()
model.trainable = False
smooth = SmoothInversion(model, 10)
smooth.compile(optimizer=keras.optimizers.Adam(0.05))
rng = np.random.default_rng(0)
order = np.concatenate([rng.permutation(len(train)) for _ in range(4)])[:200 * 16]
smooth.fit(train[order], labels[order], batch_size=16, epochs=1, shuffle=False, verbose=0)
model.trainable = True
pert = ops.convert_to_numpy(smooth.perturbations())
rows = []
for k in range(10):
    rows.append({"class": k, "l2": float(np.linalg.norm(pert[k])),
                 "flip_synthetic_val": flip(model, pert[k], val, val_labels, k),
                 "flip_test_slice": flip(model, pert[k], x, test_labels, k),
                 "cosine_with_real": cosine(pert[k], lf)})
    print(rows[-1], flush=True)
result["smooth"] = {"grid": GRID, "steps": 200, "batch": 16, "adam": 0.05, "lambda": 0.1,
                    "per_class": rows, "seconds": round(time.time() - start, 1)}
np.savez(os.path.join(WORK, "triggers.npz"), smooth=pert, global0=g.pattern)
saving.write_json(result, OUT)


def evaluate(m):
    return {k: round(100 * float(v), 2) for k, v in metrics.evaluate(m, x, y, attack).items()
            if k != "n_triggered"}


smooth0 = inversion.Trigger("global", 0, pert[0], None, float(np.linalg.norm(pert[0])))
result["distillation"] = {}
for name, triggers in (("local+global", [local, g]), ("local+global+smooth", [local, g, smooth0]),
                       ("smooth", [smooth0])):
    start = time.time()
    student, _ = rewrite.compress(model, 2.0, math.inf)
    _, validation = unlearning.distill(model, student, train, val, triggers, 20, 128, 1e-3, 4.0,
                                       1.0, True, seed=0, verbose=False)
    result["distillation"][name] = {**evaluate(student), "epoch": validation.chosen_epoch,
                                    "real_trigger_flip_synthetic_val": flip(student, lf, val,
                                                                            val_labels),
                                    "seconds": round(time.time() - start, 1)}
    print(name, result["distillation"][name], flush=True)
    saving.write_json(result, OUT)
print(json.dumps(result)[:2000])
