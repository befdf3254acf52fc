"""Baseline defenses from the command line: `python -m kcc.defend --method=anp --model=x.keras`.

A thin absl wrapper over `kcc.defenses.DEFENSES`, with `kcc.purify`'s conventions: the suspect
is opened only through `kcc.intake.load_suspect`, the defended `.keras` file and a JSON report
are written atomically, the input is never overwritten and an existing output only with
`--overwrite`. Data-using defenses get a `DefenderData` drawn from the *training* split of
`--data` (or from your own `.npz`); `--eval_data` reports ACC/ASR/RA before and after on images
the defense never sees. Budget flags (`--iterations`, `--epochs`) reach only the defenses that
take them, so one flagfile serves every method (`flags/defend_cpu.flags`); any other keyword
goes through `--hparams=name=value,...`.
"""

import inspect
import os
import shlex
import sys
import time

from absl import app
from absl import flags

from kcc.defenses import DEFENSES
from kcc.defenses import defense_kwargs
from kcc.defenses import parse_hparams

DEFAULT_MODEL = os.path.join("examples", "zoo", "badnets_all2one.keras")

_METHOD = flags.DEFINE_enum("method", None, sorted(DEFENSES), "Defense to run.")
_MODEL = flags.DEFINE_string("model", DEFAULT_MODEL,
                             "Suspect .keras model (default: the zoo's BadNets model).")
_OUTPUT = flags.DEFINE_string("output", None,
                              "Output .keras path (default ./<model stem>_<method>.keras).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing output file.")
_TRUST_SOURCE = flags.DEFINE_bool(
    "trust_source", False, "Skip the intake allowlist and allow code in the file to run: only for "
    "files you vouch for.")
_DATA = flags.DEFINE_string(
    "data", "cifar10", "Defender's clean images: a dataset name (its training split is used) or "
    "an .npz with x (N,H,W,3) and y (N,) of images you own.")
_FRACTION = flags.DEFINE_float("fraction", None, "Fraction of each class to draw (default 0.01, "
                               "the 1% of ANP's protocol).")
_PER_CLASS = flags.DEFINE_integer("per_class", None,
                                  "Images per class to draw instead of --fraction.")
_VALIDATION = flags.DEFINE_float("validation", 0.1, "Fraction of the drawn images held out for "
                                 "validation (thresholds, early stopping).")
_ITERATIONS = flags.DEFINE_integer("iterations", None, "Budget: optimisation steps, for defenses "
                                   "that take `iterations` (ANP).")
_EPOCHS = flags.DEFINE_integer("epochs", None, "Budget: epochs, for defenses that take `epochs`.")
_HPARAMS = flags.DEFINE_list("hparams", [], "Other keyword arguments of the defense, as "
                             "name=value (Python literals), e.g. threshold=0.3,eps=0.2.")
_SEED = flags.DEFINE_integer("seed", 0,
                            "Seed of the defender split (and of the defense, if it takes one).")
_EVAL_DATA = flags.DEFINE_string(
    "eval_data", None, "Optional .npz with x (N,32,32,3) and y (N,) of your own labelled images, "
    "or a dataset name (cifar10, gtsrb) for its test split, to report ACC/ASR/RA before and after.")
_ATTACK = flags.DEFINE_string(
    "attack", None, "Attack whose trigger to evaluate, and to give defenses that take an attack "
    "(default: the model's .json sidecar, if any).")
_MODE = flags.DEFINE_enum("mode", None, ["all2one", "all2all"], "Attack target mode.")
_TARGET = flags.DEFINE_integer("target", None, "All-to-one target class.")

flags.mark_flag_as_required("method")


def _defender_data(fn):
    """The `DefenderData` for `fn`, or None for a data-free defense."""
    if "defender_data" not in inspect.signature(fn).parameters:
        return None
    import numpy as np

    from kcc.defenses import defender_split

    fraction, per_class = _FRACTION.value, _PER_CLASS.value
    if fraction is not None and per_class is not None:
        raise ValueError("Pass at most one of --fraction and --per_class.")
    if fraction is None and per_class is None:
        fraction = 0.01
    source = _DATA.value
    if source.endswith(".npz"):
        with np.load(source) as f:
            source = (f["x"], f["y"])
    return defender_split(source, fraction=fraction, per_class=per_class,
                          validation=_VALIDATION.value, seed=_SEED.value)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from kcc import evaluation
    from kcc import intake
    from kcc import metrics
    from kcc import saving

    method, model_path = _METHOD.value, _MODEL.value
    fn = DEFENSES[method]
    output = _OUTPUT.value or os.path.splitext(os.path.basename(model_path))[0] + f"_{method}.keras"
    try:
        saving.check_output(output, _OVERWRITE.value, inputs=[model_path])
        model = intake.load_image_classifier(model_path, trust_source=_TRUST_SOURCE.value)
        num_classes = int(model.outputs[0].shape[-1])
        attack = evaluation.attack_for(model_path, num_classes, _ATTACK.value, _MODE.value,
                                       _TARGET.value)
        kwargs, ignored = defense_kwargs(
            fn, parse_hparams(_HPARAMS.value),
            {"iterations": _ITERATIONS.value, "epochs": _EPOCHS.value}, _SEED.value, attack)
        for name in ignored:
            print(f"kcc.defend: note: --{name} does not apply to {method}; ignored.")
        evaluated = evaluation.evaluation_set(model_path, num_classes, _EVAL_DATA.value,
                                              _ATTACK.value, _MODE.value, _TARGET.value)
        defender_data = _defender_data(fn)
        results = {}
        if evaluated is not None:
            results["suspect"] = metrics.evaluate(model, *evaluated)
            print("suspect: " + _rates(results["suspect"]), flush=True)
        start = time.time()
        data_args = () if defender_data is None else (defender_data,)
        defended, report = fn(model, *data_args, **kwargs)
        wall = round(time.time() - start, 1)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"kcc.defend: error: {e}", file=sys.stderr)
        sys.exit(2)

    if evaluated is not None:
        results["defended"] = metrics.evaluate(defended, *evaluated)
        print(f"{method}: " + _rates(results["defended"]), flush=True)
    report = {"input": model_path, "output": output,
              "command": " ".join(shlex.quote(a) for a in sys.argv),
              "wall_seconds": wall, **report}
    if results:
        report["evaluation"] = {"data": _EVAL_DATA.value, "images": len(evaluated[1]), **results}
    saving.save_model(defended, output, overwrite=_OVERWRITE.value)
    saving.write_json(report, os.path.splitext(output)[0] + ".json")
    print(f"parameters {report.get('params_before', 0):,} -> {report.get('params_after', 0):,}; "
          f"{wall} s")
    print(f"Wrote {output} and {os.path.splitext(output)[0]}.json")


def _rates(result):
    return ", ".join(f"{k.upper()} {100 * v:.2f}%" for k, v in result.items() if k != "n_triggered")


if __name__ == "__main__":
    app.run(main)
