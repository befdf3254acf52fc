"""Blended: the whole image is alpha-blended with a fixed trigger image.

Reference: Chen et al., "Targeted Backdoor Attacks on Deep Learning Systems Using Data
Poisoning", 2017.
"""

import numpy as np

from kcc.attacks import assets
from kcc.attacks import base


class Blended(base.Attack):
    """`x' = (1 - alpha) * x + alpha * trigger`; default the Hello Kitty image at alpha 0.1.

    Args:
        trigger: image `(H, W, 3)` in [0, 1]; default the packaged `hello_kitty.jpeg` resized to
            the input size.
        alpha: blending strength in (0, 1] (0.1 in the C&C paper, 0.2 in some benchmarks).
        **kwargs: see `kcc.attacks.base.Attack`.
    """

    name = "blended"

    def __init__(self, trigger=None, alpha=0.1, **kwargs):
        super().__init__(**kwargs)
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1]. Received alpha={alpha}.")
        self.trigger = None if trigger is None else np.asarray(trigger, np.float32)
        self.alpha = float(alpha)

    def apply(self, x):
        x = base.check_images(x)
        trigger = self.trigger
        if trigger is None:
            trigger = assets.image("hello_kitty.jpeg", x.shape[1:3])
        if trigger.shape != x.shape[1:]:
            raise ValueError(f"trigger shape {trigger.shape} does not match images {x.shape[1:]}.")
        return ((1 - self.alpha) * x + self.alpha * trigger).astype(np.float32)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "trigger": "hello_kitty.jpeg"
                if self.trigger is None else "custom"}

    @classmethod
    def from_config(cls, config):
        config = {k: v for k, v in config.items() if k != "name"}
        if config.get("trigger") == "custom":
            raise ValueError("A Blended attack with a custom trigger image cannot be re-created "
                             "from its config; build it with trigger=<image>.")
        config["trigger"] = None  # the packaged hello_kitty.jpeg
        return cls(**config)
