"""The C&C-aware adaptive attack of the paper's Table 7.

The attacker knows the defense. Singular values cannot be differentiated through usefully, so
the practical adaptive attack constrains the model under training with C&C's scaling step
(Eq. 5-7) at the end of every epoch, hoping that the final backdoor no longer lives in the rank
components C&C scales. Any attack trained by `kcc.training.train` can be made adaptive by adding
this callback (`kcc.attacks.infect(..., adaptive_tau_scale=...)`).

Reference: Phan et al., "Clean and Compact", ECCV 2024, Sect. 5.1 "Performance Against Adaptive
Attack" and Table 7.
"""

import keras

from kcc import rewrite


class ConstrainEachEpoch(keras.callbacks.Callback):
    """Applies `kcc.rewrite.constrain_weights` to the model at the end of every epoch.

    Args:
        tau_scale: the Eq. 5 threshold the attacker expects the defender to use.
        reading: `"text"` or `"literal"` reading of Eq. 5.

    Attributes:
        scaled: rank components scaled at the end of each epoch so far.
    """

    def __init__(self, tau_scale=4.0, reading="text"):
        super().__init__()
        self.tau_scale, self.reading = float(tau_scale), reading
        self.scaled = []

    def on_train_begin(self, logs=None):
        self.scaled = []

    def on_epoch_end(self, epoch, logs=None):
        self.scaled.append(rewrite.constrain_weights(self.model, self.tau_scale, self.reading))
        if logs is not None:
            logs["constrained_components"] = self.scaled[-1]
