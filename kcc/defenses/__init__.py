"""Baseline backdoor defenses, for comparison with Clean & Compact.

Every defense is a function `defense(model, ..., defender_data=None, ...) -> (model, report)`:
it never modifies its input, returns a new Keras model and a JSON-serialisable report that says
which data it used (see `kcc.defenses.data`). Data-free defenses (CLP) take no data at all.
"""

from kcc.defenses.data import DefenderData
from kcc.defenses.data import defender_split
