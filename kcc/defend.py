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
import time

from absl import app
from absl import flags

from kcc import cli
from kcc import flag_groups
from kcc import progress
from kcc import verdict
from kcc.defenses import DEFENSES
from kcc.defenses import defense_kwargs
from kcc.defenses import parse_hparams

DEFAULT_MODEL = os.path.join("examples", "zoo", "badnets_all2one.keras")

# ----------------------------------------------------------------------------- defense
_METHOD = flags.DEFINE_enum("method", None, sorted(DEFENSES),
                            "The defense to run (required); see the list below.")
_ITERATIONS = flags.DEFINE_integer(
    "iterations", None, "Budget in optimisation steps, for the defenses that take one (ANP).",
    lower_bound=1)
_EPOCHS = flags.DEFINE_integer(
    "epochs", None, "Budget in epochs, for the defenses that take one.", lower_bound=0)
_HPARAMS = flags.DEFINE_list(
    "hparams", [], "Any other keyword argument of the defense, as name=value (Python literals), "
                   "e.g. threshold=0.3,eps=0.2.")
_SEED = flags.DEFINE_integer("seed", 0,
                             "Seed of the defender split (and of the defense, if it takes one).")

# ----------------------------------------------------------------------------- model
_MODEL, _TRUST_SOURCE = flag_groups.suspect(DEFAULT_MODEL)

# ----------------------------------------------------------------------------- defender data
_DATA = flags.DEFINE_string(
    "data", "cifar10", "Clean images the defender owns: a dataset name (a class-balanced draw "
    "from its training split) or an .npz with x (N, H, W, 3) and y (N,). Data-free defenses "
    "ignore it.")
_FRACTION = flags.DEFINE_float("fraction", None, "Share of each class to draw. Default: 0.01, "
                               "the 1% of ANP's protocol.", lower_bound=0, upper_bound=1)
_PER_CLASS = flags.DEFINE_integer("per_class", None,
                                  "Images per class to draw, instead of --fraction.", lower_bound=1)
_VALIDATION = flags.DEFINE_float(
    "validation", 0.1, "Share of the drawn images held out for the defense's thresholds and "
    "early stopping.", lower_bound=0)

# ----------------------------------------------------------------------------- evaluation, output
_EVAL_DATA, _ATTACK, _MODE, _TARGET = flag_groups.evaluation()
_OUTPUT, _OVERWRITE = flag_groups.output("the defended model", "./<model name>_<method>.keras")

flags.mark_flag_as_required("method")
flags.register_multi_flags_validator(
    ["fraction", "per_class"], lambda f: f["fraction"] is None or f["per_class"] is None,
    "pass at most one of --fraction and --per_class")
flags.register_validator(_VALIDATION, lambda v: v < 1, "must be below 1")
flag_groups.images(_DATA)

HELP = cli.Help(
    tool="kcc.defend",
    summary="Runs a baseline backdoor defense on a suspect model, with the same conventions as "
            "kcc.purify, so that results can be compared with Clean & Compact. Defenses that "
            "use data get a class-balanced draw from the training split (--data); evaluation "
            "images (--eval_data) are never shown to them. Ends with ACC/ASR/RA before and "
            "after and a verdict.",
    examples=[
        "python -m kcc.defend --method=anp --model=suspect.keras --eval_data=cifar10",
        "kcc-defend --method=clp --model=suspect.keras --flagfile=flags/defend_cpu.flags",
    ],
    groups=[
        ("defense", [_METHOD, _ITERATIONS, _EPOCHS, _HPARAMS, _SEED]),
        ("model", [_MODEL, _TRUST_SOURCE]),
        ("defender data", [_DATA, _FRACTION, _PER_CLASS, _VALIDATION]),
        ("evaluation (only measured on)", [_EVAL_DATA, _ATTACK, _MODE, _TARGET]),
        ("output", [_OUTPUT, _OVERWRITE]),
    ],
    presets="defend_",
    notes="Defenses: anp, clp (data-free), anp2x and clp2x (pruned to half the parameters), "
          "ft, fp, nad, ibau, grad_prune (needs the trigger). "
          f"{verdict.LEGEND} Exit status: 0 when the model was written (whatever the verdict), "
          "2 when a flag or the input was refused.",
)


def _defender_data(fn):
    """The `DefenderData` for `fn`, or None for a data-free defense."""
    if "defender_data" not in inspect.signature(fn).parameters:
        return None
    import numpy as np

    from kcc.defenses import defender_split

    fraction, per_class = _FRACTION.value, _PER_CLASS.value
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
    from kcc import flops
    from kcc import intake
    from kcc import metrics
    from kcc import models
    from kcc import saving

    method, model_path = _METHOD.value, _MODEL.value
    fn = DEFENSES[method]
    output = _OUTPUT.value or os.path.splitext(os.path.basename(model_path))[0] + f"_{method}.keras"
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
    if getattr(inspect.signature(fn).parameters.get("verbose"), "default", None) == "auto":
        kwargs.setdefault("verbose", progress.keras_verbose())  # Keras' bar, or plain lines
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

    if evaluated is not None:
        results["defended"] = metrics.evaluate(defended, *evaluated)
        print(f"{method}: " + _rates(results["defended"]), flush=True)
    closing, judged = verdict.summary(
        results.get("suspect"), results.get("defended"),
        (models.trainable_params(model), models.trainable_params(defended)),
        (flops.model_flops(model)[0], flops.model_flops(defended)[0]), wall, ("suspect", method),
        None if evaluated is None else len(evaluated[1]))
    report = {"input": model_path, "output": output, "command": cli.command_line(),
              "wall_seconds": wall, **report, "verdict": judged.to_dict()}
    if results:
        report["evaluation"] = {"data": _EVAL_DATA.value, "images": len(evaluated[1]), **results}
    saving.save_model(defended, output, overwrite=_OVERWRITE.value)
    saving.write_json(report, os.path.splitext(output)[0] + ".json")
    print(f"Wrote {output} and {os.path.splitext(output)[0]}.json\n")
    print(closing)


def _rates(result):
    return ", ".join(f"{k.upper()} {100 * v:.2f}%" for k, v in result.items() if k != "n_triggered")


def run():
    """The `kcc-defend` console script: `main` under `kcc.cli.run`."""
    cli.run(main, HELP)


if __name__ == "__main__":
    run()
