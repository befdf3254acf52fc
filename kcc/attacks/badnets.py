"""BadNets: a small fixed patch stamped on the image.

Reference: Gu et al., "BadNets: Identifying Vulnerabilities in the Machine Learning Model
Supply Chain", 2017.
"""

import numpy as np

from kcc.attacks import base


class BadNets(base.Attack):
    """A patch (default 3x3 white square) at a fixed position (default bottom-right).

    Args:
        pattern: patch `(h, w)` or `(h, w, C)` of values in [0, 1]; default a 3x3 white square.
        position: `(row, col)` of the patch's top-left pixel; negative values count from the
            bottom/right edge (default `(-3, -3)`, the bottom-right corner).
        **kwargs: see `kcc.attacks.base.Attack`.
    """

    name = "badnets"

    def __init__(self, pattern=None, position=(-3, -3), **kwargs):
        super().__init__(**kwargs)
        pattern = np.ones((3, 3), np.float32) if pattern is None else np.asarray(pattern, np.float32)
        if pattern.ndim == 2:
            pattern = pattern[..., None]
        if pattern.ndim != 3 or pattern.min() < 0 or pattern.max() > 1:
            raise ValueError("pattern must be (h, w) or (h, w, C) with values in [0, 1].")
        self.pattern, self.position = pattern, tuple(int(p) for p in position)

    def _window(self, height, width):
        ph, pw = self.pattern.shape[:2]
        row, col = self.position
        row, col = row % height if row < 0 else row, col % width if col < 0 else col
        if row + ph > height or col + pw > width:
            raise ValueError(f"A {ph}x{pw} patch at {self.position} does not fit a {height}x{width} image.")
        return slice(row, row + ph), slice(col, col + pw)

    def apply(self, x):
        x = base.check_images(x).copy()
        rows, cols = self._window(x.shape[1], x.shape[2])
        x[:, rows, cols, :] = self.pattern
        return x

    def get_config(self):
        pattern = "white" if np.all(self.pattern == 1) else self.pattern.tolist()
        return {**super().get_config(), "pattern": pattern, "pattern_shape": list(self.pattern.shape),
                "position": list(self.position)}

    @classmethod
    def from_config(cls, config):
        config = {k: v for k, v in config.items() if k not in ("name", "pattern_shape")}
        if config.get("pattern") == "white":
            config["pattern"] = None
        return cls(**config)
