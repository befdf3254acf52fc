"""Why the scan misses SIG, and whether a trigger's spectrum would see it (issue 19).

For one zoo model, as `kcc.scan.scan` does at the CPU budget (`scan.BUDGETS["cpu"]`, seed 0):
synthesise 64 images from the BatchNorm statistics, invert every kind of trigger for every class
on the first half, measure flip rates on the held-aside half. Then, per class, for the additive
kinds (global, smooth): the L2 norm, the held-aside flip rate, the share of the perturbation's
energy in its `TOP` largest 2-D DCT coefficients (per channel, orthonormal DCT-II) and, where the
model's attack is SIG, the cosine with SIG's signal. Also where the attack is SIG: the signal
itself at a few amplitudes, its flip rate on the held-aside synthetic images.

    KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax taskset -c 1 \
        python benchmarks/results/probes/probe_sig_spectrum.py sig_all2one [OUT]

Rows go to OUT (default `benchmarks/results/probes/sig_spectrum.json`), one per model.
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
from kcc import saving, scan
from kcc.scan import inversion

TOP = 16


def dct_matrix(n):
    """Orthonormal DCT-II `(n, n)`: row k is the k-th basis vector."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    d = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    d[0] /= np.sqrt(2.0)
    return d


def spectrum(d):
    """`(H, W, C)` -> its 2-D DCT coefficients per channel, `(H, W, C)`."""
    rows, cols = dct_matrix(d.shape[0]), dct_matrix(d.shape[1])
    return np.einsum("ih,hwc,jw->ijc", rows, d, cols)


def concentration(d, top=TOP):
    energy = np.sort(np.square(spectrum(d)).ravel())[::-1]
    return float(energy[:top].sum() / max(energy.sum(), 1e-12))


def cosine(a, b):
    a, b = np.ravel(a), np.ravel(np.broadcast_to(b, np.shape(a)))
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def main(name, out):
    budget = scan.BUDGETS["cpu"]
    start = time.time()
    model, attack, sidecar, images, labels = probe_setup.scan_images(name)
    half = len(images) // 2
    found = inversion.invert_triggers(model, images[:half], labels[:half],
                                      steps=budget["inversion_steps"],
                                      batch_size=budget["inversion_batch_size"], seed=0,
                                      verbose=False)
    h, w = images.shape[1:3]
    signal = attack.signal(h, w) if attack is not None and hasattr(attack, "signal") else None
    rows = []
    for kind in ("global", "smooth"):
        inversion.flip_rates(model, found[kind], images[half:], labels[half:])
        for t in found[kind]:
            row = {"kind": kind, "class": t.target, "size": round(t.size, 3),
                   "flip_rate": round(t.flip_rate, 3),
                   f"top{TOP}_energy": round(concentration(t.pattern), 4)}
            if signal is not None:
                row["cosine_with_sig"] = round(cosine(t.pattern, signal), 4)
            rows.append(row)
    result = {"model": name, "attack": sidecar["attack"], "rows": rows,
              "seconds": round(time.time() - start, 1), "machine": zoo.machine(),
              "command": "KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax taskset -c 1 "
                         "python " + " ".join(sys.argv)}
    if signal is not None:
        full = np.broadcast_to(signal, images.shape[1:]).astype(np.float32)
        result["sig_signal"] = {"l2": round(float(np.linalg.norm(full)), 3),
                                f"top{TOP}_energy": round(concentration(full), 4)}
        result["sig_scaled_flip_rates"] = {
            str(s): round(inversion.flip_rate(
                model, inversion.Trigger("global", int(sidecar["attack"]["target"]), s * full),
                images[half:], labels[half:]), 3) for s in (0.25, 0.5, 0.75, 1.0)}
    results = json.load(open(out)) if os.path.exists(out) else {}
    results[name] = result
    saving.write_json(results, out)
    for kind in ("global", "smooth"):
        print(kind, [(r["class"], r["size"], r["flip_rate"], r[f"top{TOP}_energy"],
                      r.get("cosine_with_sig")) for r in rows if r["kind"] == kind])
    print({k: v for k, v in result.items() if k.startswith("sig")})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else
         "benchmarks/results/probes/sig_spectrum.json")
