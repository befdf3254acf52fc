"""What the benchmark scripts share: the zoo's paths, `--results_dir` and the machine they ran on,
and loading one zoo entry (model, attack, evaluation slice)."""

import json
import os
import platform

import keras
from absl import flags

from kcc import data
from kcc import evaluation
from kcc import intake

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = os.path.join(ROOT, "examples", "zoo")
RESULTS = os.path.join(ROOT, "benchmarks", "results")

RESULTS_DIR = flags.DEFINE_string("results_dir", RESULTS,
                                  "Folder the script writes its results (JSON, tables, figures) to.")


def output(name):
    """`<--results_dir>/<name>`: the prefix a benchmark's result files are written under."""
    return os.path.join(RESULTS_DIR.value, name)


def machine():
    """What a result was measured on: architecture, cores available of all, Keras backend."""
    return (f"{platform.machine()}, {len(os.sched_getaffinity(0))} of {os.cpu_count()} cores "
            f"(CPU), Keras backend {keras.backend.backend()}")


def load_entry(name, per_class):
    """A zoo model through the intake, its attack from the sidecar, and a test slice.

    Returns:
        `(model, attack or None, x, y, sidecar)`; `(x, y)` is a class-balanced slice of the test
        split with `per_class` images per class (seed 0).
    """
    path = os.path.join(ZOO, f"{name}.keras")
    with open(os.path.join(ZOO, f"{name}.json")) as f:
        sidecar = json.load(f)
    model = intake.load_suspect(path)
    attack = evaluation.attack_for(path, int(model.outputs[0].shape[-1]))
    x, y = data.load(sidecar["dataset"], "test")
    x, y, _ = data.subset(x, y, per_class=per_class, seed=0)
    return model, attack, x, y, sidecar


def feature_strength(model, x, batch_size=500):
    """Mean activation of the last conv block on images `x` (the paper's Fig. 1, h): the
    feature map the classifier's global pooling reads."""
    import keras
    import numpy as np

    from kcc.defenses import fp

    pool, _ = fp.classifier_head(model)
    probe = keras.Model(model.inputs, pool.input)
    return float(np.mean([np.mean(probe.predict_on_batch(x[i:i + batch_size]))
                          for i in range(0, len(x), batch_size)]))


def reestimate_batchnorm(model, x):
    """Sets every BatchNorm's moving statistics to those of images `x` (in place, one pass).

    Diagnostic only: it shows whether a rewrite changed the weights that carry a backdoor or only
    left the stored statistics stale (re-estimation would then bring the backdoor back).
    """
    from kcc import distillation

    with distillation.batchnorm_momentum(model, 0.0):
        model(x, training=True)
