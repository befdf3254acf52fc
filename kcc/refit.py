"""Layer-wise refit of truncated Tucker-2 convolutions on synthetic images.

Truncation (Eq. 8) keeps the factors that best approximate each conv *kernel*; what matters is
the conv's *response* on the inputs it sees. `refit` goes through the student's `TuckerConv2D`
layers in order and, for each, keeps its input factor `U2` and replaces the core `G` and output
factor `U1` by the rank-`R1` map that best reproduces the suspect's conv response from the
student's own input (asymmetric reconstruction: errors of the layers before are compensated):

    min_{G, U1}  sum_n || P_n vec(G) U1^T - Y_n ||^2 + ridge * ||vec(G) U1^T||^2,
                 rank(vec(G) U1^T) <= R1

where `P_n (rows, K*K*R2)` holds the `K x K` patches of `conv(x_n, U2)` for the student's input
`x_n` of synthetic image `n`, and `Y_n (rows, O)` is the suspect's conv response on the same
image (its kernel alone: before bias and activation, which both layers share). The solution is
reduced-rank regression: the ridge least-squares map `B = (P^T P + ridge)^{-1} P^T Y`,
projected on the `R1` leading eigenvectors `V (O, R1)` of `B^T P^T P B` (the fitted responses'
second moments): `vec(G) = B V`, `U1 = V`. Only `P^T P` and `P^T Y` are accumulated, batch by
batch, so memory does not grow with the images.

The synthetic images carry no trigger, so the refit restores the suspect's clean behaviour, and
with it whatever of the backdoor truncation had blurred (`badnets_all2one`, cr 2: ACC 78.2 ->
81.9%, ASR 89 -> 96%, agreement with the suspect on held-aside synthetic images 0.71 -> 0.93,
105 s on one core). Adding rows of stamped images (the scan's inverted trigger) whose targets
are the suspect's responses on the unstamped images does not unlearn in closed form: ASR stayed
at 95.6-95.7% with a fifth or half of the rows stamped (`benchmarks/results/probes/refit.json`).

References: Izenman, "Reduced-rank regression for the multivariate linear model", J. Multivar.
Anal. 1975; Zhang et al., "Accelerating Very Deep Convolutional Networks for Classification and
Detection", TPAMI 2016 (response reconstruction of low-rank layers, asymmetric, there with
training images; here with images synthesised from the suspect's BatchNorm statistics).
"""

import keras
import numpy as np
from keras import ops

from kcc import progress
from kcc.layers import TuckerConv2D

#: Ridge as a share of the mean diagonal of `P^T P`: only steadies nearly collinear patches.
RIDGE = 1e-4


def refit(teacher, student, images, batch_size=128, verbose=True):
    """Refits every `TuckerConv2D` of `student` to `teacher`'s conv responses (module docstring).

    Only layers of the student's own graph are refitted (factored layers inside nested models
    stay as truncated).

    Args:
        teacher: the suspect; every `TuckerConv2D` of `student` has a `Conv2D` of the same name
            in it (as `kcc.rewrite.compress` names them). Not modified.
        student: the compressed model, changed in place (cores and output factors only; ranks,
            input factors, biases and every other weight stay).
        images: `(N, H, W, C)` synthetic images in [0, 1].
        batch_size: at most this many images per forward pass (fewer where one pass would hold
            more than `MAX_PATCH_VALUES` patch values).
        verbose: a progress bar over the layers.

    Returns:
        a list with one dict per layer: `name`, and the mean squared response error per output
        value `before` and `after` the refit, and `variance`, the responses' variance per
        output channel, averaged over the channels (pre-bias, pre-activation).
    """
    layers = refittable(student)
    if not layers:
        raise ValueError(f"Model {student.name!r} has no TuckerConv2D layer to refit.")
    images = np.asarray(images, np.float32)
    bar = progress.Progress(len(layers), "refit", unit="layer") if verbose else None
    reports = []
    for done, layer in enumerate(layers, 1):
        reports.append({"name": layer.name, **_refit_layer(teacher, student, layer, images,
                                                           batch_size)})
        if bar is not None:
            bar.update(done, [("relative error", reports[-1]["after"] / reports[-1]["variance"])])
    return reports


def refittable(model):
    """The `TuckerConv2D` layers of `model`'s own graph, in order (what `refit` changes)."""
    return [l for l in model.layers if isinstance(l, TuckerConv2D)]


#: Patch values per forward pass at most (float32: 256 MiB); bounds memory for large inputs.
MAX_PATCH_VALUES = 2**26


def _conv_input_and_response(teacher, name):
    """A model from the teacher's input to the input of its conv `name`, and that conv's
    linear response function (no bias, no activation)."""
    conv = teacher.get_layer(name)
    to_input = keras.Model(teacher.inputs, conv.input)

    def response(x):
        return ops.conv(ops.cast(x, conv.kernel.dtype), conv.kernel, strides=conv.strides,
                        padding=conv.padding, dilation_rate=conv.dilation_rate)

    return to_input, response


def _refit_layer(teacher, student, layer, images, batch_size):
    inputs = keras.Model(student.inputs, layer.input)
    teacher_inputs, response = _conv_input_and_response(teacher, layer.name)
    k1, k2 = layer.kernel_size
    r1, r2 = layer.ranks
    pointwise = (k1, k2) == (1, 1)
    width = k1 * k2 * r2
    patch_kernel = np.eye(width, dtype=np.float32).reshape(k1, k2, r2, width)
    spatial = [d or n for d, n in zip(layer.input.shape[1:3], images.shape[1:3])]
    rows = int(np.prod(layer.compute_output_shape((1, *spatial, r2))[1:3]))  # per image
    step = max(1, min(batch_size, MAX_PATCH_VALUES // max(1, rows * width)))
    gram = np.zeros((width, width))
    cross = np.zeros((width, layer.filters))
    sums, squares, count = np.zeros(layer.filters), np.zeros(layer.filters), 0
    for start in range(0, len(images), step):
        batch = images[start:start + step]
        y = ops.convert_to_numpy(response(teacher_inputs(batch, training=False)))
        x = ops.cast(inputs(batch, training=False), layer.input_factor.dtype)
        reduced = ops.conv(x, layer.input_factor, strides=layer.strides if pointwise else 1,
                           padding="valid")
        patches = ops.conv(reduced, patch_kernel, strides=1 if pointwise else layer.strides,
                           padding=layer.padding, dilation_rate=layer.dilation_rate)
        p = ops.convert_to_numpy(patches).reshape(-1, width).astype(np.float64)
        y = y.reshape(-1, layer.filters).astype(np.float64)
        gram += p.T @ p
        cross += p.T @ y
        sums, squares, count = sums + y.sum(0), squares + np.square(y).sum(0), count + len(y)
    old = (ops.convert_to_numpy(layer.core).reshape(width, r1).astype(np.float64)
           @ ops.convert_to_numpy(layer.output_factor)[0, 0].astype(np.float64))
    regularised = gram + RIDGE * np.trace(gram) / width * np.eye(width)
    full = np.linalg.solve(regularised, cross)  # (K*K*R2, O)
    _, vectors = np.linalg.eigh(full.T @ gram @ full)
    v = vectors[:, ::-1][:, :r1]  # (O, R1), leading first
    new = full @ v @ v.T
    weights = layer.get_weights()
    weights[1] = (full @ v).reshape(k1, k2, r2, r1).astype(weights[1].dtype)
    weights[2] = v.T[None, None].astype(weights[2].dtype)
    layer.set_weights(weights)

    def error(m):  # mean of ||P m - Y||^2 per output value, from the accumulated moments
        return float((np.sum(m * (gram @ m)) - 2 * np.sum(m * cross) + squares.sum())
                     / (count * layer.filters))

    return {"before": error(old), "after": error(new),
            "variance": float(np.mean(squares / count - (sums / count) ** 2))}
