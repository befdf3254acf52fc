"""Does C&C's ASR drop survive fresh BatchNorm statistics? Distillation momentum 0.99 vs 0.9.

C&C at cr 2 (text reading, tau_scale 2), 1,024 synthetic images x 100 steps, 5 epochs of BN-only
distillation, run twice from the same compressed student and synthetic set: with Keras' default
BN momentum 0.99 (the moving statistics keep ~2/3 of the suspect's after 40 steps) and with 0.9,
PyTorch's default running average (the paper's code). Each student is then evaluated again after
its BN moving statistics are re-estimated on 512 of its own synthetic images (no real data).
Evaluation: 200 test images per class.

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=tensorflow python benchmarks/bn_momentum.py \
        badnets_all2one
"""

import os
import sys
import time

import keras

from kcc import distillation
from kcc import metrics
from kcc import rewrite
from kcc import saving
from kcc import synthesis

import zoo  # benchmarks/zoo.py, beside this script


def main(name):
    model, attack, x, y, _ = zoo.load_entry(name, 200)

    def evaluate(m):
        return {k: round(100 * v, 2) for k, v in metrics.evaluate(m, x, y, attack).items()
                if k != "n_triggered"}

    out = {}
    compressed, _ = rewrite.compress(model, 2, 2.0, "text")
    out["compressed"] = evaluate(compressed)
    start = time.time()
    images, labels, _ = synthesis.synthesize(compressed, 1024, 100, 0.1, 256, 0, verbose=False)
    out["synthesis_seconds"] = round(time.time() - start, 1)
    for momentum in (0.9, 0.99):
        student = keras.models.clone_model(compressed)
        student.set_weights(compressed.get_weights())
        distillation.PYTORCH_BN_MOMENTUM = momentum  # the momentum distill trains with
        distillation.distill(model, student, images, labels, epochs=5, verbose=0)
        out[f"momentum {momentum}"] = evaluate(student)
        distillation.reestimate_batchnorm(student, images[:512], batch_size=512)
        out[f"momentum {momentum}, BN re-estimated on 512 synthetic images"] = evaluate(student)
        print(out, flush=True)
    saving.write_json(out, os.path.join(zoo.RESULTS, f"bn_momentum_{name}.json"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "badnets_all2one")
