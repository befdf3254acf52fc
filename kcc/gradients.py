"""Gradients of an objective with respect to a model's input, on each Keras backend.

Keras 3 has no backend-agnostic way to differentiate with respect to inputs outside `fit`; this
is the one backend-specific module the input-space optimisations need (synthesis, PGD, CLA,
Trojan): TensorFlow uses `tf.GradientTape`, JAX `jax.value_and_grad` over `model.stateless_call`
(jit-compiled once per function), PyTorch `torch.autograd`.
"""

import keras
import numpy as np


def input_gradient_fn(model, objective):
    """A function `(x, *args) -> (value, gradient)` for `objective(model(x), *args)`.

    Args:
        model: a Keras model, run in inference mode (`training=False`).
        objective: `f(outputs, *args) -> scalar` written with `keras.ops`; `args` are extra
            arrays such as labels.

    Returns:
        A callable taking NumPy `x` (and `args`) and returning the objective's value as a
        float and its gradient with respect to `x` as a float32 NumPy array of `x`'s shape.

    Raises:
        NotImplementedError: on a backend other than TensorFlow, JAX and PyTorch.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def step(x, *args):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = objective(model(x, training=False), *args)
            return value, tape.gradient(value, x)

        def run(x, *args):
            value, grad = step(tf.convert_to_tensor(x, tf.float32), *args)
            return float(value), grad.numpy()

        return run
    if backend == "jax":
        import jax

        def value(x, trainable, non_trainable, *args):
            outputs, _ = model.stateless_call(trainable, non_trainable, x, training=False)
            return objective(outputs, *args)

        step = jax.jit(jax.value_and_grad(value))

        def run(x, *args):
            trainable = [v.value for v in model.trainable_variables]
            non_trainable = [v.value for v in model.non_trainable_variables]
            val, grad = step(np.asarray(x, np.float32), trainable, non_trainable, *args)
            return float(val), np.asarray(grad)

        return run
    if backend == "torch":
        import torch

        def run(x, *args):
            x = keras.ops.convert_to_tensor(np.asarray(x, np.float32)).detach().requires_grad_(True)
            val = objective(model(x, training=False), *args)
            (grad,) = torch.autograd.grad(val, x)
            return float(val), grad.detach().cpu().numpy()

        return run
    raise NotImplementedError(
        f"Input gradients are implemented for the tensorflow, jax and torch backends. "
        f"Received backend={backend!r}."
    )
