"""Tucker-2 decomposition, rank-component scaling and global rank truncation (C&C Eq. 1-8).

Plain NumPy functions over Keras convolution kernels. A Keras `Conv2D` kernel has shape
`(K, K, I, O)`; the paper's `W` is `O x I x K x K`. Conventions used throughout:

* `u1`: `(O, r1)`, left singular vectors of the mode-1 unfolding `W_(1)` (`O x I*K*K`);
* `u2`: `(I, r2)`, left singular vectors of the mode-2 unfolding `W_(2)` (`I x O*K*K`);
* `core`: Keras layout `(K, K, r2, r1)`, i.e. `core[h, w, j, i] = G[i, j, h, w]`, so it is
  directly the kernel of the `r2 -> r1` core convolution;
* `sigma1` `(r1,)`, `sigma2` `(r2,)`: the singular values, largest first.

Reference: Phan et al., "Clean and Compact: Efficient Data-Free Backdoor Defense with Model
Compactness", ECCV 2024, Sect. 3-4.1 and Algorithm 1 lines 3-11.
"""

import collections
import numbers

import numpy as np

Tucker2 = collections.namedtuple("Tucker2", ["core", "u1", "u2", "sigma1", "sigma2"])

# Two readings of Eq. 5 (see `scale_factors`).
READINGS = ("literal", "text")


def unfold(kernel, mode):
    """Mode-`mode` matricization of a Keras kernel `(K, K, I, O)` (Eq. 1).

    Returns:
        mode 1: `W_(1)` of shape `(O, I*K*K)`; mode 2: `W_(2)` of shape `(I, O*K*K)`.
    """
    kernel = np.asarray(kernel)
    if kernel.ndim != 4:
        raise ValueError(f"Expected a conv kernel (K, K, I, O). Received shape={kernel.shape}.")
    if mode == 1:
        return np.transpose(kernel, (3, 2, 0, 1)).reshape(kernel.shape[3], -1)
    if mode == 2:
        return np.transpose(kernel, (2, 3, 0, 1)).reshape(kernel.shape[2], -1)
    raise ValueError(f"mode must be 1 or 2. Received mode={mode}.")


def tucker2(kernel):
    """Tucker-2 decomposition of a conv kernel at full rank (Sect. 3, Algorithm 1 line 3).

    `W = G x1 U1 x2 U2` with `U1`, `U2` the left singular vectors of the two unfoldings and
    `G = W x1 U1^T x2 U2^T`; exact (to float precision) at the full ranks
    `r1 = min(O, I*K*K)`, `r2 = min(I, O*K*K)`.

    Args:
        kernel: array `(K, K, I, O)`.

    Returns:
        `Tucker2(core (K, K, r2, r1), u1 (O, r1), u2 (I, r2), sigma1 (r1,), sigma2 (r2,))`,
        float64.
    """
    kernel = np.asarray(kernel, np.float64)
    u1, sigma1 = left_singular(unfold(kernel, 1))
    u2, sigma2 = left_singular(unfold(kernel, 2))
    core = np.einsum("hwco,cj,oi->hwji", kernel, u2, u1, optimize=True)
    return Tucker2(core, u1, u2, sigma1, sigma2)


def left_singular(matrix):
    """Left singular vectors and singular values of a wide or tall `matrix` `(m, n)`.

    Computed from the eigendecomposition of the `m x m` Gram matrix in float64 (5x faster than
    an SVD of a `512 x 4608` unfolding, and only `U` is needed).

    Returns:
        `(u (m, r), sigma (r,))` with `r = min(m, n)`, `sigma` descending.
    """
    matrix = np.asarray(matrix, np.float64)
    rank = min(matrix.shape)
    eigenvalues, vectors = np.linalg.eigh(matrix @ matrix.T)
    order = np.argsort(eigenvalues)[::-1][:rank]
    return vectors[:, order], np.sqrt(np.clip(eigenvalues[order], 0.0, None))


def reconstruct(core, u1, u2):
    """`W = G x1 U1 x2 U2` (Eq. 7) as a Keras kernel `(K, K, I, O)`.

    Args:
        core: `(K, K, R2, R1)`; u1: `(O, R1)`; u2: `(I, R2)`.
    """
    return np.einsum("hwji,cj,oi->hwco", core, u2, u1, optimize=True)


def normalize_singular_values(sigma1, sigma2):
    """`sigma = [Sigma1; Sigma2]` and `sigma_norm = (sigma - mean) / std` of one layer (Eq. 2).

    Returns:
        `(sigma_norm, s_sigma)`: `sigma_norm` of shape `(r1 + r2,)` and the standard deviation
        `s_sigma` of the raw vector (0-safe: a constant vector gives `sigma_norm = 0`).
    """
    sigma = np.concatenate([np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)])
    s_sigma = float(np.std(sigma))
    if s_sigma == 0.0:
        return np.zeros_like(sigma), 0.0
    return (sigma - np.mean(sigma)) / s_sigma, s_sigma


def scale_factors(sigma_norm, s_sigma, tau_scale, reading="text"):
    """Per-component factors `min(tau_scale * s_sigma / T, 1)` of Eq. 5-6.

    Eq. 5 has two readings:

    * `"literal"`: `T = sigma_norm`, so components with `sigma_norm > tau_scale * s_sigma` are
      scaled by `tau_scale * s_sigma / sigma_norm`;
    * `"text"` (the sentence under Eq. 5): components with `sigma_norm > tau_scale` are scaled by
      `tau_scale / sigma_norm`, i.e. `T = sigma - mean(sigma)`; this clips each layer's singular
      values at `mean + tau_scale * std`.

    Either way the factor is 1 where `sigma_norm <= 0` (the sign guard).

    Args:
        sigma_norm: `(r1 + r2,)` normalised singular values of one layer (Eq. 2).
        s_sigma: standard deviation of that layer's raw singular values.
        tau_scale: threshold, strictly positive (paper default 4).
        reading: one of `READINGS`.

    Returns:
        factors `(r1 + r2,)` in (0, 1].
    """
    if reading not in READINGS:
        raise ValueError(f"reading must be one of {READINGS}. Received reading={reading!r}.")
    if not tau_scale > 0:
        raise ValueError(f"tau_scale must be strictly positive. Received tau_scale={tau_scale}.")
    sigma_norm = np.asarray(sigma_norm, np.float64)
    threshold = tau_scale * s_sigma if reading == "literal" else tau_scale
    factors = np.ones_like(sigma_norm)
    positive = sigma_norm > 0
    factors[positive] = np.minimum(threshold / sigma_norm[positive], 1.0)
    return factors


def scale_core(core, sigma1, sigma2, tau_scale, reading="text"):
    """Constrains the rank components with large normalised singular values (Eq. 5-7).

    Row `i` of `G_(1)` is multiplied by the factor of `sigma_norm[i]` (Eq. 5), then row `j` of
    `G_(2)` by the factor of `sigma_norm[r1 + j]` (Eq. 6); the result folds back to `G_scale`
    (Eq. 7). `W_constrain = reconstruct(G_scale, u1, u2)`.

    Args:
        core: `(K, K, r2, r1)` full-rank core of `tucker2`.
        sigma1: `(r1,)`; sigma2: `(r2,)` singular values of the same layer.
        tau_scale, reading: see `scale_factors`.

    Returns:
        `(core_scaled, scaled1, scaled2)`: the scaled core and how many mode-1 and mode-2
        components were scaled (factor below 1).
    """
    r1, r2 = len(sigma1), len(sigma2)
    if core.shape[2:] != (r2, r1):
        raise ValueError(f"core shape {core.shape} does not match r2={r2}, r1={r1}.")
    sigma_norm, s_sigma = normalize_singular_values(sigma1, sigma2)
    factors = scale_factors(sigma_norm, s_sigma, tau_scale, reading)
    f1, f2 = factors[:r1], factors[r1:]
    core_scaled = core * f1[None, None, None, :] * f2[None, None, :, None]
    return core_scaled, int(np.sum(f1 < 1)), int(np.sum(f2 < 1))


def truncate(core, u1, u2, rank1, rank2):
    """Keeps the leading `rank1`, `rank2` components (Eq. 8).

    Returns:
        `(core[:, :, :rank2, :rank1], u1[:, :rank1], u2[:, :rank2])`.
    """
    return core[:, :, :rank2, :rank1], u1[:, :rank1], u2[:, :rank2]


def conv_params(kernel_shape, use_bias):
    """Parameters of a plain conv with kernel `(K1, K2, I, O)`."""
    k1, k2, i, o = kernel_shape
    return k1 * k2 * i * o + (o if use_bias else 0)


def tucker_params(kernel_shape, rank1, rank2, use_bias):
    """Parameters of the Tucker-2 form: `I*R2 + K1*K2*R2*R1 + R1*O` (+ bias `O`)."""
    k1, k2, i, o = kernel_shape
    return i * rank2 + k1 * k2 * rank2 * rank1 + rank1 * o + (o if use_bias else 0)


def layer_params(kernel_shape, rank1, rank2, use_bias):
    """Parameters a layer ends up with: the factored form only where it is smaller."""
    return min(conv_params(kernel_shape, use_bias), tucker_params(kernel_shape, rank1, rank2, use_bias))


def select_ranks(layers, other_params, cr, rank_multiple=1, relative=False):
    """Global rank selection for a compression ratio (Sect. 4.1, Eq. 8).

    All layers' raw singular values are cut at one threshold `tau_trunc`: a layer keeps
    `R1 = #{sigma1 >= tau_trunc}` and `R2 = #{sigma2 >= tau_trunc}` (at least 1 each). The
    threshold is the lowest one for which the whole model's parameter count (decomposable layers
    plus `other_params`) is at most `original / cr`. A layer whose factored form would not be
    smaller keeps its plain conv and counts at its plain size.

    With `rank_multiple=m > 1` (not part of C&C), every such rank is rounded up to a multiple of
    `m`, capped at the mode's full rank; the count stays monotone in the threshold, so the
    budget still holds and the rounding is paid for by a higher threshold. It is for runtimes
    whose kernels work in channel blocks; on TFLite/XNNPACK (x86) it was measured no faster than
    C&C's ranks (`tflite/results/benchmark.md`, `cr*_m8` rows), so 1 is the default.

    With `relative=True` (not part of C&C; kcc's recipe uses it), each layer's singular values
    are divided by its kernel's Frobenius norm `sqrt(sum(sigma1 ** 2))` before the one
    threshold, so a component is kept for its share of its own layer rather than for the raw
    scale of its kernel, which the BatchNorm after a conv undoes. Truncation alone (no
    refit), CIFAR-10 test slice: width-16 ResNet-18 80.2 / 71.9 / 58.4% at cr 2 / 3 / 4 with
    raw values, 82.5 / 81.0 / 77.0% relative; MobileNetV2 32.3 -> 68.0% at cr 2
    (`benchmarks/results/probes/ranks.json`).

    Args:
        layers: list of dicts with `sigma1`, `sigma2` (descending), `kernel_shape`, `use_bias`.
        other_params: parameters of everything that is not a decomposable conv.
        cr: target compression ratio, > 1.
        rank_multiple: integer >= 1; ranks are rounded up to a multiple of it (at most full
            rank). 1 (the default) is C&C's selection, unchanged.
        relative: threshold singular values divided by their layer's Frobenius norm (above);
            False (the default) is Eq. 8's raw values.

    Returns:
        `(ranks, tau_trunc, total_params)`: `ranks` a list of `(R1, R2)` per layer; `tau_trunc`
        in the units thresholded (relative ones where `relative`).

    Raises:
        ValueError: `cr <= 1`, `rank_multiple` not an integer >= 1, or `cr` unreachable (the
            message gives the largest reachable).
    """
    if not cr > 1:
        raise ValueError(f"cr must be greater than 1. Received cr={cr}.")
    rank_multiple = check_rank_multiple(rank_multiple)
    original = other_params + sum(conv_params(l["kernel_shape"], l["use_bias"]) for l in layers)
    budget = original / cr
    sigmas = [(np.sort(np.asarray(l["sigma1"], np.float64))[::-1],
               np.sort(np.asarray(l["sigma2"], np.float64))[::-1]) for l in layers]
    if relative:  # sum(sigma1 ** 2) = sum(sigma2 ** 2) = ||W||_F ** 2
        norms = [np.sqrt(np.sum(s1 ** 2)) or 1.0 for s1, _ in sigmas]
        sigmas = [(s1 / n, s2 / n) for (s1, s2), n in zip(sigmas, norms)]

    def ranks_at(threshold):
        return [(round_rank(int(np.sum(s1 >= threshold)), rank_multiple, len(s1)),
                 round_rank(int(np.sum(s2 >= threshold)), rank_multiple, len(s2)))
                for (s1, s2) in sigmas]

    def total(ranks):
        return other_params + sum(
            layer_params(l["kernel_shape"], r1, r2, l["use_bias"]) for l, (r1, r2) in zip(layers, ranks)
        )

    candidates = np.unique(np.concatenate([np.concatenate(s) for s in sigmas]))  # ascending
    smallest = total(ranks_at(np.inf))
    if smallest > budget:
        lowest = "rank 1" if rank_multiple == 1 else (
            f"rank min({rank_multiple}, full rank) (rank_multiple={rank_multiple})")
        raise ValueError(
            f"cr={cr} cannot be reached: even at {lowest} the model keeps {smallest} of "
            f"{original} parameters; the largest reachable ratio is {original / smallest:.3f}."
        )
    # Parameters fall as the threshold rises: find the lowest candidate threshold within budget.
    lo, hi = 0, len(candidates)  # candidates[hi] would be +inf (always within budget)
    while lo < hi:
        mid = (lo + hi) // 2
        if total(ranks_at(candidates[mid])) <= budget:
            hi = mid
        else:
            lo = mid + 1
    threshold = candidates[lo] if lo < len(candidates) else np.inf
    ranks = ranks_at(threshold)
    return ranks, float(threshold), total(ranks)


def round_rank(rank, multiple, full):
    """`max(1, rank)` rounded up to a multiple of `multiple`, at most `full` (>= 1)."""
    return min(full, -(-max(1, rank) // multiple) * multiple)


def check_rank_multiple(rank_multiple):
    """`rank_multiple` as an `int`, or a ValueError unless it is an integer >= 1."""
    if (isinstance(rank_multiple, bool) or not isinstance(rank_multiple, numbers.Integral)
            or rank_multiple < 1):
        raise ValueError(
            f"rank_multiple must be an integer >= 1 (1 keeps C&C's ranks). Received "
            f"rank_multiple={rank_multiple!r}."
        )
    return int(rank_multiple)
