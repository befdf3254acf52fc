"""Probe: would inverting the unlearned triggers again on the student during distillation
(`TriggerRefresh` below), more seeds or fuller shares remove what the recipe leaves of a
backdoor? And how far does unlearning the attack's own trigger (an oracle, not data-free) get?

Run from the repository root, one variant per process:
    KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax python \\
        benchmarks/results/probes/probe_refresh.py MODEL VARIANT [CR]
VARIANT: `base` (the recipe as committed), `refreshN` (`TriggerRefresh` every N epochs, every
fresh trigger taken), `boundedN` (the same, held to the original's size), `seedsN` (the
suspected targets' triggers inverted again with N seeds, all unlearned), `fullshare` (every
trigger stamped on its own ceil(B / 4) images of a batch, instead of one drawn per image),
`oracle` (the attack's trigger as the one trigger unlearned; LF only: an additive pattern).
The recipe at the CPU budget of `benchmarks/recipe_zoo.py`; ACC / ASR measured on the test
slice (as the rows) and on a training-split slice of 100 images per class, seed 1 (recipe
choices are made on the latter). Writes benchmarks/work/refresh/MODEL_VARIANT.json, merged
into probes/refresh.json.
"""
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, "benchmarks")
sys.path.insert(0, os.path.dirname(__file__))
import keras  # noqa: E402
import numpy as np  # noqa: E402

import zoo  # noqa: E402
from kcc import data, metrics, recipe, saving, scan, training, unlearning  # noqa: E402
from kcc.scan import inversion  # noqa: E402
from probe_setup import BUDGET  # noqa: E402

name, variant = sys.argv[1], sys.argv[2]
OUT = f"benchmarks/work/refresh/{name}_{variant}.json"
os.makedirs(os.path.dirname(OUT), exist_ok=True)
cr = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
model, attack, x, y, sidecar = zoo.load_entry(name, 100)
xt, yt = data.load(sidecar["dataset"], "train")
xt, yt, _ = data.subset(xt, yt, per_class=100, seed=1)


def bounded(fresh, original):
    """`fresh`, a trigger inverted on the student, held to the size of `original` (inverted on
    the suspect, same kind and target): an additive perturbation or a warp larger than the
    original is scaled down to its size, keeping its direction; a larger patch is not taken."""
    if fresh.size <= original.size:
        return fresh
    if fresh.kind == "local":
        return original
    return dataclasses.replace(fresh, pattern=fresh.pattern * (original.size / fresh.size),
                               size=original.size, flip_rate=None)


class TriggerRefresh(keras.callbacks.Callback):
    """Every `every` epochs (not after the last), the unlearned triggers of the inverted kinds
    are inverted again on the student as it is then (its BatchNorm statistics just re-estimated
    by `SyntheticValidation`, which runs first) and unlearned instead (I-BAU's alternation:
    Zeng et al., "Adversarial Unlearning of Backdoors via Implicit Hypergradient", ICLR 2022),
    through `UnlearningDistiller.set_triggers`; blend and quantise triggers are kept."""

    def __init__(self, triggers, images, labels, every, steps, batch_size, seed, hold):
        super().__init__()
        self.triggers, self.images, self.labels = list(triggers), images, labels
        self.every, self.steps, self.batch_size, self.seed = every, steps, batch_size, seed
        self.originals, self.hold, self.history = list(triggers), hold, []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every or epoch + 1 >= self.params["epochs"]:
            return
        distiller = self.model
        fresh = inversion.invert_triggers(
            distiller.student, self.images, self.labels, self.steps, self.batch_size,
            classes=sorted({t.target for t in self.triggers}), seed=self.seed + epoch + 1,
            verbose=False)
        new = []
        for t, original in zip(self.triggers, self.originals):
            f = next((f for f in fresh.get(t.kind, []) if f.target == t.target), None)
            new.append(t if f is None else bounded(f, original) if self.hold else f)
        self.triggers = new
        distiller.set_triggers(new)
        self.history.append({"epoch": epoch + 1, "triggers": [
            {"kind": t.kind, "target": t.target, "size": float(t.size)} for t in new]})


refreshes = []
if variant.startswith(("refresh", "bounded")):
    every, hold = int(variant[len("refresh"):]), variant.startswith("bounded")
    plain_distill = unlearning.distill

    def distill_with_refresh(teacher, student, images, validation_images, triggers=(), *args,
                             **kwargs):
        labels = training.predict_labels(teacher, images)
        budget = scan.BUDGETS["cpu"]
        refreshes.append(TriggerRefresh(triggers, images, labels, every,
                                        budget["inversion_steps"],
                                        budget["inversion_batch_size"], 0, hold))
        kwargs["callbacks"] = [*kwargs.get("callbacks", ()), refreshes[-1]]
        return plain_distill(teacher, student, images, validation_images, triggers, *args,
                             **kwargs)

    unlearning.distill = distill_with_refresh
elif variant.startswith("seeds"):  # the suspected triggers inverted N times (seeds 0..N-1)
    once, count = recipe.reinverted, int(variant[len("seeds"):])

    def several(model, triggers, images, settings, seed=0, *args, **kwargs):
        return [t for s in range(count) for t in once(model, triggers, images, settings,
                                                       seed + s, *args, **kwargs)]

    recipe.reinverted = several
elif variant == "fullshare":  # every trigger stamped on its own ceil(B / 4) images
    from keras import ops

    class FullShare(unlearning.UnlearningDistiller):
        def stamp(self, x):
            t = self.num_triggers
            pick = ops.repeat(ops.arange(t), ops.shape(x)[0])
            return super().stamp(ops.tile(x, (t, 1, 1, 1)), pick)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            teacher, student, stamped = y_pred
            loss = ops.mean(self._kl(teacher, student))
            if self.num_triggers:
                k = ops.shape(stamped)[0] // self.num_triggers
                reference = ops.tile(teacher[:k], (self.num_triggers, 1))
                loss = loss + self.unlearning_weight * ops.mean(self._kl(reference, stamped))
            return loss

        def compute_metrics(self, x, y, y_pred, sample_weight=None):
            teacher, student, _ = y_pred
            self.distillation_tracker.update_state(self._kl(teacher, student))
            return self.get_metrics_result()

    unlearning.UnlearningDistiller = FullShare
elif variant == "oracle":
    own = [scan.Trigger("smooth", int(attack.target), attack.trigger.astype(np.float32),
                        size=float(np.linalg.norm(attack.trigger)))]
    recipe.reinverted = lambda *a, **k: list(own)
    recipe.blend_triggers = lambda *a, **k: []
    recipe.quantisation_triggers = lambda *a, **k: []
elif variant != "base":
    raise SystemExit(f"unknown variant {variant}")

start = time.time()
student, report = recipe.purify_kcc(model, cr=cr, evaluation=(x, y, attack),
                                    scan_settings=scan.BUDGETS["cpu"], **BUDGET)


def pct(e):
    return {k: round(100 * float(v), 2) for k, v in e.items() if k != "n_triggered"}


rows = json.load(open(OUT)) if os.path.exists(OUT) else {}
rows[f"{name}|cr{cr:g}|{variant}"] = {
    "command": "KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax python "
               + " ".join(sys.argv),
    "test_slice": {k: pct(e) for k, e in report["evaluation"].items()},
    "train_slice": {"suspect": pct(metrics.evaluate(model, xt, yt, attack)),
                    "purified": pct(metrics.evaluate(student, xt, yt, attack))},
    "refreshes": [r.history for r in refreshes],
    "unlearned": report["unlearned_triggers"],
    "chosen_epoch": report.get("distillation", {}).get("chosen_epoch"),
    "validation": report.get("distillation", {}).get("validation"),
    "seconds": report["seconds"], "wall_seconds": round(time.time() - start, 1),
    "machine": zoo.machine(),
}
saving.write_json(rows, OUT)
print(json.dumps({k: rows[f"{name}|cr{cr:g}|{variant}"][k] for k in ("test_slice", "train_slice")}))
