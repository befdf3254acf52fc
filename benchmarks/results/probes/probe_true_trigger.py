"""Probe: the true trigger on synthetic images (flip rate), and oracle pruning by its channel scores."""
import pickle, sys
sys.path.insert(0, "benchmarks")
import numpy as np, keras
import zoo
from kcc import metrics
name = sys.argv[1]
model, attack, x, y, _ = zoo.load_entry(name, 100)
images = np.load(f"benchmarks/work/probe_images_{name}.npz")["images"]
val, train = images[:128], images[128:]
pred = lambda a: np.argmax(model.predict(a, batch_size=256, verbose=0), -1)
p0 = pred(val); keep = p0 != 0
print("true trigger flip on synthetic val:", np.mean(pred(attack.apply(val[keep])) == 0))
ev = lambda m: {k: round(100 * float(v), 2) for k, v in metrics.evaluate(m, x, y, attack).items() if k != "n_triggered"}
bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
probe = keras.Model(model.inputs, [l.output for l in bns])
def stats(a):
    return [(o.mean(axis=(0, 1, 2)), o.std(axis=(0, 1, 2))) for o in probe.predict(a, batch_size=128, verbose=0)]
c, s = stats(train), stats(attack.apply(train))
flat = sorted([(float((ms - mc)[i] / (sc[i] + 1e-6)), li, i) for li, ((mc, sc), (ms, _)) in enumerate(zip(c, s)) for i in range(len(mc))], reverse=True)
print("top", [(round(v, 2), bns[li].name, ci) for v, li, ci in flat[:15]])
orig = [(l.gamma.numpy().copy(), l.beta.numpy().copy()) for l in bns]
for k in [0, 2, 5, 10, 20, 40]:
    for l, (g, b) in zip(bns, orig):
        l.gamma.assign(g); l.beta.assign(b)
    for _, li, ci in flat[:k]:
        g = bns[li].gamma.numpy(); b = bns[li].beta.numpy(); g[ci] = 0; b[ci] = 0
        bns[li].gamma.assign(g); bns[li].beta.assign(b)
    print(k, ev(model), "syn flip", np.mean(pred(attack.apply(val[keep])) == 0), flush=True)
