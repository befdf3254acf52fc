"""What a command line evaluates a model on: the user's labelled images and the attack to test.

Shared by `kcc.purify` and `kcc.defend`. The attack comes from the model's JSON sidecar
(`<model>.json`, as the zoo writes it) unless the user names one; the images are a dataset's
test split or a user `.npz`. Evaluation images are only ever used to *report* ACC/ASR/RA.
"""

import json
import os

import numpy as np

from kcc import attacks
from kcc import data


def attack_for(model_path, num_classes, name=None, mode=None, target=None):
    """The attack to evaluate: the sidecar's, overridden by `name`, `mode` and `target`.

    Args:
        model_path: the model file; `<stem>.json` beside it is read if it exists.
        num_classes: classes of the model (for attacks whose config lacks it).
        name: attack name overriding the sidecar's (its other settings are then dropped).
        mode: "all2one" or "all2all", or None.
        target: all-to-one target class, or None.

    Returns:
        a `kcc.attacks.Attack`, or None when neither the sidecar nor `name` gives one.
    """
    config = {}
    sidecar_path = os.path.splitext(model_path)[0] + ".json"
    if os.path.exists(sidecar_path):
        with open(sidecar_path) as f:
            config = json.load(f).get("attack") or {}
    if name and name != config.get("name"):
        config = {"name": name}
    if target is not None:
        config["target"] = target
    if mode:
        config["mode"] = mode
    if not config.get("name"):
        return None
    config.setdefault("num_classes", num_classes)
    return attacks.from_config(config, folder=os.path.dirname(os.path.abspath(sidecar_path)))


def load_images(eval_data):
    """`(x, y)` from a dataset name (its test split) or an `.npz` with `x` (N, H, W, C) and `y`.

    Returns:
        float32 images in [0, 1] and their labels.
    """
    if eval_data in data.DATASETS:
        return data.load(eval_data, "test")
    with np.load(eval_data) as f:
        x, y = f["x"], f["y"]
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return x, y


def evaluation_set(model_path, num_classes, eval_data, attack=None, mode=None, target=None):
    """The `(x, y, attack)` triple to report ACC/ASR/RA on, or None when `eval_data` is None.

    Args:
        model_path: the model file (its sidecar names the attack).
        num_classes: classes of the model.
        eval_data: dataset name or `.npz` path, or None.
        attack, mode, target: overrides, see `attack_for`.
    """
    if eval_data is None:
        return None
    x, y = load_images(eval_data)
    return x, y, attack_for(model_path, num_classes, attack, mode, target)
