"""Probe: refit, then unlearning distillation with BatchNorm frozen (suspect statistics), refined triggers.
usage: TRIGGERS=... KINDS=local probe_frozen.py MODEL LR EPOCHS WEIGHT [NOREFIT]"""
import json, math, os, pickle, sys, time
sys.path.insert(0, os.path.dirname(__file__))
import numpy as np, keras
import probe_setup
from kcc import rewrite, metrics, unlearning, refit, recipe
name, lr, epochs, weight = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
norefit = len(sys.argv) > 5
model, val, train, triggers, ev = probe_setup.load(name)
keras.utils.set_random_seed(0)
student, _ = rewrite.compress(model, 2.0, math.inf)
t0 = time.time()
if not norefit:
    refit.refit(model, student, train, verbose=False)
print("refit", round(time.time() - t0, 1), flush=True)
student.trainable = True
for l in student.layers:
    if isinstance(l, keras.layers.BatchNormalization):
        l.trainable = False
val_cb = unlearning.SyntheticValidation(model, student, val, triggers, 0.05)
d = unlearning.UnlearningDistiller(model, student, triggers, 4.0, weight, True, 0)
steps = -(-len(train) // 128)
d.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, epochs * steps)))
val_cb.set_model(d); val_cb.on_train_begin()
log = [{"epoch": 0, **ev(student), **val_cb.history[-1]}]; print(log[-1], flush=True)
for epoch in range(epochs):
    t = time.time()
    d.fit(train, batch_size=128, epochs=1, verbose=0)
    val_cb._consider(epoch, None)
    log.append({**ev(student), **val_cb.history[-1], "s": round(time.time() - t, 1)}); print(log[-1], flush=True)
val_cb.on_train_end()
for l in student.layers: l.trainable = True
student.save_weights(f"benchmarks/work/probe_frozen_{name}.weights.h5")
from kcc import data
xt, yt = data.load("cifar10", "train")
xt, _, _ = data.subset(xt, yt, per_class=100, seed=1)
final = {"chosen": val_cb.chosen_epoch, **ev(student), "bn_reest": ev(recipe.refreshed(student, val)),
         "bn_reest_real_train_1000": ev(recipe.refreshed(student, xt)),
         "suspect_bn_reest_real_train_1000": ev(recipe.refreshed(model, xt)),
         "suspect_bn_reest_synthetic": ev(recipe.refreshed(model, val)),
         "fine_tuned": ev(recipe.fine_tuned(student, train)), "s": round(time.time() - t0, 1)}
print("final", final, flush=True)
tag = f"{name}_{lr}_{epochs}_{weight}{'_norefit' if norefit else ''}{os.environ.get('TAG', '')}"
json.dump({"log": log, "final": final}, open(f"benchmarks/work/probe_frozen_{tag}.json", "w"), indent=1)
