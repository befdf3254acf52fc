"""Shared set-up of the unlearning probes (run from the repository root): a zoo model, its test
slice, the cached synthetic images (first 128 held aside) and the trigger file in $TRIGGERS
(only the kinds in $KINDS when set)."""
import os, pickle, sys
sys.path.insert(0, "benchmarks")
sys.path.insert(0, os.path.dirname(__file__))
import numpy as np
import zoo
from kcc import metrics


def load(name):
    model, attack, x, y, _ = zoo.load_entry(name, 100)
    images = np.load(f"benchmarks/work/probe_images_{name}.npz")["images"]
    triggers = pickle.load(open(os.environ["TRIGGERS"], "rb"))
    if os.environ.get("KINDS"):
        triggers = [t for t in triggers if t.kind in os.environ["KINDS"].split(",")]

    def ev(m):
        return {k: round(100 * float(v), 2) for k, v in metrics.evaluate(m, x, y, attack).items()
                if k != "n_triggered"}

    return model, images[:128], images[128:], triggers, ev
