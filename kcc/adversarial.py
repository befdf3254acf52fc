"""L2 projected gradient descent (PGD) on a Keras classifier, in [0, 1] pixel space.

Used by C&C's distillation (Eq. 10: `delta = argmax_{||delta||_2 <= eps} CE(F(x + delta), y)`).

Reference: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks",
ICLR 2018.
"""

import keras
import numpy as np
from keras import ops

from kcc import gradients
from kcc import progress


def _cross_entropy(logits, labels):
    return ops.sum(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def l2_pgd(model, x, y, epsilon=0.5, steps=10, step_size=None, batch_size=256, seed=0,
           value_and_grad=None, verbose=False):
    """Untargeted L2 PGD: maximise cross-entropy within an L2 ball, images kept in [0, 1].

    Args:
        model: Keras classifier producing logits.
        x: images `(N, H, W, C)` in [0, 1].
        y: labels `(N,)` whose cross-entropy is maximised.
        epsilon: L2 radius per image, in [0, 1] pixel units (paper: 0.5).
        steps: gradient steps (paper: 10).
        step_size: L2 length of each step (default `2.5 * epsilon / steps`).
        batch_size: images per gradient computation.
        seed: seeds the random start inside the ball.
        value_and_grad: optional precompiled `kcc.gradients.input_gradient_fn(model, ...)` to
            reuse across calls (its objective must be the summed cross-entropy).
        verbose: show progress over the gradient steps (`kcc.progress`).

    Returns:
        adversarial images float32 `(N, H, W, C)`, `||x_adv - x||_2 <= epsilon` per image.
    """
    if epsilon <= 0 or steps < 1:
        raise ValueError(f"Need epsilon > 0 and steps >= 1. Received epsilon={epsilon}, steps={steps}.")
    step_size = step_size or 2.5 * epsilon / steps
    value_and_grad = value_and_grad or gradients.input_gradient_fn(model, _cross_entropy)
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int32)
    out = np.empty_like(x)
    shown = None
    if verbose:
        shown = progress.Progress(-(-len(x) // batch_size) * steps, "adversarial images (L2 PGD)")
    for first in range(0, len(x), batch_size):
        x0, yb = x[first:first + batch_size], y[first:first + batch_size]
        delta = _project(rng.normal(size=x0.shape).astype(np.float32) * 1e-3, epsilon)
        for step in range(steps):
            _, grad = value_and_grad(np.clip(x0 + delta, 0, 1), yb)
            norm = np.sqrt(np.sum(grad.reshape(len(grad), -1) ** 2, axis=1)) + 1e-12
            delta = delta + step_size * grad / norm.reshape(-1, *[1] * (grad.ndim - 1))
            delta = _project(np.clip(x0 + delta, 0, 1) - x0, epsilon)
            if shown:
                shown.update(first // batch_size * steps + step + 1)
        out[first:first + len(x0)] = np.clip(x0 + delta, 0, 1)
    return out


def cross_entropy_gradient_fn(model):
    """A reusable gradient function for `l2_pgd(..., value_and_grad=...)`."""
    return gradients.input_gradient_fn(model, _cross_entropy)


def _project(delta, epsilon):
    norm = np.sqrt(np.sum(delta.reshape(len(delta), -1) ** 2, axis=1))
    factor = np.minimum(1.0, epsilon / np.maximum(norm, 1e-12))
    return (delta * factor.reshape(-1, *[1] * (delta.ndim - 1))).astype(np.float32)
