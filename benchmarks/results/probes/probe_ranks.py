"""Rank criteria of global truncation (`kcc.tucker.select_ranks`, no scaling, no refit): the
truncated zoo model's ACC on the CIFAR-10 test slice (100 per class; a diagnostic: the recipe
chooses nothing with it) at cr 2, 3, 4, and the smallest share of a mode's full rank kept.

Modes ($MODES, comma-separated): `raw` is Eq. 8 (one threshold on the raw singular values);
`fro`, `max`, `mean` divide each layer's singular values by its Frobenius norm (what
`select_ranks(relative=True)` does, kcc's recipe from revision 28), its largest, its mean;
`greedy` adds components one at a time by log retained energy per parameter (after Zhang et
al., "Accelerating Very Deep Convolutional Networks for Classification and Detection", TPAMI
2016, whose objective is the product of the layers' retained PCA energies). Results:
`ranks.json`. Run from the repository root:

    KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax MODES=raw,fro,max,mean \
        taskset -c 0 python benchmarks/results/probes/probe_ranks.py clean,clean_vgg19_bn
"""
import json, os, sys, time
sys.path.insert(0, "benchmarks")
import numpy as np
import zoo
from kcc import tucker, rewrite, metrics

orig = tucker.select_ranks
MODE = {"v": "raw"}

def patched(layers, other, cr, rank_multiple=1):
    if MODE["v"] == "raw":
        return orig(layers, other, cr, rank_multiple)
    if MODE["v"] == "greedy":
        return greedy(layers, other, cr)
    new = []
    for l in layers:
        s1, s2 = np.asarray(l["sigma1"], float), np.asarray(l["sigma2"], float)
        if MODE["v"] == "fro":
            n1 = n2 = np.sqrt(np.sum(s1 ** 2))
        elif MODE["v"] == "max":
            n1, n2 = s1.max(), s2.max()
        elif MODE["v"] == "mean":
            n1, n2 = s1.mean(), s2.mean()
        new.append(dict(l, sigma1=s1 / n1, sigma2=s2 / n2))
    return orig(new, other, cr, rank_multiple)


def greedy(layers, other, cr):
    original = other + sum(tucker.conv_params(l["kernel_shape"], l["use_bias"]) for l in layers)
    budget = original / cr
    E = []
    for l in layers:
        s1, s2 = np.asarray(l["sigma1"], float) ** 2, np.asarray(l["sigma2"], float) ** 2
        E.append((np.cumsum(s1) / s1.sum(), np.cumsum(s2) / s2.sum()))
    ranks = [[1, 1] for _ in layers]
    lp = lambda i: tucker.layer_params(layers[i]["kernel_shape"], *ranks[i], layers[i]["use_bias"])
    total = other + sum(lp(i) for i in range(len(layers)))
    dead = set()
    while True:
        best, arg = -1, None
        for i, l in enumerate(layers):
            k1, k2, I, O = l["kernel_shape"]
            for m in (0, 1):
                if (i, m) in dead or ranks[i][m] >= len(E[i][m]):
                    continue
                r = ranks[i][m]
                gain = np.log(E[i][m][r] / E[i][m][r - 1])
                cost = (O if m == 0 else I) + k1 * k2 * ranks[i][1 - m]
                if gain / cost > best:
                    best, arg = gain / cost, (i, m)
        if arg is None:
            break
        i, m = arg
        before = lp(i)
        ranks[i][m] += 1
        new = total - before + lp(i)
        if new > budget:
            ranks[i][m] -= 1
            dead.add(arg)
        else:
            total = new
    return [tuple(r) for r in ranks], float("nan"), total

tucker.select_ranks = patched
out = {}
for name in sys.argv[1].split(","):
    model, attack, x, y, _ = zoo.load_entry(name, 100)
    for cr in (2, 3, 4):
        for mode in os.environ.get("MODES", "raw,fro,max,mean").split(","):
            MODE["v"] = mode
            t = time.time()
            c, rep = rewrite.compress(model, cr, np.inf)
            ev = metrics.evaluate(c, x, y, None)
            d = rep.to_dict()
            mins = min(r / full for l in d["layers"]
                       for r, full in zip(l["ranks"], l["full_ranks"]))
            row = dict(acc=round(100 * float(ev["acc"]), 2), min_rank_fraction=round(mins, 3),
                       ranks=[l["ranks"] for l in d["layers"]],
                       full=[l["full_ranks"] for l in d["layers"]], s=round(time.time() - t, 1))
            out[f"{name}|{cr}|{mode}"] = row
            print(name, cr, mode, row["acc"], row["min_rank_fraction"], row["s"], flush=True)
    tag = sys.argv[1].replace(",", "_")
    json.dump(out, open(f"benchmarks/work/ranks_{tag}.json", "w"), indent=1)
