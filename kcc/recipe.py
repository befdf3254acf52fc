"""Purification recipes: `purify(model, cr, recipe="kcc" | "paper")`.

* `"paper"`: Clean & Compact's Algorithm 1 exactly as published (`kcc.cc.purify`): scaling and
  truncation, synthesis from the compressed model, BN-only adversarial distillation.
* `"kcc"` (the default): what the measurements in `benchmarks/results/cc_findings.md` and
  `benchmarks/results/recipe_zoo.md` support. The paper's scaling costs 30-50 points of
  accuracy at CPU scale and the ASR it removes returns once BatchNorm statistics are
  re-estimated, so:

  1. **compression** by global truncation alone (Eq. 8, scaling off): `kcc.rewrite.compress`
     with `tau_scale=inf`, the threshold on each layer's singular values divided by its
     Frobenius norm (`relative=True`; revision 28): Eq. 8's raw values cut the layers whose
     kernels are small, though the BatchNorm after them undoes the scale (truncation alone
     on `clean` at cr 3: 71.9% raw, 81.0% relative; MobileNetV2 at cr 2: 32.3%, 68.0%);
  2. **synthesis** of images from the *suspect's* BatchNorm statistics (`kcc.synthesis`), a
     share held aside for model selection, at Adam rate 0.3 (the paper's 0.1 leaves images
     far from those statistics in a CPU budget of 100 steps: the suspect with its BatchNorm
     statistics re-estimated on them keeps 63.7% of its 83.6% on `badnets_all2one`; at 0.3,
     77.1%; `benchmarks/results/probes/synthesis_fidelity.json`);
  3. **scan** of the suspect (`kcc.scan`, on its own synthetic images, made as those its
     verdict's thresholds were chosen on): suspected target classes and, for every class, the
     smallest local, global, warp and smooth triggers that send other images to it. Given the
     rate-0.3 images instead, it flagged classes 3 and 5 of the `clean` model (p = 0.0057).
     The triggers to unlearn are then inverted again for the suspected targets and the kinds
     that flagged them on the recipe's images (`reinverted`): the scan's own, fitted on 32
     images, left `trojan_all2one`'s backdoor in place (ASR 98.44%). The scan's own are held
     out to choose the epoch. The kinds that flagged a target need not be the trigger's: on
     `blended_all2one` a patch flagged class 0, and unlearning it left ASR at 41.44%;
     inverting every kind did not help (55.22%, `reinverted`). So for every target whose
     max-margin image, blended in, sends images to it at an anomalously small weight, that
     image is also unlearned, blended into the synthetic images at the smallest weight that
     sends them to the target (`blend_triggers`): it carries the backdoor's features
     whatever the trigger's shape (Blended: ASR 5.56%, revision 16 of
     `benchmarks/recipe_zoo.py`). The same image also yields a patch: for every target, the
     smallest window of it that, pasted in place, sends 90% of the synthetic images to the
     target is unlearned too (`window_triggers`; revision 25): Trojan's optimised patch
     escapes the local inversion, and unlearning the window took its ASR from 31.00% to
     6.89%. Colour quantisation (BppAttack's trigger) is neither a
     patch, a perturbation, a warp nor a blend, so for every target the mildest quantisation
     that sends the synthetic images to it is unlearned too when it sends at least half of
     them (`quantisation_triggers`; revision 18). An all-to-all backdoor has no target: when
     the scan reports one (`ScanReport.all_to_all`: an untargeted patch that moves most
     images out of their class), that patch is unlearned (`untargeted_triggers`; revision
     26);
  4. when the scan flagged a class (or an all-to-all backdoor), **distillation with unlearning**
     (`kcc.unlearning`): every weight of the compressed model learns the suspect's answers and
     BatchNorm outputs on augmented synthetic images, and the same answers and BatchNorm outputs on
     those images stamped with the suspected targets' inverted triggers (the outputs: hints, weight
     200, revision 32). The epoch kept is chosen on the held-aside synthetic images only: the last
     one whose trigger rate, of the unlearned triggers and of the scan's own (held out), is near the
     run's lowest (`kcc.unlearning.SyntheticValidation`). Distilling from the suspect brings a
     backdoor back as the epochs go on (WaNet, cr 2: the held-aside trigger rate rose from 0.21
     after epoch 1 to 0.71 by epoch 5; Trojan: test ASR 4.6% after epoch 1, 12-40% after epochs
     2-20), and the choice of epoch is what stops it. Since revision 20 the suspect's answers are
     also distilled with the suspected targets' logits lowered on images of other classes
     (`kcc.unlearning.suppress_targets`): on `adaptive_blended_all2one`, whose unlearned triggers
     are not its trigger, test ASR rose from 6% after epoch 2 to 27% after epoch 20 while the
     held-aside rates stayed flat, and the student's own maximum margin for the target rose with it
     (29 -> 48, the others' median 29-31; `benchmarks/results/probes/epoch_trace.json`): the
     backdoor came back through what the teacher says about the target on other images. A 5-epoch
     run kept the same first epoch on WaNet (ASR 13.3% against 13.7% for 20 epochs) and left BadNets
     at ACC 73.5% / ASR 6.4% against 77.4% / 1.4% for 20 epochs (revisions 7 and 8 in
     `benchmarks/results/recipe_zoo.md`), so the run is 20 epochs.
  5. after distillation, **interpolation** back towards the truncated suspect
     (`kcc.interpolation`, WiSE-FT): every weight mixed as `(1 - alpha) * truncated + alpha *
     distilled` for alpha from 1 down to 0.5, kept as far down as the suspected targets'
     max-margin images, blended into the held-aside synthetic images, send no more of them
     to the target (and the triggers' rates pass the epoch rule's test). Distillation costs
     accuracy that the mix gives back where the backdoor does not come with it (revision 23
     of `benchmarks/recipe_zoo.py`). With an untargeted (all-to-all) trigger no mix is
     tried: nothing synthetic reads that backdoor's return (revision 30).
  4'. when the scan flagged nothing, **refit** (`kcc.refit`): each factored layer is refitted in
     closed form to the suspect's responses on the synthetic images, and nothing is unlearned.
     Unlearning every class's inverted triggers cost `clean` 12 points of accuracy (revision
     1); the refit recovers most of what truncation costs (`badnets_all2one`, cr 2: 78.2 ->
     81.9% against the suspect's 83.6% with revision 9's images, 83.5% with the rate-0.3
     images). A backdoor the scan misses (all-to-all, input-aware) is then kept: the scan's
     verdict says so. Refitting before distillation did not help the flagged models:
     distillation on synthetic images costs what the refit won (77.1% after refit and
     distillation against 78.3% without the refit; `benchmarks/results/probes/refit.json`,
     `recipe_rev12.json`).

Neither recipe looks at `evaluation`: it is measured on after every stage and reported.
"""

import math
import time

import keras
import numpy as np

from kcc import cc
from kcc import depthwise
from kcc import distillation
from kcc import interpolation
from kcc import metrics
from kcc import refit
from kcc import rewrite
from kcc import scan as scan_lib
from kcc import synthesis
from kcc import training
from kcc import unlearning

RECIPES = ("kcc", "paper")
#: Share of the synthetic images held aside for choosing the epoch (never trained on).
VALIDATION_SHARE = 0.125
#: A suspected target's colour quantisation is unlearned when it sends at least this share of
#: the synthetic images to the target (`quantisation_triggers`).
QUANTISATION_GATE = 0.5
#: A suspected target's max-margin window is unlearned when it sends at least this share of
#: the synthetic images to the target (`window_triggers`).
WINDOW_GATE = 0.9
#: The report warns when the truncated student agrees with the suspect on fewer of the
#: held-aside synthetic images than this. On the zoo (revisions 22-25, the agreement before
#: distillation's first epoch) truncation alone kept 0.58-1.0 of them wherever the recipe
#: ended near the suspect, and 0.16 on MobileNetV2 at 3x (test ACC 10%), which neither the
#: refit (27%) nor distillation (34%) brought back (`benchmarks/results/recipe_zoo.md`).
LOW_AGREEMENT = 0.4


def purify(model, cr=3.0, recipe="kcc", evaluation=None, seed=0, verbose=True, **settings):
    """Purifies and compresses a suspect classifier without data.

    Args:
        model: the suspect classifier on [0, 1] images (not modified).
        cr: parameter compression ratio (> 1), or None to keep every rank.
        recipe: `"kcc"` (`purify_kcc`) or `"paper"` (`kcc.cc.purify`, Algorithm 1).
        evaluation: optional `(x, y, attack)` to report ACC/ASR/RA after every stage; never
            used to choose anything.
        seed: seeds every random choice.
        verbose: progress and stage lines.
        **settings: the chosen recipe's own arguments (see `purify_kcc`, `kcc.cc.purify`).

    Returns:
        `(purified_model, report)`: a new model and a JSON-serialisable dict (`report["recipe"]`
        names the recipe).
    """
    if recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {recipe!r}: choose one of {', '.join(RECIPES)}.")
    run = purify_kcc if recipe == "kcc" else cc.purify
    student, report = run(model, cr=cr, evaluation=evaluation, seed=seed, verbose=verbose,
                          **settings)
    return student, {"recipe": recipe, **report}


def purify_kcc(model, cr=3.0, rank_multiple=1, num_images=2048, synthesis_steps=200,
               synthesis_learning_rate=0.3, synthesis_batch_size=256, epochs=20, batch_size=128,
               learning_rate=1e-3, temperature=4.0, unlearning_weight=1.0, augment=True,
               hint_weight=200.0, scan_settings=None, distribution=None, evaluation=None,
               seed=0, verbose=True):
    """kcc's recipe (module docstring): truncation, scan, synthesis, distillation with unlearning,
    interpolation.

    Args:
        model: the suspect (not modified).
        cr: parameter compression ratio (> 1), or None for no compression.
        rank_multiple: every rank is rounded up to a multiple of it within the same parameter
            budget (`kcc.rewrite.compress`); 1 keeps the truncation's own ranks.
        num_images, synthesis_steps, synthesis_learning_rate, synthesis_batch_size: synthetic
            images from the suspect's BatchNorm statistics (`kcc.synthesis.synthesize`);
            `VALIDATION_SHARE` of them are held aside. The rate is 3x the paper's 0.1: in 100
            steps the paper's rate leaves the images far from the statistics they are made from
            (`benchmarks/results/probes/synthesis_fidelity.json`).
        epochs, batch_size, learning_rate, temperature, unlearning_weight, augment,
            hint_weight: see `kcc.unlearning.distill`.
        scan_settings: keyword arguments of `kcc.scan.scan` (its budget); None: its defaults.
        distribution: where synthesis, the scan, the re-inversion and distillation run
            (`kcc.parallel.get`: None or `"off"`, `"data_parallel"`, `"auto"`).
        evaluation: optional `(x, y, attack)`; only measured on.
        seed: seeds the scan, synthesis and distillation.
        verbose: progress and stage lines.

    Returns:
        `(purified_model, report)`.
    """
    if epochs < 1:
        raise ValueError(f"The kcc recipe needs epochs >= 1 (it distils). Received {epochs}; "
                         "for compression alone use recipe='paper' with epochs=0.")
    synthesis.require_batchnorm(model)
    settings = {k: v for k, v in locals().items() if k not in ("model", "evaluation")}
    if distribution is not None and not isinstance(distribution, str):
        settings["distribution"] = type(distribution).__name__
    say = print if verbose else (lambda *a, **k: None)
    stages, evaluations = {}, {}

    def evaluate(name, candidate):
        if evaluation is not None:
            evaluations[name] = metrics.evaluate(candidate, *evaluation)
            say(f"  {name}: " + ", ".join(f"{k.upper()} {100 * v:.2f}%" for k, v in
                                          evaluations[name].items() if k != "n_triggered"))

    evaluate("suspect", model)
    start = time.time()
    if cr is None:
        compressed, rewrite_report = rewrite.constrain(model, math.inf)
    else:
        compressed, rewrite_report = rewrite.compress(model, cr, math.inf,
                                                      rank_multiple=rank_multiple, relative=True)
    # From here both run with depthwise convolutions in XLA's fast form (`kcc.depthwise`): the
    # suspect is only read, the student's weights go back into `compressed` at the end.
    model, student = depthwise.twin(model), depthwise.twin(compressed)
    stages["compression"] = time.time() - start
    say(f"[1/4] truncation: {rewrite_report.params_before:,} -> "
        f"{rewrite_report.params_after:,} parameters ({stages['compression']:.1f} s)")
    evaluate("compressed", student)

    start = time.time()
    say(f"[2/4] synthesising {num_images} images from the suspect's BatchNorm statistics")
    images, _, synthesis_info = synthesis.synthesize(
        model, num_images, synthesis_steps, synthesis_learning_rate, synthesis_batch_size, seed,
        verbose=verbose, distribution=distribution)
    stages["synthesis"] = time.time() - start
    held = max(1, int(round(VALIDATION_SHARE * len(images))))
    validation_images, images = images[:held], images[held:]
    # Agreement with the suspect: the student's accuracy on the suspect's own labels.
    suspect_labels = training.predict_labels(model, validation_images)
    agreement = {"truncated": training.accuracy(student, validation_images, suspect_labels)}
    warnings = _fidelity_warnings(agreement["truncated"], cr, held,
                                  int(model.outputs[0].shape[-1]))
    for line in warnings:
        say(f"  warning: {line}")

    start = time.time()
    say("[3/4] scanning the suspect for a backdoor (kcc.scan, on its own synthetic images)")
    found = scan_lib.scan(model, seed=seed, verbose=verbose, distribution=distribution,
                          **(scan_settings or {}))
    say(f"  {found.verdict()}")
    suspected = suspected_triggers(found)
    # The suspect's classes of the synthetic images, predicted once for the three below.
    labels = training.predict_labels(model, images) if found.backdoored else None
    triggers = reinverted(model, suspected, images, found.settings, seed, verbose, labels,
                          distribution)
    triggers += blend_triggers(model, found, images, verbose, labels)
    triggers += window_triggers(model, found, images, verbose, labels)
    triggers += quantisation_triggers(model, found, images, verbose, labels)
    triggers += untargeted_triggers(found, verbose)
    stages["scan"] = time.time() - start

    start = time.time()
    history = validation = refit_report = mixed = None
    if triggers:
        say(f"[4/4] distillation with {len(triggers)} inverted trigger(s) unlearned, {epochs} "
            "epochs, all weights")
        truncated = [np.array(w) for w in student.get_weights()]
        history, validation = unlearning.distill(
            model, student, images, validation_images, triggers, epochs, batch_size,
            learning_rate, temperature, unlearning_weight, augment, seed=seed,
            verbose=verbose, distribution=distribution, held_out_triggers=suspected,
            hint_weight=hint_weight)
        stages["distillation"] = time.time() - start
        say(f"  kept epoch {validation.chosen_epoch} (chosen on {held} held-aside synthetic "
            "images)")
        evaluate("distilled", student)
        start = time.time()
        say("  interpolating back towards the truncated student while the suspected targets' "
            "max-margin images do not gain")
        mixed = interpolation.interpolate(
            student, truncated, validation, found.margin_images,
            sorted({t.target for t in triggers if t.target is not None}), verbose=verbose)
        stages["interpolation"] = time.time() - start
        say(f"  kept alpha {mixed['alpha']:g} ({stages['interpolation']:.1f} s)")
    elif refit.refittable(student):
        say("[4/4] nothing to unlearn: refitting the factored layers to the suspect's responses")
        refit_report = refit.refit(model, student, images, verbose=verbose)
        stages["refit"] = time.time() - start
    else:
        say("[4/4] nothing to unlearn and no factored layer to refit: the result is the "
            "suspect as compression left it")
    if student is not compressed:
        compressed.set_weights(student.get_weights())
        student = compressed
    agreement["purified"] = training.accuracy(student, validation_images, suspect_labels)
    evaluate("purified", student)
    if evaluation is not None:  # would what a user does next bring the backdoor back?
        evaluate("purified, BN re-estimated", refreshed(student, validation_images))
        evaluate("purified, fine-tuned", fine_tuned(student, images, seed))
    report = {
        "settings": settings,
        "rewrite": rewrite_report.to_dict(),
        "scan": found.to_dict(),
        "unlearned_triggers": [{"kind": t.kind, "target": t.target, "size": t.size}
                               for t in triggers],
        "held_out_triggers": [{"kind": t.kind, "target": t.target, "size": t.size}
                              for t in suspected],
        "synthesis": synthesis_info,
        "agreement": agreement,
        "warnings": warnings,
        "seconds": {k: round(v, 1) for k, v in stages.items()},
    }
    if validation is not None:
        report["distillation"] = {
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
            "validation": validation.history, "chosen_epoch": validation.chosen_epoch}
        report["interpolation"] = mixed
    elif refit_report is not None:
        report["refit"] = refit_report
    report["seconds"]["total"] = round(sum(stages.values()), 1)
    if evaluation is not None:
        report["evaluation"] = evaluations
    return student, report


#: The short fine-tune of `fine_tuned`: epochs over the synthetic training images, SGD.
FINE_TUNE_EPOCHS = 2
FINE_TUNE_LEARNING_RATE = 0.01


def refreshed(model, images):
    """A copy of `model` with its BatchNorm statistics re-estimated on `images` (what a user's
    fine-tuning does first). Only the report measures it: a backdoor that hid in stale
    statistics shows again here."""
    probe = _copy(model)
    distillation.reestimate_batchnorm(probe, images)
    return probe


def fine_tuned(model, images, seed=0):
    """A copy of `model` fine-tuned briefly on `images` `(N, H, W, C)` labelled by itself:
    `FINE_TUNE_EPOCHS` epochs of SGD (momentum 0.9, learning rate `FINE_TUNE_LEARNING_RATE`
    cosine-decayed), BatchNorm in training mode, batch 128, as a user without data would adapt
    the purified model. Only the report measures it: the recipe issue asks that ASR stays low
    after "a short fine-tune on synthetic images" (a backdoor that only hides is not removed)."""
    probe = _copy(model)
    labels = training.predict_labels(model, images)
    steps = FINE_TUNE_EPOCHS * -(-len(images) // 128)
    training.compile_classifier(probe, training.sgd(FINE_TUNE_LEARNING_RATE, steps,
                                                    weight_decay=0.0))
    keras.utils.set_random_seed(seed)
    probe.fit(np.asarray(images, np.float32), labels, batch_size=128, epochs=FINE_TUNE_EPOCHS,
              verbose=0)
    return probe


def _fidelity_warnings(truncated_agreement, cr, held, num_classes):
    """What the report says when truncation alone left too little of the suspect (data-free:
    the agreement is on held-aside synthetic images)."""
    if cr is None or truncated_agreement >= LOW_AGREEMENT:
        return []
    return [f"truncation to {cr:g}x leaves a model that agrees with the suspect on "
            f"{100 * truncated_agreement:.0f}% of {held} held-aside synthetic images (chance: "
            f"{100 / num_classes:.0f}%); on kcc's zoo no cut this deep was recovered "
            "(MobileNetV2 at 3x ended at 27-34% accuracy). A lower --cr keeps more."]


def _copy(model):
    probe = keras.models.clone_model(model)
    probe.set_weights(model.get_weights())
    return probe


def reinverted(model, triggers, images, settings, seed=0, verbose=True, labels=None,
               distribution=None):
    """`triggers` inverted again, for their targets and kinds only, on the recipe's synthetic
    images `(N, H, W, C)` instead of the scan's own (32 at the CPU budget, made as its
    thresholds were chosen on), with the scan's inversion budget (`settings`: a
    `ScanReport.settings`). The scan decides whether and where; these images, more and closer
    to the suspect's statistics, give triggers nearer the real one. Revision 11 unlearned the
    scan's own triggers: on `trojan_all2one` they left ASR at 98.44%; revision 9, whose scan ran
    on the recipe's rate-0.1 images, removed it (4.89%). Inverting every kind instead (revision
    15, rejected: `benchmarks/results/probes/recipe_rev15.json`) did not remove Blended, which a
    patch had flagged (ASR 55.22% against 41.44% with the patch alone), and cost Trojan 1.8
    points of ACC.

    A trigger inverted so is one way into the backdoor, not the attack's trigger, and where the
    two differ unlearning one leaves the other: on `lf_all2one` (cr 2) the smooth triggers
    inverted for class 0 reach it as well as LF's own (96-100% of the test slice) along other
    directions (cosine 0.22-0.45 with it), and test ASR stays at 25.67%, where unlearning
    LF's own trigger (an oracle) leaves 3.11% at the same ACC. Three seeds' triggers, every
    trigger on a full share of the stamped images, and inverting again on the student every
    five epochs (I-BAU's alternation; held to the original sizes or not) left 18.8-25.7% and
    cost up to 5.8 points of ACC (`benchmarks/results/probes/refresh.json`,
    `trigger_fidelity.json`).

    `labels` are the suspect's classes of `images` `(N,)` (None: predicted here); the same holds
    for `blend_triggers` and `quantisation_triggers`.

    Returns:
        a list of `kcc.scan.Trigger`, one per trigger given, in the same order.
    """
    if not triggers:
        return []
    if verbose:
        print(f"  inverting the suspected targets' triggers again on {len(images)} synthetic "
              "images")
    labels = _labels(model, images, labels)
    fresh = scan_lib.inversion.invert_triggers(
        model, images, labels, settings["inversion_steps"], settings["inversion_batch_size"],
        classes=sorted({t.target for t in triggers}), seed=seed, verbose=verbose,
        distribution=distribution)
    return [f for t in triggers for f in fresh[t.kind] if f.target == t.target]


def blend_triggers(model, report, images, verbose=True, labels=None):
    """For every suspected target whose max-margin image, blended in, sends the scan's images
    to it at an anomalously small weight (`blend_trigger_p` below the scan's level), that image
    as a blend trigger (`kcc.scan.max_margin.blend_trigger`), its weight chosen again on the
    recipe's synthetic images `(N, H, W, C)`. Whatever the trigger's shape, that image carries
    its features: on `blended_all2one` the scan flagged class 0 by a patch and its margin, and
    unlearning the patch alone left ASR at 41.44% (revision 14 of `benchmarks/recipe_zoo.py`),
    the blended image too 5.56% (revision 16). Revision 16 unlearned it for every target the
    margin flagged: on `badnets_all2one` it needed weight 0.4 (a patch blended in is faint),
    stayed at a held-aside rate of 0.12 and cost 2.6 points of ACC through the choice of
    epoch (75.30% / 0.89% against 77.90% / 1.78%); hence the test against the other classes.

    Returns:
        a list of `kcc.scan.Trigger` of kind `"blend"` (empty when there is none).
    """
    if not report.backdoored or report.margin_images is None:
        return []
    targets = [t for t in report.target_classes
               if report.per_class[t].get("blend_trigger_p", 1.0) < report.alpha]
    labels = _labels(model, images, labels) if targets else None
    found = [scan_lib.max_margin.blend_trigger(model, report.margin_images[t], t, images,
                                               labels) for t in targets]
    if verbose:
        for trigger in found:
            print(f"  class {trigger.target}'s max-margin image, blended at "
                  f"{trigger.size:g}, sends {100 * trigger.flip_rate:.0f}% of the synthetic "
                  "images to it")
    return found


def window_triggers(model, report, images, verbose=True, labels=None):
    """For every suspected target, the smallest window of its max-margin image that, pasted in
    place, sends the recipe's synthetic images `(N, H, W, C)` to it
    (`kcc.scan.max_margin.window_trigger`), kept when it sends at least `WINDOW_GATE` of them.
    On `trojan_all2one` the scan flagged class 0 by its margin, global, smooth and blend
    signals but not by a patch, and unlearning those left ASR at 31.00% (revision 23 of
    `benchmarks/recipe_zoo.py`): its trigger is a 5x5 patch the local inversion does not
    find, while a 3x3 window of the max-margin image sends every synthetic image to class 0.

    Returns:
        a list of `kcc.scan.Trigger` of kind `"window"` (empty when there is none).
    """
    if not report.backdoored or report.margin_images is None:
        return []
    labels = _labels(model, images, labels)
    found = [scan_lib.max_margin.window_trigger(model, report.margin_images[t], t, images,
                                                labels) for t in report.target_classes]
    return _gated([t for t in found if t is not None], WINDOW_GATE, verbose, lambda t: (
        f"a {round(t.size ** 0.5)}x{round(t.size ** 0.5)} window of class {t.target}'s "
        f"max-margin image sends {100 * t.flip_rate:.0f}% of the synthetic images to it"))


def quantisation_triggers(model, report, images, verbose=True, labels=None):
    """For every suspected target, the mildest colour quantisation that sends the recipe's
    synthetic images `(N, H, W, C)` to it (`kcc.scan.quantisation.quantisation_triggers`), kept
    when it sends at least `QUANTISATION_GATE` of them. On `bpp_all2one` the scan flagged class
    0 by a patch, and unlearning the patch left ASR at 20.00% (revision 17 of
    `benchmarks/recipe_zoo.py`): BppAttack's trigger is quantisation, which no inverted kind
    expresses, and six levels sent 85% of its synthetic images to class 0. The gate lies
    between that and a clean model's largest share at six or more levels, 4.3%
    (`benchmarks/results/probes/quantise.json`), so a target flagged for another trigger is
    not quantised in vain. Unlearning every variant over the gate instead (five on
    `bpp_all2one`, revision 19) did worse: 68.90% / 17.67% against 72.90% / 13.44%.

    Returns:
        a list of `kcc.scan.Trigger` of kind `"quantise"` (empty when there is none).
    """
    if not report.backdoored:
        return []
    found = scan_lib.quantisation.quantisation_triggers(
        model, report.target_classes, images, _labels(model, images, labels))
    return _gated(found, QUANTISATION_GATE, verbose, lambda t: (
        f"quantising to {1 / t.size + 1:.0f} levels sends {100 * t.flip_rate:.0f}% of the "
        f"synthetic images to class {t.target}"))


def untargeted_triggers(report, verbose=True):
    """For a model the scan reports with an all-to-all backdoor (`ScanReport.all_to_all`), the
    scan's untargeted patch (`kcc.scan.untargeted`): it moves images out of their own class, to
    whichever class, and unlearning it teaches the student to answer on stamped images as the
    suspect does on clean ones, whatever class the backdoor sends each one to. It is the scan's
    own, not inverted again on the recipe's images as `reinverted` does for the targeted
    triggers: on `badnets_all2all` (cr 2) the untargeted inversion on the recipe's 896 images
    stopped at a 1-pixel mask, where the scan's 32 images gave a 29-pixel patch that moves 84%
    of its held-aside images (and, for diagnosis, sends 70% of test images to the attack's
    `y + 1`).

    Returns:
        a list with the untargeted `kcc.scan.Trigger` (target None), or an empty one.
    """
    if not report.all_to_all:
        return []
    patch = report.untargeted_triggers["local"]
    if verbose:
        print(f"  the scan's untargeted {patch.size:.0f}-pixel patch (all-to-all backdoor)")
    return [patch]


def _gated(triggers, gate, verbose, describe):
    """The `triggers` whose flip rate reaches `gate`; with `verbose`, each one's `describe(t)`
    printed, and why it is not unlearned when it falls short."""
    if verbose:
        for t in triggers:
            print(f"  {describe(t)}" + ("" if t.flip_rate >= gate else
                                        f" (under {100 * gate:.0f}%: not unlearned)"))
    return [t for t in triggers if t.flip_rate >= gate]


def _labels(model, images, labels):
    return training.predict_labels(model, images) if labels is None else labels


def suspected_triggers(report):
    """The scan's triggers that flagged its suspected targets (`kcc.scan.ScanReport`); none
    when no class was flagged. They name the targets whose triggers `reinverted` inverts again
    to unlearn, and are held out (measured, never trained on) to choose the epoch.

    For every suspected target, its triggers of the kinds whose own signal found that class
    anomalous (`{kind}_trigger_p` below the scan's level), or of every kind when only the margin
    flagged it. A kind that did not stand out for a class is no smaller there than for the other
    classes, so it is no evidence of the backdoor. A kind is chosen by its own p-value whatever
    its trigger's flip rate on the scan's few held-aside images (`kcc.scan.MIN_FLIP_RATE` gates
    the verdict only): the triggers are inverted again on the recipe's images, and on
    `badnets_all2one` the scan's class-0 patch flips 4% of them while a patch is the attack's
    trigger. Revision 3 of `benchmarks/recipe_zoo.py`
    unlearned every kind of every suspected target: on `wanet_all2one` (targets 0, 3 and 5,
    nine triggers) the held-aside trigger rate, the largest over the nine, stayed at 0.84-0.98
    through distillation and the undistilled student was kept (ASR 94.9%). Up to revision 8,
    every inverted trigger of every class was unlearned when no class was flagged; on `clean`
    that cost 12 points of accuracy (revision 1), and revision 9 refits instead (`purify_kcc`).
    """
    chosen = []
    for target in report.target_classes if report.backdoored else ():
        found = {kind: t for kind in scan_lib.inversion.KINDS
                 for t in report.triggers.get(kind, []) if t.target == target}
        row = report.per_class[target]
        anomalous = [kind for kind in found if row.get(f"{kind}_trigger_p", 1.0) < report.alpha]
        chosen += [found[kind] for kind in (anomalous or found)]
    return chosen
