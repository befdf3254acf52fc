"""Probe: which synthetic-only signal tells the epochs that removed the backdoor from those
that did not? A diagnostic trace of `kcc.recipe.purify_kcc` (the CPU budget of
`benchmarks/recipe_zoo.py`; the committed rows ran revision 13) that, after every distillation
epoch (after `SyntheticValidation` has re-estimated the student's BatchNorm statistics and
measured it), records its row and also:

* `test`: ACC / ASR / RA on the zoo's test slice (diagnosis only; the recipe never sees it);
* `scan_trigger_rate`: the held-aside rate of the scan's own triggers (not the re-inverted ones
  that are unlearned); from revision 14 `SyntheticValidation` measures it itself
  (`held_out_trigger_rate`), and the probe copies it;
* at epochs `INVERT_AT`, `fresh`: triggers of the unlearned kinds inverted anew for the target
  class on the *student* (held-aside images, the scan's inversion budget): their size against
  the suspect's re-inverted size says whether the student still has the short cut;
* with `MARGINS=1` in the environment (added at revision 18), `margins`: the *student's*
  maximum margin per class (`kcc.scan.max_margin`, the scan's CPU budget) and its p-values
  (`kcc.scan.anomaly`): does the target's margin, a statistic of no trigger shape, follow ASR?
  `INVERT_AT=` (empty) in the environment skips `fresh`.

`STEPS` and `LR` in the environment set the budget's synthesis steps and distillation rate
(default: `probe_setup.BUDGET`'s, the CPU budget); `OUT` the JSON file (default `epoch_trace.json`).

Usage (from the repository root):

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax \
        python benchmarks/results/probes/probe_epoch_trace.py NAME [CR]

Writes `benchmarks/results/probes/epoch_trace.json` (one row per model and cr).
"""
import json, os, sys
sys.path.insert(0, "benchmarks")
sys.path.insert(0, os.path.dirname(__file__))
import probe_setup
import zoo
from kcc import metrics, recipe, scan, training, unlearning

INVERT_AT = tuple(int(e) for e in os.environ.get("INVERT_AT", "0,1,2,5,10,15,20").split(",")
                  if e)
MARGINS = os.environ.get("MARGINS") == "1"
probe_setup.BUDGET.update(
    synthesis_steps=int(os.environ.get("STEPS", probe_setup.BUDGET["synthesis_steps"])),
    learning_rate=float(os.environ.get("LR", probe_setup.BUDGET["learning_rate"])))
OUT = os.environ.get("OUT", "benchmarks/results/probes/epoch_trace.json")
name = sys.argv[1]
cr = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
entry = zoo.load_entry(name, 100)
_, attack, x, y, _ = entry
stash = {}
plain_reinverted = recipe.reinverted


def reinverted(model_, triggers, images, settings, seed=0, verbose=True, labels=None,
               distribution=None):
    stash["scan_triggers"], stash["settings"] = list(triggers), settings
    fresh = plain_reinverted(model_, triggers, images, settings, seed, verbose, labels,
                             distribution)
    stash["unlearned"] = fresh
    return fresh


class Traced(unlearning.SyntheticValidation):
    """`SyntheticValidation` that also records the diagnostic row after its own measurement."""

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        stash["trace"] = []
        self.record(-1)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.record(epoch)

    def record(self, epoch):
        row = dict(self.history[-1])
        row["test"] = {k: round(100 * float(val), 2)
                       for k, val in metrics.evaluate(self.student, x, y, attack).items()
                       if k != "n_triggered"}
        row["scan_trigger_rate"] = row["held_out_trigger_rate"]
        unlearned = self.triggers
        if MARGINS:
            budget = scan.BUDGETS["cpu"]
            margins, _ = scan.max_margin.max_margin(self.student, budget["margin_images"],
                                                     budget["margin_steps"], verbose=False)
            p, _ = scan.anomaly.p_values(margins, scan.ALPHA, min_ratio=scan.MIN_RATIO)
            row["margins"] = [round(float(m), 3) for m in margins]
            row["margin_p"] = [float(v) for v in p]
        if epoch + 1 in INVERT_AT:
            kinds = {t.kind for t in unlearned}
            labels = training.predict_labels(self.student, self.images)
            fresh = scan.inversion.invert_triggers(
                self.student, self.images, labels, stash["settings"]["inversion_steps"],
                stash["settings"]["inversion_batch_size"],
                classes=sorted({t.target for t in unlearned}), verbose=False)
            scan.inversion.flip_rates(self.student, [t for k in kinds for t in fresh[k]],
                                      self.images, labels)
            row["fresh"] = [{"kind": t.kind, "target": t.target, "size": float(t.size),
                             "flip_rate": float(t.flip_rate)}
                            for kind in kinds for t in fresh[kind]]
        stash["trace"].append(row)
        print("  trace", json.dumps(row), flush=True)


recipe.reinverted, unlearning.SyntheticValidation = reinverted, Traced


def triggers(key):
    return lambda: [{"kind": t.kind, "target": t.target, "size": float(t.size)}
                    for t in stash.get(key, [])]


probe_setup.run_recipe(name, cr, OUT,
                       "22 (diagnostic trace)", entry, unlearned=triggers("unlearned"),
                       scan_triggers=triggers("scan_triggers"), trace=lambda: stash.get("trace"))
