"""Backdoor attacks: trigger functions on [0, 1] images and training-set poisoning.

`get(name, **kwargs)` builds an attack by name, `from_config(config, folder)` re-creates one from
its recorded `get_config()` (zoo sidecars); see `kcc.attacks.base.Attack` for the interface.
How `kcc.attacks.infect` trains each kind:

* static poisoning (`poison`): BadNets, Blended, SIG, LF;
* per-batch poisoning (`transform`, passed to `kcc.training.train`): WaNet, BPP;
* their own multi-stage training (`train`): InputAware (generators), CLA (clean model, PGD),
  Trojan (pre-training, trigger search, retraining).
"""

import os

from kcc.attacks.badnets import BadNets
from kcc.attacks.base import MODES
from kcc.attacks.adaptive import ConstrainEachEpoch
from kcc.attacks.base import Attack
from kcc.attacks.blended import Blended
from kcc.attacks.bpp import BPP
from kcc.attacks.cla import LabelConsistent
from kcc.attacks.infect import infect
from kcc.attacks.infect import save_infected
from kcc.attacks.inputaware import InputAware
from kcc.attacks.lf import LowFrequency
from kcc.attacks.sig import SIG
from kcc.attacks.trojan import Trojan
from kcc.attacks.wanet import WaNet

ATTACKS = {
    cls.name: cls
    for cls in (
        BadNets, Blended, WaNet, InputAware, SIG, LowFrequency, BPP, LabelConsistent, Trojan
    )
}


def from_config(config, folder=None):
    """Re-creates an attack from its `get_config()` dict, e.g. a zoo sidecar's `"attack"`.

    Args:
        config: dict with a `"name"` key (one of `ATTACKS`) and the attack's parameters.
        folder: folder that relative file paths in the config are relative to (for a sidecar,
            its own folder): InputAware's `generator_weights`.

    Returns:
        The attack, ready for `apply` (InputAware loads its generators on first use).
    """
    config = dict(config)
    name = config.get("name")
    if name not in ATTACKS:
        raise ValueError(
            f"Unknown attack. Expected one of {sorted(ATTACKS)}. Received name={name!r}."
        )
    weights = config.get("generator_weights")
    if folder and weights and not os.path.isabs(weights):
        config["generator_weights"] = os.path.join(folder, weights)
    return ATTACKS[name].from_config(config)


def get(name, **kwargs):
    """Builds an attack by name (one of `ATTACKS`) with keyword parameters."""
    if name not in ATTACKS:
        raise ValueError(
            f"Unknown attack. Expected one of {sorted(ATTACKS)}. Received name={name!r}."
        )
    return ATTACKS[name](**kwargs)


__all__ = [
    "ATTACKS",
    "BPP",
    "MODES",
    "SIG",
    "Attack",
    "BadNets",
    "Blended",
    "InputAware",
    "LabelConsistent",
    "LowFrequency",
    "Trojan",
    "WaNet",
    "from_config",
    "get",
    "infect",
    "save_infected",
]
