"""Diagnosis: does a class's max-margin image (MM-BD's ascent, 5 images x 100 steps, the scan's
CPU budget), blended into other images at weight 0.1 / 0.2 / 0.3, send them to that class, and
only for a backdoor's target? Measured on 30 test images per class, for diagnosis only (the
recipe chooses nothing on them). Made by (on one core, JAX):

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax python \
        benchmarks/results/probes/probe_margin_blend.py \
        blended_all2one,clean,badnets_all2one,trojan_all2one
"""
import sys, json
sys.path.insert(0, "benchmarks")
import numpy as np, keras
import zoo
from kcc.scan import max_margin as mm
from kcc import training

out = {}
for name in sys.argv[1].split(","):
    model, attack, x, y, _ = zoo.load_entry(name, 30)
    model.trainable = False
    asc = mm.MarginAscent(model, 5, 0)
    logits = mm.ascend(asc, 100, 0.01, "mm", False)
    margins = keras.ops.convert_to_numpy(asc.margins(logits)).reshape(-1, 5)
    imgs = keras.ops.convert_to_numpy(asc.images).reshape(-1, 5, *x.shape[1:])
    pred = training.predict_labels(model, x)
    row = {}
    for k in range(imgs.shape[0]):
        best = imgs[k, margins[k].argmax()]
        keep = pred != k
        rates = []
        for a in (0.1, 0.2, 0.3):
            xb = (1 - a) * x[keep] + a * best[None]
            rates.append(round(float(np.mean(training.predict_labels(model, xb) == k)), 3))
        row[k] = {"margin": round(float(margins[k].max()), 1), "blend_flip@.1/.2/.3": rates}
    out[name] = row
    print(name, json.dumps(row))
json.dump(out, open("benchmarks/results/probes/margin_blend.json", "w"), indent=1)
