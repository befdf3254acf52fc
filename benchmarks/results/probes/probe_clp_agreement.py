"""Agreement of CLP's pruned model (u = $U, default 3) with the suspect on synthetic images
made as the recipe makes them (from the suspect's BatchNorm statistics, Adam rate 0.3, 100
steps; 256 images, seed 0), per zoo model: what `kcc.recipe.lipschitz_pruned` decides on
(there on the recipe's 128 held-aside images). `clp_agreement.json` holds the runs at u = 3
and 4, keyed `model|u<u>` (this script keys by model; the two files were merged). Run from
the repository root:

    KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax U=4 taskset -c 0 python \
        benchmarks/results/probes/probe_clp_agreement.py clean,bpp_all2one benchmarks/work/a.json
"""
import json, os, sys, time
sys.path.insert(0, "benchmarks")
import numpy as np
import zoo
from kcc import depthwise, synthesis, training
from kcc.defenses import clp

names = sys.argv[1].split(",")
out_path = sys.argv[2]
out = json.load(open(out_path)) if os.path.exists(out_path) else {}
for name in names:
    if name in out:
        continue
    model, attack, x, y, _ = zoo.load_entry(name, 100)
    t = time.time()
    twin = depthwise.twin(model)
    images, _, _ = synthesis.synthesize(twin, 256, 100, 0.3, 256, 0, verbose=False)
    pruned, rep = clp.clp(model, u=float(os.environ.get("U", "3")))
    a = training.predict_labels(model, images)
    b = training.predict_labels(pruned, images)
    probs_a = model.predict(images, verbose=0)
    probs_b = pruned.predict(images, verbose=0)
    out[name] = {"agreement": round(float(np.mean(a == b)), 4),
                 "agreement_first_128": round(float(np.mean(a[:128] == b[:128])), 4),
                 # summed over classes of the models' outputs (logits for the zoo's models)
                 "mean_abs_prob_change": round(float(np.mean(np.abs(probs_a - probs_b).sum(-1))),
                                               4),
                 "classes_suspect": np.bincount(a, minlength=probs_a.shape[-1]).tolist(),
                 "classes_clp": np.bincount(b, minlength=probs_a.shape[-1]).tolist(),
                 "channels_pruned": rep["channels_pruned"], "s": round(time.time() - t, 1)}
    print(name, out[name], flush=True)
    json.dump(out, open(out_path, "w"), indent=1)
