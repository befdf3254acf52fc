"""Probe: is the class-0 warp's unlearning diluted by the other triggers the recipe stamps?"""
import json, math, sys, time
sys.path.insert(0, "benchmarks")
import numpy as np, keras
import zoo
from kcc import rewrite, distillation, unlearning, metrics
from kcc.scan import inversion

EPOCHS, SCHEDULE = 3, 20
model, attack, x, y, _ = zoo.load_entry("wanet_all2one", 100)
images = np.load("benchmarks/work/probe_wanet_images.npz")["images"]
val, train = images[:96], images[96:]
t0 = inversion.Trigger("warp", 0, np.load("benchmarks/work/probe_wanet_trigger.npz")["flow"])
decoy = [inversion.Trigger("global", c, np.zeros(images.shape[1:], np.float32)) for c in (0, 3, 5)]
variants = {"alone": ([t0], 1.0, 20), "diluted": ([t0] + decoy, 1.0, 20), "diluted_w4": ([t0] + decoy, 4.0, 20), "alone_fast": ([t0], 1.0, 3)}
results = {}
for name in sys.argv[1:]:
    keras.utils.set_random_seed(0)
    student, _ = rewrite.compress(model, 2.0, math.inf)
    trigs, weight, SCHEDULE = variants[name]
    d = unlearning.UnlearningDistiller(model, student, trigs, 4.0, weight, True, 0)
    d.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, SCHEDULE * 5)))
    log = []
    for epoch in range(EPOCHS):
        t = time.time()
        d.fit(train, batch_size=128, epochs=1, verbose=0)
        distillation.reestimate_batchnorm(student, train[::2])
        e = metrics.evaluate(student, x, y, attack)
        row = {"variant": name, "epoch": epoch + 1, "acc": e["acc"], "asr": e["asr"], "s": round(time.time() - t, 1)}
        log.append(row); print(row, flush=True)
    results[name] = log
json.dump(results, open("benchmarks/work/probe_dilution_" + "_".join(sys.argv[1:]) + ".json", "w"))
