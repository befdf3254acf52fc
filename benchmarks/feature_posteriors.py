"""Probe: FreeEagle's feature posteriors (`kcc.scan.feature_posteriors`) on zoo models, at several
split depths.

Kept as the record of how the signal's split depth was chosen and of the models it was tried on
before it joined the scan: on `badnets_all2one`, `clean` and `inputaware_all2one` it flagged
BadNets's target and not InputAware's at any depth tried (0.45 and 0.87, 50 or 1,000 steps in a
prototype of this script; 0.6 and 0.75 here), so it stayed out of `kcc.scan` until it was run on
the rest of the zoo (2026-12-06: it flags `gtsrb_inputaware_all2one`'s target, which no other
signal does, and no clean model; `benchmarks/results/feature_posteriors.md`). Made by

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax python benchmarks/feature_posteriors.py \
        --models=badnets_all2one,clean,inputaware_all2one --depths=0.6,0.75
"""

import json
import os
import time

import numpy as np
from absl import app
from absl import flags

from kcc.scan.feature_posteriors import feature_posteriors

_MODELS = flags.DEFINE_list("models", ["badnets_all2one", "clean", "inputaware_all2one"],
                            "Zoo entries (examples/zoo/<name>.keras).")
_DEPTHS = flags.DEFINE_list("depths", ["0.75"], "Split depths (share of the layers).")
_RESTARTS = flags.DEFINE_integer("restarts", 5, "Dummy feature maps per class.")
_STEPS = flags.DEFINE_integer("steps", 300, "Adam steps.")


def main(argv):
    del argv
    from kcc import intake
    from kcc import saving
    from kcc.scan import anomaly

    import kcc.scan
    import zoo  # benchmarks/zoo.py, beside this script

    path = zoo.output("feature_posteriors.json")
    rows = json.load(open(path)) if os.path.exists(path) else {}
    for name in _MODELS.value:
        model = intake.load_suspect(os.path.join(zoo.ZOO, f"{name}.keras"))
        for depth in _DEPTHS.value:
            key = f"{name}|{depth}|{_RESTARTS.value}|{_STEPS.value}"
            if key in rows:
                continue
            start = time.time()
            s, info = feature_posteriors(model, _RESTARTS.value, _STEPS.value, depth=float(depth),
                                         verbose=False)
            p, flagged = anomaly.p_values(s, kcc.scan.ALPHA, min_ratio=kcc.scan.MIN_RATIO)
            rows[key] = {"model": name, "depth": float(depth), "layer": info["layer"],
                         "s": np.round(s, 4).tolist(), "p": p.tolist(), "flagged": flagged,
                         "seconds": round(time.time() - start, 1), "machine": zoo.machine()}
            print(name, depth, rows[key]["layer"], flagged, flush=True)
            saving.write_json(rows, path)
    lines = ["# FreeEagle-style feature posteriors on the zoo (probe)", "",
             "`benchmarks/feature_posteriors.py`: per class, 5 non-negative dummy feature maps at",
             "the split layer optimised 300 Adam steps towards the class; `s_j` = mean share of",
             "class j in the other classes' runner-up posteriors; p-values by `kcc.scan.anomaly`",
             "(alpha and min_ratio of `kcc.scan`). Command in the script's docstring. The rows",
             "from `sig_all2one` on were run on 2026-12-06 (evening; AMD EPYC, one core shared",
             "with a recipe row, partly at lower priority), so their seconds are not the",
             "signal's cost (`scan_zoo.md` gives that); `clean_mobilenet_v2` was stopped",
             "unfinished here (its XLA depthwise convolutions are slow) and run by the scan.", "",
             "| model | depth | split layer | largest s (class) | next s | flagged | seconds |",
             "|---|---|---|---|---|---|---|"]
    for row in rows.values():
        order = np.argsort(row["s"])[::-1]
        lines.append(f"| {row['model']} | {row['depth']:g} | {row['layer']} | "
                     f"{row['s'][order[0]]:.3f} ({order[0]}) | {row['s'][order[1]]:.3f} "
                     f"({order[1]}) | {row['flagged'] or '-'} | {row['seconds']:.0f} |")
    saving.write_text("\n".join(lines) + "\n", zoo.output("feature_posteriors.md"))


if __name__ == "__main__":
    app.run(main)
