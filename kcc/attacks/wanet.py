"""WaNet: an imperceptible, smooth warp of the image as the trigger.

The warp field is random but fixed by the attack's seed: a `(k, k, 2)` grid of `U(-1, 1)`
offsets, normalised by its mean absolute value, upsampled (bicubic, corners aligned) to
`(H, W, 2)` and added, scaled by `s / H`, to the identity sampling grid in [-1, 1]. Training uses
a "noise" (cross) mode: besides the backdoor samples, `cross_ratio` times as many samples per
batch are warped with a randomly jittered grid and keep their true labels, so that the network
learns the exact warp rather than any warp.

Reference: Nguyen and Tran, "WaNet - Imperceptible Warping-based Backdoor Attack", ICLR 2021.
"""

import numpy as np

from kcc.attacks import base


def _keys_cubic(distance, a=-0.75):
    """Keys' cubic convolution kernel (the one of PyTorch's bicubic upsampling) at `distance`."""
    d = np.abs(distance)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def bicubic_matrix(size_in, size_out):
    """The `(size_out, size_in)` matrix of 1-D bicubic upsampling with aligned corners.

    Border samples repeat the edge value, as in PyTorch's `interpolate(mode="bicubic",
    align_corners=True)`.
    """
    if size_in < 1 or size_out < 1:
        raise ValueError(
            f"Sizes must be positive. Received size_in={size_in}, size_out={size_out}."
        )
    if size_in == 1:
        return np.ones((size_out, 1))
    position = np.linspace(0.0, size_in - 1, size_out)
    start = np.floor(position).astype(int)
    matrix = np.zeros((size_out, size_in))
    for offset in (-1, 0, 1, 2):
        index = np.clip(start + offset, 0, size_in - 1)
        np.add.at(matrix, (np.arange(size_out), index), _keys_cubic(position - (start + offset)))
    return matrix


def identity_grid(height, width):
    """Sampling grid `(H, W, 2)` in [-1, 1] that reproduces the image; `[..., 0]` is the column."""
    rows, cols = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    return np.stack([cols, rows], axis=-1)


def warp(x, grid):
    """Bilinear resampling of images at grid positions (corners aligned, like `grid_sample`).

    Args:
        x: images `(N, H, W, C)`.
        grid: `(H, W, 2)` shared by all images, or `(N, H, W, 2)`; values in [-1, 1], channel 0
            the column (x) and channel 1 the row (y) coordinate.

    Returns:
        float32 array `(N, H, W, C)`.
    """
    x = base.check_images(x)
    n, height, width, _ = x.shape
    grid = np.asarray(grid, np.float64)
    if grid.shape[-3:] != (height, width, 2) or grid.ndim not in (3, 4):
        raise ValueError(
            f"grid must be (H, W, 2) or (N, H, W, 2) matching images {x.shape}. "
            f"Received grid shape={grid.shape}."
        )
    cols = (np.clip(grid[..., 0], -1, 1) + 1) / 2 * (width - 1)
    rows = (np.clip(grid[..., 1], -1, 1) + 1) / 2 * (height - 1)
    c0 = np.clip(np.floor(cols).astype(int), 0, max(width - 2, 0))
    r0 = np.clip(np.floor(rows).astype(int), 0, max(height - 2, 0))
    c1, r1 = np.minimum(c0 + 1, width - 1), np.minimum(r0 + 1, height - 1)
    wc, wr = (cols - c0)[..., None], (rows - r0)[..., None]
    batch = np.arange(n)[:, None, None]
    top = x[batch, r0, c0] * (1 - wc) + x[batch, r0, c1] * wc
    bottom = x[batch, r1, c0] * (1 - wc) + x[batch, r1, c1] * wc
    return (top * (1 - wr) + bottom * wr).astype(np.float32)


class WaNet(base.Attack):
    """Warping trigger with noise-mode training; poisons per batch through `transform`.

    Args:
        k: side of the control grid of random offsets (4 in the paper).
        s: strength of the warp (0.5 in the paper).
        cross_ratio: noise (cross) samples per backdoor sample in each training batch (2).
        **kwargs: see `kcc.attacks.base.Attack`; `seed` fixes the warp field.

    Example:

    >>> attack = WaNet(seed=0)
    >>> x_triggered = attack.apply(x_test)               # (N, 32, 32, 3) in [0, 1]
    >>> kcc.training.train(model, x, y, 20, transform=attack.transform)
    """

    name = "wanet"

    def __init__(self, k=4, s=0.5, cross_ratio=2.0, **kwargs):
        super().__init__(**kwargs)
        if int(k) != k or k < 2:
            raise ValueError(f"k must be an integer of at least 2. Received k={k}.")
        if s <= 0:
            raise ValueError(f"s must be strictly positive. Received s={s}.")
        if cross_ratio < 0:
            raise ValueError(
                f"cross_ratio must be non-negative. Received cross_ratio={cross_ratio}."
            )
        self.k, self.s, self.cross_ratio = int(k), float(s), float(cross_ratio)
        rng = np.random.default_rng(self.seed)
        noise = rng.uniform(-1, 1, (self.k, self.k, 2))
        self.noise = noise / np.mean(np.abs(noise))  # (k, k, 2), mean |value| 1
        self._grids = {}

    def grid(self, height, width):
        """The backdoor sampling grid `(H, W, 2)`: clip(identity + s * upsampled noise / H)."""
        if (height, width) not in self._grids:
            rows, cols = bicubic_matrix(self.k, height), bicubic_matrix(self.k, width)
            noise = np.einsum("hi,ijc,wj->hwc", rows, self.noise, cols)
            warp_grid = identity_grid(height, width) + self.s * noise / height
            self._grids[height, width] = np.clip(warp_grid, -1, 1)
        return self._grids[height, width]

    def apply(self, x):
        x = base.check_images(x)
        return warp(x, self.grid(x.shape[1], x.shape[2]))

    def batch_counts(self, batch_size):
        """`(backdoor, cross)` sample counts in a training batch of `batch_size` images."""
        n_backdoor = int(round(self.poison_ratio * batch_size))
        n_cross = int(round(self.cross_ratio * self.poison_ratio * batch_size))
        return n_backdoor, min(n_cross, batch_size - n_backdoor)

    def transform(self, x, y, rng):
        """Poisons one training batch (noise mode); for `kcc.training.train(transform=...)`.

        Args:
            x: images `(B, H, W, C)` in [0, 1].
            y: labels `(B,)`.
            rng: a `numpy.random.Generator` drawing which samples are poisoned and the jitter.

        Returns:
            `(x, y)` copies: `round(poison_ratio * B)` random samples warped with the trigger and
            relabelled with `targets`, `round(cross_ratio * poison_ratio * B)` others warped with
            the trigger grid plus `U(-1, 1) / H` jitter and their labels kept, the rest clean.
        """
        x = base.check_images(x).copy()
        y = np.array(y, copy=True)
        batch, height, width, _ = x.shape
        n_backdoor, n_cross = self.batch_counts(batch)
        order = rng.permutation(batch)
        backdoor, cross = order[:n_backdoor], order[n_backdoor : n_backdoor + n_cross]
        grid = self.grid(height, width)
        x[backdoor] = warp(x[backdoor], grid)
        y[backdoor] = self.targets(y[backdoor])
        if n_cross:
            jitter = rng.uniform(-1, 1, (n_cross, height, width, 2)) / height
            x[cross] = warp(x[cross], np.clip(grid + jitter, -1, 1))
        return x, y

    def get_config(self):
        return {**super().get_config(), "k": self.k, "s": self.s, "cross_ratio": self.cross_ratio}
