"""Probe: does a layer-wise least-squares refit of the Tucker factors on synthetic images
recover the accuracy truncation costs?

usage: python benchmarks/work/probe_refit.py MODEL [CR]
"""
import json, math, os, sys, time
sys.path.insert(0, "benchmarks")
import numpy as np, keras
from keras import ops
import zoo
from kcc import rewrite, synthesis, metrics, distillation
from kcc.layers import TuckerConv2D

name = sys.argv[1]
cr = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
model, attack, x, y, _ = zoo.load_entry(name, 100)
cache = f"benchmarks/work/probe_images_{name}.npz"
if os.path.exists(cache):
    images = np.load(cache)["images"]
else:
    t = time.time()
    images, _, _ = synthesis.synthesize(model, 1024, 100, batch_size=256, seed=0, verbose=False)
    np.savez(cache, images=images)
    print("synthesis", round(time.time() - t), "s", flush=True)
val, train = images[:128], images[128:]

def ev(m):
    e = metrics.evaluate(m, x, y, attack)
    return {k: round(100 * float(v), 2) for k, v in e.items() if k != "n_triggered"}

def agreement(a, b, imgs):
    return float(np.mean(np.argmax(a.predict(imgs, verbose=0, batch_size=256), -1)
                         == np.argmax(b.predict(imgs, verbose=0, batch_size=256), -1)))

def refit(teacher, student, images, max_rows=150_000, ridge=1e-4, mode="rrr", seed=0):
    rng = np.random.default_rng(seed)
    layers = [l for l in student.layers if isinstance(l, TuckerConv2D)]
    for layer in layers:
        t0 = time.time()
        xin = keras.Model(student.inputs, layer.input).predict(images, verbose=0, batch_size=128)
        target = keras.Model(teacher.inputs, teacher.get_layer(layer.name).output).predict(
            images, verbose=0, batch_size=128)
        k1, k2 = layer.kernel_size
        pointwise = (k1, k2) == (1, 1)
        a = ops.conv(xin, layer.input_factor, strides=layer.strides if pointwise else 1,
                     padding="valid")
        r2 = a.shape[-1]
        eye = np.eye(k1 * k2 * r2, dtype=np.float32).reshape(k1, k2, r2, k1 * k2 * r2)
        p = ops.conv(a, eye, strides=1 if pointwise else layer.strides, padding=layer.padding,
                     dilation_rate=layer.dilation_rate)
        p = ops.convert_to_numpy(p).reshape(-1, k1 * k2 * r2).astype(np.float64)
        t = np.asarray(target).reshape(-1, target.shape[-1]).astype(np.float64)
        if layer.use_bias:
            t = t - ops.convert_to_numpy(layer.bias)
        if len(p) > max_rows:
            rows = rng.choice(len(p), max_rows, replace=False)
            p, t = p[rows], t[rows]
        gram = p.T @ p
        gram += ridge * np.trace(gram) / len(gram) * np.eye(len(gram))
        b = np.linalg.solve(gram, p.T @ t)  # (K*K*R2, O)
        r1 = layer.ranks[0]
        fitted = p @ b
        _, _, vt = np.linalg.svd(fitted, full_matrices=False)
        v = vt[:r1].T  # (O, R1)
        core = (b @ v).reshape(k1, k2, r2, r1)
        before = np.mean((p @ ops.convert_to_numpy(layer.core).reshape(-1, r1).astype(np.float64)
                          @ ops.convert_to_numpy(layer.output_factor)[0, 0] - t) ** 2)
        after = np.mean((p @ b @ v @ v.T - t) ** 2)
        w = layer.get_weights()
        w[1] = core.astype(np.float32)
        w[2] = v.T[None, None].astype(np.float32)
        layer.set_weights(w)
        print(f"  {layer.name}: mse {before:.4g} -> {after:.4g} (var {t.var():.4g}) "
              f"{time.time() - t0:.1f}s", flush=True)

rows = {}
keras.utils.set_random_seed(0)
student, _ = rewrite.compress(model, cr, math.inf)
rows["suspect"] = ev(model)
rows["truncated"] = {**ev(student), "agree_val": agreement(model, student, val)}
print(rows, flush=True)
t = time.time()
refit(model, student, train)
rows["refit"] = {**ev(student), "agree_val": agreement(model, student, val), "s": round(time.time() - t, 1)}
print(rows["refit"], flush=True)
probe = keras.models.clone_model(student); probe.set_weights(student.get_weights())
distillation.reestimate_batchnorm(probe, train)
rows["refit_bn"] = ev(probe)
print(rows, flush=True)
json.dump(rows, open(f"benchmarks/work/probe_refit_{name}_cr{cr:g}.json", "w"), indent=1)
