"""I-BAU: adversarial unlearning of backdoors via the implicit hypergradient.

Zeng et al. pose backdoor removal as a minimax problem over one universal perturbation `delta`
shared by all images (the stand-in for an unknown trigger):

    min_theta  max_{||delta||_2 <= C}  H(delta, theta) = 1/n sum_i L(f_theta(x_i + delta), y_i)

and solve it by alternating (paper Algorithm 1, reference code YiZeng623/I-BAU):

* **inner max** (one universal perturbation per round): starting from `delta = 0`, one SGD step
  of size `perturbation_lr` (10) per batch of the defender's images on
  `-CE(f(clip(x + delta)), argmax f(x)) + 0.001 ||delta||^2`, then projection onto the L2 ball
  of radius `perturbation_norm` (10, in [0, 1] pixel units of a whole `(H, W, C)` image);
* **outer min**: one Adam step (lr 1e-3) per batch along the implicit hypergradient of the outer
  loss `CE(f(clip(x + m * delta)), y)` (`m` marks the batch images that get the perturbation).
  `delta*(theta)` is defined as a fixed point of the inner gradient map
  `Phi(delta, theta) = delta - eta * grad_delta G(delta, theta)` (`eta` = 0.1,
  `G(delta, theta) = -CE(f(clip(x_0 + delta)), y_0) + 0.001 ||delta||^2` on the first batch),
  so by the implicit function theorem
  `dH/dtheta = dH/dtheta|_delta + (dPhi/dtheta)^T v`,  with `v = (I - dPhi/ddelta)^-T dH/ddelta`;
  `v` is approximated by `K` (5) fixed-point iterations `v <- (dPhi/ddelta)^T v + dH/ddelta`,
  which are Hessian-vector products, exactly as the reference `hypergrad.fixed_point`.

What follows the reference code rather than the paper text, on purpose: only
`perturbed_fraction` (1%, at least one image) of each outer batch gets `delta` (the reference's
`portion = 0.01`), the network runs in inference mode (BN statistics frozen, BN parameters
trained), and the model of the last round is returned (I-BAU has no model selection; validation
accuracy is reported per round). Nothing is approximated beyond the reference's `K`-step
fixed-point iteration. Gradients and Hessian-vector products come from `model.stateless_call`
through `kcc.gradients.value_and_grad`.

Reference:
    Zeng, Chen, Park, Mao, Jin and Jia, "Adversarial Unlearning of Backdoors via Implicit
    Hypergradient", ICLR 2022.
"""

import time

import keras
import numpy as np
from keras import ops

from kcc import gradients
from kcc.defenses import ft
from kcc.defenses import pruning


def ibau(model, defender_data, *, n_rounds=5, fixed_point_iterations=5, batch_size=100,
         learning_rate=1e-3, perturbation_lr=10.0, perturbation_norm=10.0,
         perturbation_reg=1e-3, inner_step=0.1, perturbed_fraction=0.01, max_steps=None,
         seed=0):
    """I-BAU on a copy of `model`.

    Args:
        model: the suspect Keras classifier (pixels in [0, 1] -> logits); not modified.
        defender_data: a `kcc.defenses.DefenderData`; I-BAU unlearns on `x, y` and reports
            accuracy on `x_val, y_val` after every round.
        n_rounds: unlearning rounds, one universal perturbation each (reference: 5).
        fixed_point_iterations: `K`, iterations approximating the implicit term (reference: 5).
        batch_size: images per batch (reference: 100).
        learning_rate: Adam learning rate of the outer step (reference: 1e-3).
        perturbation_lr: SGD step size of the inner maximisation (reference: 10).
        perturbation_norm: L2 radius of the universal perturbation, pixel units (reference: 10).
        perturbation_reg: weight of `||delta||^2` in the inner loss (reference: 1e-3).
        inner_step: step `eta` of the fixed-point map `Phi` (reference: 0.1).
        perturbed_fraction: fraction of each outer batch given `delta` (reference: 0.01; at
            least one image).
        max_steps: CPU budget, at most this many outer (model-update) steps in all.
        seed: seeds which images get the perturbation.

    Returns:
        `(defended, report)`: a new Keras model and a JSON-serialisable report with, per round,
        the perturbation's norm, validation accuracy with and without it, and the steps taken.

    Raises:
        TypeError: if `defender_data` is not a `DefenderData`.
        ValueError: if `defender_data` has no validation images.
    """
    start = time.time()
    ft.require_validation(defender_data)
    unlearned = pruning.clone(model)
    x, y = defender_data.x, np.asarray(defender_data.y, np.int32)
    batches = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    steps = HypergradientSteps(unlearned, perturbation_reg, inner_step, fixed_point_iterations)
    optimizer = keras.optimizers.Adam(learning_rate)
    rng = np.random.default_rng(seed)
    acc0, _ = ft.evaluate_clean(unlearned, defender_data.x_val, defender_data.y_val)
    history, taken = [{"round": 0, "val_acc": acc0}], 0
    for round_ in range(1, n_rounds + 1):
        if max_steps is not None and taken >= max_steps:
            break
        delta = steps.universal_perturbation(batches, perturbation_lr, perturbation_norm)
        adv_acc, _ = ft.evaluate_clean(unlearned, np.clip(defender_data.x_val + delta, 0, 1),
                                       defender_data.y_val)
        x0, y0 = batches[0]
        for xb, yb in batches:
            if max_steps is not None and taken >= max_steps:
                break
            mask = np.zeros((len(xb), 1, 1, 1), np.float32)
            count = max(1, int(perturbed_fraction * len(xb)))
            mask[rng.choice(len(xb), count, replace=False)] = 1.0
            grads = steps.hypergradient(delta, x0, y0, xb, yb, mask)
            optimizer.apply(grads, unlearned.trainable_variables)
            taken += 1
        acc, loss = ft.evaluate_clean(unlearned, defender_data.x_val, defender_data.y_val)
        history.append({"round": round_, "val_acc": acc, "val_loss": loss,
                        "val_acc_under_perturbation_before": adv_acc,
                        "perturbation_l2": float(np.sqrt(np.sum(delta ** 2))),
                        "outer_steps": taken})
    report = {
        "method": "ibau",
        "hyperparameters": {"n_rounds": n_rounds,
                            "fixed_point_iterations": fixed_point_iterations,
                            "batch_size": batch_size, "optimizer": "adam",
                            "learning_rate": learning_rate, "perturbation_lr": perturbation_lr,
                            "perturbation_norm": perturbation_norm,
                            "perturbation_reg": perturbation_reg, "inner_step": inner_step,
                            "perturbed_fraction": perturbed_fraction, "max_steps": max_steps,
                            "seed": seed},
        "data": defender_data.describe(),
        "history": history,
        "selected": {"round": history[-1]["round"], "rule": "last round (no model selection)",
                     "val_acc": history[-1]["val_acc"]},
        "seconds": time.time() - start,
    }
    return pruning.clone(unlearned), report


class HypergradientSteps:
    """The compiled pieces of I-BAU for one model: perturbation gradients, HVPs, hypergradients.

    Shapes: `delta` `(1, H, W, C)`; images `(B, H, W, C)` in [0, 1]; labels int32 `(B,)`;
    `mask` `(B, 1, 1, 1)` of 0/1.
    """

    def __init__(self, model, perturbation_reg, inner_step, iterations):
        self.model, self.inner_step, self.iterations = model, inner_step, iterations
        num_classes = model.outputs[0].shape[-1]

        def cross_entropy(trainable, non_trainable, x, y):
            logits, _ = model.stateless_call(trainable, non_trainable, x, training=False)
            # Written out (not the fused TF op) so that it has second derivatives everywhere.
            log_probs = ops.log_softmax(logits, axis=-1)
            return -ops.mean(ops.sum(ops.one_hot(y, num_classes) * log_probs, axis=-1))

        def inner(delta, trainable, non_trainable, x, y):
            loss = -cross_entropy(trainable, non_trainable, ops.clip(x + delta, 0.0, 1.0), y)
            return loss + perturbation_reg * ops.sum(ops.square(delta))

        def outer(delta, trainable, non_trainable, x, y, mask):
            return cross_entropy(trainable, non_trainable, ops.clip(x + mask * delta, 0.0, 1.0), y)

        inner_grad = gradients.value_and_grad(inner, argnums=0)

        def inner_dot(delta, trainable, non_trainable, x, y, v):
            return ops.sum(inner_grad(delta, trainable, non_trainable, x, y)[1] * v)

        self._inner_grad = gradients.value_and_grad(inner, argnums=0, jit=True)
        self._outer_grads = gradients.value_and_grad(outer, argnums=(0, 1), jit=True)
        self._hvp = gradients.value_and_grad(inner_dot, argnums=0, jit=True)
        self._mixed = gradients.value_and_grad(inner_dot, argnums=1, jit=True)

    def _state(self):
        return ([ops.convert_to_tensor(v) for v in self.model.trainable_variables],
                [ops.convert_to_tensor(v) for v in self.model.non_trainable_variables])

    def universal_perturbation(self, batches, step_size, radius):
        """The inner maximisation: one SGD step per batch against the model's own labels."""
        labels = [np.argmax(self.model.predict(xb, batch_size=512, verbose=0), -1)
                  for xb, _ in batches]
        # After `predict`: on JAX it may donate (delete) the arrays a state fetched earlier holds.
        trainable, non_trainable = self._state()
        delta = np.zeros((1, *batches[0][0].shape[1:]), np.float32)
        for (xb, _), yb in zip(batches, labels):
            _, grad = self._inner_grad(delta, trainable, non_trainable, xb, yb.astype(np.int32))
            delta = delta - step_size * ops.convert_to_numpy(grad)
        norm = float(np.sqrt(np.sum(delta ** 2)))
        return (delta * min(1.0, radius / max(norm, 1e-12))).astype(np.float32)

    def hypergradient(self, delta, x0, y0, x, y, mask):
        """The implicit hypergradient of the outer loss w.r.t. the trainable variables."""
        trainable, non_trainable = self._state()
        _, (g_delta, g_theta) = self._outer_grads(delta, trainable, non_trainable, x, y, mask)
        v = ops.zeros_like(g_delta)
        for _ in range(self.iterations):  # v <- (I - eta H)^T v + dH/ddelta
            _, hv = self._hvp(delta, trainable, non_trainable, x0, y0, v)
            v = v - self.inner_step * hv + g_delta
        _, mixed = self._mixed(delta, trainable, non_trainable, x0, y0, v)
        return [g - self.inner_step * m for g, m in zip(g_theta, mixed)]
