"""Probe: unlearning under two BatchNorm regimes at once: the suspect's moving statistics (inference
mode) and batch statistics of the synthetic batch (training mode, moving statistics never updated).
usage: TRIGGERS=... KINDS=local probe_two_regimes.py MODEL LR EPOCHS MODE   (MODE: both | frozen)"""
import json, math, os, pickle, sys, time
sys.path.insert(0, os.path.dirname(__file__))
import numpy as np, keras
from keras import ops
import probe_setup
from kcc import rewrite, metrics, unlearning, refit, recipe, distillation
name, lr, epochs, mode = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
model, val, train, triggers, ev = probe_setup.load(name)


class TwoRegimes(unlearning.UnlearningDistiller):
    def call(self, x, training=False):
        if self.augmenter is not None and training:
            x = self.augmenter(x, training=True)
        teacher = ops.stop_gradient(self.teacher(x, training=False))
        n = ops.shape(x)[0]
        k = (n + 3) // 4
        both = ops.concatenate([x, self.stamp(x[:k])], axis=0)
        frozen = self.student(both, training=False)
        if mode == "both" and training:
            batch = self.student(both, training=True)
            return teacher, ops.concatenate([frozen[:n], batch[:n]], 0), ops.concatenate([frozen[n:], batch[n:]], 0)
        return teacher, frozen[:n], frozen[n:]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        teacher, student, stamped = y_pred
        reps = ops.shape(student)[0] // ops.shape(teacher)[0]
        k = ops.shape(stamped)[0] // reps
        t = ops.concatenate([teacher] * reps, 0)
        ts = ops.concatenate([teacher[:k]] * reps, 0)
        return ops.mean(self._kl(t, student)) + self.unlearning_weight * ops.mean(self._kl(ts, stamped))

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return {}


keras.utils.set_random_seed(0)
student, _ = rewrite.compress(model, 2.0, math.inf)
t0 = time.time()
refit.refit(model, student, train, verbose=False)
student.trainable = True
if mode == "frozen":
    for l in distillation.batchnorm_layers(student):
        l.trainable = False
val_cb = unlearning.SyntheticValidation(model, student, val, triggers, 0.05)
d = TwoRegimes(model, student, triggers, 4.0, 1.0, True, 0)
steps = -(-len(train) // 128)
d.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, epochs * steps)))
val_cb.set_model(d); val_cb.on_train_begin()


def row():
    for l in student.layers: l.trainable = True
    fresh = recipe.refreshed(student, val)
    check = unlearning.SyntheticValidation(model, fresh, val, triggers, 0.05)
    agree_r, rate_r = check.measure()
    if mode == "frozen":
        for l in distillation.batchnorm_layers(student): l.trainable = False
    return {**ev(student), **val_cb.history[-1], "reest": ev(fresh), "reest_agreement": agree_r, "reest_trigger_rate": rate_r}


log = [row()]; print(log[-1], flush=True)
with distillation.batchnorm_momentum(student, 1.0):
    for epoch in range(epochs):
        t = time.time()
        d.fit(train, batch_size=128, epochs=1, verbose=0)
        val_cb._consider(epoch, None)
        log.append({**row(), "s": round(time.time() - t, 1)}); print(log[-1], flush=True)
json.dump(log, open(f"benchmarks/work/probe_two_regimes_{name}_{mode}_{lr}_{epochs}.json", "w"), indent=1)
