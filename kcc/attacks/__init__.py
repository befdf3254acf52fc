"""Backdoor attacks: trigger functions on [0, 1] images and training-set poisoning.

`get(name, **kwargs)` builds an attack by name; see `kcc.attacks.base.Attack` for the interface.
"""

from kcc.attacks.badnets import BadNets
from kcc.attacks.base import MODES
from kcc.attacks.base import Attack
from kcc.attacks.blended import Blended
from kcc.attacks.infect import infect
from kcc.attacks.infect import save_infected

ATTACKS = {cls.name: cls for cls in (BadNets, Blended)}


def get(name, **kwargs):
    """Builds an attack by name (one of `ATTACKS`) with keyword parameters."""
    if name not in ATTACKS:
        raise ValueError(f"Unknown attack. Expected one of {sorted(ATTACKS)}. Received name={name!r}.")
    return ATTACKS[name](**kwargs)


__all__ = ["ATTACKS", "MODES", "Attack", "BadNets", "Blended", "get", "infect", "save_infected"]
