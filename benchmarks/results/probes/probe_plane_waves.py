"""Can plane waves find SIG's target without data (issue 19)? A sweep, no optimisation.

For one zoo model: the scan's CPU-budget synthetic images (64, seed 0, from the BatchNorm
statistics, as `kcc.scan.scan` makes them). Every grey plane wave
`a * cos(2 pi (fx * col / W + fy * row / H) + phase)` (the same on every channel) with
`fx` in 0..F, `fy` in -F..F, four phases, scaled to L2 norm `r` in [0, 1] pixel units, is added
to every image (clipped to [0, 1]); per norm and class, the largest share of the images not
already of that class that one wave sends to it. SIG's trigger is such a wave (`fx` 6, norm
6.15 at delta 40).

    KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax taskset -c 1 \
        python benchmarks/results/probes/probe_plane_waves.py MODEL [OUT]

Rows go to OUT (default `benchmarks/results/probes/plane_waves.json`), one per model.
"""
import json
import os
import sys
import time

sys.path.insert(0, "benchmarks")
sys.path.insert(0, os.path.dirname(__file__))
import numpy as np

import probe_setup
import zoo
from kcc import parallel, saving

F = int(os.environ.get("F", 16))
NORMS = [float(r) for r in os.environ.get("NORMS", "2,3,4,5").split(",")]
PHASES = 4


def waves(h, w):
    """`(M, H, W, 1)` unit-L2-norm grey waves over 3 channels and their `(fx, fy, phase)`."""
    rows, cols = np.meshgrid(np.arange(h) / h, np.arange(w) / w, indexing="ij")
    out, keys = [], []
    for fx in range(F + 1):
        for fy in range(-F, F + 1):
            if fx == 0 and fy < 0:
                continue  # the same waves as fy > 0
            for p in range(PHASES):
                phase = 2 * np.pi * p / PHASES
                wave = np.cos(2 * np.pi * (fx * cols + fy * rows) + phase)
                norm = np.linalg.norm(wave) * np.sqrt(3)
                if norm < 1e-6:
                    continue
                out.append(wave / norm)
                keys.append((fx, fy, p))
    return np.stack(out)[..., None].astype(np.float32), keys


def main(name, out):
    start = time.time()
    model, _, sidecar, images, labels = probe_setup.scan_images(name)
    k = int(model.outputs[0].shape[-1])
    unit, keys = waves(*images.shape[1:3])
    per_norm = {}
    for r in NORMS:
        counts = np.zeros((len(unit), k))
        for i in range(0, len(unit), 8):
            chunk = unit[i:i + 8]
            stamped = np.clip(images[None] + r * chunk[:, None], 0, 1).reshape(
                -1, *images.shape[1:])
            pred = np.argmax(parallel.predict(model, stamped, 512), -1).reshape(len(chunk), -1)
            for c in range(k):
                counts[i:i + len(chunk), c] = np.sum((pred == c) & (labels[None] != c), 1)
        eligible = np.array([np.sum(labels != c) for c in range(k)])
        rates = counts / np.maximum(eligible, 1)
        best = rates.argmax(0)
        per_norm[str(r)] = [{"class": c, "best_rate": round(float(rates[best[c], c]), 3),
                             "wave": keys[best[c]]} for c in range(k)]
        print(r, [(c, round(float(rates[best[c], c]), 2), keys[best[c]]) for c in range(k)],
              flush=True)
    result = {"model": name, "attack": sidecar["attack"], "frequencies": F, "phases": PHASES,
              "waves": len(unit), "per_norm": per_norm,
              "seconds": round(time.time() - start, 1), "machine": zoo.machine(),
              "command": "KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax taskset -c 1 "
                         "python " + " ".join(sys.argv)}
    results = json.load(open(out)) if os.path.exists(out) else {}
    results[name] = result
    saving.write_json(results, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else
         "benchmarks/results/probes/plane_waves.json")
