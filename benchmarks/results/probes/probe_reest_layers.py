import sys
sys.path.insert(0, "benchmarks")
import numpy as np, keras
import zoo
from kcc import data, distillation, recipe
model, attack, x, y, _ = zoo.load_entry("badnets_all2one", 100)
xt, yt = data.load("cifar10", "train")
xs, _, _ = data.subset(xt, yt, per_class=200, seed=1)
fresh = recipe.refreshed(model, xs)
for a, b in list(zip(distillation.batchnorm_layers(model), distillation.batchnorm_layers(fresh)))[:21:2]:
    m0, v0 = np.asarray(a.moving_mean), np.asarray(a.moving_variance)
    m1, v1 = np.asarray(b.moving_mean), np.asarray(b.moving_variance)
    print(a.name, "mean shift/std %.3f" % np.median(np.abs(m1 - m0) / np.sqrt(v0)), "var ratio median %.3f" % np.median(v1 / v0), "momentum", a.momentum, "eps", a.epsilon)
# flip + crop augmentation stats for first layer
