"""C&C inside your own Keras code: compress, synthesise, distil with `fit` and callbacks, evaluate.

    python examples/clean_and_compact.py --model=examples/zoo/badnets_all2one.keras

Each step is one library call, so you can swap any of them (your own synthetic data, your own
callbacks, another optimiser).
"""

import numpy as np
from absl import app
from absl import flags

import keras
from kcc import attacks
from kcc import distillation
from kcc import intake
from kcc import metrics
from kcc import rewrite
from kcc import synthesis

_MODEL = flags.DEFINE_string("model", "examples/zoo/badnets_all2one.keras", "Suspect model.")
_EVAL = flags.DEFINE_string("eval_data", "examples/zoo/cifar10_test_slice.npz", "Labelled .npz or ''.")
_CR = flags.DEFINE_float("cr", 2.0, "Compression ratio.")
_IMAGES = flags.DEFINE_integer("num_images", 512, "Synthetic images.")
_STEPS = flags.DEFINE_integer("steps", 50, "Synthesis steps.")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Distillation epochs.")


def main(argv):
    del argv
    suspect = intake.load_suspect(_MODEL.value)

    # 1. Scaling (Eq. 5-7) and global rank truncation (Eq. 8).
    student, report = rewrite.compress(suspect, cr=_CR.value, tau_scale=4.0)
    print(report)

    # 2. Synthetic images from the compressed model's BatchNorm statistics (Eq. 9).
    images, labels, _ = synthesis.synthesize(student, _IMAGES.value, _STEPS.value, batch_size=256)

    # 3. BN-only adversarial distillation (Eq. 10), the Keras way: freeze before compile, then fit.
    distillation.freeze_all_but_batchnorm(student)
    distiller = distillation.Distiller(student, gamma=1.5)
    distiller.compile(optimizer=keras.optimizers.Adam(3e-4))
    data = distillation.DistillationData(suspect, images, labels, batch_size=128)
    callbacks = [distillation.RefreshAdversarial(student, data, epsilon=0.5, steps=10),
                 distillation.StopOnDivergence()]
    evaluation = None
    if _EVAL.value:
        with np.load(_EVAL.value) as f:
            x, y = f["x"].astype("float32") / 255.0, f["y"]
        evaluation = (x, y, attacks.BadNets())
        callbacks.append(distillation.BackdoorMonitor(student, *evaluation))
    distiller.fit(data, epochs=_EPOCHS.value, callbacks=callbacks)

    # 4. Evaluate before and after on your own labelled images.
    if evaluation:
        print("suspect:", metrics.evaluate(suspect, *evaluation))
        print("purified:", metrics.evaluate(student, *evaluation))


if __name__ == "__main__":
    app.run(main)
