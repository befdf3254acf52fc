"""Paths of the zoo and loading one entry for a benchmark (model, attack, evaluation slice)."""

import json
import os

from kcc import attacks
from kcc import data
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
    with open(os.path.join(ZOO, f"{name}.json")) as f:
        sidecar = json.load(f)
    model = intake.load_suspect(os.path.join(ZOO, f"{name}.keras"))
    attack = attacks.from_config(sidecar["attack"], folder=ZOO) if sidecar["attack"] else None
    x, y = data.load(sidecar["dataset"], "test")
    x, y, _ = data.subset(x, y, per_class=per_class, seed=0)
    return model, attack, x, y, sidecar
