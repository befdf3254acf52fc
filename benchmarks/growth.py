"""How kcc's purification grows with image count, model width and input size, on this machine.

A user who has timed `python -m kcc.purify` on a CIFAR-size model wants to predict a larger run.
For each configuration `width:input_size:num_images[:scan]` (ResNet-18), a fresh Python
process (so that its peak memory is its own) builds the model with random weights (the time of
every stage depends on the shapes, not on the weights) and runs the stages of
`kcc.recipe.purify_kcc` with short step counts:

* compression: `kcc.rewrite.compress` at cr 2 (seconds, including Tucker-2 of every conv);
* synthesis: `kcc.synthesis.synthesize` of `num_images` images for `--synthesis_steps` steps in
  batches of 256; the steady rate in image-steps per second comes from the batches after the
  first (whose extra time is compilation, reported apart);
* scan (only where `:scan` is given: its work does not depend on `num_images`):
  `kcc.scan.scan` with the CPU budget (`flags/scan_cpu.flags`), timed whole, compilation
  included;
* distillation: `kcc.unlearning.distill` of the compressed model from the suspect on the
  synthetic images, one local trigger unlearned, 3 epochs of batch 128; the steady epoch time is
  the mean of epochs 2 and 3 (each with its BatchNorm re-estimation and validation), the first
  epoch's extra time is compilation.

Memory is the process's peak resident set (`ru_maxrss`) after each stage, in MiB: it only
grows, so the stage where it jumps is the one that needed it.

From the rates the table predicts a full run of the CPU budget of `benchmarks/recipe_zoo.py`
(1,024 images x 100 steps, 20 epochs, scan) as `compression + compile + 1024 * 100 / synthesis
rate + scan + 20 * epoch(1024)`, the epoch time scaled linearly in the image count. The
re-inversion, blend and quantisation triggers that `purify_kcc` adds after a flagged scan, and
the extra trigger kinds it then unlearns, are not in it: on `badnets_all2one` (width 16) the
recipe's scan stage took 157 s against this table's 103.5 s for the bare scan, its distillation
357 s against 216 s predicted (`results/probes/recipe_rev20_compiled.json`).

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax taskset -c 0 python benchmarks/growth.py

Results: `growth.json` (one entry per configuration, kept across runs: a configuration
already measured is skipped) and `growth.md`.
"""

import json
import os
import resource
import subprocess
import sys
import time

from absl import app
from absl import flags

import zoo  # benchmarks/zoo.py, beside this script

_CONFIGS = flags.DEFINE_list(
    "configs", ["16:32:512:scan", "16:32:1024", "16:32:2048", "32:32:512:scan",
                "16:64:512:scan", "64:32:512:scan"],
    "width:input_size:num_images[:scan] of each ResNet-18 measured, in order.")
_SYNTHESIS_STEPS = flags.DEFINE_integer("synthesis_steps", 10, "Synthesis steps measured.")
_CHILD = flags.DEFINE_string("child", None, "Internal: measure one configuration and print it.")

SYNTHESIS_BATCH = 256
DISTILLATION_BATCH = 128
EPOCHS = 3
BUDGET = {"num_images": 1024, "synthesis_steps": 100, "epochs": 20}  # recipe_zoo.py's CPU budget
_TAG = "GROWTH "


def _peak_mib():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure(width, input_size, num_images, run_scan, synthesis_steps):
    """One configuration, in this process: see the module docstring. Returns a dict."""
    import keras
    import numpy as np

    from kcc import models
    from kcc import rewrite
    from kcc import scan
    from kcc import synthesis
    from kcc import unlearning

    class EpochClock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times = [time.time()]

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.time())

    keras.utils.set_random_seed(0)
    model = models.resnet18(width=width, input_size=input_size)
    row = {"width": width, "input_size": input_size, "num_images": num_images,
           "params": models.trainable_params(model), "peak_mib": {"start": _peak_mib()}}
    start = time.time()
    student, _ = rewrite.compress(model, 2.0)
    row["compression_s"] = round(time.time() - start, 1)
    row["peak_mib"]["compression"] = _peak_mib()

    images, _, info = synthesis.synthesize(model, num_images, synthesis_steps,
                                           batch_size=SYNTHESIS_BATCH, verbose=False)
    steady = float(np.mean(info["batch_seconds"][1:]))
    row["synthesis"] = {
        "batches": len(info["batch_seconds"]), "steps": synthesis_steps,
        "image_steps_per_s": round(SYNTHESIS_BATCH * synthesis_steps / steady, 1),
        "compile_s": round(info["batch_seconds"][0] - steady, 1), "seconds": info["seconds"]}
    row["peak_mib"]["synthesis"] = _peak_mib()

    if run_scan:
        start = time.time()
        report = scan.scan(model, seed=0, verbose=False, **scan.BUDGETS["cpu"])
        row["scan_s"] = round(time.time() - start, 1)
        row["scan_stages_s"] = report.seconds
        row["peak_mib"]["scan"] = _peak_mib()

    mask = np.zeros((input_size, input_size, 1), np.float32)
    mask[-4:, -4:] = 1.0
    trigger = scan.Trigger("local", 0, np.ones((input_size, input_size, 3), np.float32), mask)
    held = max(1, num_images // 10)
    clock = EpochClock()
    unlearning.distill(model, student, images[held:], images[:held], [trigger], EPOCHS,
                       DISTILLATION_BATCH, verbose=False, callbacks=[clock])
    epochs = np.diff(clock.times)
    row["distillation"] = {
        "images": num_images - held, "epochs": EPOCHS,
        "epoch_s": round(float(np.mean(epochs[1:])), 2),
        "compile_s": round(float(epochs[0] - np.mean(epochs[1:])), 1)}
    row["peak_mib"]["distillation"] = _peak_mib()
    row["machine"] = zoo.machine()
    return row


def predicted_seconds(row, scan_s):
    """The CPU budget's purify time (module docstring) from one configuration's rates."""
    s, d = row["synthesis"], row["distillation"]
    n = BUDGET["num_images"]
    synthesis_s = s["compile_s"] + n * BUDGET["synthesis_steps"] / s["image_steps_per_s"]
    distillation_s = (d["compile_s"] + BUDGET["epochs"] * d["epoch_s"] * (n - n // 10)
                      / d["images"])
    return {"synthesis": round(synthesis_s), "scan": scan_s, "distillation": round(distillation_s),
            "total": round(row["compression_s"] + synthesis_s + (scan_s or 0) + distillation_s)}


def _parse(config):
    parts = config.split(":")
    if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] != "scan"):
        raise ValueError(f"A configuration is width:input_size:num_images[:scan]. Received "
                         f"{config!r}.")
    return int(parts[0]), int(parts[1]), int(parts[2]), len(parts) == 4


def main(argv):
    del argv
    if _CHILD.value:
        row = measure(*_parse(_CHILD.value), _SYNTHESIS_STEPS.value)
        print(_TAG + json.dumps(row), flush=True)
        return
    from kcc import saving

    path = zoo.output("growth.json")
    rows = json.load(open(path)) if os.path.exists(path) else {}
    for config in _CONFIGS.value:
        _parse(config)
        if config in rows:
            continue
        print(f"measuring {config}", flush=True)
        done = subprocess.run(
            [sys.executable, os.path.abspath(__file__), f"--child={config}",
             f"--synthesis_steps={_SYNTHESIS_STEPS.value}"],
            stdout=subprocess.PIPE, text=True, check=True)
        line = [s for s in done.stdout.splitlines() if s.startswith(_TAG)][-1]
        rows[config] = {**json.loads(line[len(_TAG):]), "command": (
            f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND', 'tensorflow')} python "
            f"benchmarks/growth.py --configs={config} "
            f"--synthesis_steps={_SYNTHESIS_STEPS.value}")}
        saving.write_json(rows, path)
        write_table(rows)
    write_table(rows)


def write_table(rows):
    from kcc import saving

    scans = {(r["width"], r["input_size"]): r["scan_s"] for r in rows.values() if "scan_s" in r}
    lines = [
        "# How purification grows with images, width and input size", "",
        "Made by `benchmarks/growth.py` (its docstring says what each column measures); "
        "ResNet-18 with random weights, cr 2, one process per row. Rates are steady-state "
        "(compilation apart); memory is the process's peak resident set after the stage. "
        "\"Predicted\" is a purify run of `recipe_zoo.py`'s CPU budget (1,024 images x 100 "
        "synthesis steps, the CPU-budget scan, 20 epochs) from these rates, the scan taken from "
        "the row of the same width and input size; it leaves out the re-inversion after a "
        "flagged scan. The rows were measured pinned to one core (`taskset -c 0`) while the "
        "other core ran recipe rows and tests.", "",
        "| width | px | images | params | synthesis image-steps/s (compile s) | scan s | "
        "distillation s/epoch (compile s) | peak MiB: start / synth / scan / distil | "
        "predicted s: synth + scan + distil = total |",
        "|---|---|---|---|---|---|---|---|---|"]
    for config, r in rows.items():
        s, d, m = r["synthesis"], r["distillation"], r["peak_mib"]
        p = predicted_seconds(r, scans.get((r["width"], r["input_size"])))
        lines.append(
            f"| {r['width']} | {r['input_size']} | {r['num_images']} | {r['params']:,} | "
            f"{s['image_steps_per_s']:.0f} ({s['compile_s']:.0f}) | "
            f"{r.get('scan_s', '-')} | "
            f"{d['epoch_s']:.1f} on {d['images']} ({d['compile_s']:.0f}) | "
            f"{m['start']:.0f} / {m['synthesis']:.0f} / "
            f"{format(m['scan'], '.0f') if 'scan' in m else '-'} / "
            f"{m['distillation']:.0f} | {p['synthesis']} + {p['scan'] or '?'} + "
            f"{p['distillation']} = {p['total'] if p['scan'] else '?'} |")
    machines = sorted({r["machine"] for r in rows.values()})
    lines += ["", "Machine: " + "; ".join(machines) + ".", "",
              "Commands (one per row; the script skips rows already in `growth.json`):", ""]
    lines += [f"    {r['command']}" for r in rows.values()]
    saving.write_text("\n".join(lines) + "\n", zoo.output("growth.md"))
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
