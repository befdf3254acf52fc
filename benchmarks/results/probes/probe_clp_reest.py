"""Does CLP's removal survive re-estimating BatchNorm statistics on synthetic images (what
`kcc.recipe.refreshed` does to a purified model)? And does a second CLP pass, on the
re-estimated model, find the channels that bring the backdoor back? One zoo model, u = $U
(default 4); 256 synthetic images as the recipe makes them, the first 128 re-estimate; ACC /
ASR / RA on the test slice (diagnostic). Result: `clp_reest.json`. Run from the repository
root:

    KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax U=4 taskset -c 0 \
        python benchmarks/results/probes/probe_clp_reest.py blended_all2all
"""
import json, os, sys
sys.path.insert(0, "benchmarks")
import numpy as np
import keras
import zoo
from kcc import depthwise, synthesis, metrics, distillation
from kcc.defenses import clp, pruning

name = sys.argv[1]
u = float(os.environ.get("U", "4"))
model, attack, x, y, _ = zoo.load_entry(name, 100)
images, _, _ = synthesis.synthesize(depthwise.twin(model), 256, 100, 0.3, 256, 0, verbose=False)


def pct(evaluation):
    return {k: round(100 * float(v), 2) for k, v in evaluation.items()
            if k != "n_triggered" and v is not None}


def reest(m):
    c = keras.models.clone_model(m)
    c.set_weights(m.get_weights())
    distillation.reestimate_batchnorm(c, images[:128])
    return c



out = {}
out["suspect"] = pct(metrics.evaluate(model, x, y, attack))
out["suspect_reest"] = pct(metrics.evaluate(reest(model), x, y, attack))
p1, r1 = clp.clp(model, u=u)
out["clp1"] = pct(metrics.evaluate(p1, x, y, attack))
p1r = reest(p1)
out["clp1_reest"] = pct(metrics.evaluate(p1r, x, y, attack))
out["clp1_pruned"] = {l["bn"]: l["pruned"] for l in r1["layers"] if l["pruned"]}
print(out, flush=True)
# second pass: bounds with the re-estimated statistics
p2r, r2 = clp.clp(p1r, u=u)
second = {l["bn"]: l["pruned"] for l in r2["layers"] if l["pruned"]}
out["clp2_pruned"] = second
out["clp2_reest_model"] = pct(metrics.evaluate(p2r, x, y, attack))
p2 = (pruning.zero_bn_channels(p1, {k: np.array(v) for k, v in second.items()}, beta=True)
      if second else p1)
out["clp2_original_stats"] = pct(metrics.evaluate(p2, x, y, attack))
out["clp2_original_stats_reest"] = pct(metrics.evaluate(reest(p2), x, y, attack))
print(out, flush=True)
json.dump(out, open(f"benchmarks/work/clp/reest_{name}.json", "w"), indent=1)
