"""Probe: refit, then unlearning distillation: BN as rev 8 (training mode, re-estimated) vs frozen.
usage: probe_refit_distill.py MODEL VARIANT... (variants: rev8, frozen, rev8_norefit)"""
import json, math, os, pickle, sys, time
sys.path.insert(0, "benchmarks")
import numpy as np, keras
import zoo
from kcc import rewrite, synthesis, metrics, distillation, unlearning, refit, recipe
from kcc import scan as scan_lib

name = sys.argv[1]; EPOCHS = 6
model, attack, x, y, _ = zoo.load_entry(name, 100)
cache = f"benchmarks/work/probe_images_{name}.npz"
if not os.path.exists(cache):
    images, _, _ = synthesis.synthesize(model, 1024, 100, batch_size=256, seed=0, verbose=False)
    np.savez(cache, images=images)
images = np.load(cache)["images"]
val, train = images[:128], images[128:]
tcache = f"benchmarks/work/probe_triggers_{name}.pkl"
if not os.path.exists(tcache):
    t = time.time()
    found = scan_lib.scan(model, seed=0, verbose=False, images=train, **scan_lib.BUDGETS["cpu"])
    pickle.dump(recipe.unlearning_triggers(found), open(tcache, "wb"))
    print("scan", round(time.time() - t), found.verdict(), flush=True)
triggers = pickle.load(open(os.environ.get("TRIGGERS", tcache), "rb"))
if os.environ.get("KINDS"): triggers = [t for t in triggers if t.kind in os.environ["KINDS"].split(",")]
print([(t.kind, t.target) for t in triggers], flush=True)
ev = lambda m: {k: round(100 * float(v), 2) for k, v in metrics.evaluate(m, x, y, attack).items() if k != "n_triggered"}
results = {}
for variant in sys.argv[2:]:
    keras.utils.set_random_seed(0)
    student, _ = rewrite.compress(model, 2.0, math.inf)
    if variant != "rev8_norefit":
        refit.refit(model, student, train, verbose=False)
    frozen = variant.startswith("frozen")
    keep = variant.startswith("keep")
    lr = float(variant.split("_")[1]) if "_" in variant and variant != "rev8_norefit" else 1e-3
    student.trainable = True
    if frozen:
        for l in student.layers:
            if isinstance(l, keras.layers.BatchNormalization):
                l.trainable = False
    val_cb = unlearning.SyntheticValidation(model, student, val, triggers, 0.05,
        calibration_images=None if (frozen or keep) else train[::2])
    d = unlearning.UnlearningDistiller(model, student, triggers, 4.0, 1.0, True, 0)
    d.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, EPOCHS * 7)))
    log = [{"epoch": 0, **ev(student)}]
    val_cb.set_model(d); val_cb.on_train_begin()
    log[0].update(val_cb.history[-1]); print(variant, log[-1], flush=True)
    import contextlib
    ctx = distillation.batchnorm_momentum(student, 1.0) if keep else contextlib.nullcontext()
    ctx.__enter__()
    for epoch in range(EPOCHS):
        t = time.time()
        d.fit(train, batch_size=128, epochs=1, verbose=0)
        val_cb._consider(epoch, None)
        row = {"epoch": epoch + 1, **ev(student), **val_cb.history[-1], "s": round(time.time() - t, 1)}
        if not frozen:
            pass
        log.append(row); print(variant, row, flush=True)
    ctx.__exit__(None, None, None)
    results[variant] = log
    json.dump(results, open(f"benchmarks/work/probe_refit_distill_{name}_{'_'.join(sys.argv[2:])}{os.environ.get('TAG','')}.json", "w"), indent=1)
