"""Data-free backdoor scan: is a classifier backdoored, which class is the target, what is the
trigger? `scan(model) -> ScanReport`; the command line is `python -m kcc.scan`.

No image from any dataset is touched. Three independent kinds of signal, each a plain function:

1. **Maximum margin** (`kcc.scan.max_margin`, MM-BD): per class, the largest logit margin that
   optimised inputs reach from uniform noise.
2. **Feature posteriors** (`kcc.scan.feature_posteriors`, FreeEagle): per class, how much the
   other classes' optimised dummy intermediate features lean towards it.
3. **Trigger inversion** (`kcc.scan.inversion`, Neural Cleanse-style) on images synthesised
   from the model's own BatchNorm statistics (`kcc.synthesis`): per class, the smallest local
   (mask and pattern), global (additive), warp (smooth displacement) and smooth (low-frequency
   additive) triggers that send the other classes' images to it, and how many held-aside
   synthetic images each trigger flips.

Beside the verdict, not part of it: each inverted class's max-margin image blended into the
held-aside synthetic images (`max_margin.blend_trigger`), the smallest weight that sends them to
the class (`blend_trigger_size`) and that weight's p-value (`blend_trigger_p`, the same test
on its inverse). `kcc.recipe` unlearns the blended image of a target whose p-value is below
`ALPHA`. Also beside it: per inverted class, the mildest colour quantisation that sends the
held-aside images to the class and the share it sends (`quantise_trigger_size`, the step, and
`quantise_trigger_flip_rate`; `kcc.scan.quantisation`), a trigger family that the inversions
cannot express (BppAttack). Neither votes: `ALPHA` and the budgets were chosen on the zoo with
the first four signals; the smooth trigger, a fifth, and the feature posteriors, a sixth, were
added later with them unchanged.

Each signal gives one statistic per class, large = suspicious (the margin `r_k`; the feature
posteriors' share `s_j`; the inverse of a trigger's size, `trigger_statistic`), and
`kcc.scan.anomaly.p_values` tests it as MM-BD does (a gamma null fitted to the other classes,
an order-statistic p-value, step-down for several targets). A class's combined p-value is the
Bonferroni combination of its p-values over the signals that ran (`min(1, S * min_s p_s)` for
`S` signals; `combined_p_values`), an inverted trigger's p-value counting only when that trigger
sends at least `MIN_FLIP_RATE` of the held-aside synthetic images to its class, and the model is
reported as backdoored when some class's combined p-value is below `ALPHA`; those classes are
the suspected targets.

How `ALPHA` and the budgets were chosen is recorded in `benchmarks/results/scan_zoo.md`: on
the zoo's models (clean and infected, CIFAR-10 and GTSRB), never on test labels.

All-to-all backdoors (class `c` to `c + 1`) have no single target: every class is the target of
one source class, so usually no class stands out in the signals above; where one does, it is not
the attack's target (the zoo's WaNet all-to-all model, class 3, by the feature posteriors;
`benchmarks/results/scan_zoo.md`). So, also beside the per-class signals, one untargeted trigger
of each kind is inverted (`kcc.scan.untargeted`: the smallest change that moves images out of
their own class, to any other), and the model is reported as backdoored, with an all-to-all
backdoor and no target, when the untargeted patch moves most held-aside images and spreads them
over the classes (`ScanReport.all_to_all`). It finds a patch trigger (the zoo's BadNets
all-to-all model) and not the Blended, WaNet or InputAware ones. A model with several all-to-one
targets can be reported with several target classes.
"""

import dataclasses
import os
import time

import numpy as np

from kcc import depthwise
from kcc import parallel
from kcc import synthesis
from kcc import training
from kcc.scan import anomaly
from kcc.scan import feature_posteriors
from kcc.scan import inversion
from kcc.scan import max_margin
from kcc.scan import quantisation
from kcc.scan import untargeted
from kcc.scan.inversion import Trigger

#: Level of the combined test: a class whose combined p-value is below it is a suspected target.
ALPHA = 0.05
#: A class's statistic must be at least this many times the median of the other classes' for
#: a p-value below 1 (`kcc.scan.anomaly.p_values`): an effect size, not only a significance.
MIN_RATIO = 1.5
#: An inverted trigger's p-value counts towards the verdict only for a class whose trigger sends
#: at least this share of the held-aside synthetic images to it (`combined_p_values`): a small
#: trigger that works only on the images it was fitted on is not evidence of a backdoor. Set on
#: the zoo's scans (`benchmarks/results/scan_zoo.md`): every class flagged by such a trigger
#: alone was not the attack's target (warp triggers flipping 0-17%); every target stays flagged
#: by its margin or by a trigger flipping 84.6% or more (any gate from 0.17 to 0.84 gives the same
#: verdicts there).
MIN_FLIP_RATE = 0.5
#: Classes above which trigger inversion runs only on the `MAX_INVERTED` classes with the
#: largest margins (its cost grows with the number of classes it inverts).
MAX_INVERTED = 10
#: Images per step of the margin ascent, over all classes; with more classes each gets fewer
#: (and so do the dummy feature maps of the feature posteriors).
MARGIN_BATCH = 512
#: Dummy feature maps per class of the feature posteriors (`kcc.scan.feature_posteriors`).
FEATURE_MAPS = 5

SIGNALS = ("max_margin", "feature_posterior", *(f"{kind}_trigger" for kind in inversion.KINDS))
#: Named budgets of `scan`: "full" is its defaults (MM-BD's 30 images x 300 steps), "cpu" what
#: `flags/scan_cpu.flags` sets (a width-16 ResNet-18 in minutes on 2 CPU cores).
BUDGETS = {
    "full": dict(margin_images=30, margin_steps=300, feature_steps=300, num_images=256,
                 synthesis_steps=200, inversion_steps=300, inversion_batch_size=32),
    "cpu": dict(margin_images=5, margin_steps=100, feature_steps=300, num_images=64,
                synthesis_steps=100, inversion_steps=100, inversion_batch_size=8),
}


@dataclasses.dataclass
class ScanReport:
    """What `scan` found.

    Attributes:
        backdoored: whether some class's combined p-value is below `alpha`, or `all_to_all`.
        target_classes: suspected target classes, most suspicious first (empty when clean).
        p_value: the smallest combined p-value over the classes (the verdict's).
        alpha: the level used.
        per_class: one dict per class: each signal's statistic and p-value, the inverted
            triggers' sizes and held-aside flip rates, and the combined p-value.
        triggers: `{kind: [Trigger]}` for the inverted classes, every kind of
            `kcc.scan.inversion.KINDS`.
        notes: what the scan could not do or did differently, in words.
        seconds: wall time per stage and in total.
        settings: the budget used.
        margin_images: `(K, H, W, C)` in [0, 1], each class's image that reached its margin
            (`kcc.scan.max_margin.max_margin`); what `kcc.recipe` blends in to unlearn
            (`max_margin.blend_trigger`). Not in `to_dict`.
        all_to_all: whether the untargeted local trigger is evidence of an all-to-all
            backdoor (`kcc.scan.untargeted.all_to_all`), which has no target class.
        untargeted: per kind, the untargeted trigger's size, held-aside flip rate (share of
            images whose class it changes) and `dominant_share` (`kcc.scan.untargeted`).
        untargeted_triggers: `{kind: Trigger}`, the untargeted triggers (`target` None); what
            `kcc.recipe` unlearns of an all-to-all backdoor. Not in `to_dict`.
    """

    backdoored: bool
    target_classes: list
    p_value: float
    alpha: float
    per_class: list
    triggers: dict
    notes: list
    seconds: dict
    settings: dict
    margin_images: np.ndarray = None
    all_to_all: bool = False
    untargeted: list = dataclasses.field(default_factory=list)
    untargeted_triggers: dict = dataclasses.field(default_factory=dict)

    def trigger(self, target):
        """The inverted trigger of `target` that the scan found most anomalous (of any kind),
        or None when no trigger was inverted for it."""
        row = self.per_class[target]
        candidates = [(row.get(f"{kind}_trigger_p", 1.0), kind) for kind in inversion.KINDS
                      if self._find(kind, target) is not None]
        if not candidates:
            return None
        return self._find(min(candidates)[1], target)

    def _find(self, kind, target):
        for t in self.triggers.get(kind, []):
            if t.target == target:
                return t
        return None

    def verdict(self):
        """The scan's conclusion in one line."""
        if not self.backdoored:
            return (f"No backdoor found: no class stands out (smallest p-value "
                    f"{self.p_value:.3g}, flagged below {self.alpha:g}).")
        found = []
        if self.target_classes:
            found.append("suspected target class(es) " + ", ".join(
                f"{c} (p = {self.per_class[c]['p']:.3g})" for c in self.target_classes))
        if self.all_to_all:
            local = self.untargeted_triggers["local"]
            found.append(f"an all-to-all backdoor suspected (a {local.size:.0f}-pixel patch "
                         f"moves {100 * local.flip_rate:.0f}% of the held-aside synthetic "
                         "images out of their class, no class receiving more than "
                         f"{100 * untargeted.MAX_DOMINANT:.0f}% of them)")
        return "BACKDOORED: " + "; ".join(found) + "."

    def to_dict(self, trigger_paths=()):
        """A JSON-serialisable dict (triggers as file paths)."""
        return {
            "backdoored": self.backdoored,
            "target_classes": self.target_classes,
            "all_to_all": self.all_to_all,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "verdict": self.verdict(),
            "per_class": self.per_class,
            "untargeted": self.untargeted,
            "triggers": list(trigger_paths),
            "notes": self.notes,
            "seconds": self.seconds,
            "settings": self.settings,
        }


def trigger_statistic(size):
    """A trigger's suspicion: the inverse of its size (mask pixels or perturbation L2 norm), as
    Neural Cleanse ranks classes by their masks' L1 norms. The held-aside flip rate is not part
    of it: on the few held-aside images of a CPU budget it varies more between the classes of a
    clean model (0.4-1.0 on the zoo's) than it tells about a backdoor. It only decides whether
    the statistic's p-value counts (`MIN_FLIP_RATE`, `combined_p_values`)."""
    return 1.0 / max(float(size), 1e-6)


def feature_maps(num_classes):
    """Dummy feature maps per class of the feature posteriors: `FEATURE_MAPS`, fewer where
    `num_classes` times that would pass `MARGIN_BATCH` (at least 1)."""
    return max(1, min(FEATURE_MAPS, MARGIN_BATCH // num_classes))


def feature_signal(model, steps, notes, seed=0, verbose=False):
    """The feature-posterior stage of `scan`: `s`, float64 `(K,)`, or None where the signal
    cannot run on `model` (no layer splits it, or its tail is too shallow:
    `kcc.scan.feature_posteriors.split`). Why it did not run, and any smaller budget of dummy
    feature maps (`feature_maps`), are appended to the list `notes` as `scan` reports them."""
    num_classes = int(model.outputs[0].shape[-1])
    restarts = feature_maps(num_classes)
    if restarts < FEATURE_MAPS:
        notes.append(f"{num_classes} classes: the feature posteriors use {restarts} dummy "
                     f"feature map(s) per class instead of {FEATURE_MAPS}.")
    try:
        s, _ = feature_posteriors.feature_posteriors(model, restarts, steps, seed=seed,
                                                     verbose=verbose)
    except ValueError as error:
        notes.append(f"The feature-posterior signal did not run: {error}")
        return None
    return s


def scan(model, margin_images=30, margin_steps=300, feature_steps=300, num_images=256,
         synthesis_steps=200, inversion_steps=300, inversion_batch_size=32, seed=0, verbose=True,
         images=None, distribution=None):
    """Scans a classifier for a backdoor without data (see the module docstring).

    Args:
        model: a Keras classifier on [0, 1] images `(B, H, W, C)` producing logits `(B, K)`
            (not modified).
        margin_images: images per class of the margin ascent (MM-BD: 30); with more than
            `MARGIN_BATCH // margin_images` classes, `MARGIN_BATCH // K` (at least 1).
        margin_steps: Adam steps of the margin ascent (MM-BD: 300).
        feature_steps: Adam steps of the dummy features (`kcc.scan.feature_posteriors`,
            `FEATURE_MAPS` per class, fewer with more than `MARGIN_BATCH // FEATURE_MAPS`
            classes; split at `feature_posteriors.SPLIT_DEPTH` of the layers).
        num_images: synthetic images for trigger inversion: half to fit the triggers on, half
            held aside to measure their flip rates.
        synthesis_steps: Adam steps per synthetic batch (`kcc.synthesis`).
        inversion_steps: Adam steps of trigger inversion.
        inversion_batch_size: images per inversion step (each stamped with every trigger).
        seed: seeds every random start.
        verbose: print each stage and its progress.
        images: synthetic images `(N, H, W, C)` already made from the model's BatchNorm
            statistics; the first `num_images` are used and none are synthesised here.
            Default: synthesised here, as when the verdict's thresholds were chosen. Images
            made otherwise change the statistics: on images made at Adam rate 0.3 (kcc's
            recipe) the scan flagged a clean zoo model (`benchmarks/results/probes/
            recipe_rev11a.json`), so `kcc.recipe` lets the scan make its own.
        distribution: where the three optimisations run (`kcc.parallel.get`): None or
            `"off"` on one device; `"data_parallel"`, `"auto"` or a
            `keras.distribution.DataParallel` splits the margin ascent's images, the synthetic
            batch and every inversion batch over the devices (JAX only). The device count must
            divide `min(num_images, 256)`, `num_images` and `inversion_batch_size`
            (`ValueError` before any work); where it does not divide the margin ascent's
            `K * margin_images` images, that stage runs on one device (said in the notes); the
            feature posteriors always run on one device. The
            report is the single-device one up to float rounding; checking the triggers'
            flip rates runs on one device.

    Returns:
        a `ScanReport`.

    Raises:
        ValueError: the model is not an image classifier with at least two classes.
    """
    num_classes = check_model(model)
    model = depthwise.twin(model)  # XLA's grouped convolutions are slow (kcc.depthwise)
    distribution = parallel.get(distribution)
    stages = 4 if synthesis.batchnorm_layers(model) else 2
    if stages == 4:
        parallel.check_batch_size(distribution, min(num_images, 256), num_images)
        parallel.check_batch_size(distribution, inversion_batch_size, inversion_batch_size)
    say = print if verbose else (lambda *a, **k: None)
    notes, seconds, stats, blends, quantised = [], {}, {}, [], []
    start = time.time()
    per_class_images = max(1, min(margin_images, MARGIN_BATCH // num_classes))
    if per_class_images < margin_images:
        notes.append(f"{num_classes} classes: the margin ascent uses {per_class_images} "
                     f"image(s) per class instead of {margin_images}.")
    margin_distribution = distribution
    devices = parallel.device_count(distribution) if distribution is not None else 1
    if (num_classes * per_class_images) % devices:
        margin_distribution = None
        notes.append(f"The margin ascent's {num_classes * per_class_images} images do not "
                     f"split over {devices} devices: it ran on one.")
    say(f"[1/{stages}] maximum margin per class ({num_classes} classes x {per_class_images} "
        f"images, {margin_steps} steps)")
    stats["max_margin"], margin_images = max_margin.max_margin(
        model, per_class_images, margin_steps, seed=seed, verbose=verbose,
        distribution=margin_distribution)
    seconds["max_margin"] = time.time() - start

    t = time.time()
    say(f"[2/{stages}] feature posteriors per class ({num_classes} classes x "
        f"{feature_maps(num_classes)} dummy feature maps, {feature_steps} steps)")
    s = feature_signal(model, feature_steps, notes, seed=seed, verbose=verbose)
    if s is not None:
        stats["feature_posterior"] = s
    seconds["feature_posterior"] = time.time() - t

    triggers, moving, spread = {}, {}, {}
    if stages == 2:
        notes.append("The model has no BatchNormalization layer, so no synthetic images can be "
                     "made from its statistics: trigger inversion did not run; the verdict "
                     "rests on " + ("the maximum margin and the feature posteriors."
                                    if "feature_posterior" in stats else
                                    "the maximum margin alone."))
    else:
        candidates = np.arange(num_classes)
        if num_classes > MAX_INVERTED:
            candidates = np.sort(np.argsort(-stats["max_margin"])[:MAX_INVERTED])
            notes.append(f"{num_classes} classes: triggers were inverted for the "
                         f"{MAX_INVERTED} classes with the largest margins only "
                         f"({', '.join(map(str, candidates))}).")
        t = time.time()
        if images is None:
            say(f"[3/4] synthesising {num_images} images from the BatchNorm statistics "
                f"({synthesis_steps} steps)")
            images, _, _ = synthesis.synthesize(model, num_images, synthesis_steps,
                                                batch_size=min(num_images, 256), seed=seed,
                                                verbose=verbose, distribution=distribution)
        else:
            say(f"[3/4] using {min(num_images, len(images))} synthetic images given")
            images = np.asarray(images[:num_images], np.float32)
        labels = training.predict_labels(model, images)
        seconds["synthesis"] = time.time() - t
        t = time.time()
        half = len(images) // 2
        say(f"[4/4] inverting a local, a global, a warp and a smooth trigger for "
            f"{len(candidates)} classes and untargeted ({inversion_steps} steps, {half} "
            f"images; {len(images) - half} held aside)")
        inverted = inversion.invert_triggers(model, images[:half], labels[:half],
                                             steps=inversion_steps,
                                             batch_size=inversion_batch_size, seed=seed,
                                             classes=candidates, verbose=verbose,
                                             distribution=distribution)
        for kind in inversion.KINDS:
            inversion.flip_rates(model, inverted[kind], images[half:], labels[half:])
            stats[f"{kind}_trigger"] = _per_class_statistic(inverted[kind], num_classes)
        triggers = inverted
        blends = [max_margin.blend_trigger(model, margin_images[c], c, images[half:],
                                           labels[half:]) for c in candidates]
        blend_p, _ = anomaly.p_values(_per_class_statistic(blends, num_classes), ALPHA,
                                      min_ratio=MIN_RATIO)
        quantised = quantisation.quantisation_triggers(model, candidates, images[half:],
                                                       labels[half:])
        moving = untargeted.invert_untargeted(model, images[:half], labels[:half],
                                              steps=inversion_steps,
                                              batch_size=inversion_batch_size, seed=seed,
                                              verbose=verbose, distribution=distribution)
        inversion.flip_rates(model, moving.values(), images[half:], labels[half:])
        spread = {kind: untargeted.dominant_share(model, trig, images[half:], labels[half:])
                  for kind, trig in moving.items()}
        seconds["inversion"] = time.time() - t

    p = {}
    for name, values in stats.items():
        p[name], _ = anomaly.p_values(values, ALPHA, min_ratio=MIN_RATIO)
    flips = {f"{kind}_trigger": _per_class_flip_rate(found, num_classes)
             for kind, found in triggers.items()}
    combined = combined_p_values(p, flips)
    order = np.argsort(combined, kind="stable")
    targets = [int(c) for c in order if combined[c] < ALPHA]
    per_class = []
    for c in range(num_classes):
        row = {"class": c}
        for name in stats:
            row[name] = float(stats[name][c])
            row[f"{name}_p"] = float(p[name][c])
        for kind, found in (*triggers.items(), ("blend", blends), ("quantise", quantised)):
            for trig in found:
                if trig.target == c:
                    row[f"{kind}_trigger_size"] = trig.size
                    row[f"{kind}_trigger_flip_rate"] = trig.flip_rate
        if "blend_trigger_size" in row:
            row["blend_trigger_p"] = float(blend_p[c])
        row["p"] = float(combined[c])
        per_class.append(row)
    seconds["total"] = time.time() - start
    all_to_all = "local" in moving and untargeted.all_to_all(moving["local"], spread["local"])
    return ScanReport(
        backdoored=bool(targets) or all_to_all, target_classes=targets,
        p_value=float(combined.min()),
        alpha=ALPHA, per_class=per_class, triggers=triggers, notes=notes,
        seconds={k: round(v, 1) for k, v in seconds.items()},
        settings={"margin_images": per_class_images, "margin_steps": margin_steps,
                  "feature_steps": feature_steps, "num_images": num_images,
                  "synthesis_steps": synthesis_steps, "inversion_steps": inversion_steps,
                  "inversion_batch_size": inversion_batch_size, "seed": seed,
                  "signals": list(stats)},
        margin_images=margin_images,
        all_to_all=all_to_all,
        untargeted=[{"kind": kind, "size": trig.size, "flip_rate": trig.flip_rate,
                     "dominant_share": spread[kind]} for kind, trig in moving.items()],
        untargeted_triggers=moving,
    )


def combined_p_values(p, flip_rates):
    """Each class's combined p-value: the Bonferroni combination `min(1, S * min_s p_s)` over the
    `S` signals that ran, where an inverted trigger's p-value counts only for a class whose
    trigger sends at least `MIN_FLIP_RATE` of the held-aside synthetic images to it.

    Args:
        p: `{signal: (K,) p-values}` (`kcc.scan.anomaly.p_values` of each signal).
        flip_rates: `{signal: (K,) held-aside flip rates}` for the trigger signals (NaN where a
            class has no trigger); a signal missing here always counts (the margin).

    Returns:
        float64 `(K,)`.
    """
    counted = [np.where(np.nan_to_num(flip_rates[name], nan=0.0) >= MIN_FLIP_RATE, values, 1.0)
               if name in flip_rates else values for name, values in p.items()]
    return np.minimum(1.0, len(p) * np.min(np.stack(counted), axis=0))


def _per_class_flip_rate(triggers, num_classes):
    """`(num_classes,)`: each class's trigger's held-aside flip rate, NaN for classes without."""
    values = np.full(num_classes, np.nan)
    for trig in triggers:
        if trig.flip_rate is not None:
            values[trig.target] = trig.flip_rate
    return values


def _per_class_statistic(triggers, num_classes):
    """`(num_classes,)`: `trigger_statistic` of each class's trigger, 0 for classes without."""
    values = np.zeros(num_classes)
    for trig in triggers:
        values[trig.target] = trigger_statistic(trig.size)
    return values


def check_model(model):
    """The number of classes of an image classifier; `ValueError` for anything else."""
    inputs, outputs = model.inputs, model.outputs
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[-1] not in (1, 3, 4):
        raise ValueError(
            "The scan needs an image classifier with one input of shape (batch, height, width, "
            "channels) with 1, 3 or 4 channels. Received inputs "
            f"{[tuple(i.shape) for i in inputs]}.")
    if None in tuple(inputs[0].shape[1:]):
        raise ValueError("The scan needs a fixed input size (height, width, channels). Received "
                         f"{tuple(inputs[0].shape)}.")
    if len(outputs) != 1 or len(outputs[0].shape) != 2:
        raise ValueError("The scan needs one output of class scores (batch, classes). Received "
                         f"outputs {[tuple(o.shape) for o in outputs]}.")
    num_classes = int(outputs[0].shape[-1])
    if num_classes < 2:
        raise ValueError(f"The model has {num_classes} output class: a single-class model has "
                         "no target class to send images to, so there is nothing to scan.")
    return num_classes


def save_triggers(report, folder, scale=8):
    """Writes every inverted trigger as a PNG (upscaled `scale` times, so a person can see it)
    and all of them in one `.npz`, with the max-margin image of every suspected target class
    (`margin_class{k}.png`: what most drives the class) and, for an all-to-all backdoor, the
    untargeted patch (`trigger_local_untargeted.png`); returns the paths written.

    A local trigger's PNG is its pattern shown through its mask (`mask * pattern` on black); a
    global or smooth trigger's is its perturbation mapped to [0, 1] around mid-grey; a warp
    trigger's is its flow, the column displacement in red and the row displacement in green
    around mid-grey.
    """
    from PIL import Image

    from kcc import saving

    os.makedirs(folder, exist_ok=True)
    paths, arrays = [], {}
    pictures = []
    if report.margin_images is not None:
        for target in report.target_classes:
            arrays[f"margin_{target}_image"] = report.margin_images[target]
            pictures.append((f"margin_class{target}.png", report.margin_images[target]))
    moving = [report.untargeted_triggers["local"]] if report.all_to_all else []
    for kind, found in (*report.triggers.items(), ("local", moving)):
        for trig in found:
            who = "untargeted" if trig.target is None else trig.target
            if kind == "local":
                picture = trig.mask * trig.pattern
                arrays[f"local_{who}_mask"] = trig.mask
            else:
                peak = max(float(np.abs(trig.pattern).max()), 1e-6)
                picture = 0.5 + 0.5 * trig.pattern / peak
                if kind == "warp":  # (H, W, 2) -> RGB, blue at mid-grey
                    picture = np.concatenate([picture, np.full_like(picture[..., :1], 0.5)], -1)
            arrays[f"{kind}_{who}_pattern"] = trig.pattern
            pictures.append((f"trigger_{kind}_" + ("untargeted" if trig.target is None else
                                                   f"class{trig.target}") + ".png", picture))
    for name, picture in pictures:
        picture = np.clip(picture * 255 + 0.5, 0, 255).astype(np.uint8)
        if picture.shape[-1] == 1:
            picture = picture[..., 0]
        image = Image.fromarray(picture).resize(
            (picture.shape[1] * scale, picture.shape[0] * scale), Image.NEAREST)
        path = os.path.join(folder, name)
        saving.write_bytes(_png(image), path, overwrite=True)
        paths.append(path)
    npz = os.path.join(folder, "triggers.npz")
    saving.write_npz(arrays, npz)
    return [npz, *paths]


def _png(image):
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


__all__ = ["ALPHA", "BUDGETS", "MIN_FLIP_RATE", "MIN_RATIO", "ScanReport", "Trigger", "check_model",
           "combined_p_values", "save_triggers", "scan", "trigger_statistic"]
