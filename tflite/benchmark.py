"""On-device speed of C&C models: TFLite latency of the original and compressed models.

For every model and compression ratio, `kcc.rewrite.compress` chooses the ranks (C&C Eq. 8),
`kcc.export.to_tflite` writes batch-1 `.tflite` files (float32, and data-free int8 for the
models named in `--int8_models`), and the LiteRT interpreter (`ai-edge-litert`, XNNPACK on)
times them. The timed runs of one model's variants are interleaved round by round in one
process, so a speedup is a ratio of medians measured under the same conditions; LiteRT's
`litert-benchmark` tool (its CompiledModel API, one process per file) cross-checks every
latency. The table reports parameters, FLOPs (`kcc.flops`, per layer), file size, median and
p90 latency at 1 and 2 threads, speedup, speedup / FLOPs ratio, and the TFLite model's
ACC/ASR against the Keras model's on the zoo's CIFAR-10 test slice. When a variant misses the
bar (float32, 1 thread: speedup >= 0.8 x FLOPs ratio), every convolution the TFLite graph runs
is timed on its own (one single-op `.tflite` per shape) to show where the time goes. With
`--rank_multiples=1,8`, every ratio is also compressed with ranks rounded up to multiples of 8
(`compress(rank_multiple=8)`, variants `cr<cr>_m8`) and compared with C&C's ranks (`cr<cr>`).
With `--truncations=raw,relative`, every ratio is also compressed as kcc's recipe compresses
(`compress(relative=True)`: each layer's singular values over its norm, variants `cr<cr>_rel`),
whose ranks, and so FLOPs and speed, differ from Eq. 8's at the same parameter budget.

    python tflite/benchmark.py --flagfile=tflite/benchmark.flags        # tflite/results/
    python tflite/benchmark.py --flagfile=tflite/benchmark.flags \\
        --models=badnets_all2one --crs=2 --runs=20 --threads=1 --output=/tmp/smoke   # smoke run

Models: a zoo entry name (`examples/zoo/<name>.keras`, loaded through `kcc.intake`, its attack
from the `.json` sidecar) or `<architecture>_w<width>` (e.g. `resnet18_w64`), a kcc model with
random weights (latency only; its ACC is chance level). The `.tflite` files are kept in
`--work_dir` for running them elsewhere (see tflite/README.md for Android's benchmark_model).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported (via Keras)

import gc
import importlib.metadata
import json
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging

import keras
import numpy as np

from kcc import data
from kcc import evaluation
from kcc import export
from kcc import flops
from kcc import intake
from kcc import layers as kcc_layers
from kcc import metrics
from kcc import models as kcc_models
from kcc import rewrite
from kcc import saving
from kcc import synthesis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = os.path.join(ROOT, "examples", "zoo")
BAR = 0.8  # speedup >= BAR x FLOPs ratio (float32, 1 thread)

_MODELS = flags.DEFINE_list("models", ["resnet18_w64", "badnets_all2one"],
                            "Zoo entries or <architecture>_w<width> (random weights).")
_CRS = flags.DEFINE_list("crs", ["2", "3", "4"], "Compression ratios (C&C-chosen ranks).")
_RANK_MULTIPLES = flags.DEFINE_list(
    "rank_multiples", ["1"], "Values of compress(rank_multiple=...), each exported at every cr: "
    "1 = C&C's ranks as chosen (variant cr<cr>, the bar's variants; must be included), m > 1 = "
    "ranks rounded up to multiples of m within the same parameter budget (variant cr<cr>_m<m>).")
_TRUNCATIONS = flags.DEFINE_list(
    "truncations", ["raw"], "How compress cuts singular values, each exported at every cr: "
    "'raw' (Eq. 8, the paper's recipe) and/or 'relative' (each layer's over its norm, kcc's "
    "recipe; variants named cr<cr>_rel).")
_INT8_MODELS = flags.DEFINE_list("int8_models", ["badnets_all2one"],
                                 "Models also exported as data-free int8.")
_THREADS = flags.DEFINE_list("threads", ["1", "2"], "CPU thread counts.")
_RUNS = flags.DEFINE_integer("runs", 200, "Timed runs per variant and thread count (>= 200 "
                             "for reported numbers).")
_WARMUP = flags.DEFINE_integer("warmup", 20, "Warm-up runs per variant and thread count.")
_XNNPACK = flags.DEFINE_bool("xnnpack", True, "Use the XNNPACK delegate (LiteRT's default).")
_LITERT_BENCHMARK = flags.DEFINE_bool("litert_benchmark", True,
                                      "Cross-check every latency with litert-benchmark.")
_CALIBRATION_IMAGES = flags.DEFINE_integer("calibration_images", 256,
                                           "Synthetic images calibrating int8 (Eq. 9).")
_CALIBRATION_STEPS = flags.DEFINE_integer("calibration_steps", 50, "Synthesis steps per batch.")
_EVAL_DATA = flags.DEFINE_string("eval_data", os.path.join(ZOO, "cifar10_test_slice.npz"),
                                 ".npz with x (N,H,W,C) and y (N,) for ACC/ASR.")
_EVAL_IMAGES = flags.DEFINE_integer("eval_images", 1000, "Test images to evaluate (a class-balanced "
                                    "subset when fewer than --eval_data holds; 0: none).")
_RANDOM_EVAL_IMAGES = flags.DEFINE_integer(
    "random_eval_images", 200, "Test images for models with random weights (their ACC is chance "
    "level; only the TFLite-Keras agreement matters).")
_PROFILE = flags.DEFINE_enum("profile", "missed", ["missed", "always", "never"],
                             "Per-convolution timings: for models with a missed bar, all, none.")
_TAU_SCALE = flags.DEFINE_float("tau_scale", 4.0, "Eq. 5 threshold of compress.")
_WORK_DIR = flags.DEFINE_string("work_dir", os.path.join(ROOT, "tflite", "work"),
                                "Where the .tflite files are written.")
_OUTPUT = flags.DEFINE_string("output", os.path.join(ROOT, "tflite", "results", "benchmark"),
                              "Output prefix: writes <output>.md and <output>.json.")
_NOTE = flags.DEFINE_string("note", "", "Conditions of the run, written into the results.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of random weights, inputs and calibration.")

_FLAG_HANDLES = [_MODELS, _CRS, _RANK_MULTIPLES, _INT8_MODELS, _THREADS, _RUNS, _WARMUP, _XNNPACK,
                 _LITERT_BENCHMARK, _CALIBRATION_IMAGES, _CALIBRATION_STEPS, _EVAL_DATA,
                 _EVAL_IMAGES, _RANDOM_EVAL_IMAGES, _PROFILE, _TAU_SCALE, _WORK_DIR, _OUTPUT, _NOTE, _SEED]


# ----------------------------------------------------------------------------- models


def load_model(name, seed):
    """`(model, attack or None, source, random_weights)` for a zoo entry or `<arch>_w<width>`."""
    path = os.path.join(ZOO, f"{name}.keras")
    if os.path.exists(path):
        model = intake.load_suspect(path)
        attack = evaluation.attack_for(path, int(model.outputs[0].shape[-1]))
        return model, attack, os.path.relpath(path, ROOT), False
    match = re.fullmatch(r"(\w+?)_w(\d+)", name)
    if not match or match.group(1) not in kcc_models.ARCHITECTURES:
        raise app.UsageError(f"--models: {name!r} is neither a zoo entry in {ZOO} nor "
                             f"<architecture>_w<width> with an architecture in "
                             f"{sorted(kcc_models.ARCHITECTURES)}.")
    keras.utils.set_random_seed(seed)
    model = kcc_models.get(match.group(1), width=int(match.group(2)))
    return model, None, f"kcc.models.{match.group(1)}(width={match.group(2)}), random weights", True


def variants_of(model, crs, tau_scale, rank_multiples=(1,), relatives=(False,)):
    """The Keras variants of one model: the original and one per `(cr, relative,
    rank_multiple)`.

    Named `cr<cr>` for `rank_multiple=1` and raw truncation (C&C's ranks), with `_rel` for
    relative truncation (kcc's recipe) and `_m<m>` for `rank_multiple=m > 1`.
    """
    total, per_layer = flops.model_flops(model)
    out = {"original": {"model": model, "cr": None, "rank_multiple": None, "relative": False,
                        "params": kcc_models.trainable_params(model), "flops": total,
                        "flops_per_layer": per_layer}}
    for cr in crs:
        for relative in relatives:
            for multiple in rank_multiples:
                compact, report = rewrite.compress(model, cr, tau_scale=tau_scale,
                                                   rank_multiple=multiple, relative=relative)
                total, per_layer = flops.model_flops(compact)
                name = (f"cr{cr:g}" + ("_rel" if relative else "")
                        + (f"_m{multiple}" if multiple != 1 else ""))
                out[name] = {
                    "model": compact, "cr": cr, "rank_multiple": multiple, "relative": relative,
                    "params": report.params_after, "flops": total, "flops_per_layer": per_layer,
                    "ranks": {l.name: list(l.ranks) for l in report.layers if l.factored},
                }
    return out


# ----------------------------------------------------------------------------- timing


def time_interleaved(files, threads, runs, warmup, xnnpack, seed):
    """Batch-1 latency of several `.tflite` files, their timed runs interleaved round by round.

    Args:
        files: `{name: path}`; all inputs take the same image shape.
        threads: interpreter threads.
        runs, warmup: timed and warm-up invocations per file.
        xnnpack: apply the XNNPACK delegate.
        seed: seed of the (uniform [0, 1]) input image.

    Returns:
        `{name: latencies}`, float arrays `(runs,)` in milliseconds; round `r` runs every file
        once, starting at a rotating position.
    """
    runners = {name: export.interpreter(path, threads, xnnpack) for name, path in files.items()}
    rng = np.random.default_rng(seed)
    for runner in runners.values():
        (detail,) = runner.get_input_details()
        runner.set_tensor(detail["index"], rng.random(detail["shape"], np.float32))
    names = list(runners)
    for _ in range(warmup):
        for name in names:
            runners[name].invoke()
    times = {name: np.empty(runs) for name in names}
    gc.collect()
    gc.disable()
    try:
        for r in range(runs):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                start = time.perf_counter()
                runners[name].invoke()
                times[name][r] = (time.perf_counter() - start) * 1e3
    finally:
        gc.enable()
    return times


def summary(ms):
    """Median, p90 and mean of latencies in ms."""
    return {"median_ms": round(float(np.median(ms)), 4), "p90_ms": round(float(np.percentile(ms, 90)), 4),
            "mean_ms": round(float(np.mean(ms)), 4), "runs": len(ms)}


def litert_benchmark(path, threads, runs, warmup):
    """Median and p95 latency (ms) from `litert-benchmark` (CompiledModel API), or an error."""
    with tempfile.TemporaryDirectory() as folder:
        result = os.path.join(folder, "result.json")
        command = [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model",
                   f"--model={path}", f"--num_runs={runs}", f"--warmup_runs={warmup}",
                   f"--num_threads={threads}", f"--result_json={result}"]
        proc = subprocess.run(command, check=False, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0 or not os.path.exists(result):
            return {"error": (proc.stderr or proc.stdout)[-500:]}
        with open(result) as f:
            latency = json.load(f)["latency"]
    return {"median_ms": latency["median_ms"], "p95_ms": latency["p95_ms"],
            "runs": latency["num_runs"]}


# ----------------------------------------------------------------------------- profiling


def conv_ops(model):
    """The convolutions the TFLite graph of `model` runs, per layer.

    Returns:
        list of `(layer name, kind, [spec, ...])`; kind is "plain" or "tucker"; a spec is
        `(h, w, c_in, c_out, k1, k2, stride1, stride2, padding)` at the op's input; a
        `TuckerConv2D` gives its 1x1 input factor, KxK core and 1x1 output factor.
    """
    out = []
    for layer in flops.iterate_layers(model):
        if isinstance(layer, kcc_layers.TuckerConv2D):
            _, h, w, c = layer.input.shape
            _, ho, wo, o = layer.output.shape
            r1, r2 = layer.ranks
            specs = [(h, w, c, r2, 1, 1, 1, 1, "valid"),
                     (h, w, r2, r1, *layer.kernel_size, *layer.strides, layer.padding),
                     (ho, wo, r1, o, 1, 1, 1, 1, "valid")]
            out.append((layer.name, "tucker", specs))
        elif type(layer) is keras.layers.Conv2D:
            _, h, w, c = layer.input.shape
            config = layer.get_config()
            out.append((layer.name, "plain", [(h, w, c, config["filters"], *config["kernel_size"],
                                               *config["strides"], config["padding"])]))
    return out


def single_conv_tflite(spec, seed):
    """A float32 `.tflite` flatbuffer of one conv (+bias, ReLU: as after BN folding)."""
    import tensorflow as tf

    h, w, c_in, c_out, k1, k2, s1, s2, padding = spec
    rng = np.random.default_rng(seed)
    kernel = tf.constant(rng.standard_normal((k1, k2, c_in, c_out)).astype(np.float32) * 0.05)
    bias = tf.constant(np.zeros(c_out, np.float32))

    @tf.autograph.experimental.do_not_convert
    def conv(x):
        return tf.nn.relu(tf.nn.conv2d(x, kernel, (s1, s2), padding.upper()) + bias)

    fn = tf.function(conv, input_signature=[tf.TensorSpec((1, h, w, c_in), tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def profile(keras_variants, whole_files, runs, warmup, xnnpack, seed, folder):
    """Per-convolution timings (1 thread) of each variant, against its whole-model latency.

    Every distinct conv shape becomes a single-op `.tflite` file; they are timed interleaved
    with the whole models (`whole_files`, `{variant: float .tflite path}`) and a 1x1x1 conv
    whose median (the cost of one `invoke`, not of a convolution) is subtracted from every
    op's median.

    Returns:
        `{variant: {"layers": [...], "categories": {...}}}`: per layer its kind, FLOPs and ms;
        per category (plain convs, Tucker 1x1 in / core / 1x1 out, everything else = the
        measured whole-model median minus the convs) its ms and share.
    """
    per_variant = {name: conv_ops(v["model"]) for name, v in keras_variants.items()}
    specs = sorted({s for ops in per_variant.values() for _, _, ss in ops for s in ss}, key=str)
    empty = (1, 1, 1, 1, 1, 1, 1, 1, "valid")
    specs = [empty, *[s for s in specs if s != empty]]
    os.makedirs(folder, exist_ok=True)
    files = {}
    for i, spec in enumerate(specs):
        files[spec] = os.path.join(folder, f"conv_{i}.tflite")
        saving.write_bytes(single_conv_tflite(spec, seed), files[spec], overwrite=True)
    timed = {str(s): p for s, p in files.items()}
    timed.update({f"whole:{name}": path for name, path in whole_files.items()})
    times = time_interleaved(timed, 1, runs, warmup, xnnpack, seed)
    overhead = float(np.median(times[str(empty)]))
    median = {s: max(0.0, float(np.median(times[str(s)])) - overhead) for s in specs}
    result = {"invoke_overhead_ms": round(overhead, 4), "variants": {}}
    for name, ops in per_variant.items():
        per_layer = keras_variants[name]["flops_per_layer"]
        layers, categories = [], dict.fromkeys(
            ["plain conv", "tucker 1x1 in", "tucker core", "tucker 1x1 out"], 0.0)
        for layer_name, kind, layer_specs in ops:
            ms = [median[s] for s in layer_specs]
            layers.append({"name": layer_name, "kind": kind, "flops": per_layer.get(layer_name, 0),
                           "ms": round(sum(ms), 4), "op_ms": [round(m, 4) for m in ms],
                           "specs": [list(s) for s in layer_specs]})
            if kind == "plain":
                categories["plain conv"] += ms[0]
            else:
                for key, m in zip(["tucker 1x1 in", "tucker core", "tucker 1x1 out"], ms):
                    categories[key] += m
        whole = float(np.median(times[f"whole:{name}"]))
        categories["rest (adds, pooling, dense, normalize, overheads)"] = whole - sum(categories.values())
        result["variants"][name] = {"whole_model_ms": round(whole, 4), "layers": layers,
                        "categories": {k: round(v, 4) for k, v in categories.items()}}
    return result


# ----------------------------------------------------------------------------- evaluation


def evaluate_tflite(path, x, y, attack, threads):
    """ACC (and ASR) of a `.tflite` classifier, with its top-1 predictions on clean `x`."""
    predictions = export.predict(path, x, num_threads=threads).argmax(-1)
    result = {"acc": float(np.mean(predictions == y))}
    if attack is not None:
        keep = np.ones(len(y), bool) if attack.mode == "all2all" else y != attack.target
        triggered = export.predict(path, attack.apply(x[keep]), num_threads=threads).argmax(-1)
        asr, ra, n = metrics.backdoor_rates(triggered, y[keep], attack)
        result.update(asr=asr, ra=ra, n_triggered=n)
    return result, predictions


# ----------------------------------------------------------------------------- main


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # the converter logs every conversion at INFO
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # predict() on many models warns about retracing
    crs = [float(c) for c in _CRS.value]
    multiples = [int(m) if m.strip().isdigit() else 0 for m in _RANK_MULTIPLES.value]
    if 1 not in multiples or min(multiples) < 1:
        raise app.UsageError("--rank_multiples must be integers >= 1 and include 1 (C&C's ranks, "
                             f"the bar's variants). Received {','.join(_RANK_MULTIPLES.value)}.")
    if not set(_TRUNCATIONS.value) <= {"raw", "relative"} or not _TRUNCATIONS.value:
        raise app.UsageError("--truncations takes raw and/or relative. Received "
                             f"{','.join(_TRUNCATIONS.value)}.")
    relatives = [t == "relative" for t in _TRUNCATIONS.value]
    threads = [int(t) for t in _THREADS.value]
    if 1 not in threads:
        raise app.UsageError("--threads must include 1 (the bar is measured at 1 thread).")
    if _RUNS.value < 200:
        print(f"warning: --runs={_RUNS.value} < 200: numbers are preliminary.", file=sys.stderr)
    x = y = None
    if _EVAL_IMAGES.value:
        with np.load(_EVAL_DATA.value) as f:
            x, y = f["x"], np.asarray(f["y"])
        if _EVAL_IMAGES.value < len(y):  # class-balanced
            x, y, _ = data.subset(x, y, fraction=_EVAL_IMAGES.value / len(y), seed=_SEED.value)
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    started = time.time()
    results = {"flags": {h.name: h.value for h in _FLAG_HANDLES},
               "command": " ".join(shlex.quote(a) for a in sys.argv),
               "environment": environment(), "load_average_start": os.getloadavg(),
               "eval_images": 0 if y is None else len(y),
               "models": {}}
    for name in _MODELS.value:
        results["models"][name] = run_model(name, crs, multiples, relatives, threads, x, y)
        results["load_average_end"] = os.getloadavg()
        results["seconds"] = round(time.time() - started, 1)
        write(results)
    print(f"Wrote {_OUTPUT.value}.md and {_OUTPUT.value}.json")


def run_model(name, crs, multiples, relatives, threads, x, y):
    print(f"== {name}", flush=True)
    model, attack, source, random_weights = load_model(name, _SEED.value)
    if random_weights and x is not None and _RANDOM_EVAL_IMAGES.value < len(y):
        x, y, _ = data.subset(x, y, fraction=_RANDOM_EVAL_IMAGES.value / len(y), seed=_SEED.value)
    keras_variants = variants_of(model, crs, _TAU_SCALE.value, multiples, relatives)
    quantizations = ["float"] + (["int8"] if name in _INT8_MODELS.value else [])
    calibration = images = None
    if "int8" in quantizations:
        # One synthetic set, made from the original model's BN statistics, calibrates every
        # variant (purification synthesises such images anyway); no real image is used.
        images, _, info = synthesis.synthesize(
            model, num_images=_CALIBRATION_IMAGES.value, steps=_CALIBRATION_STEPS.value,
            batch_size=min(256, _CALIBRATION_IMAGES.value), seed=_SEED.value, verbose=False)
        calibration = {"images": _CALIBRATION_IMAGES.value, "steps": _CALIBRATION_STEPS.value,
                       "source": "kcc.synthesis.synthesize on the original model",
                       "seconds": info["seconds"]}
    rows = {}
    for variant, v in keras_variants.items():
        keras_eval = None
        if x is not None:
            keras_eval = metrics.evaluate(v["model"], x, y, attack)
            keras_predictions = v["model"].predict(x, batch_size=256, verbose=0).argmax(-1)
        for q in quantizations:
            key = f"{variant}/{q}"
            path = os.path.join(_WORK_DIR.value, f"{name}_{variant}_{q}.tflite")
            info = export.to_tflite(v["model"], path, quantization=None if q == "float" else q,
                                    overwrite=True,
                                    representative_images=images if q == "int8" else None)
            row = {"variant": variant, "quantization": q, "cr": v["cr"],
                   "rank_multiple": v["rank_multiple"], "relative": v["relative"],
                   "params": v["params"], "flops": v["flops"],
                   "size_bytes": info["size_bytes"], "ops": info["ops"],
                   "path": _relative(path), "keras": keras_eval}
            if x is not None:
                tfl, predictions = evaluate_tflite(path, x, y, attack, max(threads))
                tfl["top1_agreement_with_keras"] = float(np.mean(predictions == keras_predictions))
                row["tflite"] = tfl
            rows[key] = row
            print(f"   exported {key}: {info['size_bytes'] / 1024:.0f} KiB, ops {info['ops']}",
                  flush=True)
    for t in threads:
        times = time_interleaved({k: os.path.join(ROOT, r["path"]) for k, r in rows.items()}, t,
                                 _RUNS.value, _WARMUP.value, _XNNPACK.value, _SEED.value)
        for key, ms in times.items():
            rows[key].setdefault("latency", {})[str(t)] = summary(ms)
            base = times[f"original/{rows[key]['quantization']}"]
            rows[key]["latency"][str(t)]["paired_speedup"] = round(float(np.median(base / ms)), 4)
        if _LITERT_BENCHMARK.value:
            for key, row in rows.items():
                row.setdefault("litert_benchmark", {})[str(t)] = litert_benchmark(
                    os.path.join(ROOT, row["path"]), t, _RUNS.value, _WARMUP.value)
    for key, row in rows.items():
        base = rows[f"original/{row['quantization']}"]
        row["flops_ratio"] = round(base["flops"] / row["flops"], 4)
        for t, lat in row["latency"].items():
            lat["speedup"] = round(base["latency"][t]["median_ms"] / lat["median_ms"], 4)
            lat["speedup_per_flops_ratio"] = round(lat["speedup"] / row["flops_ratio"], 4)
        if row["quantization"] == "int8":
            float_row = rows[f"{row['variant']}/float"]
            row["int8_speedup_over_float"] = round(
                float_row["latency"]["1"]["median_ms"] / row["latency"]["1"]["median_ms"], 4)
        if row["quantization"] == "float" and row["cr"] and row["rank_multiple"] == 1:
            row["bar_met"] = row["latency"]["1"]["speedup"] >= BAR * row["flops_ratio"]
    entry = {"source": source, "attack": attack.get_config() if attack else None,
             "eval_images": 0 if x is None else len(x),
             "calibration": calibration, "rows": rows,
             "ranks": {k: v.get("ranks") for k, v in keras_variants.items()},
             "flops_per_layer": {k: v["flops_per_layer"] for k, v in keras_variants.items()}}
    missed = any(r.get("bar_met") is False for r in rows.values())
    if _PROFILE.value == "always" or (_PROFILE.value == "missed" and missed):
        print("   profiling per convolution", flush=True)
        whole_files = {k.split("/")[0]: os.path.join(ROOT, r["path"])
                       for k, r in rows.items() if r["quantization"] == "float"}
        entry["profile"] = profile(keras_variants, whole_files, _RUNS.value, _WARMUP.value,
                                   _XNNPACK.value, _SEED.value,
                                   os.path.join(_WORK_DIR.value, f"{name}_ops"))
    return entry


def _relative(path):
    """`path` relative to the repository when inside it, else absolute."""
    path = os.path.abspath(path)
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def environment():
    import tensorflow as tf

    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"cpu": cpu, "cores": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version(), "keras": keras.__version__,
            "tensorflow": tf.__version__,
            "ai_edge_litert": importlib.metadata.version("ai-edge-litert")}


# ----------------------------------------------------------------------------- report


def write(results):
    saving.write_json(results, _OUTPUT.value + ".json")
    saving.write_text(markdown(results), _OUTPUT.value + ".md")


def _pct(d, key):
    return f"{100 * d[key]:.2f}" if d and key in d else "-"


def markdown(results):
    flags_used = results["flags"]
    threads = flags_used["threads"]
    env = results["environment"]
    lines = [
        "# TFLite latency of C&C-compressed models",
        "",
        f"Machine: {env['cpu']}, {env['cores']} cores; Keras {env['keras']}, TensorFlow "
        f"{env['tensorflow']}, ai-edge-litert {env['ai_edge_litert']}. Load average at start "
        f"{', '.join(f'{a:.2f}' for a in results['load_average_start'])}, at end "
        f"{', '.join(f'{a:.2f}' for a in results.get('load_average_end', []))}."
        + (f" Note: {flags_used['note']}" if flags_used["note"] else ""),
        "",
        f"Batch 1, LiteRT interpreter, XNNPACK {'on' if flags_used['xnnpack'] else 'off'}, "
        f"{flags_used['warmup']} warm-up and {flags_used['runs']} timed runs per variant, the "
        "variants of one model interleaved round by round; speedup = original median / variant "
        "median at the same thread count and precision; FLOPs = 2 x MACs of convs and dense "
        f"layers (`kcc.flops`). Bar: float32, 1 thread, speedup >= {BAR} x FLOPs ratio. "
        "`litert-benchmark` (CompiledModel API, one process per file) cross-checks each latency "
        "(median / p95: the tool reports no p90). "
        + (f"ACC/ASR on {results['eval_images']} images of `{_relative(flags_used['eval_data'])}`."
           if results["eval_images"] else "No ACC/ASR (--eval_images=0).")
        + (" **Preliminary: fewer than 200 timed runs.**" if flags_used["runs"] < 200 else ""),
        "",
        f"Command: `{results['command']}`",
        "",
    ]
    for name, entry in results["models"].items():
        rows = entry["rows"]
        lines += [f"## {name}", "", f"Source: {entry['source']}."
                  + (f" ACC/ASR on {entry['eval_images']} test images." if entry.get("eval_images")
                     else "")
                  + (f" Attack: {entry['attack']['name']} ({entry['attack']['mode']}, target "
                     f"{entry['attack']['target']})." if entry["attack"] else "")
                  + (f" int8 calibration: {entry['calibration']['images']} synthetic images, "
                     f"{entry['calibration']['steps']} steps, from the original model's BN "
                     "statistics (no real data)." if entry["calibration"] else ""), ""]
        head = ("| variant | precision | params | MFLOPs | FLOPs ratio | size KiB | "
                + " | ".join(f"{t} thr median / p90 ms | {t} thr speedup" for t in threads)
                + " | speedup / FLOPs ratio (1 thr) | bar | litert-benchmark median ms ("
                + ", ".join(f"{t} thr" for t in threads) + ") |")
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for row in rows.values():
            lat = row["latency"]
            cells = [row["variant"], row["quantization"], f"{row['params']:,}",
                     f"{row['flops'] / 1e6:.1f}", f"{row['flops_ratio']:.2f}",
                     f"{row['size_bytes'] / 1024:.0f}"]
            for t in threads:
                cells += [f"{lat[t]['median_ms']:.3f} / {lat[t]['p90_ms']:.3f}", f"{lat[t]['speedup']:.2f}"]
            cells.append(f"{lat['1']['speedup_per_flops_ratio']:.2f}")
            cells.append({True: "met", False: "**missed**"}.get(row.get("bar_met"), ""))
            cross = row.get("litert_benchmark", {})
            cells.append(" / ".join(f"{cross[t]['median_ms']:.2f}" if "median_ms" in cross.get(t, {})
                                    else "-" for t in threads))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if any(r.get("tflite") for r in rows.values()):
            lines += [("| variant | precision | ACC Keras | ACC TFLite | ASR Keras | ASR TFLite | "
                       "top-1 agreement | float within 0.5 pt |"), "|---|---|---|---|---|---|---|---|"]
            for row in rows.values():
                k, t = row["keras"], row["tflite"]
                ok = ""
                if row["quantization"] == "float":
                    ok = all(abs(t[m] - k[m]) <= 0.005 for m in ("acc", "asr") if m in k)
                    ok = "yes" if ok else "**no**"
                lines.append(f"| {row['variant']} | {row['quantization']} | {_pct(k, 'acc')} | "
                             f"{_pct(t, 'acc')} | {_pct(k, 'asr')} | {_pct(t, 'asr')} | "
                             f"{_pct(t, 'top1_agreement_with_keras')} | {ok} |")
            lines.append("")
        int8 = [r for r in rows.values() if r["quantization"] == "int8"]
        if int8:
            lines += [("int8 against float32 (1 thread; ACC/ASR change of the int8 TFLite model "
                       "against the float32 TFLite model of the same variant):"), "",
                      "| variant | float32 ms | int8 ms | extra speedup | size ratio | ΔACC pt | ΔASR pt |",
                      "|---|---|---|---|---|---|---|"]
            for row in int8:
                f = rows[f"{row['variant']}/float"]
                delta = {m: f"{100 * (row['tflite'][m] - f['tflite'][m]):+.2f}"
                         if row.get("tflite") and m in row["tflite"] else "-" for m in ("acc", "asr")}
                lines.append(f"| {row['variant']} | {f['latency']['1']['median_ms']:.3f} | "
                             f"{row['latency']['1']['median_ms']:.3f} | "
                             f"{row['int8_speedup_over_float']:.2f} | "
                             f"{f['size_bytes'] / row['size_bytes']:.2f} | {delta['acc']} | "
                             f"{delta['asr']} |")
            lines.append("")
        lines += _rank_multiple_markdown(rows, threads)
        if "profile" in entry:
            lines += profile_markdown(entry["profile"])
    return "\n".join(lines) + "\n"


def _rank_multiple_markdown(rows, threads):
    """Float32 latency of each `rank_multiple > 1` variant against the same cr's m=1 variant."""
    rounded = [r for r in rows.values() if r["quantization"] == "float" and r["cr"]
               and (r.get("rank_multiple") or 1) > 1]
    if not rounded:
        return []
    reference = {(r["cr"], r["relative"]): r for r in rows.values()
                 if r["quantization"] == "float" and r["cr"] and r.get("rank_multiple", 1) == 1}
    lines = [("Hardware-aware ranks (float32): latency of `rank_multiple=m` relative to C&C's "
              "ranks (m=1) at the same cr; > 1 means rounding the ranks helps."), "",
             "| cr | truncation | m | params | MFLOPs | "
             + " | ".join(f"{t} thr m=1 / m" for t in threads) + " |",
             "|---|---|---|---|---|" + "---|" * len(threads)]
    for row in rounded:
        ref = reference[row["cr"], row["relative"]]
        ratios = [f"{ref['latency'][t]['median_ms'] / row['latency'][t]['median_ms']:.3f}"
                  for t in threads]
        lines.append(f"| {row['cr']:g} | {'relative' if row['relative'] else 'raw'} | "
                     f"{row['rank_multiple']} | {row['params']:,} "
                     f"(m=1: {ref['params']:,}) | {row['flops'] / 1e6:.1f} (m=1: "
                     f"{ref['flops'] / 1e6:.1f}) | " + " | ".join(ratios) + " |")
    return lines + [""]


def profile_markdown(profile_result):
    prof = profile_result["variants"]
    names = list(prof)
    categories = list(next(iter(prof.values()))["categories"])
    lines = [("Where the time goes (float32, 1 thread): every convolution timed alone as a "
              "single-op `.tflite` (XNNPACK) minus the cost of an empty invoke "
              f"({profile_result['invoke_overhead_ms']:.3f} ms), summed by kind; the rest is the "
              "whole-model median (timed in the same interleaved session, so it can differ from "
              "the table above) minus the convolutions."), "",
             "| ms | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines.append("| whole model | " + " | ".join(f"{prof[n]['whole_model_ms']:.3f}" for n in names) + " |")
    for c in categories:
        lines.append(f"| {c} | " + " | ".join(f"{prof[n]['categories'][c]:.3f}" for n in names) + " |")
    lines += ["", "Per layer (ms, and MFLOPs):", "",
              "| layer | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    by_name = {n: {layer["name"]: layer for layer in prof[n]["layers"]} for n in names}
    for layer in prof[names[0]]["layers"]:
        cells = []
        for n in names:
            other = by_name[n].get(layer["name"])
            cells.append(f"{other['ms']:.3f} ({other['flops'] / 1e6:.1f})" if other else "-")
        lines.append(f"| {layer['name']} | " + " | ".join(cells) + " |")
    return lines + [""]


if __name__ == "__main__":
    app.run(main)
