"""Probe: does CutMix of the synthetic images during distillation raise the recipe's accuracy?

Revision 11 distils on 896 synthetic images; the student agrees with the suspect on about 83%
of held-aside synthetic images, so it may generalise poorly from so few. CutMix (Yun et al.,
ICCV 2019) pastes a random box of another image of the batch into each image; the teacher
answers on the mixed image, so no label is needed, and every step sees new inputs without new
synthesis. The same box is used for the whole batch (its area uniform in [0, 1]); stamped images
are made from the mixed ones. Everything else is `kcc.recipe.purify_kcc` at the CPU budget of
`benchmarks/recipe_zoo.py` (revision 11). Usage:

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax \
        python benchmarks/results/probes/probe_cutmix.py NAME [CR]
"""
import os, sys
sys.path.insert(0, "benchmarks")
sys.path.insert(0, os.path.dirname(__file__))
import keras
from keras import ops
import probe_setup
from kcc import unlearning

name = sys.argv[1]
cr = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
plain_call = unlearning.UnlearningDistiller.call


def cutmix_call(self, x, training=False):
    if training:
        if not hasattr(self, "cutmix_seed"):
            self.cutmix_seed = keras.random.SeedGenerator(7)
        h, w = x.shape[1], x.shape[2]
        side = ops.sqrt(keras.random.uniform((), seed=self.cutmix_seed))
        bh = ops.cast(side * h, "int32")
        bw = ops.cast(side * w, "int32")
        top = ops.cast(keras.random.uniform((), seed=self.cutmix_seed) * ops.cast(h - bh + 1,
                                                                                   "float32"), "int32")
        left = ops.cast(keras.random.uniform((), seed=self.cutmix_seed) * ops.cast(w - bw + 1,
                                                                                    "float32"), "int32")
        rows = ops.arange(h)[:, None]
        cols = ops.arange(w)[None, :]
        box = ops.logical_and(ops.logical_and(rows >= top, rows < top + bh),
                              ops.logical_and(cols >= left, cols < left + bw))
        box = ops.cast(box, x.dtype)[None, :, :, None]
        other = ops.roll(x, 1, axis=0)  # the batch is shuffled by fit: a neighbour is random
        x = (1.0 - box) * x + box * other
    return plain_call(self, x, training=training)


unlearning.UnlearningDistiller.call = cutmix_call
probe_setup.run_recipe(name, cr, "benchmarks/results/probes/cutmix.json",
                       "11 + CutMix in distillation")
