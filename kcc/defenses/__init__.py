"""Baseline backdoor defenses, for comparison with Clean & Compact.

Every defense is a function `defense(model, defender_data, **hyperparameters) -> (model,
report)`: it never modifies its input, returns a new Keras model and a JSON-serialisable report
that says which data it used (see `kcc.defenses.data`). Data-free defenses (CLP) take no
`defender_data` at all; defenses that need the trigger take `attack=`.

`DEFENSES` maps the names `kcc.defend --method` accepts to these functions; the "2x" entries
are the pruning defenses used as compression (Table 2 of Clean & Compact). `defense_kwargs`
routes command-line budgets and the attack to the defenses that take them (used by
`kcc.defend` and `benchmarks/defend_zoo.py`).
"""

import ast
import functools
import inspect

from kcc.defenses import anp
from kcc.defenses import clp
from kcc.defenses import fp
from kcc.defenses import ft
from kcc.defenses import grad_prune
from kcc.defenses import ibau
from kcc.defenses import nad
from kcc.defenses.data import DefenderData
from kcc.defenses.data import defender_split

# Modules stay importable as `kcc.defenses.anp`; the registry holds their functions.
DEFENSES = {
    "anp": anp.anp,
    "anp2x": functools.partial(anp.anp, target_ratio=2.0),
    "clp": clp.clp,
    "clp2x": functools.partial(clp.clp, target_ratio=2.0),
    "ft": ft.fine_tune,
    "fp": fp.fine_pruning,
    "nad": nad.nad,
    "ibau": ibau.ibau,
    "grad_prune": grad_prune.grad_prune,
}


def defense_kwargs(fn, hparams, budget, seed, attack):
    """Keyword arguments for a defense: `hparams` must all be accepted; `budget`, `seed` and
    `attack` are passed only where `fn` takes them.

    Returns:
        `(kwargs, ignored)`: the arguments, and the names of budget entries `fn` does not take.

    Raises:
        ValueError: for an hparam `fn` does not take, or a defense that needs an attack when
            none is known.
    """
    params = inspect.signature(fn).parameters
    unknown = sorted(set(hparams) - set(params) - {"defender_data", "model"})
    if unknown:
        raise ValueError(f"--hparams {unknown} are not arguments of this defense; it takes "
                         f"{sorted(p for p in params if p not in ('model', 'defender_data'))}.")
    kwargs = dict(hparams)
    ignored = []
    for name, value in budget.items():
        if value is None:
            continue
        if name in params:
            kwargs.setdefault(name, value)
        else:
            ignored.append(name)
    if "seed" in params:
        kwargs.setdefault("seed", seed)
    if "attack" in params:
        if attack is None:
            raise ValueError("this defense needs the attack's trigger: give --attack (or a .json "
                             "sidecar beside the model).")
        kwargs.setdefault("attack", attack)
    return kwargs, ignored


def parse_hparams(items):
    """`["a=1", "b=none", "c=inf"]` -> `{"a": 1, "b": None, "c": inf}`.

    Values are Python literals; `none`, `true`, `false` and `inf` in any case are accepted, and
    anything else stays a string.
    """
    words = {"none": None, "true": True, "false": False, "inf": float("inf")}
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--hparams entries must be name=value. Received {item!r}.")
        if text.lower() in words:
            out[name] = words[text.lower()]
            continue
        try:
            out[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[name] = text
    return out
