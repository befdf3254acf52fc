"""Where kcc's work runs: on one device, or data-parallel over all local devices (JAX only).

Data parallelism is Keras' `keras.distribution.DataParallel` on a 1-D mesh of `D` devices:
every variable (weights, BatchNorm statistics, optimiser slots, seeds, metrics) is replicated
on each device, and every batch `(B, ...)` is split along its first axis, `B / D` images per
device. XLA (GSPMD) inserts the cross-device reductions, so a mean over the batch (the loss,
its gradient, a BatchNorm batch statistic) is still the mean over the whole batch of `B`: the
result is the single-device one up to float rounding in the order of summation.

What scales: images per second of every step (each device runs `1 / D` of the batch), so a
larger batch at the same memory per device, or the same batch in about `1 / D` of the time
once a device is busy enough. Distillation (`kcc.unlearning.distill`) splits its batches of
synthetic images; synthesis (`kcc.synthesis.synthesize`) splits the batch of images it
optimises, which is a variable (`shard_first_axis`). What does not: memory per device still
holds a whole copy of the models and of the optimiser state (only synthesis' images are
sharded), and work outside the compiled steps (the BatchNorm re-estimation between epochs,
host-side bookkeeping) is no faster.

Constraint: every batch must split evenly, so `D` must divide the batch size and the size of a
last, partial batch (`check_batch_size` says so before a run starts); `predict` pads inference
batches instead, which changes no answer.

Only the JAX backend is wired (Keras' distribution API is complete there); TensorFlow's own
multi-device path (`tf.distribute`) and torch's are not.

References: Keras distribution API, https://keras.io/guides/distribution/ and
`keras.distribution.DataParallel`; JAX, "Distributed arrays and automatic parallelization",
https://docs.jax.dev/en/latest/notebooks/Distributed_arrays_and_automatic_parallelization.html
"""

import contextlib

import keras
import numpy as np
from keras import ops

#: What `get` accepts by name: one device, all local devices, or all local accelerators when
#: there are several (one device otherwise).
NAMES = ("off", "data_parallel", "auto")


def _require_jax(what):
    backend = keras.backend.backend()
    if backend != "jax":
        raise ValueError(
            f"{what} runs on the JAX backend only (Keras' distribution API); `tf.distribute` "
            f"and torch's are not wired in kcc. Set KERAS_BACKEND=jax. Received "
            f"backend={backend!r}.")


def data_parallel(devices=None):
    """A `keras.distribution.DataParallel` over `devices`, or None when there is only one.

    Args:
        devices: device names as `keras.distribution.list_devices()` gives them (`"gpu:0"`);
            None takes all local accelerators, or all CPU devices when there is none.

    Returns:
        the distribution (a 1-D mesh named `"batch"`), or None for a single device.

    Raises:
        ValueError: on a backend other than JAX.
    """
    _require_jax("Data-parallel work")
    devices = list(devices) if devices is not None else keras.distribution.list_devices()
    if len(devices) < 2:
        return None
    return keras.distribution.DataParallel(devices=devices)


def get(identifier):
    """The distribution an identifier names: one of `NAMES`, None, or a `Distribution`.

    `"off"` and None give None (one device); `"data_parallel"` gives `data_parallel()`;
    `"auto"` gives `data_parallel()` when the JAX backend sees more than one accelerator and
    None otherwise (on CPU, and on every other backend); a `keras.distribution.Distribution`
    is returned as it is.
    """
    if not isinstance(identifier, str):  # None, or a distribution already
        return identifier
    if identifier not in NAMES:
        raise ValueError(f"Unknown distribution: expected one of {NAMES}, None or a "
                         f"keras.distribution.Distribution. Received {identifier!r}.")
    if identifier == "off":
        return None
    if identifier == "auto":
        if keras.backend.backend() != "jax":
            return None
        devices = keras.distribution.list_devices()
        if len(devices) < 2 or devices[0].lower().startswith("cpu"):
            return None
    return data_parallel()


def device_count(distribution=None):
    """How many devices share every batch under `distribution` (the current one when None;
    1 without any)."""
    distribution = distribution or keras.distribution.distribution()
    return 1 if distribution is None else int(distribution.device_mesh.devices.size)


def check_batch_size(distribution, batch_size, num_images):
    """Raises `ValueError` unless every batch of `num_images` taken `batch_size` at a time
    splits evenly over the devices of `distribution` (always true for None)."""
    devices = device_count(distribution) if distribution is not None else 1
    last = num_images % batch_size
    if batch_size % devices or last % devices:
        raise ValueError(
            f"Data-parallel work over {devices} devices splits every batch evenly: the batch "
            f"size and the size of the last, partial batch must be multiples of {devices}. "
            f"Received batch_size={batch_size}, num_images={num_images} (last batch: {last}).")


@contextlib.contextmanager
def scope(distribution, *models):
    """Runs a block under `distribution`, with the models' existing variables on its mesh.

    Variables created inside the block (an optimiser's, a metric's, a seed's) take the
    distribution's layout by themselves; variables that already exist (the models' weights)
    would stay on one device and JAX would refuse to mix them. This lays every variable of
    `models` out as the distribution says (replicated, for `DataParallel`) for the block, and
    afterwards puts each back on the default device with its own layout, and gives the models
    back the compiled functions they had, so that they work outside the block as before. With
    `distribution=None` the block runs as it is.

    Args:
        distribution: a `keras.distribution.Distribution` or None.
        *models: Keras models (or layers) whose variables the block uses.
    """
    if distribution is None:
        yield
        return
    _require_jax("keras.distribution")
    variables = list({id(v): v for m in models for v in m.variables}.values())
    layouts = [v._layout for v in variables]  # how Keras' own JaxVariable records a layout
    functions = [(m, {k: getattr(m, k, None) for k in _FUNCTIONS}) for m in models]
    try:
        with distribution.scope():
            for model, _ in functions:
                for key in _FUNCTIONS:
                    if hasattr(model, key):
                        setattr(model, key, None)
            for variable in variables:
                variable._layout = None
                variable._layout = distribution.get_variable_layout(variable)
                variable.assign(variable.value)
            yield
    finally:
        for variable, layout in zip(variables, layouts):
            if variable._value is None:  # purged by a failed JAX step: leave the error be
                variable._layout = layout
                continue
            value = ops.convert_to_numpy(variable.value)
            variable._layout = layout
            variable.assign(value)
        for model, saved in functions:
            for key, function in saved.items():
                if hasattr(model, key):
                    setattr(model, key, function)


def shard_first_axis(distribution, *paths):
    """A `keras.distribution.ModelParallel` on the mesh of `distribution` that splits the
    variables whose path matches one of `paths` (regular expressions, `variable.path`) along
    their first axis over the devices, and replicates every other variable.

    For work whose batch is a variable: `kcc.synthesis` optimises a batch of images
    `(B, H, W, C)`, so it is the variable (and its Adam slots, which take its layout) that
    must be split for each device to hold and process `B / D` images. None gives None.
    """
    if distribution is None:
        return None
    mesh = distribution.device_mesh
    layout_map = keras.distribution.LayoutMap(mesh)
    for path in paths:
        layout_map[path] = (distribution.batch_dim_name,)  # the other axes: replicated
    return keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name=distribution.batch_dim_name)


#: The compiled step functions a Keras model caches (bound to the layout of its variables).
_FUNCTIONS = ("train_function", "test_function", "predict_function")


def predict(model, x, batch_size=256):
    """`model.predict(x)` that also takes a number of images the current distribution's
    devices do not divide: `x` `(N, ...)` is padded with copies of its last image to a
    multiple of the device count and the answers cut back to `N` (inference answers every
    image on its own, so the padding changes none); `batch_size` is rounded up to a multiple
    of the device count. Without a distribution it is `model.predict`."""
    devices = device_count()
    x = np.asarray(x)
    if devices == 1 or not len(x):
        return model.predict(x, batch_size=batch_size, verbose=0)
    pad = -len(x) % devices
    if pad:
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
    batch_size = -(-batch_size // devices) * devices
    return model.predict(x, batch_size=batch_size, verbose=0)[:len(x) - pad]
