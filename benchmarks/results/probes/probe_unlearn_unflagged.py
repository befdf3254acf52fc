"""Probe: revision 8's rule for a model the scan does not flag (unlearn every class's inverted
triggers while distilling) against revision 9's refit, on the same budget as recipe_zoo.py.
usage: KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax \
           python benchmarks/results/probes/probe_unlearn_unflagged.py badnets_all2all"""
import json, sys, time
sys.path.insert(0, "benchmarks")
import zoo
from kcc import recipe, scan
from kcc.scan import inversion

def every_trigger(report):  # revision 8's unlearning_triggers for an unflagged scan
    if report.backdoored:
        return _flagged(report)
    return [t for kind in inversion.KINDS for t in report.triggers.get(kind, [])]

_flagged = recipe.unlearning_triggers
recipe.unlearning_triggers = every_trigger
name = sys.argv[1]
model, attack, x, y, _ = zoo.load_entry(name, 100)
start = time.time()
_, report = recipe.purify_kcc(model, cr=2.0, num_images=1024, synthesis_steps=100, epochs=20,
                              learning_rate=1e-3, unlearning_weight=1.0,
                              evaluation=(x, y, attack), scan_settings=scan.BUDGETS["cpu"])
out = {"model": name, "cr": 2.0, "rule": "revision 8 (every inverted trigger unlearned when unflagged)",
       "evaluation": report["evaluation"], "seconds": report["seconds"],
       "wall_seconds": round(time.time() - start, 1), "scan": report["scan"]["verdict"],
       "unlearned": len(report["unlearned_triggers"]),
       "chosen_epoch": report.get("distillation", {}).get("chosen_epoch"),
       "validation": report.get("distillation", {}).get("validation"), "machine": zoo.machine()}
json.dump(out, open(f"benchmarks/results/probes/unlearn_unflagged_{name}.json", "w"), indent=1)
print(json.dumps({k: out[k] for k in ("evaluation", "seconds", "chosen_epoch")}))
