"""Shared set-up of the unlearning probes (run from the repository root): a zoo model, its test
slice, the cached synthetic images (first 128 held aside) and the trigger file in $TRIGGERS
(only the kinds in $KINDS when set)."""
import os, pickle, sys
sys.path.insert(0, "benchmarks")
sys.path.insert(0, os.path.dirname(__file__))
import numpy as np
import zoo
from kcc import metrics


def percent(evaluation):
    """A `kcc.metrics.evaluate` dict in percent, two decimals, without `n_triggered`."""
    return {k: round(100 * float(v), 2) for k, v in evaluation.items() if k != "n_triggered"}


def scores(model, x, y, attack):
    """`percent` of `model`'s ACC / ASR / RA on `(x, y)` with `attack`."""
    return percent(metrics.evaluate(model, x, y, attack))


def load(name):
    model, attack, x, y, _ = zoo.load_entry(name, 100)
    images = np.load(f"benchmarks/work/probe_images_{name}.npz")["images"]
    triggers = pickle.load(open(os.environ["TRIGGERS"], "rb"))
    if os.environ.get("KINDS"):
        triggers = [t for t in triggers if t.kind in os.environ["KINDS"].split(",")]

    return model, images[:128], images[128:], triggers, lambda m: scores(m, x, y, attack)


def scan_images(name):
    """Zoo model `name` (its depthwise twin, `kcc.depthwise`), its attack and sidecar, and the
    synthetic images the scan makes at its CPU budget (seed 0) with the model's classes:
    `(model, attack, sidecar, images, labels)`."""
    from kcc import depthwise, scan, synthesis, training

    budget = scan.BUDGETS["cpu"]
    model, attack, _, _, sidecar = zoo.load_entry(name, 100)
    model = depthwise.twin(model)
    images, _, _ = synthesis.synthesize(model, budget["num_images"], budget["synthesis_steps"],
                                        batch_size=min(budget["num_images"], 256), seed=0,
                                        verbose=False)
    return model, attack, sidecar, images, training.predict_labels(model, images)


#: The CPU budget of `benchmarks/recipe_zoo.py` that the recipe probes run.
BUDGET = dict(num_images=1024, synthesis_steps=100, synthesis_learning_rate=0.3, epochs=20,
              learning_rate=1e-3, unlearning_weight=1.0)


def run_recipe(name, cr, out, revision, entry=None, **extra):
    """`kcc.recipe.purify_kcc` on zoo model `name` at `BUDGET` (as patched by the caller), its
    row written to `out` (JSON, one row per model and cr) with `extra` fields added; returns
    the row. `entry`: `zoo.load_entry(name, 100)` if the caller already has it. `extra` values
    that are callables are called after the run."""
    import json, time
    from kcc import recipe, saving, scan

    model, attack, x, y, _ = entry or zoo.load_entry(name, 100)
    start = time.time()
    _, report = recipe.purify_kcc(model, cr=cr, evaluation=(x, y, attack),
                                  scan_settings=scan.BUDGETS["cpu"], **BUDGET)
    rows = json.load(open(out)) if os.path.exists(out) else {}
    row = rows[f"{name}|cr{cr:g}"] = {
        "command": "KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax python " + " ".join(sys.argv),
        "budget": BUDGET, "revision": revision,
        "evaluation": {k: percent(e) for k, e in report["evaluation"].items()},
        "chosen_epoch": report.get("distillation", {}).get("chosen_epoch", "refit"),
        "validation": report.get("distillation", {}).get("validation"),
        **{k: v() if callable(v) else v for k, v in extra.items()},
        "seconds": report["seconds"], "wall_seconds": round(time.time() - start, 1),
        "machine": zoo.machine(),
    }
    saving.write_json(rows, out)
    print(json.dumps(row["evaluation"]))
    return row


class _Prepared(Exception):
    pass


def cache_distillation_inputs(name, model, cr, cache, budget=None):
    """Runs `kcc.recipe.purify_kcc` on zoo model `name` (`model`, already loaded) at `budget`
    (default `BUDGET`) up to its distillation and pickles what distillation would get to
    `cache`: the synthetic training and held-aside images (`images`, `val`), the triggers to
    unlearn and the held-out ones (`triggers`, `held_out`) and the student's starting weights
    (`weights`). Exits, naming `name`, when the scan flags nothing (nothing to unlearn)."""
    import time
    from kcc import recipe, scan, unlearning

    def stop(teacher, student, images, validation_images, triggers, *args, **kwargs):
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        with open(cache, "wb") as f:
            pickle.dump({"images": np.asarray(images), "val": np.asarray(validation_images),
                         "triggers": list(triggers),
                         "held_out": list(kwargs.get("held_out_triggers", ())),
                         "weights": [np.array(w) for w in student.get_weights()]}, f)
        raise _Prepared

    plain, unlearning.distill = unlearning.distill, stop
    start = time.time()
    try:
        recipe.purify_kcc(model, cr=cr, scan_settings=scan.BUDGETS["cpu"], **(budget or BUDGET))
        raise SystemExit(f"{name}: the scan flagged nothing, nothing to unlearn")
    except _Prepared:
        pass
    finally:
        unlearning.distill = plain
    print(f"prepared in {time.time() - start:.0f} s", flush=True)


def feature_setup(name):
    """For the feature probes: `zoo.load_entry(name, 100)`, a training-split slice (100 per
    class, seed 1) and 1,024 synthetic images (100 steps at rate 0.3, seed 0; cached in
    benchmarks/work/feat/), the first 128 held aside, with the suspect's labels of the rest.

    Returns:
        `(model, attack, x, y, sidecar, xt, yt, val, train, labels)`."""
    from kcc import data, synthesis, training

    model, attack, x, y, sidecar = zoo.load_entry(name, 100)
    xt, yt = data.load(sidecar["dataset"], "train")
    xt, yt, _ = data.subset(xt, yt, per_class=100, seed=1)
    cache = f"benchmarks/work/feat/{name}.npz"
    if not os.path.exists(cache):
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        np.savez(cache, images=synthesis.synthesize(model, 1024, 100, 0.3, 256, 0)[0])
    images = np.load(cache)["images"]
    val, train = images[:128], images[128:]
    return model, attack, x, y, sidecar, xt, yt, val, train, training.predict_labels(model, train)
