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


def value_and_grad(fn, argnums=0, jit=False):
    """`fn` and its gradient with respect to some of its arguments, composable for second order.

    The defenses that differentiate with respect to weights outside `fit` (gradient-based
    pruning, I-BAU's implicit hypergradient) write `fn` with `keras.ops` over
    `model.stateless_call(trainable_values, non_trainable_values, x)`, so only this wrapper is
    backend-specific: `jax.value_and_grad` on JAX, a `tf.GradientTape` on TensorFlow. Returned
    functions may be nested (a gradient of a function that itself takes a gradient, e.g. a
    Hessian-vector product); only the outermost should be compiled.

    Args:
        fn: `f(*args) -> scalar` written with `keras.ops`; differentiated arguments may be arrays
            or lists of arrays.
        argnums: index, or tuple of indices, of the arguments to differentiate.
        jit: compile the returned function (`jax.jit` / `tf.function`).

    Returns:
        A callable `(*args) -> (value, gradient)`, the gradient shaped like `args[argnums]` (a
        tuple of such for a tuple `argnums`), as backend tensors.

    Raises:
        NotImplementedError: on a backend other than TensorFlow and JAX.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        step = jax.value_and_grad(fn, argnums=argnums)
        return jax.jit(step) if jit else step
    if backend == "tensorflow":
        import tensorflow as tf

        nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)

        def step(*args):
            args = list(args)
            for i in nums:
                args[i] = tf.nest.map_structure(tf.convert_to_tensor, args[i])
            with tf.GradientTape() as tape:
                tape.watch([args[i] for i in nums])
                value = fn(*args)
            grads = tape.gradient(value, [args[i] for i in nums],
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return value, grads[0] if isinstance(argnums, int) else tuple(grads)

        return tf.function(step, reduce_retracing=True) if jit else step
    raise NotImplementedError(
        f"Weight gradients are implemented for the tensorflow and jax backends. "
        f"Received backend={backend!r}."
    )
