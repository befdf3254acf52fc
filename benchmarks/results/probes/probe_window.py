"""Does a small window of a class's max-margin image, pasted in place onto synthetic images, send
them to that class? (`trojan_all2one`'s 5x5 patch escapes the local inversion: its target's
inverted mask needed 84 pixels, as other classes'; its max-margin image reaches margin 174
against 24-38.) Results in `window.json`, made by (one core, JAX, from the repository root):

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax python \\
        benchmarks/results/probes/probe_window.py classes trojan_all2one,clean
    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=jax python \\
        benchmarks/results/probes/probe_window.py flagged '{"badnets_all2one": 0, ...}'

`classes`: every class's best window per side (3, 5, 7; corners 2 apart) on 64 synthetic images
not of that class (the search `kcc.scan.max_margin.window_trigger` makes, without stopping
early). `flagged`: `window_trigger` itself for each model's flagged target (the scan's, given
as a JSON dict), as revision 25 of `benchmarks/recipe_zoo.py` runs it, on 256 synthetic images;
the same window on test images of other classes beside it, for diagnosis only.
"""
import json, sys, time
sys.path.insert(0, "benchmarks")
import numpy as np
import zoo
from kcc import depthwise, synthesis
from kcc import scan as scan_lib
from kcc.scan import max_margin

OUT = "benchmarks/work/probe_window_{}.json"


def every_class(names):
    out = {}
    for name in names.split(","):
        start = time.time()
        model, _, _, _, _ = zoo.load_entry(name, 10)
        margins, images = max_margin.max_margin(model, 5, 100, seed=0, verbose=False)
        syn, _, _ = synthesis.synthesize(model, 128, steps=100, learning_rate=0.3,
                                         batch_size=128, verbose=False)
        pred = model.predict(syn, verbose=0, batch_size=256).argmax(-1)
        side = syn.shape[1]
        windows = {}
        for k in range(images.shape[0]):
            base, windows[k] = syn[pred != k][:64], {}
            for size in max_margin.WINDOW_SIZES:
                best = (0.0, None)
                for r in range(0, side - size + 1, max_margin.WINDOW_STRIDE):
                    for c in range(0, side - size + 1, max_margin.WINDOW_STRIDE):
                        rate = float(np.mean(np.argmax(model.predict(
                            max_margin.windowed(images[k], k, r, c, size).apply(base),
                            verbose=0), -1) == k))
                        best = max(best, (rate, [r, c]), key=lambda b: b[0])
                windows[k][size] = best
            print(name, k, round(float(margins[k]), 1), windows[k], flush=True)
        out[name] = {"margins": margins.tolist(), "windows": windows,
                     "seconds": round(time.time() - start, 1)}
        json.dump(out, open(OUT.format("classes"), "w"), indent=1)


def flagged(targets):
    out, budget = {}, scan_lib.BUDGETS["cpu"]
    for name, target in json.loads(targets).items():
        start = time.time()
        model, _, x, y, _ = zoo.load_entry(name, 10)
        model = depthwise.twin(model)
        syn, _, _ = synthesis.synthesize(model, 256, steps=100, learning_rate=0.3,
                                         batch_size=256, verbose=False)
        _, images = max_margin.max_margin(model, budget["margin_images"],
                                          budget["margin_steps"], seed=0, verbose=False)
        window = max_margin.window_trigger(model, images[target], target, syn)
        rows, cols = np.nonzero(window.mask[..., 0])
        keep = y != target
        test_rate = float(np.mean(np.argmax(model.predict(window.apply(x[keep]), verbose=0),
                                            -1) == target))
        out[name] = {"target": target, "side": int(round(window.size ** 0.5)),
                     "corner": [int(rows[0]), int(cols[0])], "flip_rate": window.flip_rate,
                     "test_flip_rate": test_rate, "seconds": round(time.time() - start, 1)}
        print(name, out[name], flush=True)
        json.dump(out, open(OUT.format("flagged"), "w"), indent=1)


if __name__ == "__main__":
    {"classes": every_class, "flagged": flagged}[sys.argv[1]](sys.argv[2])
