"""Interpolating the distilled student back towards its start, as far as the backdoor allows.

Distillation with unlearning (`kcc.unlearning.distill`, Adam 1e-3) removes a backdoor and costs
accuracy; at 1e-4 it keeps accuracy and keeps the backdoor. Mixing every weight of the student
before distillation (`start`, the truncated suspect) with the distilled one (`end`),

    w(alpha) = (1 - alpha) * start + alpha * end,    alpha in [0, 1],          (WiSE-FT)

with the BatchNorm statistics re-estimated on the synthetic training images, traces a better
line than the learning rate does (cr 2, 200-step images, `benchmarks/results/probes/
interpolation.json`): BadNets 80.5% / 0.89% at alpha 0.5 against 75.9% / 0.56% distilled, BPP
81.6% / 3.56% against 77.9% / 0.89%. But the backdoor comes back as alpha falls, and how far
may only be read without data. The unlearned triggers' rates on held-aside synthetic images
cannot read it where they are not the attack's trigger: on adaptive Blended they stay at
0-0.018 from alpha 1 to 0.5 while test ASR climbs 11% -> 40%. What can (same file, rows
`|blend`): the suspect's own max-margin image of the target (`kcc.scan.max_margin`), blended
into the held-aside images at weights 0.05-0.5 (`blend_curve`). On adaptive Blended the share
it sends to the target at weight 0.35 falls with alpha as ASR does (0.91 at alpha 0.5, 0.61 at
0.8, 0.35 at 1); on Blended (weight 0.5: 0.79, 0.03, 0 at alpha 0.5, 0.8, 1), LF alike; on
BadNets it is flat at 0 from alpha 0.5 to 1, where ASR is 0.56-0.89%.

So, going down from alpha 1 through `ALPHAS`, a mix is accepted when

1. for every suspected target, at every weight of `BLEND_WEIGHTS`, its max-margin image sends
   at most `TOLERANCE` more of the held-aside images to it than at alpha 1, and
2. the unlearned and the held-out triggers' rates each stay at most
   `max(max_trigger_rate, RATE_SLACK * its alpha-1 value)` (the epoch rule's test,
   `kcc.unlearning.SyntheticValidation`),

and the smallest alpha reached before the first rejection is kept. Every number the rule reads
comes from synthetic images.

An untargeted trigger (an all-to-all backdoor, `kcc.scan.untargeted`) has no target, so no
max-margin image reads its return, and its own rate is blind to it: on `badnets_all2all` the
untargeted patch's rate stayed at 0.19-0.26 from alpha 1 to 0.5 while test ASR rose from 2.8%
(distilled) to 7.8% at cr 2 and 11.8% at cr 3 (revision 26, `benchmarks/results/
recipe_zoo.json`); on the tests' planted all-to-all model the share of stamped images moved to
`y + 1` rose to 0.26 at alpha 0.6. So when any unlearned trigger has no target, only alpha 1 is
tried (revision 30).

Reference: Wortsman et al., "Robust fine-tuning of zero-shot models" (WiSE-FT), CVPR 2022 (the
weight-space mix); the stopping rule is kcc's.
"""

import numpy as np

from kcc import distillation
from kcc import training
from kcc import unlearning
from kcc.scan import inversion
from kcc.scan import max_margin

#: Mixes tried, from the distilled student down (alpha = 1 is the distilled student itself).
ALPHAS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
#: Weights at which a max-margin image is blended into the held-aside images (`blend_curve`).
BLEND_WEIGHTS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
#: How much more of the held-aside images a mix's blended max-margin image may send to the
#: target than the distilled student's, at any weight (about 6 of the 128 images held aside at
#: the CPU budget).
TOLERANCE = 0.05


def mix(start, end, alpha):
    """`(1 - alpha) * start + alpha * end` for every pair of floating-point arrays of two weight
    lists; other arrays (e.g. a random generator's integer state) are taken from `end`."""
    return [(1.0 - alpha) * np.asarray(a) + alpha * np.asarray(b)
            if np.issubdtype(np.asarray(b).dtype, np.floating) else np.asarray(b)
            for a, b in zip(start, end)]


def blend_curve(model, margin_image, target, images, labels=None):
    """The share of `images` `(N, H, W, C)` (those `model` does not already put in `target`)
    that `margin_image` `(H, W, C)` in [0, 1], blended in at each weight `a` of
    `BLEND_WEIGHTS` as `(1 - a) * x + a * margin_image`, sends to `target`; float64
    `(len(BLEND_WEIGHTS),)`. `labels`: `model`'s classes of `images` (predicted when None)."""
    labels = training.predict_labels(model, images) if labels is None else labels
    return np.array([inversion.flip_rate(model, max_margin.blended(margin_image, target, weight),
                                         images, labels)
                     for weight in BLEND_WEIGHTS], np.float64)


def interpolate(student, start, validation, margin_images, targets, alphas=None,
                tolerance=None, verbose=True):
    """Sets `student` to the smallest accepted mix of `start` and its weights (module doc).

    Args:
        student: the distilled student (its weights are the mix's `end`); changed in place.
        start: the student's weights before distillation (`student.get_weights()` then).
        validation: the `kcc.unlearning.SyntheticValidation` of the distillation: its
            held-aside images, triggers, `max_trigger_rate` and calibration images are used.
        margin_images: `(K, H, W, C)` in [0, 1], each class's max-margin image of the suspect
            (`kcc.scan.ScanReport.margin_images`).
        targets: the suspected target classes.
        alphas: mixes tried in order, the first being 1 (the distilled student); default
            `ALPHAS`. Only the first is tried when an unlearned trigger of `validation` has
            no target (module doc).
        tolerance: see `TOLERANCE` (its default).
        verbose: one line per mix.

    Returns:
        a JSON-serialisable dict: `alpha` (the one kept) and `mixes`, per mix tried its
        agreement with the suspect, both trigger rates, each target's `blend_curve` and whether
        it was accepted.
    """
    alphas = ALPHAS if alphas is None else alphas
    if any(t.target is None for t in validation.triggers):  # nothing reads its return
        alphas = alphas[:1]
    tolerance = TOLERANCE if tolerance is None else tolerance
    end = [np.array(w) for w in student.get_weights()]
    images = validation.images
    reference_rates = reference_curves = kept_weights = None
    mixes, kept = [], alphas[0]
    for alpha in alphas:
        student.set_weights(mix(start, end, alpha))
        if validation.calibration_images is not None:
            distillation.reestimate_batchnorm(student, validation.calibration_images)
        agreement, rate, held_out = validation.measure()
        labels = training.predict_labels(student, images)
        curves = {int(t): blend_curve(student, margin_images[t], t, images, labels)
                  for t in targets}
        if reference_curves is None:
            reference_rates, reference_curves = (rate, held_out), curves
        accepted = (all(np.all(curves[t] <= reference_curves[t] + tolerance) for t in curves)
                    and unlearning.rates_pass((rate, held_out), reference_rates,
                                              validation.max_trigger_rate))
        mixes.append({"alpha": alpha, "agreement": agreement, "trigger_rate": rate,
                      "held_out_trigger_rate": held_out, "accepted": bool(accepted),
                      "blend": {str(t): [round(float(v), 4) for v in c]
                                for t, c in curves.items()}})
        if verbose:
            gain = max((float(np.max(c - reference_curves[t])) for t, c in curves.items()),
                       default=0.0)
            print(f"  alpha {alpha:g}: agreement {agreement:.3f}, trigger rates {rate:.3f} / "
                  f"{held_out:.3f}, blended max-margin images gain {gain:+.3f} on alpha "
                  f"{alphas[0]:g}: {'accepted' if accepted else 'rejected'}")
        if not accepted:
            break
        kept, kept_weights = alpha, [np.array(w) for w in student.get_weights()]
    # The kept mix as measured, its BatchNorm statistics included (the distilled student when
    # not even alpha 1 passed, which only a negative tolerance makes possible).
    student.set_weights(kept_weights if kept_weights is not None else end)
    return {"alpha": kept, "mixes": mixes}


__all__ = ["ALPHAS", "BLEND_WEIGHTS", "TOLERANCE", "blend_curve", "interpolate", "mix"]
