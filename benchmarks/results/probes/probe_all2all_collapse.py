"""Probe: why does the recipe cost `wanet_all2all` 27 points of accuracy?

Revision 32 at cr 2 (Intel Xeon model 207): the scan flags class 3 (p = 2.1e-6), which an
all-to-all attack does not have; the four triggers inverted for it (local, global, warp,
smooth) are unlearned, and the purified student ends at 53.10% / ASR 67.20% against the
suspect's 79.70% / 62.40% while its held-aside agreement with the suspect stays 0.82 (0.80 on
`badnets_all2one`, which keeps 79.00%). Which part of the distillation costs the accuracy?

The recipe runs once up to its distillation (`kcc.recipe.purify_kcc` at the CPU budget of
`benchmarks/recipe_zoo.py`, revision 32; cached in `benchmarks/work/collapse/NAME_crCR.pkl`:
synthetic images, held-aside images, triggers, held-out triggers, the truncated student's
weights), then `VARIANT` distils from the truncated student exactly as `kcc.unlearning.distill`
does with one thing changed:

* `full`: nothing (the recipe);
* `notrig`: nothing unlearned (distillation with hints alone; no target suppressed);
* `nosuppress`: the triggers unlearned but no target's logit lowered (`suppress_targets` off);
* `suppressonly`: nothing unlearned, the suspected targets' logits lowered;
* `kind=K`: only the triggers of kind K unlearned (K one of local, global, warp, smooth, ...);
* `nohints`: `hint_weight` 0;
* `noreest`: the student's BatchNorm statistics are not re-estimated on the synthetic images
  after every epoch (they stay as training's moving averages left them).

Beside the variant, `LR` sets the peak learning rate (the recipe's 1e-3) and `ANCHOR` adds
L2-SP's pull towards the truncated weights (Li et al., "Explicit Inductive Bias for Transfer
Learning with Convolutional Networks", ICML 2018): `ANCHOR * mean_l ||w_l - w0_l||^2 /
||w0_l||^2` over the student's trainable tensors `w_l` (`w0_l` their truncated values); both
name the row when set. `FILTER=flip` distils only on the synthetic training images whose
class, by the suspect, a horizontal flip leaves unchanged (`flipshift`: and a 3-pixel shift).

After every epoch the test slice's ACC / ASR and the share of its clean images the student puts
in each class are recorded for diagnosis only; the epoch kept is `SyntheticValidation`'s.
Usage (repository root):

    KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax VARIANT=notrig \\
        python benchmarks/results/probes/probe_all2all_collapse.py wanet_all2all [CR]

Also run on `badnets_all2all` (the recipe's all-to-all success) for comparison.
Writes rows to `benchmarks/results/probes/all2all_collapse.json` (key
NAME|crCR|VARIANT[,filter=..][,lr=..][,anchor=..]).
"""
import json, os, pickle, sys, time
sys.path.insert(0, "benchmarks")
sys.path.insert(0, os.path.dirname(__file__))
import numpy as np
import probe_setup
import zoo
from keras import ops
from kcc import depthwise, rewrite, saving, training, unlearning

OUT = "benchmarks/results/probes/all2all_collapse.json"
name = sys.argv[1]
cr = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
VARIANT = os.environ.get("VARIANT", "full")
HINT_WEIGHT = 200.0  # the recipe's (revision 32)
LR = float(os.environ.get("LR", probe_setup.BUDGET["learning_rate"]))
ANCHOR = float(os.environ.get("ANCHOR", "0"))
FILTER = os.environ.get("FILTER", "")
KEY = VARIANT + (f",filter={FILTER}" if FILTER else "") + (
    f",lr={LR:g}" if LR != probe_setup.BUDGET["learning_rate"] else "") + (
    f",anchor={ANCHOR:g}" if ANCHOR else "")
cache = f"benchmarks/work/collapse/{name}_cr{cr:g}.pkl"
model, attack, x, y, _ = zoo.load_entry(name, 100)
num_classes = int(model.outputs[0].shape[-1])


def ev(m):
    row = probe_setup.scores(m, x, y, attack)
    predicted = training.predict_labels(m, x)
    row["predicted_share"] = np.round(np.bincount(predicted, minlength=num_classes)
                                      / len(x), 3).tolist()
    row["class_acc"] = [round(float(np.mean(predicted[y == c] == c)), 3)
                        for c in range(num_classes)]
    # The all-to-all target of a clean image (its class + 1): does the student fire the
    # backdoor on clean images?
    row["next_class_share"] = round(float(np.mean(predicted == (y + 1) % num_classes)), 3)
    return row


class Traced(unlearning.SyntheticValidation):
    trace = []

    def _consider(self, epoch, logs):
        super()._consider(epoch, logs)
        Traced.trace.append({**self.history[-1], "test": ev(self.student)})
        test = Traced.trace[-1]["test"]
        print(epoch + 1, test["acc"], test["asr"], test["next_class_share"],
              Traced.trace[-1]["agreement"], flush=True)


if not os.path.exists(cache):
    probe_setup.cache_distillation_inputs(name, model, cr, cache)
prep = pickle.load(open(cache, "rb"))
triggers, suppress, hint_weight = prep["triggers"], True, HINT_WEIGHT
if VARIANT == "notrig":
    triggers = []
elif VARIANT == "nosuppress":
    suppress = False
elif VARIANT == "suppressonly":
    triggers = []
elif VARIANT.startswith("kind="):
    triggers = [t for t in triggers if t.kind == VARIANT[5:]]
elif VARIANT == "nohints":
    hint_weight = 0.0
elif VARIANT == "noreest":
    unlearning.calibration_images = lambda images: None
elif VARIANT != "full":
    raise SystemExit(f"unknown VARIANT {VARIANT}")
targets = sorted({t.target for t in prep["triggers"] if t.target is not None})

plain_distiller = unlearning.UnlearningDistiller


class Distiller(plain_distiller):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.anchors = [(v, np.array(v), max(float(np.sum(np.square(np.array(v)))), 1e-12))
                        for v in self.student.trainable_weights] if ANCHOR else []

    def compute_loss(self, *args, **kwargs):
        loss = super().compute_loss(*args, **kwargs)
        if self.anchors:
            drift = [ops.sum(ops.square(v.value - w0)) / norm for v, w0, norm in self.anchors]
            loss = loss + ANCHOR * ops.mean(ops.stack(drift))
        return loss

    def _targets(self, unlearned):
        chosen = np.zeros((self.num_classes,), np.float32)
        if VARIANT == "suppressonly":
            chosen[targets] = 1.0
            return chosen
        return super()._targets(unlearned) if suppress else chosen


unlearning.UnlearningDistiller = Distiller
unlearning.SyntheticValidation = Traced
kept = len(prep["images"])
if FILTER:
    labels = training.predict_labels(model, prep["images"])
    stable = training.predict_labels(model, prep["images"][:, :, ::-1]) == labels
    if FILTER == "flipshift":
        stable &= training.predict_labels(model, np.roll(prep["images"], 3, axis=2)) == labels
    elif FILTER != "flip":
        raise SystemExit(f"unknown FILTER {FILTER}")
    prep["images"] = prep["images"][stable]
    kept = int(stable.sum())
    print(f"{kept} of {len(stable)} training images kept", flush=True)
compressed, _ = rewrite.compress(model, cr, float("inf"), relative=True)
teacher, student = depthwise.twin(model), depthwise.twin(compressed)
student.set_weights(prep["weights"])
start = time.time()
history, validation = unlearning.distill(
    teacher, student, prep["images"], prep["val"], triggers, epochs=20, batch_size=128,
    learning_rate=LR, verbose=False,
    held_out_triggers=prep["held_out"], hint_weight=hint_weight)
seconds = round(time.time() - start, 1)
row = {
    "command": f"VARIANT={VARIANT} LR={LR:g} ANCHOR={ANCHOR:g} FILTER={FILTER} "
               "KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax python " + " ".join(sys.argv),
    "unlearned": [{"kind": t.kind, "target": t.target, "size": float(t.size)}
                  for t in triggers],
    "suppressed": targets if (suppress and triggers) or VARIANT == "suppressonly" else [],
    "hint_weight": hint_weight, "training_images": kept, "chosen_epoch": validation.chosen_epoch,
    "purified": ev(student), "suspect": ev(teacher), "trace": Traced.trace,
    "seconds": seconds, "machine": zoo.machine(),
}
rows = json.load(open(OUT)) if os.path.exists(OUT) else {}
rows[f"{name}|cr{cr:g}|{KEY}"] = row
saving.write_json(rows, OUT)
print(name, KEY, "purified", {k: row["purified"][k] for k in ("acc", "asr")},
      "epoch", row["chosen_epoch"])
