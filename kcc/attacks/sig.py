"""SIG: a clean-label attack with a horizontal sinusoidal signal as the trigger.

Only target-class training images get the signal and they keep their (correct) labels; the
network learns to associate the stripes with the target class, and at test time the same signal
on any image triggers it.

Reference: Barni, Kallas and Tondi, "A New Backdoor Attack in CNNs by Training Set Corruption
Without Label Poisoning", ICIP 2019.
"""

import numpy as np

from kcc.attacks import base


class SIG(base.Attack):
    """`x' = clip(x + delta / 255 * sin(2 pi j f / W))` for every row, column `j` and channel.

    Args:
        delta: amplitude in 0-255 pixel units (40).
        frequency: periods across the image width (6).
        **kwargs: see `kcc.attacks.base.Attack`; `mode` must be `"all2one"` and
            `poison_ratio` is a fraction of the whole training set taken from the target class
            (0.1 on CIFAR-10 = every target-class image).

    Raises:
        ValueError: for `mode="all2all"`, which a clean-label attack cannot express.
    """

    name = "sig"
    clean_label = True

    def __init__(self, delta=40.0, frequency=6.0, **kwargs):
        super().__init__(**kwargs)
        if self.mode != "all2one":
            raise ValueError(
                "SIG is a clean-label attack: poisoned images keep their label, so it has no "
                f"all-to-all version. Expected mode='all2one'. Received mode={self.mode!r}."
            )
        if not 0 < delta <= 255:
            raise ValueError(f"delta must be in (0, 255]. Received delta={delta}.")
        if frequency <= 0:
            raise ValueError(
                f"frequency must be strictly positive. Received frequency={frequency}."
            )
        self.delta, self.frequency = float(delta), float(frequency)

    def signal(self, height, width):
        """The additive trigger `(H, W, 1)` in [-delta/255, delta/255]."""
        column = np.sin(2 * np.pi * np.arange(width) * self.frequency / width)
        return np.broadcast_to(self.delta / 255 * column, (height, width))[..., None]

    def apply(self, x):
        x = base.check_images(x)
        return np.clip(x + self.signal(x.shape[1], x.shape[2]), 0, 1).astype(np.float32)

    def get_config(self):
        return {**super().get_config(), "delta": self.delta, "frequency": self.frequency}
