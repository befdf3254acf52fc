"""Does colour quantisation (BPP's trigger family, `kcc.attacks.bpp.squeeze`) send *synthetic*
images (from the suspect's BatchNorm statistics, as the recipe synthesises them) to one class?
Per model and levels (2-8, with and without dithering): the fraction of synthetic images not
predicted as class k that quantisation sends to k, for the class k that collects most. Test
images measured beside it for diagnosis only. Made by (one core, JAX):

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax python \
        benchmarks/results/probes/probe_quantise.py bpp_all2one,clean,badnets_all2one,...
"""
import json, os, sys, time
sys.path.insert(0, "benchmarks")
import numpy as np
import zoo
from kcc import synthesis
from kcc.attacks.bpp import squeeze

OUT = "benchmarks/results/probes/quantise.json"


def sent(model, x, levels, dither):
    before = np.argmax(model.predict(x, verbose=0, batch_size=256), -1)
    after = np.argmax(model.predict(squeeze(x, levels, dither), verbose=0, batch_size=256), -1)
    k = model.outputs[0].shape[-1]
    rates = [float(np.mean(after[before != c] == c)) if np.any(before != c) else 0.0
             for c in range(k)]
    best = int(np.argmax(rates))
    return best, round(rates[best], 3), round(float(np.median(rates)), 3)


out = json.load(open(OUT)) if os.path.exists(OUT) else {}
for name in sys.argv[1].split(","):
    model, attack, x, y, _ = zoo.load_entry(name, 30)
    start = time.time()
    images, _, _ = synthesis.synthesize(model, 256, 100, 0.3, 256, 0, verbose=0)
    images = np.asarray(images)
    row = {"target": getattr(attack, "target", None), "synthesis_s": round(time.time() - start)}
    for levels in (2, 3, 4, 6, 8, 16):
        for dither in (False, True):
            row[f"L{levels}{'d' if dither else ''}"] = {
                "synthetic": sent(model, images, levels, dither), "test": sent(model, x, levels, dither)}
    out[name] = row
    print(name, json.dumps(row), flush=True)
    json.dump(out, open(OUT, "w"), indent=1)
