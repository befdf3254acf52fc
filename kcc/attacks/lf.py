"""LF: a smooth, low-frequency additive pattern as the trigger.

kcc ships the CIFAR-10 trigger of the benchmark implementations as `lowfreq_cifar10.npy`
(uint8 `(32, 32, 3)`, values 0..51), added to the image in 0-255 units.

Reference: Zeng et al., "Rethinking the Backdoor Attacks' Triggers: A Frequency Perspective",
ICCV 2021.
"""

import numpy as np

from kcc.attacks import assets
from kcc.attacks import base


class LowFrequency(base.Attack):
    """`x' = clip(x + trigger / 255)` with the packaged low-frequency trigger (dirty-label).

    Args:
        trigger: additive trigger `(H, W, C)` in 0-255 units, or the name of a packaged `.npy`
            asset or a path to one (default `"lowfreq_cifar10.npy"`).
        **kwargs: see `kcc.attacks.base.Attack`.
    """

    name = "lf"

    def __init__(self, trigger="lowfreq_cifar10.npy", **kwargs):
        super().__init__(**kwargs)
        self.trigger_name = trigger if isinstance(trigger, str) else "custom"
        if isinstance(trigger, str):
            trigger = np.load(assets.path(trigger) if "/" not in trigger else trigger)
        trigger = np.asarray(trigger, np.float32)
        if trigger.ndim != 3 or np.abs(trigger).max() > 255:
            raise ValueError(
                f"trigger must be (H, W, C) in 0-255 units. Received shape={trigger.shape}, "
                f"max |value|={np.abs(trigger).max()}."
            )
        self.trigger = trigger / 255.0

    def apply(self, x):
        x = base.check_images(x)
        if self.trigger.shape != x.shape[1:]:
            raise ValueError(
                f"trigger shape {self.trigger.shape} does not match images {x.shape[1:]}."
            )
        return np.clip(x + self.trigger, 0, 1).astype(np.float32)

    def get_config(self):
        return {**super().get_config(), "trigger": self.trigger_name}
