"""The scan (CPU budget, seed 0, as `kcc.recipe` runs it) on zoo models: the suspected targets
and every class's blend weight, flip rate and p-value (`blend_trigger_*`), i.e. whose
max-margin image `kcc.recipe.blend_triggers` unlearns. No test image is used. Made by (one
core, JAX; stopped after three models, `blend_gate.json`; adaptive_blended_all2one added
later, with the scan's quantisation record, revision 18):

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax python \
        benchmarks/results/probes/probe_blend_gate.py \
        badnets_all2one,blended_all2one,trojan_all2one,wanet_all2one,clean
"""
import sys, json, os
sys.path.insert(0, "benchmarks")
import zoo
from kcc import scan
OUT = "benchmarks/results/probes/blend_gate.json"
out = json.load(open(OUT)) if os.path.exists(OUT) else {}
for name in sys.argv[1].split(","):
    model, *_ = zoo.load_entry(name, 1)
    r = scan.scan(model, seed=0, verbose=False, **scan.BUDGETS["cpu"])
    blend = [(row["class"], row.get("blend_trigger_size"),
              round(row.get("blend_trigger_flip_rate", -1), 3), row.get("blend_trigger_p"))
             for row in r.per_class]
    quantise = [(row["class"], row.get("quantise_trigger_size"),
                 row.get("quantise_trigger_flip_rate")) for row in r.per_class]
    out[name] = {"targets": r.target_classes, "seconds": r.seconds, "blend": blend,
                 "quantise": quantise}
    print(name, json.dumps(out[name]), flush=True)
    json.dump(out, open(OUT, "w"), indent=1)
