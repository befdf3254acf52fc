"""Probe: does matching the suspect's intermediate features on clean synthetic images (besides
the logits) keep more of its accuracy through distillation with unlearning?

Revision 30 distils logits only (`kcc.unlearning`): ~900 synthetic images give 10 numbers each,
and on the zoo distillation costs 4-8 points of the truncated student's accuracy. The student
has the suspect's architecture (factored convolutions, same BatchNorm layers by name), so every
BatchNorm output can be matched too (FitNets' hints, Romero et al., ICLR 2015): on the clean
images of each training batch, the mean over layers of `mean((s_l - t_l)^2) / mean(t_l^2)`,
the student in training mode, the suspect in inference mode, weighted by `BETA` and added to
the loss. Stamped images are only distilled at the logits, as in revision 30, unless $STAMPED
gives their own hints a weight: the student's BatchNorm outputs on a stamped image against the
suspect's on the same image unstamped (revision 32 of recipe_zoo.py is BETA 200, STAMPED 200).

Usage (run from the repository root, JAX):
    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax \\
        [HINTS=batch] [STAGES=stage3,stage4] [UNLEARNING=4] \\
        [STAMPED=200] [STAMPED_STAGES=stage3,stage4] \\
        python benchmarks/results/probes/probe_feature_kd.py NAME CR BETA
BETA 0 is the recipe itself; a run caches the distillation's and the interpolation's inputs
(synthetic images, triggers, max-margin images) in benchmarks/work/fkd/ on its first pass and
later runs of the same NAME and CR start from them (only distillation and interpolation run).
Rows go to benchmarks/results/probes/feature_kd.json (its "rows"; "what" says how to read them).
It subclasses revision 30's `kcc.unlearning.UnlearningDistiller` (three outputs; run it at commit
7f9d0ce): since revision 32 the library has both hints itself (`hint_weight`).
"""
import json
import math
import os
import pickle
import sys
import time

sys.path.insert(0, "benchmarks")
sys.path.insert(0, os.path.dirname(__file__))
import keras
import numpy as np
from keras import ops

import probe_setup
import zoo
from kcc import depthwise, interpolation, recipe, rewrite, saving, synthesis
from kcc import unlearning

name, cr, beta = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
#: "batch": the hints are the suspect's features under the batch's own statistics (the
#: student's BatchNorm mode) instead of its moving statistics.
BATCH_TEACHER = os.environ.get("HINTS") == "batch"
#: Only the BatchNorm layers whose names start with one of these (comma-separated $STAGES, e.g.
#: "stage3,stage4" of the zoo's ResNet-18) give hints; all of them when unset.
STAGES = tuple(os.environ.get("STAGES", "").split(","))
#: The unlearning term's weight on the cached pass ($UNLEARNING; the CPU budget's 1 when unset).
UNLEARNING = float(os.environ.get("UNLEARNING", probe_setup.BUDGET["unlearning_weight"]))
#: Weight of the stamped hints ($STAMPED, 0 when unset): on the stamped images of the batch, the
#: student's BatchNorm outputs must match the suspect's on the same images without the trigger
#: (the unlearning term at the features), from the layers whose names start with one of
#: $STAMPED_STAGES (all when unset).
STAMPED = float(os.environ.get("STAMPED", 0))
STAMPED_STAGES = tuple(os.environ.get("STAMPED_STAGES", "").split(","))
OUT = "benchmarks/results/probes/feature_kd.json"
CACHE = f"benchmarks/work/fkd/{name}_cr{cr:g}.pkl"
plain_distill, plain_interpolate = unlearning.distill, interpolation.interpolate


class FeatureDistiller(unlearning.UnlearningDistiller):
    """`UnlearningDistiller` plus `beta` times the relative feature error of every BatchNorm
    output on the clean images of the batch."""

    def __init__(self, teacher, student, *args, **kwargs):
        super().__init__(teacher, student, *args, **kwargs)
        names = [layer.name for layer in synthesis.batchnorm_layers(student)
                 if layer.name.startswith(STAGES) or layer.name.startswith(STAMPED_STAGES)]
        self.clean_hinted = [n.startswith(STAGES) for n in names]
        self.stamp_hinted = [n.startswith(STAMPED_STAGES) for n in names]
        self.teacher_all = keras.Model(teacher.inputs, [teacher.get_layer(n).output
                                                        for n in names] + teacher.outputs)
        self.batch_teacher = None
        if BATCH_TEACHER:  # a copy of the suspect whose BatchNorm layers use batch statistics
            copy = keras.models.clone_model(teacher)
            copy.set_weights(teacher.get_weights())
            for layer in copy.layers:
                layer.trainable = isinstance(layer, keras.layers.BatchNormalization)
            self.batch_teacher = keras.Model(copy.inputs, [copy.get_layer(n).output
                                                           for n in names])
        self.student_all = keras.Model(student.inputs, [student.get_layer(n).output
                                                        for n in names] + student.outputs)
        self.beta = beta
        self.hint_tracker = keras.metrics.Mean(name="hints")

    def call(self, x, training=False):
        if self.augmenter is not None and training:
            x = self.augmenter(x, training=True)
        *t_features, t_logits = self.teacher_all(x, training=False)
        if self.batch_teacher is not None:
            t_features = self.batch_teacher(x, training=True)
        teacher = unlearning.suppress_targets(ops.stop_gradient(t_logits), self.targets)
        n = ops.shape(x)[0]
        k = (n + unlearning.STAMPED_PER_CLEAN - 1) // unlearning.STAMPED_PER_CLEAN
        both = ops.concatenate([x, self.stamp(x[:k])], axis=0) if self.num_triggers else x
        *s_features, logits = self.student_all(both, training=training)
        def relative(s, t):
            t = ops.stop_gradient(t)
            return ops.mean(ops.square(s - t)) / (ops.mean(ops.square(t)) + 1e-6)

        feature_error = ops.mean(ops.stack(
            [relative(s[:n], t) for s, t, h in zip(s_features, t_features, self.clean_hinted)
             if h]))
        stamped_error = ops.zeros(())
        if self.num_triggers and STAMPED:
            stamped_error = ops.mean(ops.stack(
                [relative(s[n:], t[:k])
                 for s, t, h in zip(s_features, t_features, self.stamp_hinted) if h]))
        stamped = logits[n:] if self.num_triggers else logits[:n]
        return teacher, logits[:n], stamped, feature_error, stamped_error

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred[:3], sample_weight, training)
        return loss + self.beta * y_pred[3] + STAMPED * y_pred[4]

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.hint_tracker.update_state(y_pred[3])
        return super().compute_metrics(x, y, y_pred[:3], sample_weight)


def main():
    model, attack, x, y, _ = entry = zoo.load_entry(name, 100)
    if beta or STAMPED:
        unlearning.UnlearningDistiller = FeatureDistiller
    start = time.time()
    if not os.path.exists(CACHE):  # the whole recipe, its distillation's inputs kept
        captured = {}

        def distill(teacher, student, images, validation_images, triggers, *a, **k):
            captured.update(images=images, validation_images=validation_images,
                            triggers=triggers, held_out=k.get("held_out_triggers", ()))
            return plain_distill(teacher, student, images, validation_images, triggers, *a, **k)

        def interpolate(student, start_weights, validation, margin_images, targets, **k):
            captured.update(margin_images=margin_images, targets=targets)
            os.makedirs(os.path.dirname(CACHE), exist_ok=True)
            pickle.dump(captured, open(CACHE, "wb"))
            return plain_interpolate(student, start_weights, validation, margin_images,
                                     targets, **k)

        unlearning.distill, interpolation.interpolate = distill, interpolate
        probe_setup.BUDGET["unlearning_weight"] = UNLEARNING
        row = probe_setup.run_recipe(name, cr, "benchmarks/work/fkd/full.json",
                                     f"30 + feature hints beta {beta:g}", entry=entry)
        evaluation, chosen = row["evaluation"], row["chosen_epoch"]
        history, alpha = row["validation"], None
    else:  # distillation and interpolation only, from the cached inputs
        c = pickle.load(open(CACHE, "rb"))
        suspect = depthwise.twin(model)
        compressed, _ = rewrite.compress(model, cr, math.inf, relative=True)
        student = depthwise.twin(compressed)
        truncated = [np.array(w) for w in student.get_weights()]
        b = probe_setup.BUDGET
        _, validation = unlearning.distill(
            suspect, student, c["images"], c["validation_images"], c["triggers"], b["epochs"],
            128, b["learning_rate"], 4.0, UNLEARNING, True, seed=0,
            held_out_triggers=c["held_out"])
        score = lambda m: probe_setup.scores(m, x, y, attack)  # noqa: E731
        evaluation = {"distilled": score(student)}
        mixed = interpolation.interpolate(student, truncated, validation, c["margin_images"],
                                          c["targets"])
        compressed.set_weights(student.get_weights())
        evaluation["purified"] = score(compressed)
        evaluation["purified, BN re-estimated"] = score(
            recipe.refreshed(compressed, c["validation_images"]))
        evaluation["purified, fine-tuned"] = score(recipe.fine_tuned(compressed, c["images"]))
        chosen, history, alpha = validation.chosen_epoch, validation.history, mixed["alpha"]
    out = json.load(open(OUT)) if os.path.exists(OUT) else {"rows": {}}
    rows = out["rows"]
    key = (f"{name}|cr{cr:g}|beta{beta:g}" + ("|batch" if BATCH_TEACHER else "")
           + (f"|{'+'.join(STAGES)}" if any(STAGES) else "")
           + (f"|unlearning{UNLEARNING:g}" if "UNLEARNING" in os.environ else "")
           + (f"|stamped{STAMPED:g}" if STAMPED else "")
           + (f"@{'+'.join(STAMPED_STAGES)}" if STAMPED and any(STAMPED_STAGES) else ""))
    rows[key] = {
        "command": " ".join(["KCC_DATA_DIR=../shared/datasets", "KERAS_BACKEND=jax",
                             *(f"{v}={os.environ[v]}" for v in ("HINTS", "STAGES", "UNLEARNING",
                                                         "STAMPED", "STAMPED_STAGES")
                               if v in os.environ), "python", *sys.argv]),
        "evaluation": evaluation, "chosen_epoch": chosen, "alpha": alpha, "validation": history,
        "seconds": round(time.time() - start, 1), "machine": zoo.machine()}
    saving.write_json(out, OUT)
    print(json.dumps(rows[key]["evaluation"]))


if __name__ == "__main__":
    main()
