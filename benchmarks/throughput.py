"""Synthesis and distillation throughput against a plain training step, on the same model.

The purify issue's bar: C&C's two data-free stages must run at least 70% as fast as ordinary
training of the same network. All three are counted in *image-passes per second*, one pass being
one forward + backward computation for one image:

* training: `Model.fit` with SGD on batches of `batch_size` (one pass per image per step);
* synthesis (Eq. 9): `kcc.synthesis.synthesize` (one pass per image per Adam step);
* distillation (Eq. 10): one `kcc.distillation.distill` epoch, which per image runs `pgd_steps`
  passes of the L2 attack on the student and two training passes (clean and adversarial), plus
  the teacher's forward passes (not counted: they make the ratio conservative);
* kcc synthesis: `synthesize` from the suspect (uncompressed), as `kcc.recipe.purify_kcc` does;
* kcc distillation: `kcc.unlearning.distill` with one local trigger, `1 + 1 /
  STAMPED_PER_CLEAN` training passes per image (the stamped images); teacher passes and the
  per-epoch BatchNorm re-estimation and validation are not counted as passes but are in the
  time, compilation is not (epochs 2 and 3 of a 3-epoch run).

The student is the zoo model compressed at `--cr`; training is measured on it too, so all three
run the same layers. The stages are repeated `--repeats` times, interleaved, and the fastest of
each is kept (a busy machine slows runs down, never speeds them up).

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=tensorflow python benchmarks/throughput.py

Each backend's result is kept under its name in `throughput.json`; the table shows every
backend measured, so running it once per backend compares them on the same machine.
"""

import json
import os
import sys
import time

import keras
import numpy as np
from absl import app
from absl import flags

from kcc import distillation
from kcc import rewrite
from kcc import saving
from kcc import synthesis
from kcc import training
from kcc import unlearning
from kcc.scan import inversion

import zoo  # benchmarks/zoo.py, beside this script


_MODEL = flags.DEFINE_string("model", "badnets_all2one", "Zoo entry.")
_CR = flags.DEFINE_float("cr", 3.0, "Compression ratio of the student.")
_IMAGES = flags.DEFINE_integer("images", 1024, "Images per measurement.")
_SYNTHESIS_STEPS = flags.DEFINE_integer("synthesis_steps", 50, "Synthesis steps per measurement.")
_PGD_STEPS = flags.DEFINE_integer("pgd_steps", 10, "L2 PGD steps (paper: 10).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Training and distillation batch size.")
_SYNTHESIS_BATCH = flags.DEFINE_integer("synthesis_batch_size", 256, "Synthesis batch size.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Interleaved repeats; the fastest is kept.")


def _train_rate(model, x, y, batch_size):
    model = keras.models.clone_model(model)
    training.compile_classifier(model, training.sgd(0.01, 10**6, "constant"))
    batches = training.Batches(x, y, batch_size, augment=False, shuffle=True)
    model.fit(batches, epochs=1, verbose=0)  # warm-up: tracing and compilation
    start = time.time()
    model.fit(batches, epochs=1, verbose=0)
    return len(x) / (time.time() - start)


def _synthesis_rate(student, n, steps, batch_size):
    synthesis.synthesize(student, batch_size, 1, batch_size=batch_size, verbose=False)  # warm-up
    _, _, info = synthesis.synthesize(student, n, steps, batch_size=batch_size, verbose=False)
    return n * steps / info["seconds"]


def _distillation_rate(teacher, student, x, y, batch_size, pgd_steps):
    clone = keras.models.clone_model(student)
    clone.set_weights(student.get_weights())
    student = clone
    distillation.distill(teacher, student, x[:batch_size], y[:batch_size], 1, batch_size,
                         pgd_steps=pgd_steps, verbose=0)  # warm-up
    start = time.time()
    distillation.distill(teacher, student, x, y, 1, batch_size, pgd_steps=pgd_steps, verbose=0)
    return len(x) * (pgd_steps + 2) / (time.time() - start)


class _EpochClock(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.ends = []

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.time())


def _unlearning_rate(teacher, student, x, batch_size):
    """Steady-state passes per second over epochs 2 and 3 of a 3-epoch run (the first compiles),
    each with its BatchNorm re-estimation and validation."""
    mask = np.zeros(x.shape[1:3] + (1,), np.float32)
    mask[-4:, -4:] = 1.0
    trigger = inversion.Trigger("local", 0, np.ones(x.shape[1:], np.float32), mask)
    clone = keras.models.clone_model(student)
    clone.set_weights(student.get_weights())
    clock = _EpochClock()
    unlearning.distill(teacher, clone, x, x[:64], [trigger], 3, batch_size, verbose=False,
                       callbacks=[clock])
    return 2 * len(x) * (1 + 1 / unlearning.STAMPED_PER_CLEAN) / (clock.ends[2] - clock.ends[0])


STAGES = ("training", "synthesis", "distillation", "kcc synthesis", "kcc distillation")


def main(argv):
    del argv
    teacher, _, x, y, sidecar = zoo.load_entry(_MODEL.value, per_class=_IMAGES.value // 10)
    student, report = rewrite.compress(teacher, _CR.value)
    x, y = x[:_IMAGES.value], y[:_IMAGES.value]
    rates = {k: [] for k in STAGES}
    for _ in range(_REPEATS.value):
        rates["training"].append(_train_rate(student, x, y, _BATCH_SIZE.value))
        rates["synthesis"].append(_synthesis_rate(student, _IMAGES.value, _SYNTHESIS_STEPS.value,
                                                  _SYNTHESIS_BATCH.value))
        rates["distillation"].append(_distillation_rate(teacher, student, x, y, _BATCH_SIZE.value,
                                                        _PGD_STEPS.value))
        rates["kcc synthesis"].append(_synthesis_rate(
            teacher, _IMAGES.value, _SYNTHESIS_STEPS.value, _SYNTHESIS_BATCH.value))
        rates["kcc distillation"].append(_unlearning_rate(teacher, student, x,
                                                          _BATCH_SIZE.value))
        print({k: round(v[-1], 1) for k, v in rates.items()}, flush=True)
    best = {k: max(v) for k, v in rates.items()}
    result = {
        "model": _MODEL.value, "width": sidecar.get("width"), "cr": _CR.value,
        "params": report.params_after, "backend": keras.backend.backend(),
        "command": f"KERAS_BACKEND={keras.backend.backend()} python {' '.join(sys.argv)}",
        "image_passes_per_second": {k: round(v, 1) for k, v in best.items()},
        "all_runs": {k: [round(r, 1) for r in v] for k, v in rates.items()},
        "ratio_to_training": {k: round(best[k] / best["training"], 3) for k in STAGES},
        "settings": {"images": _IMAGES.value, "synthesis_steps": _SYNTHESIS_STEPS.value,
                     "pgd_steps": _PGD_STEPS.value, "batch_size": _BATCH_SIZE.value,
                     "synthesis_batch_size": _SYNTHESIS_BATCH.value, "repeats": _REPEATS.value},
        "machine": zoo.machine(),
    }
    path = zoo.output("throughput.json")
    runs = json.load(open(path)) if os.path.exists(path) else {}
    runs = runs if "backend" not in runs else {}  # the single-backend layout before this one
    runs[result["backend"]] = result
    saving.write_json(runs, path)
    write_table(runs)


def write_table(runs):
    """`throughput.md` from every backend's result."""
    lines = [
        "# Throughput: the data-free stages against a training step, per backend", "",
        "Made by `benchmarks/throughput.py` (its docstring defines a pass and each stage). Every "
        "backend's command and machine are below its table; the ratio is to training on the "
        "same backend; the best of the interleaved repeats is kept.", "",
    ]
    for backend, r in sorted(runs.items()):
        lines += [
            f"## {backend}", "",
            f"`{r['command']}`", "",
            f"Model: {r['model']} compressed at cr {r['cr']:g} ({r['params']:,} parameters; the "
            f"kcc stages' teacher and synthesis use the uncompressed suspect); {r['machine']}.",
            "", *([r["note"], ""] if "note" in r else []),
            "| stage | image-passes / s | ratio to training | all runs |",
            "|---|---|---|---|"]
        for k in STAGES:
            if k in r["image_passes_per_second"]:
                lines.append(f"| {k} | {r['image_passes_per_second'][k]:.1f} | "
                             f"{r['ratio_to_training'].get(k, 1.0):.2f} | {r['all_runs'][k]} |")
        lines.append("")
    saving.write_text("\n".join(lines), zoo.output("throughput.md"))
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
