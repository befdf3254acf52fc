"""Probe (after probe_lf.py, on its cached images and smooth trigger): unlearning the class-0
smooth trigger of `lf_all2one` at twice its strength as well. The inverted trigger (L2 2.6) is
weaker than LF's own (4.0); does unlearning a stronger copy reach the real one?

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax python \
        benchmarks/results/probes/probe_lf_scale.py
Adds `distillation_scaled` to benchmarks/results/probes/lf.json.
"""
import json
import math
import sys
import time

sys.path.insert(0, "benchmarks")
import numpy as np  # noqa: E402

import zoo  # noqa: E402
from kcc import metrics, rewrite, saving, unlearning  # noqa: E402
from kcc.scan import inversion  # noqa: E402

OUT = "benchmarks/results/probes/lf.json"
model, attack, x, y, _ = zoo.load_entry("lf_all2one", 100)
images = np.load("benchmarks/work/lf/images.npz")["images"]
val, train = images[:128], images[128:]
smooth = np.load("benchmarks/work/lf/triggers.npz")["smooth"][0]
result = json.load(open(OUT))
result["distillation_scaled"] = {}
for name, scales in (("smooth x1 and x2", (1, 2)), ("smooth x2", (2,))):
    triggers = [inversion.Trigger("global", 0, s * smooth, None, s * float(np.linalg.norm(smooth)))
                for s in scales]
    start = time.time()
    student, _ = rewrite.compress(model, 2.0, math.inf)
    _, validation = unlearning.distill(model, student, train, val, triggers, 20, 128, 1e-3, 4.0,
                                       1.0, True, seed=0, verbose=False)
    row = {k: round(100 * float(v), 2) for k, v in metrics.evaluate(student, x, y, attack).items()
           if k != "n_triggered"}
    result["distillation_scaled"][name] = {**row, "epoch": validation.chosen_epoch,
                                           "seconds": round(time.time() - start, 1)}
    print(name, result["distillation_scaled"][name], flush=True)
    saving.write_json(result, OUT)
