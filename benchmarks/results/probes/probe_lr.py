"""Probe: distillation learning rate, on training-split images (model selection never sees test labels)."""
import json, math, sys, time
sys.path.insert(0, "benchmarks")
import numpy as np, keras
import zoo
from kcc import rewrite, distillation, unlearning, metrics, data
from kcc.scan import inversion

EPOCHS = 5
model, attack, _, _, _ = zoo.load_entry("wanet_all2one", 1)
x, y = data.load("cifar10", "train")
x, y, _ = data.subset(x, y, per_class=100, seed=1)
x = x.astype("float32") / 255.0 if x.dtype == np.uint8 else x
images = np.load("benchmarks/work/probe_wanet_images.npz")["images"]
train = images[96:]
t0 = inversion.Trigger("warp", 0, np.load("benchmarks/work/probe_wanet_trigger.npz")["flow"])
results = {"suspect": metrics.evaluate(model, x, y, attack)}
student0, _ = rewrite.compress(model, 2.0, math.inf)
results["truncated"] = metrics.evaluate(student0, x, y, attack)
print(results, flush=True)
for name in sys.argv[1:]:
    lr = float(name)
    keras.utils.set_random_seed(0)
    student, _ = rewrite.compress(model, 2.0, math.inf)
    d = unlearning.UnlearningDistiller(model, student, [t0], 4.0, 1.0, True, 0)
    d.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, EPOCHS * 5)))
    log = []
    for epoch in range(EPOCHS):
        t = time.time()
        d.fit(train, batch_size=128, epochs=1, verbose=0)
        distillation.reestimate_batchnorm(student, train[::2])
        e = metrics.evaluate(student, x, y, attack)
        row = {"lr": lr, "epoch": epoch + 1, "train_split_acc": e["acc"], "train_split_asr": e["asr"], "s": round(time.time() - t, 1)}
        log.append(row); print(row, flush=True)
    results[name] = log
    json.dump(results, open("benchmarks/work/probe_lr.json", "w"))
