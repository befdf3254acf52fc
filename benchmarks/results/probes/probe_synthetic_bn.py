"""Probe: what re-estimating BatchNorm statistics on the recipe's synthetic images alone costs.

On the synthetic training images of a recipe run (the cache `probe_feature_kd.py` writes,
benchmarks/work/fkd/NAME_crCR.pkl; the `kcc.unlearning.calibration_images` of them, as the
recipe re-estimates on after every epoch): ACC / ASR / RA of the suspect and of the truncated
student (`rewrite.compress(relative=True)`), each with its own statistics and with them
re-estimated there (`kcc.recipe.refreshed`). Writes benchmarks/results/probes/synthetic_bn.json.

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax \\
        python benchmarks/results/probes/probe_synthetic_bn.py NAME CR
"""
import json
import math
import os
import pickle
import sys

sys.path.insert(0, "benchmarks")
sys.path.insert(0, os.path.dirname(__file__))
import probe_setup
import zoo
from kcc import recipe, rewrite, saving, unlearning

OUT = "benchmarks/results/probes/synthetic_bn.json"


def main(name, cr):
    model, attack, x, y, _ = zoo.load_entry(name, 100)
    images = pickle.load(open(f"benchmarks/work/fkd/{name}_cr{cr:g}.pkl", "rb"))["images"]
    calibration = unlearning.calibration_images(images)
    truncated, _ = rewrite.compress(model, cr, math.inf, relative=True)
    score = lambda m: probe_setup.scores(m, x, y, attack)  # noqa: E731
    row = {"command": "KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax python "
                      + " ".join(sys.argv),
           "calibration_images": len(calibration)}
    for label, m in (("suspect", model), ("truncated", truncated)):
        row[label] = score(m)
        row[f"{label}, BN re-estimated on synthetic images"] = score(
            recipe.refreshed(m, calibration))
    row["machine"] = zoo.machine()
    rows = json.load(open(OUT)) if os.path.exists(OUT) else {}
    rows[f"{name}|cr{cr:g}"] = row
    saving.write_json(rows, OUT)
    print(json.dumps(row))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
