"""The largest sigma_norm z-score (Eq. 2) of every decomposable conv of zoo models, side by side:
how a training recipe changes the spectra that C&C's scaling (Eq. 5, tau 2-4) acts on.

    KERAS_BACKEND=jax python benchmarks/spectra.py --models=clean,clean_coupled
"""

import os

import numpy as np
from absl import app
from absl import flags

from kcc import intake
from kcc import rewrite
from kcc import saving
from kcc import tucker

import zoo  # benchmarks/zoo.py, beside this script

_MODELS = flags.DEFINE_list("models", ["clean", "clean_coupled"], "Zoo entries to compare.")


def largest_z(model):
    """`{layer name: largest sigma_norm}` of the model's decomposable convolutions."""
    out = {}
    for layer in model.layers:
        if rewrite.is_decomposable(layer):
            t = tucker.tucker2(np.asarray(layer.kernel))
            out[layer.name] = float(tucker.normalize_singular_values(t.sigma1, t.sigma2)[0].max())
    return out


def main(argv):
    del argv
    spectra = {n: largest_z(intake.load_suspect(os.path.join(zoo.ZOO, f"{n}.keras")))
               for n in _MODELS.value}
    names = list(spectra)
    layers = list(spectra[names[0]])
    lines = ["# Largest sigma_norm z-score per layer (Eq. 2)", "",
             "    KERAS_BACKEND=jax python benchmarks/spectra.py --models=" + ",".join(names), "",
             "| layer | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for layer in layers:
        lines.append(f"| {layer} | " + " | ".join(f"{spectra[n][layer]:.2f}" for n in names)
                     + " |")
    for cut in (2, 3, 4):
        lines.append(f"| layers above tau {cut} | " + " | ".join(
            str(sum(v > cut for v in spectra[n].values())) for n in names) + " |")
    lines.append("| mean | " + " | ".join(f"{np.mean(list(spectra[n].values())):.2f}"
                                           for n in names) + " |")
    saving.write_text("\n".join(lines) + "\n", zoo.output("spectra.md"))
    saving.write_json(spectra, zoo.output("spectra.json"))
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
