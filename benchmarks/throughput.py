"""Synthesis and distillation throughput against a plain training step, on the same model.

The purify issue's bar: C&C's two data-free stages must run at least 70% as fast as ordinary
training of the same network. All three are counted in *image-passes per second*, one pass being
one forward + backward computation for one image:

* training: `Model.fit` with SGD on batches of `batch_size` (one pass per image per step);
* synthesis (Eq. 9): `kcc.synthesis.synthesize` (one pass per image per Adam step);
* distillation (Eq. 10): one `kcc.distillation.distill` epoch, which per image runs `pgd_steps`
  passes of the L2 attack on the student and two training passes (clean and adversarial), plus
  the teacher's forward passes (not counted: they make the ratio conservative).

The student is the zoo model compressed at `--cr`; training is measured on it too, so all three
run the same layers. The stages are repeated `--repeats` times, interleaved, and the fastest of
each is kept (a busy machine slows runs down, never speeds them up).

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=tensorflow python benchmarks/throughput.py
"""

import sys
import time

import keras
from absl import app
from absl import flags

from kcc import distillation
from kcc import rewrite
from kcc import saving
from kcc import synthesis
from kcc import training

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


def main(argv):
    del argv
    teacher, _, x, y, sidecar = zoo.load_entry(_MODEL.value, per_class=_IMAGES.value // 10)
    student, report = rewrite.compress(teacher, _CR.value)
    x, y = x[:_IMAGES.value], y[:_IMAGES.value]
    rates = {"training": [], "synthesis": [], "distillation": []}
    for _ in range(_REPEATS.value):
        rates["training"].append(_train_rate(student, x, y, _BATCH_SIZE.value))
        rates["synthesis"].append(_synthesis_rate(student, _IMAGES.value, _SYNTHESIS_STEPS.value,
                                                  _SYNTHESIS_BATCH.value))
        rates["distillation"].append(_distillation_rate(teacher, student, x, y, _BATCH_SIZE.value,
                                                        _PGD_STEPS.value))
        print({k: round(v[-1], 1) for k, v in rates.items()}, flush=True)
    best = {k: max(v) for k, v in rates.items()}
    result = {
        "model": _MODEL.value, "width": sidecar.get("width"), "cr": _CR.value,
        "params": report.params_after, "backend": keras.backend.backend(),
        "image_passes_per_second": {k: round(v, 1) for k, v in best.items()},
        "all_runs": {k: [round(r, 1) for r in v] for k, v in rates.items()},
        "ratio_to_training": {k: round(best[k] / best["training"], 3) for k in ("synthesis", "distillation")},
        "settings": {"images": _IMAGES.value, "synthesis_steps": _SYNTHESIS_STEPS.value,
                     "pgd_steps": _PGD_STEPS.value, "batch_size": _BATCH_SIZE.value,
                     "synthesis_batch_size": _SYNTHESIS_BATCH.value, "repeats": _REPEATS.value},
        "machine": zoo.machine(),
    }
    saving.write_json(result, zoo.output("throughput.json"))
    lines = [
        "# Throughput: synthesis and distillation against a training step (purify issue bar: >= 70%)",
        "", f"`KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=tensorflow python {' '.join(sys.argv)}`",
        "", f"Model: {_MODEL.value} compressed at cr {_CR.value:g} ({report.params_after:,} parameters), "
        f"{result['machine']}; best of {_REPEATS.value} interleaved "
        "runs. One pass = forward + backward for one image (see the script's docstring).", "",
        "| stage | image-passes / s | ratio to training | all runs |", "|---|---|---|---|",
    ]
    for k in ("training", "synthesis", "distillation"):
        ratio = result["ratio_to_training"].get(k, 1.0)
        lines.append(f"| {k} | {best[k]:.1f} | {ratio:.2f} | {result['all_runs'][k]} |")
    saving.write_text("\n".join(lines) + "\n", zoo.output("throughput.md"))
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
