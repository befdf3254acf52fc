"""Probe: a focused trigger inversion for the flagged class only, with a larger budget."""
import pickle, sys, time
sys.path.insert(0, "benchmarks")
import numpy as np, keras
import zoo
from kcc.scan import inversion
name, target = sys.argv[1], int(sys.argv[2])
steps, batch, lam = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
model, attack, x, y, _ = zoo.load_entry(name, 100)
images = np.load(f"benchmarks/work/probe_images_{name}.npz")["images"]
val, train = images[:128], images[128:]
pred = lambda a: np.argmax(model.predict(a, batch_size=256, verbose=0), -1)
lt, lv = pred(train), pred(val)
t = time.time()
found = inversion.invert_triggers(model, train, lt, steps=steps, batch_size=batch, classes=[target],
                                  lambda_mask=lam, verbose=False)
print("seconds", round(time.time() - t, 1))
allt = [found[k][0] for k in inversion.KINDS]
inversion.flip_rates(model, allt, val, lv)
keep = y != target
for tr in allt:
    real = np.mean(pred(tr.apply(x[keep])) == target)
    print(tr.kind, "size", round(tr.size, 2), "val flip", round(tr.flip_rate, 3), "test flip", round(real, 3))
m = allt[0].mask[..., 0]
print("mask mass by region: top-left 8x8", m[:8, :8].sum().round(1), "bottom-right 8x8", m[-8:, -8:].sum().round(1), "total", m.sum().round(1))
print("argmax positions", np.argwhere(m > 0.5)[:20].tolist())
pickle.dump(allt, open(f"benchmarks/work/probe_refined_{name}_{steps}_{batch}_{lam}.pkl", "wb"))
