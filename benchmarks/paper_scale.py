"""Paper-scale evidence on an accelerator: ResNet-18 at width 64 (the paper's size) trained with
a backdoor, swept over tau_scale (Fig. 1 and 3), then purified by C&C with the paper's budget and
evaluated, in one command on the JAX backend (no TensorFlow needed).

The zoo's CPU protocol (20 epochs, one-cycle, same attacks and poisoning) at width 64 instead of
16, so the two differ in width alone. Work is done in this order and skipped where finished, so
a command cut off at a time limit is resumed by running it again on the same machine:

1. train each `--models` entry (per-epoch checkpoints under `--work_dir`);
2. the scaling-only sweep over `--taus`, both readings of Eq. 5 (as `tau_sweep.py`);
3. each `--runs` entry `cr:tau` of `kcc.cc.purify` (`tau` = inf is fine-tuning only), started
   only while the previous run's time still fits before `--deadline_s`.

Results go to `--results_dir` as `paper_scale.json` (every measurement, and every command that
added to it) and `paper_scale.md`, rewritten after every step. The JSON is also what a later call
carries on from: put the last call's JSON in `--results_dir` first. Trained models live in
`--work_dir` on the machine that trained them; a call that finds results for a model but not the
model itself stops rather than mix two models' results.

A device call carries at most 64 MiB, less than the CIFAR-10 archive; `--pack_to` writes one
that fits (every training image, `--test_per_class` test images per class, seed 0):

    KCC_DATA_DIR=../shared/datasets python benchmarks/paper_scale.py --pack_to=.gpudata
    # on the accelerator, repeated until every step is done (.gpudata/ holds the last JSON):
    cp .gpudata/paper_scale.json $OUT/; KCC_DATA_DIR=.gpudata KERAS_BACKEND=jax \\
        python benchmarks/paper_scale.py --results_dir=$OUT
    # here, once the last call's JSON is in benchmarks/results/:
    python benchmarks/paper_scale.py --table_only
"""

import json
import math
import os
import random
import sys
import time
import zipfile

from absl import app
from absl import flags

from kcc import attacks
from kcc import data
from kcc import intake
from kcc import saving
from kcc.cc import purify

import zoo  # benchmarks/zoo.py, beside this script

_MODELS = flags.DEFINE_list("models", ["badnets_all2one"], "Entries `<attack>_<mode>` to train.")
_WIDTH = flags.DEFINE_integer("width", 64, "ResNet-18 width (paper: 64).")
_EPOCHS = flags.DEFINE_integer("epochs", 20, "Training epochs (the zoo's CPU protocol: 20).")
_TAUS = flags.DEFINE_list("taus", ["8", "6", "4", "3", "2", "1.5", "1"], "Scaling-only sweep.")
_RUNS = flags.DEFINE_list("runs", ["2:4", "2:inf", "3:4", "4:4", "2:2"],
                          "C&C runs `cr:tau_scale`, in order; tau inf = fine-tuning only.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 5120, "Synthetic images (paper: 5120).")
_STEPS = flags.DEFINE_integer("synthesis_steps", 500, "Synthesis steps (paper: 500).")
_TRAIN_SUBSET = flags.DEFINE_integer("train_subset", None, "Training images (smoke runs only).")
_RECAL_PER_CLASS = flags.DEFINE_integer("recal_per_class", 50,
                                        "Training images per class for the BN re-estimation.")
_WORK_DIR = flags.DEFINE_string("work_dir", os.path.join(zoo.ROOT, "benchmarks", "work", "paper_scale"),
                                "Trained models and checkpoints.")
_DEADLINE = flags.DEFINE_float("deadline_s", 540, "Start no purify run that would end after this.")
_PACK_TO = flags.DEFINE_string("pack_to", None, "Only write a carry-sized cifar10.zip there.")
_TEST_PER_CLASS = flags.DEFINE_integer("test_per_class", 500, "Test images per class in --pack_to.")
_TABLE_ONLY = flags.DEFINE_bool("table_only", False, "Only render the JSON in --results_dir.")


def main(argv):
    del argv
    if _PACK_TO.value:
        return _pack(_PACK_TO.value, _TEST_PER_CLASS.value)
    begin = time.time()
    os.makedirs(_WORK_DIR.value, exist_ok=True)
    state = {}
    if os.path.exists(zoo.output("paper_scale.json")):
        with open(zoo.output("paper_scale.json")) as f:
            state = json.load(f)
    if _TABLE_ONLY.value:
        return saving.write_text(_table(state), zoo.output("paper_scale.md"))
    state.setdefault("commands", []).append(" ".join(sys.argv))
    budget = {"num_images": _NUM_IMAGES.value, "synthesis_steps": _STEPS.value, "epochs": 5,
              "batch_size": 128, "pgd_steps": 10, "reading": "text"}

    def save():
        state.update(machine=zoo.machine(), budget=budget, test_images=len(y))
        saving.write_json(state, zoo.output("paper_scale.json"))
        saving.write_text(_table(state), zoo.output("paper_scale.md"))

    x, y = data.load("cifar10", "test")
    x_train, y_train = data.load("cifar10", "train")
    x_recal = data.subset(x_train, y_train, per_class=_RECAL_PER_CLASS.value, seed=1)[0]
    last_purify = 0.0
    for name in _MODELS.value:
        entry = state.setdefault("models", {}).setdefault(name, {"sweep": {}, "purify": {}})
        model, attack = _trained(name, entry)
        save()
        for reading in ("text", "literal"):
            for tau in _TAUS.value:
                key = f"{reading}/{tau}"
                if key not in entry["sweep"]:
                    entry["sweep"][key] = zoo.scaling_point(model, float(tau), reading, x, y,
                                                            attack, x_recal)
                    print(name, key, entry["sweep"][key], flush=True)
                    save()
        for run in _RUNS.value:
            cr, tau = (float(v) for v in run.split(":"))
            key = f"cr{cr:g}/tau{tau:g}"
            if key in entry["purify"]:
                if entry["purify"][key].get("budget", budget) != budget:
                    raise app.UsageError(f"{name} {key} was run with the budget "
                                         f"{entry['purify'][key]['budget']}, not {budget}.")
                continue
            if time.time() - begin + last_purify > _DEADLINE.value:
                print(f"{name} {key}: not started, the last run took {last_purify:.0f} s and "
                      f"--deadline_s={_DEADLINE.value:g} is near", flush=True)
                return
            start = time.time()
            _, report = purify(model, cr=cr, tau_scale=tau, evaluation=(x, y, attack), seed=0,
                               **budget)
            last_purify = time.time() - start
            entry["purify"][key] = {"cr": cr, "run": "ft_only" if math.isinf(tau) else "cc",
                                    **zoo.purify_row(report), "budget": budget,
                                    "wall_seconds": round(last_purify, 1)}
            save()


def _pack(folder, test_per_class):
    """`folder/cifar10.zip`: `$KCC_DATA_DIR/cifar10.zip`'s training images and `test_per_class`
    of its test images per class (drawn with seed 0), in the same layout."""
    source = os.path.join(os.environ.get("KCC_DATA_DIR", ""), "cifar10.zip")
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(0)
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(
            os.path.join(folder, "cifar10.zip"), "w", zipfile.ZIP_DEFLATED) as dst:
        test = {}
        for member in sorted(m for m in src.namelist() if not m.endswith("/")):
            _, split, label, _ = member.split("/")
            if split == "train":
                dst.writestr(member, src.read(member))
            else:
                test.setdefault(label, []).append(member)
        for label in sorted(test):
            for member in sorted(rng.sample(test[label], test_per_class)):
                dst.writestr(member, src.read(member))


def _trained(name, entry):
    """The trained model of entry `name` (trained now unless its `.keras` is in --work_dir)."""
    attack_name, mode = name.rsplit("_", 1)
    attack = attacks.get(attack_name, mode=mode, num_classes=10)
    path = os.path.join(_WORK_DIR.value, f"{name}.keras")
    trained = entry.get("train", {})
    if (trained.get("width"), trained.get("epochs")) not in ((None, None), (_WIDTH.value, _EPOCHS.value)):
        raise app.UsageError(f"{name} in the results was trained at width {trained['width']} for "
                             f"{trained['epochs']} epochs, not --width={_WIDTH.value} "
                             f"--epochs={_EPOCHS.value}; use another --results_dir.")
    if not os.path.exists(path) and (entry["sweep"] or entry["purify"]):
        raise app.UsageError(f"The results hold measurements of {name}, but its model is not in "
                             f"{_WORK_DIR.value} (a fresh machine?); retraining would mix two "
                             "models. Use another --results_dir, or remove the entry.")
    if not os.path.exists(path):
        model, report = attacks.infect(attack, "resnet18", "cifar10", _WIDTH.value, _EPOCHS.value,
                                       schedule="onecycle", verbose=2,
                                       train_subset=_TRAIN_SUBSET.value,
                                       checkpoint=os.path.join(_WORK_DIR.value, name))
        entry["train"] = {**report, "machine": zoo.machine()}
        saving.save_model(model, path, overwrite=True)
    return intake.load_suspect(path), attack


def _table(state):
    pct = lambda r, k: f"{100 * r[k]:.2f}" if k in r else "-"  # noqa: E731
    b = state["budget"]
    lines = ["# Paper-scale C&C: ResNet-18 width 64 on an accelerator", "",
             f"Machine: {state['machine']}. Made by `benchmarks/paper_scale.py` (see its "
             "docstring) with these commands, one per device call, in order (each with "
             "`KCC_DATA_DIR=.gpudata KERAS_BACKEND=jax`, the archive from `--pack_to`): "
             + "; ".join(f"`{c}`" for c in state["commands"]) + f". Evaluation on "
             f"{state['test_images']} test images (the packed archive's, never seen by training or "
             f"purification); C&C budget {b['num_images']} synthetic images x "
             f"{b['synthesis_steps']} steps, {b['epochs']} distillation epochs, batch "
             f"{b['batch_size']}, {b['pgd_steps']} PGD steps, {b['reading']} reading.", ""]
    for name, entry in state["models"].items():
        t = entry.get("train", {})
        lines += [f"## {name}", "",
                  f"Trained {t.get('epochs', '?')} epochs at width {t.get('width', '?')} in "
                  f"{t.get('train_seconds', '?')} s: ACC {pct(t, 'acc')}, ASR {pct(t, 'asr')}, "
                  f"RA {pct(t, 'ra')} ({t.get('train_images', '?')} training "
                  f"images, {t.get('poisoned_images', '?')} poisoned).", "",
                  "| run | cr | tau | stage | ACC % | ASR % | RA % | params | "
                  "seconds (rewrite/synth/distill) |", "|---|---|---|---|---|---|---|---|---|"]
        for r in entry["purify"].values():
            for stage in r["evaluation"]:
                lines.append(f"| {r['run']} | {r['cr']:g} | {r['tau_scale']} | {stage} | "
                             f"{zoo.stage_cells(r, stage)} |")
        lines += ["", "Scaling only (Fig. 3; h = mean last-block activation, Fig. 1):", "",
                  "| reading | tau | components scaled | ACC % | ASR % | h_clean | h_trigger | "
                  "ASR % after BN re-estimation |", "|---|---|---|---|---|---|---|---|"]
        for key, p in entry["sweep"].items():
            reading, tau = key.split("/")
            lines.append(f"| {reading} | {tau} | {p['scaled']} | {pct(p, 'acc')} | {pct(p, 'asr')} | "
                         f"{p['h_clean']:.3f} | {p.get('h_trigger', float('nan')):.3f} | "
                         f"{pct(p['recalibrated'], 'asr')} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    app.run(main)
