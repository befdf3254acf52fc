import sys
sys.path.insert(0, "benchmarks")
import numpy as np
import zoo
from kcc import metrics, recipe, data
model, attack, x, y, _ = zoo.load_entry("badnets_all2one", 100)
ev = lambda m: {k: round(100 * float(v), 2) for k, v in metrics.evaluate(m, x, y, attack).items() if k != "n_triggered"}
xt, yt = data.load("cifar10", "train")
print("train range", xt.dtype, xt.min(), xt.max(), "test", x.dtype, x.min(), x.max())
for n in (1000, 5000):
    xs, _, _ = data.subset(xt, yt, per_class=n // 10, seed=1)
    print(n, "train images:", ev(recipe.refreshed(model, xs)), flush=True)
print("test slice itself:", ev(recipe.refreshed(model, x)))
print("as is:", ev(model))
