"""Paths of the zoo and loading one entry for a benchmark (model, attack, evaluation slice)."""

import json
import os

from kcc import data
from kcc import evaluation
from kcc import intake

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = os.path.join(ROOT, "examples", "zoo")
RESULTS = os.path.join(ROOT, "benchmarks", "results")


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
    from kcc import synthesis

    layers = synthesis.batchnorm_layers(model)
    saved = [l.momentum for l in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(x, training=True)
    for layer, momentum in zip(layers, saved):
        layer.momentum = momentum
