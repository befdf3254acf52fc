"""Trigger inversion: the smallest input change that sends images to a class, for every class.

Four trigger shapes are reverse-engineered for every candidate target class `k`, jointly for all
classes in one batched optimisation over images `x` the model does not assign to `k`:

* a local (patch) trigger, Neural Cleanse's mask and pattern,
  `x' = (1 - m_k) * x + m_k * p_k`, with `m_k` `(H, W, 1)` and `p_k` `(H, W, C)` in [0, 1]:

      min  CE(F(x'), k) + lambda_mask * sum(m_k)                                   (NC Eq. 3)

* a global (image-wide) trigger, one additive perturbation `x' = clip(x + d_k, 0, 1)`:

      min  CE(F(x'), k) + lambda_global * ||d_k||_2

* a warp trigger, a smooth displacement of every pixel, `x' = warp(x, f_k)` (`warp`: bilinear
  resampling at `position + f_k`), with the flow `f_k = B c_k B^T` `(H, W, 2)` in pixels the
  bicubic upsampling of `WARP_GRID x WARP_GRID` control offsets `c_k`:

      min  CE(F(x'), k) + lambda_warp * mean_pixels ||f_k||_2

  WaNet's trigger is such a warp (about 0.2 pixels on average on the zoo's model); neither a
  mask nor an additive perturbation reproduces it, so without this shape the recipe had no
  trigger to unlearn on WaNet (`benchmarks/results/recipe_zoo.md`, revision 1).

* a smooth (low-frequency) additive trigger, `x' = clip(x + s_k, 0, 1)` with `s_k = B g_k B^T`
  `(H, W, C)` the bicubic upsampling of a `SMOOTH_GRID x SMOOTH_GRID x C` control grid `g_k`:

      min  CE(F(x'), k) + lambda_global * ||s_k||_2

  The global kind can express such a trigger but does not find it: on `lf_all2one` (LF's
  trigger, L2 norm 4.0, 99.9% of its energy within 4 cycles per image) the global trigger
  inverted for its target on 896 synthetic images has norm 5.3, a quarter of its energy at low
  frequencies and cosine 0.12 with the real one, and unlearning it with the local one left
  test ASR at 42%; a smooth one (bilinear there) has norm 2.6 against the other classes'
  5.1-11.1 and cosine 0.49 (`benchmarks/results/probes/lf.json`). In the scan (CPU budget)
  the target's smooth trigger measures 2.8 against 5.2-9.5; on the zoo's clean models every
  class's measures 6.5-11.4 (`benchmarks/results/scan_zoo.md`).

A backdoor target needs a much smaller trigger than the other classes (and its trigger still
flips images it was not fitted on). With a fixed penalty the optimisation settles where a
trigger flips only part of the images, so, as Neural Cleanse keeps the smallest mask that
reaches its attack-success goal, the triggers are checked `CHECKS` times on the images they are
fitted on and each class keeps the smallest trigger that flipped at least `FLIP_GOAL` of them
(or, if none did, the one that flipped most). `size` is the mask's L1 norm in pixels (local),
the L2 norm of `d_k` or `s_k` in [0, 1] pixel units (global, smooth) or the mean displacement
in pixels (warp); `flip_rate` is measured on held-aside images.

References: Wang et al., "Neural Cleanse: Identifying and Mitigating Backdoor Attacks in
Neural Networks", IEEE S&P 2019 (mask and pattern; here with a fixed penalty weight); Nguyen
and Tran, "WaNet - Imperceptible Warping-based Backdoor Attack", ICLR 2021 (the warp family:
a bicubic-upsampled control grid, bilinear resampling); Zeng et al., "Rethinking the Backdoor
Attacks' Triggers: A Frequency Perspective", ICCV 2021 (low-frequency triggers). Inverting the
warp and smooth families per class is kcc's.
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from kcc import models
from kcc import parallel
from kcc import progress as progress_lib
from kcc.attacks.wanet import bicubic_matrix

KINDS = ("local", "global", "warp", "smooth")
#: Times the triggers are checked during inversion (evenly spaced; the last at the end).
CHECKS = 5
#: Share of the fitting images a trigger must flip to be kept in preference to a larger one.
FLIP_GOAL = 0.9
#: Starting mask logit: sigmoid(-6) = 0.0025 per pixel, about 2.5 pixels on a 32x32 image, so a
#: mask grows to what its class needs rather than shrinking from an arbitrary start.
MASK_START = -6.0
#: Side of the control grid of a warp trigger (WaNet's k = 4).
WARP_GRID = 4
#: Side of the control grid of a smooth trigger: 8 points carry up to 4 cycles per image side,
#: where LF's trigger has 99.9% of its energy (`benchmarks/results/probes/lf.json`).
SMOOTH_GRID = 8


def warp(x, flow):
    """Bilinear resampling of images at displaced positions (edges repeat).

    Args:
        x: images `(N, H, W, C)`.
        flow: displacements `(N, H, W, 2)` (or `(1, H, W, 2)` for all images) in pixels,
            `[..., 0]` along the width (columns) and `[..., 1]` along the height (rows): output
            pixel `(i, j)` is `x` sampled at `(i + flow[i, j, 1], j + flow[i, j, 0])`.

    Returns:
        `(N, H, W, C)`, differentiable with respect to `x` and `flow` (`keras.ops`).
    """
    n, h, w, c = (ops.shape(x)[0], *x.shape[1:])
    flow = ops.broadcast_to(ops.convert_to_tensor(flow, x.dtype), (n, h, w, 2))
    rows = ops.clip(ops.arange(h, dtype=x.dtype)[:, None] + flow[..., 1], 0.0, h - 1.0)
    cols = ops.clip(ops.arange(w, dtype=x.dtype)[None, :] + flow[..., 0], 0.0, w - 1.0)
    top = ops.clip(ops.floor(rows), 0.0, max(h - 2.0, 0.0))
    left = ops.clip(ops.floor(cols), 0.0, max(w - 2.0, 0.0))
    down, right = (rows - top)[..., None], (cols - left)[..., None]
    base = ops.arange(n, dtype="int32")[:, None, None] * (h * w)
    index = base + ops.cast(top, "int32") * w + ops.cast(left, "int32")  # (N, H, W)
    pixels = ops.reshape(x, (-1, c))
    step_down, step_right = (w if h > 1 else 0), (1 if w > 1 else 0)

    def at(offset):
        return ops.reshape(ops.take(pixels, ops.reshape(index + offset, (-1,)), axis=0),
                           (n, h, w, c))

    upper = (1.0 - right) * at(0) + right * at(step_right)
    lower = (1.0 - right) * at(step_down) + right * at(step_down + step_right)
    return (1.0 - down) * upper + down * lower


@dataclasses.dataclass
class Trigger:
    """An inverted trigger for one target class.

    Attributes:
        kind: `"local"` (mask and pattern), `"global"` (additive perturbation), `"warp"`,
            `"smooth"` (a low-frequency additive perturbation), `"blend"` (an image blended
            in at one weight everywhere, `kcc.scan.max_margin.blend_trigger`), `"window"` (a
            square window of an image pasted in place, `kcc.scan.max_margin.window_trigger`)
            or `"quantise"` (colour quantisation, `kcc.scan.quantisation`).
        target: the class the trigger sends images to; None for an untargeted trigger, which
            moves images to any class but their own (`kcc.scan.untargeted`).
        pattern: the pattern `(H, W, C)` in [0, 1] (local, blend, window), the perturbation
            `(H, W, C)` (global, smooth), the flow `(H, W, 2)` in pixels (warp, see `warp`) or the
            dither offsets `(H, W, 1)` in steps (quantise).
        mask: `(H, W, 1)` in [0, 1] for a local, blend or window trigger (stamped as
            `(1 - mask) * x + mask * pattern`), None otherwise.
        size: L1 norm of the mask in pixels (local, window), L2 norm of the perturbation
            (global, smooth), mean displacement in pixels (warp), the blend weight (blend),
            the rounding step in [0, 1] pixel units (quantise).
        flip_rate: fraction of held-aside images (not of the target class) it sends to the
            target (untargeted: whose class it changes), or None before it is measured.
    """

    kind: str
    target: int
    pattern: np.ndarray
    mask: np.ndarray = None
    size: float = 0.0
    flip_rate: float = None

    @property
    def stamping(self):
        """How the trigger is stamped: `"local"` for any with a mask (`(1 - mask) * x + mask *
        pattern`), `"global"` for the additive kinds (global and smooth: `clip(x + pattern, 0,
        1)`), otherwise its kind (`"warp"`, `"quantise"`)."""
        if self.mask is not None:
            return "local"
        return "global" if self.kind == "smooth" else self.kind

    def apply(self, x):
        """Stamps the trigger on images `x` `(N, H, W, C)` in [0, 1]; returns float32."""
        x = np.asarray(x, np.float32)
        stamping = self.stamping
        if stamping == "local":
            return ((1.0 - self.mask) * x + self.mask * self.pattern).astype(np.float32)
        if stamping == "warp":
            return ops.convert_to_numpy(warp(ops.convert_to_tensor(x), self.pattern[None]))
        if stamping == "quantise":
            from kcc.scan import quantisation  # it builds on this module

            return ops.convert_to_numpy(quantisation.quantise(x, self.size, self.pattern))
        return np.clip(x + self.pattern, 0.0, 1.0).astype(np.float32)


class TriggerInversion(keras.Model):
    """Local, global, warp and smooth triggers for every class, optimised together by `fit`.

    Trainable weights: mask logits `(K', H, W, 1)`, pattern logits `(K', H, W, C)` (both
    through a sigmoid), perturbations `(K', H, W, C)`, warp control offsets
    `(K', WARP_GRID, WARP_GRID, 2)` in pixels and smooth control values
    `(K', SMOOTH_GRID, SMOOTH_GRID, C)`. `fit` takes images `(B, H, W, C)` and their labels
    `(B,)` (the model's own predictions); every image is stamped with every candidate's four
    triggers, `4 * K' * B` images per step, and an image counts for target `k` only if its label
    is not `k`.

    Args:
        classifier: the suspect, producing logits `(B, K)` (frozen, inference mode).
        classes: the candidate target classes (default: all `K`); `K'` of them below.
        lambda_mask: penalty per unit of mask L1 norm (pixels).
        lambda_global: penalty per unit of perturbation L2 norm (global and smooth).
        lambda_warp: penalty per pixel of mean displacement.
    """

    def __init__(self, classifier, classes=None, lambda_mask=0.01, lambda_global=0.1,
                 lambda_warp=0.5, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        num_classes = int(classifier.outputs[0].shape[-1])
        self.classes = np.arange(num_classes) if classes is None else np.asarray(classes)
        k = len(self.classes)
        h, w, c = classifier.inputs[0].shape[1:]
        self.lambdas = {"local": float(lambda_mask), "global": float(lambda_global),
                        "warp": float(lambda_warp), "smooth": float(lambda_global)}
        self.mask_logits = self.add_weight(
            shape=(k, h, w, 1), initializer=keras.initializers.Constant(MASK_START),
            name="mask_logits")
        self.pattern_logits = self.add_weight(
            shape=(k, h, w, c), initializer="zeros", name="pattern_logits")
        self.perturbations = self.add_weight(
            shape=(k, h, w, c), initializer="zeros", name="perturbations")
        self.warp_control = self.add_weight(
            shape=(k, WARP_GRID, WARP_GRID, 2), initializer="zeros", name="warp_control")
        self.smooth_control = self.add_weight(
            shape=(k, SMOOTH_GRID, SMOOTH_GRID, c), initializer="zeros", name="smooth_control")
        self.upsample = {grid: (bicubic_matrix(grid, h).astype(np.float32),
                                bicubic_matrix(grid, w).astype(np.float32))
                         for grid in (WARP_GRID, SMOOTH_GRID)}

    def masks(self):
        return ops.sigmoid(self.mask_logits)

    def patterns(self):
        return ops.sigmoid(self.pattern_logits)

    def _upsampled(self, control):
        rows, cols = self.upsample[control.shape[1]]
        return ops.einsum("hi,kijc,wj->khwc", rows, control, cols)

    def flows(self):
        """`(K', H, W, 2)`: the warp triggers' displacements in pixels."""
        return self._upsampled(self.warp_control)

    def smooth_perturbations(self):
        """`(K', H, W, C)`: the smooth triggers' additive perturbations."""
        return self._upsampled(self.smooth_control)

    def sizes(self):
        """`{kind: (K',)}`: each trigger's size as in the module docstring."""
        def l2(d):
            return ops.sqrt(ops.sum(ops.square(d), axis=(1, 2, 3)) + 1e-12)

        flows = self.flows()
        return {
            "local": ops.sum(self.masks(), axis=(1, 2, 3)),
            "global": l2(self.perturbations),
            "warp": ops.mean(ops.sqrt(ops.sum(ops.square(flows), axis=-1) + 1e-12),
                             axis=(1, 2)),
            "smooth": l2(self.smooth_perturbations()),
        }

    def stamp(self, x):
        """`x` `(B, H, W, C)` -> `(4 * K * B, H, W, C)`: local, global, warp, then smooth
        triggers (the order of `KINDS`)."""
        k, shape = len(self.classes), tuple(x.shape[1:])
        m, p = self.masks()[:, None], self.patterns()[:, None]
        local = ops.reshape((1.0 - m) * x[None] + m * p, (-1, *shape))

        def added(d):
            return ops.reshape(ops.clip(x[None] + d[:, None], 0.0, 1.0), (-1, *shape))

        batch = ops.shape(x)[0]
        flows = ops.repeat(self.flows(), batch, axis=0)  # (K * B, H, W, 2)
        warped = warp(ops.tile(x, (k, 1, 1, 1)), flows)
        return ops.concatenate([local, added(self.perturbations), warped,
                                added(self.smooth_perturbations())], axis=0)

    def call(self, x, training=False):
        return self.classifier(self.stamp(x), training=False)

    def _terms(self, y, logits):
        """Per-kind mean cross-entropy towards each target over images not of that target."""
        k = len(self.classes)
        batch = ops.shape(y)[0]
        classes = ops.convert_to_tensor(self.classes.astype(np.int32))
        targets = ops.tile(ops.repeat(classes, batch), len(KINDS))
        ce = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        ce = ops.reshape(ce, (len(KINDS), k, batch))
        counts = ops.cast(ops.not_equal(y[None, :], classes[:, None]), ce.dtype)
        per_class = ops.sum(ce * counts[None], axis=-1) / ops.maximum(
            ops.sum(counts, axis=-1)[None], 1.0)
        return per_class  # (len(KINDS), K)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        per_class = self._terms(ops.cast(y, "int32"), y_pred)
        sizes = self.sizes()
        penalty = sum(self.lambdas[kind] * sizes[kind] for kind in KINDS)
        return ops.sum(ops.mean(per_class, axis=-1)) + ops.mean(penalty)

    def triggers(self):
        """The current triggers, `{kind: [Trigger] * K'}` for every kind of `KINDS`."""
        masks = ops.convert_to_numpy(self.masks()).astype(np.float32)
        shapes = {"local": ops.convert_to_numpy(self.patterns()),
                  "global": ops.convert_to_numpy(self.perturbations),
                  "warp": ops.convert_to_numpy(self.flows()),
                  "smooth": ops.convert_to_numpy(self.smooth_perturbations())}
        sizes = {kind: ops.convert_to_numpy(v) for kind, v in self.sizes().items()}
        return {kind: [Trigger(kind, int(t), shapes[kind][i].astype(np.float32),
                               masks[i] if kind == "local" else None, float(sizes[kind][i]))
                       for i, t in enumerate(self.classes)]
                for kind in KINDS}


def flip_rates(model, triggers, images, labels, batch_size=512):
    """Sets each trigger's `flip_rate` on `images` whose `labels` differ from its target.

    Args:
        model: the classifier.
        triggers: iterable of `Trigger`.
        images: held-aside images `(N, H, W, C)` in [0, 1].
        labels: the model's predictions on them `(N,)`.

    Returns:
        the triggers, updated in place.
    """
    for trigger in triggers:
        trigger.flip_rate = flip_rate(model, trigger, images, labels, batch_size)
    return triggers


def flip_rate(model, trigger, images, labels, batch_size=512):
    """The share of `images` `(N, H, W, C)` whose `labels` `(N,)` differ from the trigger's
    target that `model` sends to the target once stamped; NaN when every label is the target.
    For an untargeted trigger (`target` None, `kcc.scan.untargeted`): of the images `model`
    itself puts in their `labels`, the share whose class it changes."""
    labels = np.asarray(labels)
    if trigger.target is None:
        keep = np.argmax(parallel.predict(model, images, batch_size), -1) == labels
    else:
        keep = labels != trigger.target
    if not keep.any():
        return float("nan")
    logits = parallel.predict(model, trigger.apply(images[keep]), batch_size)
    moved = np.argmax(logits, -1)
    if trigger.target is None:
        return float(np.mean(moved != labels[keep]))
    return float(np.mean(moved == trigger.target))


class KeepSmallestEffective(keras.callbacks.Callback):
    """After every epoch of `TriggerInversion.fit`, keeps per class and kind the smallest
    trigger that flips at least `FLIP_GOAL` of `images` (else the one that flips most).

    Args:
        classifier: the suspect.
        images: the images the triggers are fitted on `(N, H, W, C)`; `labels` `(N,)` the
            suspect's predictions on them.

    Attributes:
        best: `{kind: [Trigger]}` after `fit` (flip rates reset to None,
            to be measured on held-aside images).
    """

    def __init__(self, classifier, images, labels):
        super().__init__()
        self.classifier, self.images, self.labels = classifier, images, labels
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        current = self.model.triggers()
        for kind in KINDS:
            flip_rates(self.classifier, current[kind], self.images, self.labels)
        if self.best is None:
            self.best = current
            return
        for kind in KINDS:
            for i, new in enumerate(current[kind]):
                old = self.best[kind][i]
                if better(new, old):
                    self.best[kind][i] = new

    def on_train_end(self, logs=None):
        for kind in KINDS:
            for trigger in self.best[kind]:
                trigger.flip_rate = None


def better(new, old):
    """Whether trigger `new` is preferred to `old` (both with flip rates measured)."""
    new_ok, old_ok = new.flip_rate >= FLIP_GOAL, old.flip_rate >= FLIP_GOAL
    if new_ok != old_ok:
        return new_ok
    return new.size < old.size if new_ok else new.flip_rate > old.flip_rate


def invert_triggers(model, images, labels, steps=200, batch_size=32, learning_rate=0.1,
                    lambda_mask=0.01, lambda_global=0.1, lambda_warp=0.5, classes=None, seed=0,
                    verbose=True, distribution=None):
    """Inverts a trigger of every kind of `KINDS` for every class of `model` (module doc).

    Args:
        model: a Keras classifier on [0, 1] images, producing logits (not modified).
        images: images to fit the triggers on `(N, H, W, C)` in [0, 1] (e.g. synthesised
            from the model's BatchNorm statistics: no data needed).
        labels: the model's predictions on `images` `(N,)`.
        steps: Adam steps.
        batch_size: images per step (each is stamped with `2 * K` triggers).
        learning_rate: Adam learning rate (on logits, perturbations and warp offsets in pixels).
        lambda_mask, lambda_global, lambda_warp: penalty weights (see `TriggerInversion`).
        classes: candidate target classes (default: every class).
        seed: seeds the batch order.
        verbose: show a progress line that updates while the optimisation runs.
        distribution: where the optimisation runs (`kcc.parallel.get`): None or `"off"` on one
            device; `"data_parallel"`, `"auto"` or a `keras.distribution.DataParallel` splits
            every batch of images over the devices (JAX only; their count must divide
            `batch_size`); the triggers are replicated. The triggers are the single-device ones
            up to float rounding.

    Returns:
        `{kind: [Trigger]}` for every kind of `KINDS`, one per candidate class
        and kind, each the smallest that reached `FLIP_GOAL` at one of the `CHECKS` checks (flip
        rates not yet measured).
    """
    return optimise(lambda: TriggerInversion(model, classes, lambda_mask, lambda_global,
                                             lambda_warp),
                    model, images, labels, steps, batch_size, learning_rate, seed, verbose,
                    distribution, "trigger inversion")


def optimise(build, model, images, labels, steps, batch_size, learning_rate, seed, verbose,
             distribution, description):
    """Fits the triggers of the inversion model `build()` makes (a `TriggerInversion`, built
    inside the distribution's scope with `model` frozen) with Adam for `steps` steps of
    `batch_size` of `images` and their `labels`, checking them `CHECKS` times
    (`KeepSmallestEffective`); the rest as `invert_triggers`. Returns `{kind: [Trigger]}`."""
    distribution = parallel.get(distribution)
    parallel.check_batch_size(distribution, batch_size, batch_size)  # every batch is full
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels, np.int32)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(images))
                            for _ in range(-(-steps * batch_size // len(images)))])
    order = order[:steps * batch_size]
    with models.trainable_restored(model), parallel.scope(distribution, model):
        model.trainable = False
        inversion = build()
        checks = min(CHECKS, steps)
        per_check = steps // checks
        inversion.compile(optimizer=keras.optimizers.Adam(learning_rate),
                          steps_per_execution=min(per_check, 10))
        keep = KeepSmallestEffective(model, images, labels)
        inversion.fit(images[order], labels[order], batch_size=batch_size, epochs=checks,
                      steps_per_epoch=per_check, shuffle=False, verbose=0,
                      callbacks=[keep, *progress_lib.callbacks(description, verbose=verbose)])
    return keep.best
