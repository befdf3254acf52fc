"""Trigger images shipped inside the package (never read from outside it at run time)."""

import importlib.resources

import numpy as np


def path(filename):
    """Filesystem path of a packaged asset, e.g. `"hello_kitty.jpeg"`."""
    return str(importlib.resources.files("kcc") / "assets" / filename)


def image(filename, size=(32, 32)):
    """A packaged image as float32 `(H, W, 3)` in [0, 1], resized to `size` `(height, width)`."""
    from PIL import Image

    with Image.open(path(filename)) as img:
        img = img.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(img, np.float32) / 255.0
