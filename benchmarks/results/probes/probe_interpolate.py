"""Probe: does interpolating weights (WiSE-FT) trade the recipe's accuracy loss for less of the
backdoor than the learning rate does?

The kcc recipe's distillation at Adam 1e-3 removes Blended's backdoor and costs accuracy; at
1e-4 it keeps accuracy and keeps the backdoor (`late_unlearning.json`). Here the weights of
the student before distillation (`A`: the truncated suspect, or a `.weights.h5`) and after it
(`B`, a `.weights.h5` that `probe_late_unlearning.py` wrote with `SAVE=`; with `START=refit`
there, `A` is the refitted student it also wrote, `*.start.weights.h5`) are mixed,
`(1 - alpha) * A + alpha * B` for every weight, the BatchNorm statistics re-estimated on the
synthetic training images as `kcc.unlearning.SyntheticValidation` does, and each mix measured:
test ACC / ASR / RA (diagnosis only) and what the recipe could see without data (agreement
with the suspect and the unlearned and held-out triggers' rates on the held-aside synthetic
images).

With `FRESH=0.5,1` (alphas) in the environment, at those mixes triggers of every kind are also
inverted anew on the mix itself (the scan's CPU inversion budget, on 256 synthetic training
images, for the unlearned triggers' targets; `fresh`: each one's size and its rate on the
held-aside images): does inversion find again, at a small alpha, the backdoor that the
unlearned triggers' rates do not see?

With `BLEND=1`, at every mix also the suspect's max-margin image of each unlearned trigger's
target (`kcc.scan.max_margin.max_margin` at the scan's CPU budget) blended into the held-aside
synthetic images at weights 0.05-0.5 (`blend`: `kcc.interpolation.blend_curve`, the share sent
to the target at each weight; the scan's `blend_trigger` reads the smallest weight reaching
0.9): does the backdoor's own
image, which no trigger unlearned on the models where it was not flagged, see what the
unlearned triggers' rates do not?

With `QRANDOM=1`, at every mix also each unlearned quantise trigger's rate (held-aside images,
teacher's labels, as the epoch rule measures) when its dither offsets are replaced by one
fixed draw of white noise in (-0.5, 0.5) steps (seed 0; `qrandom`): on BPP's CPU-budget
student (14% test ASR) Bayer dither sent 0.8% of the images to the target and random dither
(drawn per image) 17.5%; does it grow with the mix as ASR does? Not until ASR has (that
student, cr 2: 0.127 / 0.100 / 0.109 / 0.109 / 0.136 / 0.182 at alpha 1 / 0.9 / 0.8 / 0.7 /
0.6 / 0.5, test ASR 14.11 / 16.44 / 19.78 / 22.89 / 26.89 / 31.67%).

Reference: Wortsman et al., "Robust fine-tuning of zero-shot models" (WiSE-FT), CVPR 2022.

Usage (repository root; the cached preparation of `probe_late_unlearning.py` is needed):

    KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax A=truncated B=PATH.weights.h5 \\
        python benchmarks/results/probes/probe_interpolate.py NAME CACHE.pkl [CR]

Writes rows to `benchmarks/results/probes/interpolation.json` (key NAME|crCR|B).
"""
import json, os, pickle, sys, time
sys.path.insert(0, "benchmarks")
sys.path.insert(0, os.path.dirname(__file__))
import numpy as np
import probe_setup
import zoo
from kcc import distillation, interpolation, refit, rewrite, saving, scan, training, unlearning

OUT = "benchmarks/results/probes/interpolation.json"
ALPHAS = (0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
name, cache = sys.argv[1], sys.argv[2]
cr = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
A, B = os.environ.get("A", "truncated"), os.environ["B"]
FRESH = tuple(float(a) for a in os.environ.get("FRESH", "").split(",") if a)
BLEND = os.environ.get("BLEND") == "1"
QRANDOM = os.environ.get("QRANDOM") == "1"
model, attack, x, y, _ = zoo.load_entry(name, 100)
prep = pickle.load(open(cache, "rb"))
student, _ = rewrite.compress(model, cr, float("inf"))
if A == "refit":  # the truncated layers refitted to the suspect on the cached images
    refit.refit(model, student, prep["images"], verbose=False)
elif A != "truncated":
    student.load_weights(A)
start_weights = [np.array(w) for w in student.get_weights()]
student.load_weights(B)
end_weights = [np.array(w) for w in student.get_weights()]
calibration = unlearning.calibration_images(prep["images"])
validation = unlearning.SyntheticValidation(model, student, prep["val"], prep["triggers"],
                                            held_out_triggers=prep["held_out"])
targets = sorted({t.target for t in prep["triggers"]})
if BLEND:
    margin_images = scan.max_margin.max_margin(model, scan.BUDGETS["cpu"]["margin_images"],
                                               scan.BUDGETS["cpu"]["margin_steps"],
                                               verbose=False)[1]
if QRANDOM:  # each unlearned quantise trigger with one fixed draw of white-noise offsets
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, prep["val"].shape[1:3] + (1,))
    random_dithered = [scan.inversion.Trigger("quantise", t.target, noise.astype(np.float32),
                                              None, t.size)
                       for t in prep["triggers"] if t.kind == "quantise"]
rows = []
start = time.time()
for alpha in ALPHAS:
    student.set_weights(interpolation.mix(start_weights, end_weights, alpha))
    distillation.reestimate_batchnorm(student, calibration)
    agreement, rate, held_out = validation.measure()
    rows.append({"alpha": alpha, "test": probe_setup.scores(student, x, y, attack),
                 "agreement": agreement, "trigger_rate": rate,
                 "held_out_trigger_rate": held_out})
    if BLEND:
        labels = training.predict_labels(student, prep["val"])
        rows[-1]["blend"] = {str(t): dict(zip(map(str, interpolation.BLEND_WEIGHTS), map(
            float, interpolation.blend_curve(student, margin_images[t], t, prep["val"], labels))))
            for t in targets}
    if QRANDOM:
        rows[-1]["qrandom"] = [float(scan.inversion.flip_rate(
            student, t, prep["val"], validation.teacher_labels)) for t in random_dithered]
    if alpha in FRESH:
        budget = scan.BUDGETS["cpu"]
        fit = prep["images"][:256]
        fresh = scan.inversion.invert_triggers(
            student, fit, training.predict_labels(student, fit), budget["inversion_steps"],
            budget["inversion_batch_size"], classes=targets, verbose=False)
        found = [t for kind in fresh for t in fresh[kind]]
        scan.inversion.flip_rates(student, found, prep["val"],
                                  training.predict_labels(student, prep["val"]))
        rows[-1]["fresh"] = [{"kind": t.kind, "target": t.target, "size": float(t.size),
                              "flip_rate": float(t.flip_rate)} for t in found]
    print(rows[-1], flush=True)
results = json.load(open(OUT)) if os.path.exists(OUT) else {}
results[f"{name}|cr{cr:g}|{os.path.basename(B)}" + ("|A=refit" if A == "refit" else "") + ("|fresh" if FRESH else "")
        + ("|blend" if BLEND else "") + ("|qrandom" if QRANDOM else "")] = {
    "command": f"A={A} B={B} FRESH={os.environ.get('FRESH', '')} BLEND={int(BLEND)} "
               f"QRANDOM={int(QRANDOM)} "
               "KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax python "
               + " ".join(sys.argv),
    "rows": rows, "seconds": round(time.time() - start, 1), "machine": zoo.machine()}
saving.write_json(results, OUT)
