"""Backdoor metrics: clean accuracy (ACC), attack success rate (ASR), robust accuracy (RA).

* ACC: top-1 accuracy on clean test images.
* ASR: fraction of triggered test images classified as the attacker's label. For all-to-one
  attacks, images whose true label already is the target are excluded (ANP's protocol).
* RA: fraction of triggered test images (the same ones) classified as their true label.

All three are fractions in [0, 1]; reports multiply by 100.
"""

import numpy as np

from kcc import training


def backdoor_rates(predictions_triggered, y, attack):
    """ASR and RA from predictions on triggered images.

    Args:
        predictions_triggered: predicted classes `(N,)` of `attack.apply(x)`.
        y: true labels `(N,)`.
        attack: a `kcc.attacks.Attack`.

    Returns:
        `(asr, ra, n)`: the two rates over the `n` images that count.
    """
    y = np.asarray(y)
    keep = np.ones(len(y), bool) if attack.mode == "all2all" else y != attack.target
    pred, y = np.asarray(predictions_triggered)[keep], y[keep]
    if len(y) == 0:
        raise ValueError("No test image outside the target class; ASR is undefined.")
    asr = float(np.mean(pred == attack.targets(y)))
    ra = float(np.mean(pred == y))
    return asr, ra, int(len(y))


def evaluate(model, x, y, attack=None, batch_size=512):
    """ACC, and with an attack also ASR and RA, of `model` on test images `(x, y)`.

    Args:
        model: Keras classifier on [0, 1] images.
        x: test images `(N, 32, 32, 3)` in [0, 1].
        y: true labels `(N,)`.
        attack: optional `kcc.attacks.Attack` whose trigger is applied for ASR/RA.
        batch_size: inference batch size.

    Returns:
        dict with `acc` (and `asr`, `ra`, `n_triggered`), fractions in [0, 1].
    """
    y = np.asarray(y)
    result = {"acc": training.accuracy(model, x, y, batch_size)}
    if attack is not None:
        keep = np.ones(len(y), bool) if attack.mode == "all2all" else y != attack.target
        if not keep.any():
            raise ValueError("No test image outside the target class; ASR is undefined.")
        triggered = attack.apply(x[keep])
        pred = training.predict_labels(model, triggered, batch_size)
        asr, ra, n = backdoor_rates(pred, y[keep], attack)
        result.update(asr=asr, ra=ra, n_triggered=n)
    return result
