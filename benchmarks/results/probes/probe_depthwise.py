"""Probe: how slow are XLA's depthwise convolutions on CPU, and how much does `kcc.depthwise`'s
shifted form win? Seconds per call of a jitted forward pass and of the gradient with respect to
the input (what the scan and synthesis compute), batch 128 of 32 x 32 images, the mean of five
calls after one warm-up, for `clean` (ResNet-18, no depthwise layer) and `clean_mobilenet_v2`,
on the JAX backend (the model as saved and its `kcc.depthwise.twin`) or on TensorFlow (the model
as saved, `tf.function`), and the largest output difference between a model and its twin.

Run from the repository root, pinned to one core, once per backend:
    KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax taskset -c 0 python \\
        benchmarks/results/probes/probe_depthwise.py
    KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=tensorflow taskset -c 0 python \\
        benchmarks/results/probes/probe_depthwise.py
Merges its rows into benchmarks/results/probes/depthwise.json.
"""
import json
import os
import sys
import time

sys.path.insert(0, "benchmarks")
import keras  # noqa: E402
import numpy as np  # noqa: E402

import zoo  # noqa: E402
from kcc import depthwise, saving  # noqa: E402

OUT = "benchmarks/results/probes/depthwise.json"
BACKEND = keras.backend.backend()
x = np.random.default_rng(0).random((128, 32, 32, 3)).astype("float32")


def timed(fn):
    np.asarray(fn(x))
    start = time.time()
    for _ in range(5):
        np.asarray(fn(x))
    return round((time.time() - start) / 5, 4)


def functions(model):
    if BACKEND == "jax":
        import jax
        trainable = [v.value for v in model.trainable_variables]
        fixed = [v.value for v in model.non_trainable_variables]

        def logits(images):
            return model.stateless_call(trainable, fixed, images, training=False)[0]
        return jax.jit(logits), jax.jit(jax.grad(lambda images: logits(images)[:, 0].sum()))
    import tensorflow as tf

    @tf.function
    def gradient(images):
        images = tf.convert_to_tensor(images)
        with tf.GradientTape() as tape:
            tape.watch(images)
            score = tf.reduce_sum(model(images, training=False)[:, 0])
        return tape.gradient(score, images)
    return tf.function(lambda images: model(images, training=False)), gradient


rows = json.load(open(OUT)) if os.path.exists(OUT) else {}
for name in ("clean", "clean_mobilenet_v2"):
    model = zoo.load_entry(name, 10)[0]
    variants = {"as saved": model}
    if BACKEND == "jax":
        variants["twin"] = depthwise.twin(model)
    for variant, candidate in variants.items():
        forward, gradient = functions(candidate)
        row = {"forward_s": timed(forward), "input_gradient_s": timed(gradient),
               "max_output_difference": float(np.abs(np.asarray(candidate(x)) -
                                                     np.asarray(model(x))).max()),
               "command": f"KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND={BACKEND} "
                          "taskset -c 0 python benchmarks/results/probes/probe_depthwise.py",
               "machine": zoo.machine()}
        rows[f"{name}|{BACKEND}|{variant}"] = row
        print(name, BACKEND, variant, row["forward_s"], row["input_gradient_s"], flush=True)
saving.write_json(rows, OUT)
