"""What the benchmark scripts share: the zoo's paths, `--results_dir` and the machine they ran on,
and loading one zoo entry (model, attack, evaluation slice)."""

import json
import os
import platform

import keras
import numpy as np
from absl import flags

from kcc import data
from kcc import evaluation
from kcc import intake

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = os.path.join(ROOT, "examples", "zoo")
RESULTS = os.path.join(ROOT, "benchmarks", "results")

RESULTS_DIR = flags.DEFINE_string("results_dir", RESULTS,
                                  "Folder the script writes its results (JSON, tables, figures) to.")


def output(name):
    """`<--results_dir>/<name>`: the prefix a benchmark's result files are written under."""
    return os.path.join(RESULTS_DIR.value, name)


def _cpu():
    """The CPU's model name and widest vector extension (float results of the same run differ
    between AVX2 and AVX-512 machines), from `/proc/cpuinfo` where there is one."""
    try:
        with open("/proc/cpuinfo") as f:
            info = dict(line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines()
                        if ":" in line)
    except OSError:
        return platform.processor() or "CPU"
    info = {k.strip(): v.strip() for k, v in info.items()}
    flags_ = set(info.get("flags", "").split())
    vector = next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"))
                   if flag in flags_), "no AVX2")
    return f"{info.get('model name', 'CPU')} model {info.get('model', '?')}, {vector}"


def machine():
    """What a result was measured on: the accelerator if the backend uses one (else the CPU's
    model and vector extension, `_cpu`), architecture, cores available of all, Keras backend."""
    device = _cpu()
    if keras.backend.backend() == "jax":
        import jax

        first = jax.devices()[0]
        if first.platform != "cpu":
            device = f"{first.device_kind} ({first.platform.upper()})"
    return (f"{platform.machine()}, {len(os.sched_getaffinity(0))} of {os.cpu_count()} cores "
            f"({device}), Keras backend {keras.backend.backend()}")


def load_entry(name, per_class):
    """A zoo model through the intake, its attack from the sidecar, and a test slice.

    Returns:
        `(model, attack or None, x, y, sidecar)`; `(x, y)` is a class-balanced slice of the test
        split with `per_class` images per class (seed 0), or as many as its smallest class has
        where that is fewer (GTSRB: 60); `len(y) // num_classes` says which.
    """
    path = os.path.join(ZOO, f"{name}.keras")
    with open(os.path.join(ZOO, f"{name}.json")) as f:
        sidecar = json.load(f)
    model = intake.load_suspect(path)
    attack = evaluation.attack_for(path, int(model.outputs[0].shape[-1]))
    x, y = data.load(sidecar["dataset"], "test")
    smallest = np.unique(y, return_counts=True)[1].min()
    x, y, _ = data.subset(x, y, per_class=min(per_class, smallest), seed=0)
    return model, attack, x, y, sidecar


def feature_strength(model, x, batch_size=500):
    """Mean activation of the last conv block on images `x` (the paper's Fig. 1, h): the
    feature map the classifier's global pooling reads."""
    from kcc.defenses import fp

    pool, _ = fp.classifier_head(model)
    probe = keras.Model(model.inputs, pool.input)
    return float(np.mean([np.mean(probe.predict_on_batch(x[i:i + batch_size]))
                          for i in range(0, len(x), batch_size)]))


def scaling_point(model, tau_scale, reading, x, y, attack, x_recal):
    """One point of the paper's Fig. 1 and 3: `model` scaled at `tau_scale` (Eq. 5-7, `reading`);
    its metrics, h_clean / h_trigger, the rank components scaled, and the metrics after BN
    re-estimation on clean images `x_recal`. `model` itself is not changed."""
    from kcc import distillation
    from kcc import metrics
    from kcc import rewrite

    scaled, report = rewrite.constrain(model, tau_scale, reading)
    point = metrics.evaluate(scaled, x, y, attack)
    point["h_clean"] = feature_strength(scaled, x)
    if attack is not None:
        point["h_trigger"] = feature_strength(scaled, attack.apply(x))
    distillation.reestimate_batchnorm(scaled, x_recal, batch_size=len(x_recal))  # one pass
    point["recalibrated"] = metrics.evaluate(scaled, x, y, attack)
    point["scaled"] = sum(sum(layer.scaled) for layer in report.layers)
    return point


def purify_row(report):
    """The part of a `kcc.cc.purify` report that the benchmark tables keep."""
    return {"tau_scale": report["settings"]["tau_scale"], "evaluation": report["evaluation"],
            "seconds": report["seconds"],
            "params": [report["rewrite"]["params_before"], report["rewrite"]["params_after"]],
            "scaled": sum(sum(l["scaled"]) for l in report["rewrite"]["layers"]),
            "synthesis_throughput": report["synthesis"]["image_steps_per_second"],
            "distillation_history": report["distillation"]["history"],
            "stopped_on_divergence_at_epoch": report["distillation"]["stopped_on_divergence_at_epoch"],
            "teacher_class_rates_on_adversarial":
                report["distillation"]["teacher_class_rates_on_adversarial"]}


def stage_cells(row, stage):
    """`ACC % | ASR % | RA % | params | seconds (rewrite/synth/distill)` of one stage of a
    `purify_row`, for the benchmark tables."""
    ev, s = row["evaluation"][stage], row["seconds"]
    pct = lambda k: f"{100 * ev[k]:.2f}" if k in ev else "-"  # noqa: E731
    return (f"{pct('acc')} | {pct('asr')} | {pct('ra')} | "
            f"{row['params'][0 if stage in ('suspect', 'scaled') else 1]:,} | "
            f"{s.get('rewrite', 0)}/{s.get('synthesis', 0)}/{s.get('distillation', 0)}")
