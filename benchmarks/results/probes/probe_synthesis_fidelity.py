"""Probe: how faithful are synthetic images to the BatchNorm statistics they were made from?

Synthesises one batch of 256 images for a zoo model with `kcc.synthesis.Synthesizer` (Eq. 9) in
chunks of Adam steps; after each chunk it records the BN-statistics loss and the suspect's ACC /
ASR on the 1,000-image test slice after re-estimating its BatchNorm statistics on those images.
A faithful batch leaves ACC where it was (the re-estimated statistics equal the trained ones).
Usage: python probe_synthesis_fidelity.py NAME VARIANT [CHUNKS]
(VARIANT: batch | jitter | batch_cosine | jitter_cosine, optionally @RATE, e.g. batch@0.3)
"""
import json, os, sys, time
sys.path.insert(0, "benchmarks")
import numpy as np, keras
from keras import ops
import zoo
from kcc import metrics, synthesis, distillation

name, variant = sys.argv[1], sys.argv[2]
chunks = [int(c) for c in (sys.argv[3] if len(sys.argv) > 3 else "25,25,50,100,200").split(",")]
model, attack, x, y, _ = zoo.load_entry(name, 100)
ev = lambda m: {k: round(100 * float(v), 2) for k, v in metrics.evaluate(m, x, y, attack).items()
                if k != "n_triggered"}


class Jitter(synthesis.Synthesizer):
    """DeepInversion-style: every step sees the batch randomly flipped and shifted by up to 2 px
    (zero-padded, as the zoo's training crops were)."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.seed = keras.random.SeedGenerator(0)

    def call(self, inputs, training=False):
        x = ops.add(ops.multiply(self.normalised_images, self.std), self.mean)
        flip = keras.random.uniform((), seed=self.seed) < 0.5
        x = ops.where(flip, ops.flip(x, axis=2), x)
        h, w = x.shape[1], x.shape[2]
        padded = ops.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]])
        dy = ops.cast(keras.random.randint((), 0, 5, seed=self.seed), "int32")
        dx = ops.cast(keras.random.randint((), 0, 5, seed=self.seed), "int32")
        x = ops.slice(padded, [0, dy, dx, 0], [x.shape[0], h, w, x.shape[3]])
        return self.probe(x, training=False)


probe, bns = synthesis._probe(model)
targets = [(np.asarray(b.moving_mean, np.float32),
            np.sqrt(np.asarray(b.moving_variance) + b.epsilon).astype(np.float32)) for b in bns]
mean, std = synthesis.input_statistics(model)
B = 256
rng = np.random.default_rng(0)
labels = rng.integers(0, 10, B).astype(np.int32)
cls = Jitter if variant.startswith("jitter") else synthesis.Synthesizer
# "...cosine": Adam's rate decays from 0.1 to 0 over the sum of the chunks (one cosine).
# "...@R": Adam's (initial) rate R instead of 0.1.
variant, _, start_rate = variant.partition("@")
start_rate = float(start_rate or 0.1)
rate = (keras.optimizers.schedules.CosineDecay(start_rate, sum(chunks))
        if variant.endswith("cosine") else start_rate)
probe.trainable = False
s = cls(probe, targets, mean, std, B)
noise = rng.standard_normal((B, 32, 32, 3)).astype(np.float32)
s.normalised_images.assign(np.clip(noise, s.low, s.high))
s.compile(optimizer=keras.optimizers.Adam(rate, epsilon=1e-8))
weights = model.get_weights()
copy = keras.models.clone_model(model)  # the probe froze model's layers
copy.trainable = True
out = {"name": name, "variant": sys.argv[2], "suspect": ev(model), "rows": []}
done, t0 = 0, time.time()
for c in chunks:
    s.fit(np.zeros((c * B, 1), np.float32), np.tile(labels, c), batch_size=B, epochs=1,
          shuffle=False, verbose=0)
    done += c
    images = s.images()
    copy.set_weights(weights)
    distillation.reestimate_batchnorm(copy, images)
    row = {"steps": done, "bn_loss": round(s.bn_loss(), 3), "seconds": round(time.time() - t0, 1),
           "reestimated": ev(copy)}
    out["rows"].append(row); print(row, flush=True)
os.makedirs("benchmarks/work", exist_ok=True)
path = f"benchmarks/work/probe_fidelity_{name}_{sys.argv[2]}_{sum(chunks)}.json"
json.dump(out, open(path, "w"), indent=1)
