"""Probe: does CutMix of the synthetic images during distillation raise the recipe's accuracy?

Revision 11 distils on 896 synthetic images; the student agrees with the suspect on about 83%
of held-aside synthetic images, so it may generalise poorly from so few. CutMix (Yun et al.,
ICCV 2019) pastes a random box of another image of the batch into each image; the teacher
answers on the mixed image, so no label is needed, and every step sees new inputs without new
synthesis. The same box is used for the whole batch (its area uniform in [0, 1]); stamped images
are made from the mixed ones. Everything else is `kcc.recipe.purify_kcc` at the CPU budget of
`benchmarks/recipe_zoo.py` (revision 11). Usage:

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax \
        python benchmarks/results/probes/probe_cutmix.py NAME [CR]
"""
import json, os, sys, time
sys.path.insert(0, "benchmarks")
import keras
from keras import ops
import zoo
from kcc import recipe, saving, scan, unlearning

name = sys.argv[1]
cr = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
plain_call = unlearning.UnlearningDistiller.call


def cutmix_call(self, x, training=False):
    if training:
        if not hasattr(self, "cutmix_seed"):
            self.cutmix_seed = keras.random.SeedGenerator(7)
        h, w = x.shape[1], x.shape[2]
        side = ops.sqrt(keras.random.uniform((), seed=self.cutmix_seed))
        bh = ops.cast(side * h, "int32")
        bw = ops.cast(side * w, "int32")
        top = ops.cast(keras.random.uniform((), seed=self.cutmix_seed) * ops.cast(h - bh + 1,
                                                                                   "float32"), "int32")
        left = ops.cast(keras.random.uniform((), seed=self.cutmix_seed) * ops.cast(w - bw + 1,
                                                                                    "float32"), "int32")
        rows = ops.arange(h)[:, None]
        cols = ops.arange(w)[None, :]
        box = ops.logical_and(ops.logical_and(rows >= top, rows < top + bh),
                              ops.logical_and(cols >= left, cols < left + bw))
        box = ops.cast(box, x.dtype)[None, :, :, None]
        other = ops.roll(x, 1, axis=0)  # the batch is shuffled by fit: a neighbour is random
        x = (1.0 - box) * x + box * other
    return plain_call(self, x, training=training)


unlearning.UnlearningDistiller.call = cutmix_call
model, attack, x, y, _ = zoo.load_entry(name, 100)
budget = dict(num_images=1024, synthesis_steps=100, synthesis_learning_rate=0.3, epochs=20,
              learning_rate=1e-3, unlearning_weight=1.0)
start = time.time()
_, report = recipe.purify_kcc(model, cr=cr, evaluation=(x, y, attack),
                              scan_settings=scan.BUDGETS["cpu"], **budget)
out = "benchmarks/results/probes/cutmix.json"
rows = json.load(open(out)) if os.path.exists(out) else {}
rows[f"{name}|cr{cr:g}"] = {
    "command": "KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax python " + " ".join(sys.argv),
    "budget": budget, "revision": "11 + CutMix in distillation",
    "evaluation": {k: {m: round(100 * float(v), 2) for m, v in e.items() if m != "n_triggered"}
                   for k, e in report["evaluation"].items()},
    "chosen_epoch": report.get("distillation", {}).get("chosen_epoch", "refit"),
    "validation": report.get("distillation", {}).get("validation"),
    "seconds": report["seconds"], "wall_seconds": round(time.time() - start, 1),
    "machine": zoo.machine(),
}
saving.write_json(rows, out)
print(json.dumps(rows[f"{name}|cr{cr:g}"]["evaluation"]))
