"""Probe: where does the kcc recipe's accuracy go? Unlearning from the refitted student, on the
last stage only, at other step sizes and optimisers, with better synthetic images.

Distillation on synthetic images is what costs the kcc recipe its accuracy (revision 22, cr 2:
4-13 points under the suspect on every flagged model), while the closed-form refit alone keeps
0.6-1.9 points of it but keeps the backdoor. Here the recipe runs up to its distillation once
per model (`prepare`: truncation, synthesis, scan, the triggers it would unlearn; cached in
benchmarks/work/late/NAME_crCR.pkl), and then each variant distils with unlearning exactly as
`kcc.unlearning.distill` does (same loss, schedule, BatchNorm re-estimation and choice of
epoch), from:

* `START=truncated` (the recipe) or `START=refit` (`kcc.refit` first);
* `TRAIN=all` or `TRAIN=stageK`: only the layers from the first one named `stageK...` on train
  (the head included); the frozen layers' BatchNorm runs in inference mode with the suspect's
  statistics, which the per-epoch re-estimation leaves alone (a frozen BatchNorm ignores
  `training=True`);
* `LR`: the peak learning rate (1e-3 in the recipe);
* `OPT=sgd`: SGD with momentum 0.9 instead of the recipe's Adam (same cosine schedule);
* `IMAGES`, `STEPS`: the synthetic images' number and steps (1,024 and 100 in the CPU budget);
* `BN_LR`: with Adam, the peak learning rate of the BatchNorm layers' scales and offsets
  (default `LR`: one rate for every weight); the other weights keep `LR`;
* `WEIGHT`: the unlearning term's weight (`unlearning_weight`, 1 in the recipe);
* `SAVE=PATH`: the kept student's weights also written to PATH (`.weights.h5`), and those it
  started distillation from to PATH with `.start` before the suffix;
* `QDITHER=random` or `mixed`: a quantise trigger is stamped with per-image uniform dither
  offsets in (-0.5, 0.5) steps (random dithering) instead of its own plain or Bayer offsets,
  for every stamped image (`random`) or half of them (`mixed`): does unlearning the family of
  dithers remove a backdoor whose trigger dithers otherwise (BPP's error diffusion)?
* `NOTRIG=1`: nothing unlearned, distillation alone (diagnosis: what distillation itself costs;
  the held-out triggers are still measured).

After every epoch the test slice's ACC / ASR is recorded for diagnosis only (the choice of
epoch is `SyntheticValidation`'s, on synthetic images). The kept model is also measured after
BatchNorm re-estimation on the held-aside synthetic images and after the recipe's 2-epoch
fine-tune (`kcc.recipe.refreshed`, `fine_tuned`), as the recipe's rows are. A row's
`seconds.refit` covers everything before distillation: truncation, the test evaluations, and
the refit when `START=refit`.

Usage (repository root; a cached preparation is reused):

    KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax START=refit TRAIN=stage4 \\
        python benchmarks/results/probes/probe_late_unlearning.py NAME [CR]

Writes rows to `benchmarks/results/probes/late_unlearning.json` (key NAME|crCR|variant).
"""
import json, os, pickle, sys, time, types
sys.path.insert(0, "benchmarks")
sys.path.insert(0, os.path.dirname(__file__))
import keras
import probe_setup
import zoo
from keras import ops
from kcc import recipe, refit, rewrite, saving, unlearning
from kcc.scan import quantisation

OUT = "benchmarks/results/probes/late_unlearning.json"
name = sys.argv[1]
cr = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
START = os.environ.get("START", "truncated")
TRAIN = os.environ.get("TRAIN", "all")
LR = float(os.environ.get("LR", "1e-3"))
BN_LR = float(os.environ.get("BN_LR", LR))
WEIGHT = float(os.environ.get("WEIGHT", "1"))
OPT = os.environ.get("OPT", "adam")  # adam (the recipe's) or sgd (momentum 0.9)
QDITHER = os.environ.get("QDITHER", "")
NOTRIG = os.environ.get("NOTRIG") == "1"  # distillation alone: nothing unlearned (diagnosis)
STEPS = int(os.environ.get("STEPS", probe_setup.BUDGET["synthesis_steps"]))
IMAGES = int(os.environ.get("IMAGES", probe_setup.BUDGET["num_images"]))
BUDGET = {**probe_setup.BUDGET, "synthesis_steps": STEPS, "num_images": IMAGES}
#: Images other than the CPU budget's name the cache and the variant.
OTHER_IMAGES = (IMAGES, STEPS) != (probe_setup.BUDGET["num_images"],
                                   probe_setup.BUDGET["synthesis_steps"])
cache = f"benchmarks/work/late/{name}_cr{cr:g}" + (
    f"_{IMAGES}x{STEPS}" if OTHER_IMAGES else "") + ".pkl"
model, attack, x, y, _ = zoo.load_entry(name, 100)


def ev(m):
    return probe_setup.scores(m, x, y, attack)


class Traced(unlearning.SyntheticValidation):
    trace = []

    def _consider(self, epoch, logs):
        super()._consider(epoch, logs)
        Traced.trace.append({**self.history[-1], "test": ev(self.student)})
        print(Traced.trace[-1], flush=True)


if not os.path.exists(cache):
    probe_setup.cache_distillation_inputs(name, model, cr, cache, BUDGET)
prep = pickle.load(open(cache, "rb"))
variant = f"start={START},train={TRAIN},lr={LR:g}" + (
    f",bn_lr={BN_LR:g}" if BN_LR != LR else "") + (
    f",weight={WEIGHT:g}" if WEIGHT != 1 else "") + (
    f",{OPT}" if OPT != "adam" else "") + (
    ",notrig" if NOTRIG else "") + (
    f",qdither={QDITHER}" if QDITHER else "") + (
    f",images={IMAGES}x{STEPS}" if OTHER_IMAGES else "")
if NOTRIG:
    prep["triggers"] = []
start = time.time()
student, _ = rewrite.compress(model, cr, float("inf"))
row = {"truncated": ev(student)}
if START == "refit":
    refit.refit(model, student, prep["images"], verbose=False)
    row["refit"] = ev(student)
seconds = {"refit": round(time.time() - start, 1)}
if os.environ.get("SAVE"):
    student.save_weights(os.environ["SAVE"].replace(".weights.h5", ".start.weights.h5"))
frozen = []
if TRAIN != "all":
    names = [layer.name for layer in student.layers]
    first = next(i for i, n in enumerate(names) if n.startswith(TRAIN))
    frozen = [layer for layer in student.layers[:first] if layer.weights]

# `distill` makes every layer trainable; freeze inside it, after that, by wrapping the distiller.
plain_distiller = unlearning.UnlearningDistiller


class Distiller(plain_distiller):
    def __init__(self, teacher, student_, *args, **kwargs):
        for layer in frozen:
            layer.trainable = False
        super().__init__(teacher, student_, *args, **kwargs)

    def stamp(self, x, pick=None):
        if not (QDITHER and self.any_quantise):
            return super().stamp(x, pick)

        def quantise(images, step, dither):  # the same rounding, other dither offsets
            offsets = keras.random.uniform(ops.shape(images[..., :1]), -0.5, 0.5,
                                           seed=self.seed_generator)
            if QDITHER == "mixed":
                coin = keras.random.uniform((ops.shape(images)[0], 1, 1, 1),
                                            seed=self.seed_generator)
                offsets = ops.where(coin < 0.5, offsets, dither)
            return quantisation.quantise(images, step, offsets)

        unlearning.quantisation = types.SimpleNamespace(quantise=quantise)
        try:
            return super().stamp(x, pick)
        finally:
            unlearning.quantisation = quantisation


unlearning.UnlearningDistiller = Distiller
if OPT == "sgd":  # `distill` builds Adam(schedule); the probe swaps in SGD with momentum 0.9
    keras.optimizers.Adam = lambda schedule: keras.optimizers.SGD(schedule, momentum=0.9)
if BN_LR != LR:  # `distill` builds Adam(schedule); this one scales BatchNorm's steps
    bn_paths = {v.path for layer in student.layers
                if isinstance(layer, keras.layers.BatchNormalization)
                for v in layer.trainable_weights}

    class TwoRateAdam(keras.optimizers.Adam):
        def update_step(self, gradient, variable, learning_rate):
            if variable.path in bn_paths:
                learning_rate = learning_rate * (BN_LR / LR)
            super().update_step(gradient, variable, learning_rate)

    keras.optimizers.Adam = TwoRateAdam
    print(f"{len(bn_paths)} BatchNorm weights at peak rate {BN_LR:g}", flush=True)
unlearning.SyntheticValidation = Traced
start = time.time()
history, validation = unlearning.distill(
    model, student, prep["images"], prep["val"], prep["triggers"], epochs=20, batch_size=128,
    learning_rate=LR, unlearning_weight=WEIGHT, verbose=False,
    held_out_triggers=prep["held_out"])
seconds["distillation"] = round(time.time() - start, 1)
if os.environ.get("SAVE"):
    student.save_weights(os.environ["SAVE"])
row.update({
    "command": f"START={START} TRAIN={TRAIN} LR={LR:g} BN_LR={BN_LR:g} WEIGHT={WEIGHT:g} "
               f"NOTRIG={int(NOTRIG)} QDITHER={QDITHER} "
               f"OPT={OPT} STEPS={STEPS} IMAGES={IMAGES} "
               "KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax python "
               + " ".join(sys.argv),
    "trainable_layers": len([l for l in student.layers if l.weights]) - len(frozen),
    "chosen_epoch": validation.chosen_epoch, "purified": ev(student),
    "bn_reestimated": ev(recipe.refreshed(student, prep["val"])),
    "fine_tuned": ev(recipe.fine_tuned(student, prep["images"])),
    "unlearned": [{"kind": t.kind, "target": t.target, "size": float(t.size)}
                  for t in prep["triggers"]],
    "trace": Traced.trace, "seconds": seconds, "machine": zoo.machine(),
})
rows = json.load(open(OUT)) if os.path.exists(OUT) else {}
rows[f"{name}|cr{cr:g}|{variant}"] = row
saving.write_json(rows, OUT)
print(name, variant, "truncated", row["truncated"], "refit", row.get("refit"), "purified",
      row["purified"], "re-est", row["bn_reestimated"], "fine-tuned", row["fine_tuned"],
      "epoch", row["chosen_epoch"])
