"""Maximum achievable margin per class, the statistic of MM-BD (data-free).

For every class `k`, images are optimised from uniform noise to maximise the logit margin

    m_k(x) = z_k(x) - max_{j != k} z_j(x),        r_k = max over the images of m_k(x),

with `x` kept in [0, 1]. A backdoor makes its target class reachable by a small, universal
input pattern, so the target's `r_k` is abnormally large compared with the other classes'
(`kcc.scan.anomaly` turns the `r_k` into a p-value).

The image that reaches `r_k` carries what drives class `k`, the backdoor's features included,
whatever the trigger's shape. `blend_trigger` turns it into a trigger to unlearn: the image
blended into others, `x' = (1 - a) x + a x*_k`, at the smallest weight `a` that sends them to
`k`. On the zoo (test images, diagnosis only) the target's image blended at `a = 0.2` sent 96%
of `blended_all2one`'s and 100% of `trojan_all2one`'s images to the target, and the other
classes' images 3-48%; on `badnets_all2one` the target's sent 15% (a patch blended at 0.2 is
faint), and on `clean` every class's 5-45%. `window_trigger` reads a patch trigger off it: the
smallest square window that, pasted in place onto other images, sends them to `k`.

References: Wang, Miller and Kesidis, "MM-BD: Post-Training Detection of Backdoor Attacks with
Arbitrary Backdoor Pattern Types Using a Maximum Margin Statistic", IEEE S&P 2024; Chen et al.,
"Targeted Backdoor Attacks on Deep Learning Systems Using Data Poisoning", 2017 (the blended
trigger `(1 - a) x + a t`).
"""

import keras
import numpy as np
from keras import ops

from kcc import models
from kcc import parallel
from kcc import progress as progress_lib
from kcc import training
from kcc.scan import inversion

#: Blend weights `a` tried by `blend_trigger`, smallest first.
BLEND_WEIGHTS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
#: Window sides in pixels tried by `window_trigger`, smallest first, and the step between the
#: windows' top-left corners.
WINDOW_SIZES = (3, 5, 7)
WINDOW_STRIDE = 2
#: Images `window_trigger` searches the windows on (the chosen window's rate is then measured
#: on all).
WINDOW_SEARCH_IMAGES = 64


class _Clip01(keras.constraints.Constraint):
    def __call__(self, w):
        return ops.clip(w, 0.0, 1.0)


class MarginAscent(keras.Model):
    """`images_per_class` images per class whose mean class margin `fit` maximises.

    The classifier is frozen and runs in inference mode; the images, `(K * n, H, W, C)` in
    [0, 1], are the only trainable weight, so every backend's compiled train step runs the
    ascent. `fit`'s inputs are ignored placeholders `(steps, 1)`.

    Args:
        classifier: a Keras classifier producing logits `(B, K)` from `(B, H, W, C)` images.
        images_per_class: images optimised for each class (MM-BD: 30).
        seed: seeds the uniform initial images.
    """

    def __init__(self, classifier, images_per_class=30, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.num_classes = int(classifier.outputs[0].shape[-1])
        self.images_per_class = int(images_per_class)
        shape = tuple(classifier.inputs[0].shape[1:])
        self.images = self.add_weight(
            shape=(self.num_classes * self.images_per_class, *shape), name="images",
            initializer=keras.initializers.RandomUniform(0.0, 1.0, seed=seed),
            constraint=_Clip01())
        self.classes = np.repeat(np.arange(self.num_classes), self.images_per_class)

    def call(self, inputs, training=False):
        return self.classifier(self.images, training=False)

    def margins(self, logits):
        """`z_k - max_{j != k} z_j` of every image for its own class `k`, `(K * n,)`."""
        own = ops.one_hot(self.classes, self.num_classes)
        target = ops.sum(logits * own, axis=-1)
        others = ops.max(logits - 1e9 * own, axis=-1)
        return target - others

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return -ops.mean(self.margins(y_pred))


def ascend(ascent, steps, learning_rate, label, verbose=True):
    """Runs `steps` Adam steps of an ascent model whose only weights are its optimised inputs
    (its `fit` inputs are ignored placeholders) and returns its output after them.

    Args:
        ascent: a compiled-by-this-function `keras.Model` such as `MarginAscent`.
        steps: Adam steps; learning_rate: its learning rate.
        label: the progress line's name; verbose: show it.
    """
    ascent.compile(optimizer=keras.optimizers.Adam(learning_rate),
                   steps_per_execution=min(steps, 10))
    rows = parallel.device_count()  # a placeholder row per device: each batch splits evenly
    ascent.fit(np.zeros((steps * rows, 1), np.float32), batch_size=rows, epochs=1,
               shuffle=False, verbose=0, callbacks=progress_lib.callbacks(label, steps, verbose))
    return ascent(np.zeros((1, 1), np.float32))


def max_margin(model, images_per_class=30, steps=300, learning_rate=0.01, seed=0,
               verbose=True, distribution=None):
    """The maximum achievable margin `r_k` of every class (MM-BD's detection statistic).

    Args:
        model: a Keras classifier on [0, 1] images, producing logits (not modified).
        images_per_class: random starting images per class (MM-BD: 30).
        steps: Adam steps (MM-BD: 300).
        learning_rate: Adam learning rate, in [0, 1] pixel units.
        seed: seeds the starting images.
        verbose: show a progress line that updates while the ascent runs.
        distribution: where the ascent runs (`kcc.parallel.get`): None or `"off"` on one
            device; `"data_parallel"`, `"auto"` or a `keras.distribution.DataParallel` splits
            the `K * images_per_class` images (the variable) over the devices (JAX only; their
            count must divide it, `ValueError` otherwise). The margins are the single-device
            ones up to float rounding.

    Returns:
        `(margins, images)`: float64 `(K,)`, `r_k`, the largest margin reached by an image of
        class `k`, in logit units; float32 `(K, H, W, C)` in [0, 1], the image that reached it.
    """
    if images_per_class < 1 or steps < 1:
        raise ValueError(f"Need images_per_class >= 1 and steps >= 1. Received "
                         f"images_per_class={images_per_class}, steps={steps}.")
    distribution = parallel.get(distribution)
    count = int(model.outputs[0].shape[-1]) * images_per_class
    parallel.check_batch_size(distribution, count, count)
    with models.trainable_restored(model), \
            parallel.scope(parallel.shard_first_axis(distribution, ".*images"), model):
        model.trainable = False
        ascent = MarginAscent(model, images_per_class, seed)
        logits = ascend(ascent, steps, learning_rate, "max margin", verbose)
        margins = ops.convert_to_numpy(ascent.margins(logits)).astype(np.float64)
        images = ops.convert_to_numpy(ascent.images).astype(np.float32)
    margins = margins.reshape(ascent.num_classes, images_per_class)
    images = images.reshape(ascent.num_classes, images_per_class, *images.shape[1:])
    best = margins.argmax(axis=1)
    return margins.max(axis=1), images[np.arange(ascent.num_classes), best]


def blended(margin_image, target, weight):
    """`margin_image` `(H, W, C)` in [0, 1] as a `kcc.scan.Trigger` of kind `"blend"` for
    `target` at weight `weight`: stamped as `(1 - weight) * x + weight * margin_image`, `mask`
    the weight everywhere `(H, W, 1)`, `size` the weight (flip rate not measured)."""
    margin_image = np.asarray(margin_image, np.float32)
    mask = np.full((*margin_image.shape[:2], 1), weight, np.float32)
    return inversion.Trigger("blend", int(target), margin_image, mask, float(weight))


def blend_trigger(model, margin_image, target, images, labels=None):
    """The max-margin image of `target` as a blend trigger (module docstring).

    Args:
        model: the classifier.
        margin_image: `(H, W, C)` in [0, 1], the image that reached `target`'s margin
            (`max_margin`'s second output).
        target: its class.
        images: images to blend it into `(N, H, W, C)` (synthetic: no data needed).
        labels: the model's predictions on `images` (computed when None); images already of
            `target` do not count.

    Returns:
        a `kcc.scan.Trigger` of kind `"blend"`: `pattern` the image, `mask` the weight `a`
        everywhere `(H, W, 1)`, `size` `a`, `flip_rate` on `images`: the smallest weight of
        `BLEND_WEIGHTS` that sends `inversion.FLIP_GOAL` of the images to `target`, else the
        one that sends most.
    """
    images = np.asarray(images, np.float32)
    labels = training.predict_labels(model, images) if labels is None else labels
    best = None
    for weight in BLEND_WEIGHTS:
        trigger = blended(margin_image, target, weight)
        inversion.flip_rates(model, [trigger], images, labels)
        if best is None or inversion.better(trigger, best):
            best = trigger
        if trigger.flip_rate >= inversion.FLIP_GOAL:
            break
    return best


def windowed(margin_image, target, row, col, size):
    """The `size` x `size` window of `margin_image` `(H, W, C)` at `(row, col)` (its top-left
    pixel) as a `kcc.scan.Trigger` of kind `"window"` for `target`: stamped in place onto other
    images (`mask` 1 inside the window, 0 elsewhere), `size` the window's area in pixels (flip
    rate not measured)."""
    margin_image = np.asarray(margin_image, np.float32)
    mask = np.zeros((*margin_image.shape[:2], 1), np.float32)
    mask[row:row + size, col:col + size] = 1.0
    return inversion.Trigger("window", int(target), margin_image, mask, float(size * size))


def window_trigger(model, margin_image, target, images, labels=None, batch_size=512):
    """The smallest window of `target`'s max-margin image that, pasted in place onto other
    images, sends them to `target`: a patch trigger read off the image rather than inverted.
    A backdoor's patch can be one the mask-and-pattern inversion misses (on `trojan_all2one`,
    whose trigger is a 5x5 patch optimised to excite one neuron, the inverted local trigger of
    its target needed 84 pixels, as large as other classes'), while the target's max-margin
    image holds the patch's features: one of its 3x3 windows sent 100% of synthetic images
    to the target, and no window of another class's more than 52% up to 7x7
    (`benchmarks/results/probes/window.json`).

    Every window of `WINDOW_SIZES` (smallest first) with corners `WINDOW_STRIDE` apart is
    pasted onto up to `WINDOW_SEARCH_IMAGES` of `images` not of `target`; the search stops at
    the first size whose best window sends `inversion.FLIP_GOAL` of them.

    Args:
        model: the classifier.
        margin_image: `(H, W, C)` in [0, 1], the image that reached `target`'s margin.
        target: its class.
        images: synthetic images `(N, H, W, C)` to paste windows onto (no data needed).
        labels: the model's predictions on `images` (computed when None); images already of
            `target` do not count.

    Returns:
        a `kcc.scan.Trigger` of kind `"window"` (`windowed`), its `flip_rate` measured on all
        of `images`: the smallest window that reached `FLIP_GOAL` on the search images, else the
        one that sent most; None when every image is of `target`.
    """
    images = np.asarray(images, np.float32)
    labels = training.predict_labels(model, images) if labels is None else labels
    others = images[np.asarray(labels) != target]
    if not len(others):
        return None
    search = others[:WINDOW_SEARCH_IMAGES]
    height, width = images.shape[1:3]
    per_call = max(1, batch_size * 8 // len(search))  # windows per prediction call
    best, best_rate = None, -1.0
    for size in WINDOW_SIZES:
        corners = [(r, c) for r in range(0, height - size + 1, WINDOW_STRIDE)
                   for c in range(0, width - size + 1, WINDOW_STRIDE)]
        for start in range(0, len(corners), per_call):
            chunk = corners[start:start + per_call]
            pasted = np.repeat(search[None], len(chunk), axis=0)
            for i, (r, c) in enumerate(chunk):
                pasted[i, :, r:r + size, c:c + size] = margin_image[r:r + size, c:c + size]
            logits = parallel.predict(model, pasted.reshape(-1, *search.shape[1:]), batch_size)
            rates = (np.argmax(logits, -1) == target).reshape(len(chunk), -1).mean(axis=1)
            i = int(rates.argmax())
            if rates[i] > best_rate:
                best, best_rate = windowed(margin_image, target, *chunk[i], size), rates[i]
        if best_rate >= inversion.FLIP_GOAL:
            break
    best.flip_rate = inversion.flip_rate(model, best, images, labels, batch_size)
    return best
