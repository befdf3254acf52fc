"""BPP: colour-depth reduction (image quantisation with dithering) as the trigger.

The trigger squeezes every colour channel to `squeeze_num` levels, with Floyd-Steinberg error
diffusion so the result looks natural. Training poisons per batch and adds "negative" samples
for contrastive adversarial learning: images plus the quantisation residual of *another* image
(noise of the trigger's kind that is not the trigger), with their true labels, so the network
keys on the exact quantisation rather than on any such noise.

Reference: Wang, Zhai and Ma, "BppAttack: Stealthy and Efficient Trojan Attacks against Deep
Neural Networks via Image Quantization and Contrastive Adversarial Learning", CVPR 2022.
"""

import numpy as np

from kcc.attacks import base

# Floyd-Steinberg error shares for (row offset, column offset).
_DIFFUSION = ((0, 1, 7 / 16), (1, -1, 3 / 16), (1, 0, 5 / 16), (1, 1, 1 / 16))


def squeeze(x, levels=8, dither=True):
    """Quantises each channel of `x` to `levels` values in [0, 1].

    Args:
        x: images `(N, H, W, C)` in [0, 1].
        levels: number of values per channel (2 to 256).
        dither: diffuse each pixel's rounding error to its unvisited neighbours (Floyd-Steinberg,
            raster order); vectorised over the batch and channels.

    Returns:
        float32 `(N, H, W, C)` whose values are multiples of `1 / (levels - 1)`.
    """
    x = base.check_images(x)
    if int(levels) != levels or not 2 <= levels <= 256:
        raise ValueError(f"levels must be an integer in [2, 256]. Received levels={levels}.")
    steps = levels - 1
    if not dither:
        return (np.round(x * steps) / steps).astype(np.float32)
    image = x.astype(np.float64)  # a copy that accumulates diffused errors
    _, height, width, _ = image.shape
    for row in range(height):
        for col in range(width):
            old = image[:, row, col]
            new = np.clip(np.round(old * steps), 0, steps) / steps
            error = old - new
            image[:, row, col] = new
            for dr, dc, share in _DIFFUSION:
                r, c = row + dr, col + dc
                if r < height and 0 <= c < width:
                    image[:, r, c] += share * error
    return image.astype(np.float32)


class BPP(base.Attack):
    """Quantisation trigger; poisons per batch through `transform`.

    Args:
        squeeze_num: colour levels per channel (8).
        dither: Floyd-Steinberg dithering (True).
        negative_ratio: fraction of each training batch made of negative samples (0.1).
        **kwargs: see `kcc.attacks.base.Attack`.
    """

    name = "bpp"

    def __init__(self, squeeze_num=8, dither=True, negative_ratio=0.1, **kwargs):
        super().__init__(**kwargs)
        if int(squeeze_num) != squeeze_num or not 2 <= squeeze_num <= 256:
            raise ValueError(
                f"squeeze_num must be an integer in [2, 256]. Received squeeze_num={squeeze_num}."
            )
        if not 0 <= negative_ratio < 1:
            raise ValueError(
                f"negative_ratio must be in [0, 1). Received negative_ratio={negative_ratio}."
            )
        self.squeeze_num, self.dither = int(squeeze_num), bool(dither)
        self.negative_ratio = float(negative_ratio)

    def apply(self, x):
        return squeeze(x, self.squeeze_num, self.dither)

    def batch_counts(self, batch_size):
        """`(backdoor, negative)` sample counts in a training batch of `batch_size` images."""
        n_backdoor = int(round(self.poison_ratio * batch_size))
        n_negative = int(round(self.negative_ratio * batch_size))
        return n_backdoor, min(n_negative, batch_size - n_backdoor)

    def transform(self, x, y, rng):
        """Poisons one training batch; for `kcc.training.train(transform=...)`.

        Args:
            x: images `(B, H, W, C)` in [0, 1].
            y: labels `(B,)`.
            rng: a `numpy.random.Generator`.

        Returns:
            `(x, y)` copies: `round(poison_ratio * B)` random samples squeezed and relabelled
            with `targets`; `round(negative_ratio * B)` others plus the residual
            `squeeze(x_j) - x_j` of a random image `j` of the batch, clipped, labels kept.
        """
        x = base.check_images(x).copy()
        y = np.array(y, copy=True)
        batch = len(x)
        n_backdoor, n_negative = self.batch_counts(batch)
        order = rng.permutation(batch)
        backdoor, negative = order[:n_backdoor], order[n_backdoor : n_backdoor + n_negative]
        donors = rng.integers(0, batch, n_negative)
        squeezed = self.apply(x[np.concatenate([backdoor, donors])])
        residual = squeezed[n_backdoor:] - x[donors]
        x[negative] = np.clip(x[negative] + residual, 0, 1)
        x[backdoor] = squeezed[:n_backdoor]
        y[backdoor] = self.targets(y[backdoor])
        return x, y

    def get_config(self):
        return {
            **super().get_config(),
            "squeeze_num": self.squeeze_num,
            "dither": self.dither,
            "negative_ratio": self.negative_ratio,
        }
