"""Purification from the command line: `python -m kcc.purify --model=suspect.keras --cr=3`.

A thin absl wrapper over `kcc.recipe.purify` (`--recipe=kcc`, the default, or `--recipe=paper`,
Clean & Compact's Algorithm 1 as published): it opens the suspect file only through
`kcc.intake.load_suspect` (allowlist first), writes the purified `.keras` file and a JSON report
atomically, never overwrites the input, and ends with a before/after table and a verdict
(`kcc.verdict`). `--help` explains every flag; reusable settings live in `flags/`.
Import `kcc.recipe` rather than this module from code that defines flags of its own.
"""

import math
import os

from absl import app
from absl import flags

from kcc import cli
from kcc import flag_groups
from kcc import verdict
from kcc import recipe as recipe_lib

DEFAULT_MODEL = os.path.join("examples", "zoo", "badnets_all2one.keras")
DEFAULT_EVAL = os.path.join("examples", "zoo", "cifar10_test_slice.npz")
FORMATS = ("kcc", "plain")

#: Defaults that differ between the recipes (flag default None = the chosen recipe's).
RECIPE_DEFAULTS = {
    "kcc": {"num_images": 2048, "synthesis_steps": 200, "synthesis_learning_rate": 0.3,
            "epochs": 20, "learning_rate": 1e-3},
    "paper": {"num_images": 5120, "synthesis_steps": 500, "synthesis_learning_rate": 0.1,
              "epochs": 5, "learning_rate": 3e-4},
}
PAPER_ONLY = ("tau_scale", "reading", "gamma", "pgd_steps", "epsilon", "adversarial_cap")
KCC_ONLY = ("temperature", "unlearning_weight", "hint_weight", "distribution")

_MODEL, _TRUST_SOURCE = flag_groups.suspect(DEFAULT_MODEL)
_RECIPE = flags.DEFINE_enum(
    "recipe", "kcc", list(recipe_lib.RECIPES),
    "'kcc' (default): compress by truncation, scan the suspect for its backdoor (kcc.scan), "
    "then retrain every weight on synthetic images to answer as the suspect does, also when "
    "the inverted triggers are stamped on them; when the scan flags nothing, refit the "
    "truncated layers to the suspect's responses on those images instead. 'paper': Clean & "
    "Compact's Algorithm 1 exactly as published (scaling, truncation, BN-only adversarial "
    "distillation); it costs much accuracy and its backdoor removal does not survive "
    "BatchNorm re-estimation "
    "(benchmarks/results/cc_findings.md).")

# ----------------------------------------------------------------------------- compression
_CR = flags.DEFINE_float(
    "cr", 3.0,
    "Compression ratio: the purified model has this many times fewer parameters (3 = a third). "
    "Must be greater than 1, or 0 to keep every rank and only scale (no compression); a ratio "
    "the model cannot reach is refused with the largest it can. (Eq. 8)")
_TAU_SCALE = flags.DEFINE_float(
    "tau_scale", 4.0,
    "Paper recipe only. How hard to damp the dominant directions of each convolution, where "
    "backdoors tend to "
    "live: singular values more than tau_scale standard deviations above their layer's mean "
    "are scaled down to that level. Lower removes more and costs more accuracy; inf turns "
    "scaling off. Paper: 4. (Eq. 5)")
_READING = flags.DEFINE_enum(
    "reading", "text", ["text", "literal"],
    "Paper recipe only. How to read the paper's Eq. 5: 'text' (the sentence under it, as "
    "described for "
    "--tau_scale) or 'literal' (the formula as printed: a threshold of tau_scale times the "
    "standard deviation, on the normalised values).")
_RANK_MULTIPLE = flags.DEFINE_integer(
    "rank_multiple", 1,
    "Every kept rank is rounded up to a multiple of this, within the same parameter budget, for "
    "runtimes that compute channels in blocks (e.g. 8). On x86 TFLite/XNNPACK, 8 was within 5% "
    "of the exact ranks' latency either way (tflite/results/benchmark.md), so the default keeps "
    "the exact ranks.", lower_bound=1)
# ----------------------------------------------------------------------------- synthesis
_NUM_IMAGES = flags.DEFINE_integer(
    "num_images", None,
    "Synthetic images to make from BatchNorm statistics (the suspect's with the kcc recipe, "
    "the compressed model's with the paper's); no real data is used. Default: 2048 (kcc), "
    "5120 (paper). (Eq. 9)", lower_bound=1)
_SYNTHESIS_STEPS = flags.DEFINE_integer(
    "synthesis_steps", None,
    "Optimisation (Adam) steps per batch of synthetic images. Default: 200 (kcc), 500 (paper).",
    lower_bound=1)
_SYNTHESIS_LEARNING_RATE = flags.DEFINE_float(
    "synthesis_learning_rate", None,
    "Adam learning rate of the synthetic images, in normalised input units. Default: 0.3 "
    "(kcc: images closer to the statistics in few steps), 0.1 (paper).")
_SCAN_BUDGET = flags.DEFINE_enum(
    "scan_budget", "full", ["full", "cpu"],
    "kcc recipe only. Budget of the scan that finds the triggers to unlearn: 'full' "
    "(kcc.scan's defaults) or 'cpu' (flags/scan_cpu.flags: minutes on a laptop).")
_SYNTHESIS_BATCH = flags.DEFINE_integer(
    "synthesis_batch_size", 256,
    "Synthetic images optimised together; their batch statistics are matched to BatchNorm's.",
    lower_bound=2)
# ----------------------------------------------------------------------------- distillation
_EPOCHS = flags.DEFINE_integer(
    "epochs", None,
    "Passes of distillation over the synthetic images. kcc: every weight is retrained (default "
    "20; the best epoch is kept, chosen on held-aside synthetic images; no distillation when "
    "the scan flags nothing). Paper: only BatchNorm "
    "layers, to agree with the suspect on synthetic images and disagree on adversarial ones "
    "(default 5); 0 skips synthesis and distillation (compression only, also the mode for "
    "models without BatchNorm). (Eq. 10)", lower_bound=0)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 128, "Synthetic images per distillation step. Paper: 128.", lower_bound=1)
_LEARNING_RATE = flags.DEFINE_float(
    "learning_rate", None,
    "Adam learning rate of distillation. Default: 1e-3, cosine-decayed (kcc); 3e-4 (paper).")
_TEMPERATURE = flags.DEFINE_float(
    "temperature", 4.0,
    "kcc recipe only. Softening of both models' answers before they are compared (the "
    "temperature of knowledge distillation): higher passes more of the suspect's second "
    "choices on.")
_UNLEARNING_WEIGHT = flags.DEFINE_float(
    "unlearning_weight", 1.0,
    "kcc recipe only. Weight of the unlearning term: the purified model must answer on "
    "trigger-stamped synthetic images what the suspect answers without the trigger. 0 turns "
    "unlearning off (distillation only).", lower_bound=0)
_HINT_WEIGHT = flags.DEFINE_float(
    "hint_weight", 200.0,
    "kcc recipe only. Weight of the hints: the purified model's BatchNorm outputs must match "
    "the suspect's on clean synthetic images (FitNets), which keeps more of its accuracy "
    "than the answers alone, and on trigger-stamped ones the suspect's without the trigger. "
    "0 turns them off.", lower_bound=0)
_GAMMA = flags.DEFINE_float(
    "gamma", 1.5,
    "Paper recipe only. Weight of the adversarial term: how strongly the purified model is "
    "pushed away from the suspect's answers on adversarial images. Paper: 1.5. (Eq. 10)",
    lower_bound=0)
_PGD_STEPS = flags.DEFINE_integer(
    "pgd_steps", 10,
    "Paper recipe only. Steps of the L2 attack (PGD) that makes those adversarial images. "
    "Paper: 10.", lower_bound=1)
_EPSILON = flags.DEFINE_float(
    "epsilon", 0.5,
    "Paper recipe only. L2 size of the adversarial perturbations, in [0, 1] pixel units. "
    "Paper: 0.5.")
_ADVERSARIAL_CAP = flags.DEFINE_float(
    "adversarial_cap", None,
    "Paper recipe only. Upper bound on the adversarial term per image, so that distillation "
    "cannot gain without "
    "limit by moving away from the suspect. Default: none, the paper's unbounded form.")
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seed of synthesis and distillation: the same flags and seed give the same model.")
_DISTRIBUTION = flag_groups.distribution(
    "synthesis, the scan and distillation (kcc recipe only)")

# ----------------------------------------------------------------------------- evaluation, output
_EVAL_DATA, _ATTACK, _MODE, _TARGET = flag_groups.evaluation()
_OUTPUT, _OVERWRITE = flag_groups.output(
    "the purified model",
    "./<model name>_kcc<cr>.keras (_cc<cr> with --recipe=paper, _scaled with --cr=0)")
_FORMAT = flags.DEFINE_enum(
    "format", "kcc", list(FORMATS),
    "'kcc': factored convolutions stay kcc's TuckerConv2D layers (the file loads after "
    "`import kcc`). 'plain': each becomes three built-in Conv2D layers, a file that loads with "
    "Keras alone and gives the same predictions.")

flags.register_validator(
    _CR, lambda cr: cr == 0 or cr > 1,
    "must be greater than 1 (the purified model gets that many times fewer parameters), or 0 "
    "to keep every rank and only scale")
flags.register_validator(_TAU_SCALE, lambda t: t > 0,
                         "must be greater than 0 (inf turns scaling off)")
flag_groups.positive(_LEARNING_RATE, _SYNTHESIS_LEARNING_RATE, _EPSILON, _ADVERSARIAL_CAP,
                     _TEMPERATURE)

HELP = cli.Help(
    tool="kcc.purify",
    summary="Removes a backdoor from an image classifier you do not trust and compresses it, "
            "without training data. The suspect's convolutions are factored (Tucker-2, "
            "truncated to the compression ratio); the data-free scan (kcc.scan) finds the "
            "suspected target and its trigger; then the compressed model learns the suspect's "
            "answers on synthetic images made from its BatchNorm statistics, with the "
            "inverted triggers unlearned. --recipe=paper runs Clean & Compact (Phan et al., "
            "ECCV 2024) as published instead. The run ends with ACC/ASR/RA before and after "
            "and a verdict.",
    examples=[
        "python -m kcc.purify --model=suspect.keras --cr=3 --eval_data=cifar10",
        "python -m kcc.purify --model=suspect.keras --flagfile=flags/purify_cpu.flags",
        "python -m kcc.purify --model=suspect.keras --flagfile=flags/purify_paper_cpu.flags",
    ],
    groups=[
        ("model", [_MODEL, _TRUST_SOURCE, _RECIPE]),
        ("compression", [_CR, _RANK_MULTIPLE, _TAU_SCALE, _READING]),
        ("scan (kcc recipe)", [_SCAN_BUDGET]),
        ("synthesis (no real data)", [_NUM_IMAGES, _SYNTHESIS_STEPS, _SYNTHESIS_LEARNING_RATE,
                                      _SYNTHESIS_BATCH]),
        ("distillation", [_EPOCHS, _BATCH_SIZE, _LEARNING_RATE, _TEMPERATURE,
                          _UNLEARNING_WEIGHT, _HINT_WEIGHT, _GAMMA, _PGD_STEPS, _EPSILON,
                          _ADVERSARIAL_CAP, _SEED, _DISTRIBUTION]),
        ("evaluation (only measured on)", [_EVAL_DATA, _ATTACK, _MODE, _TARGET]),
        ("output", [_OUTPUT, _OVERWRITE, _FORMAT]),
    ],
    presets="purify_",
    notes=f"Without --eval_data, the default model is measured on the 1,000 CIFAR-10 test "
          f"images shipped beside it. {verdict.LEGEND} Exit status: 0 when the model was "
          "written (whatever the verdict), 2 when a flag or the input was refused.",
)


def _evaluation(model_path, num_classes):
    """The `(x, y, attack)` triple asked for on the command line, or None."""
    from kcc import evaluation

    eval_data = _EVAL_DATA.value
    if eval_data is None and os.path.abspath(model_path) == os.path.abspath(DEFAULT_MODEL):
        eval_data = DEFAULT_EVAL if os.path.exists(DEFAULT_EVAL) else None
    return evaluation.evaluation_set(model_path, num_classes, eval_data, _ATTACK.value, _MODE.value,
                                     _TARGET.value)


def _check_model(model, cr, epochs, recipe, rank_multiple):
    """Refuses what would fail later, before the suspect is evaluated."""
    from kcc import rewrite
    from kcc import synthesis

    if recipe == "kcc" and not synthesis.batchnorm_layers(model):
        raise ValueError("The model has no BatchNormalization layer: the kcc recipe makes its "
                         "synthetic images from BatchNorm statistics and cannot run. Compression "
                         "alone (no backdoor removal) is --recipe=paper --epochs=0.")

    if cr is not None:
        largest = rewrite.largest_ratio(model, rank_multiple)
        if cr > largest:
            lowest = ("rank 1" if rank_multiple == 1 else
                      f"its lowest rank (--rank_multiple={rank_multiple}; 1 allows rank 1)")
            raise ValueError(f"--cr={cr:g} cannot be reached for this model: with every "
                             f"decomposable convolution at {lowest} the largest ratio is "
                             f"{math.floor(largest * 100) / 100:.2f}.")
    if epochs > 0:
        synthesis.require_batchnorm(model)


def recipe_settings(recipe):
    """The chosen recipe's keyword arguments from the flags; `UsageError` for a flag set on the
    command line that the recipe does not use."""
    other = KCC_ONLY if recipe == "paper" else PAPER_ONLY
    stray = [f"--{name}" for name in other if flags.FLAGS[name].present]
    if stray:
        raise app.UsageError(f"{', '.join(stray)} {'is' if len(stray) == 1 else 'are'} not used "
                             f"by --recipe={recipe}; drop {'it' if len(stray) == 1 else 'them'} "
                             f"or choose the other recipe.")
    chosen = {name: (flags.FLAGS[name].value if flags.FLAGS[name].value is not None else value)
              for name, value in RECIPE_DEFAULTS[recipe].items()}
    shared = dict(rank_multiple=_RANK_MULTIPLE.value, synthesis_batch_size=_SYNTHESIS_BATCH.value,
                  batch_size=_BATCH_SIZE.value, **chosen)
    if recipe == "kcc":
        from kcc import parallel
        from kcc import scan

        if chosen["epochs"] < 1:
            raise app.UsageError("--epochs=0 is the paper recipe's compression-only mode; the "
                                 "kcc recipe needs --epochs >= 1 (or pass --recipe=paper).")
        return dict(temperature=_TEMPERATURE.value, unlearning_weight=_UNLEARNING_WEIGHT.value,
                    hint_weight=_HINT_WEIGHT.value,
                    scan_settings=scan.BUDGETS[_SCAN_BUDGET.value],
                    distribution=parallel.get(_DISTRIBUTION.value), **shared)
    return dict(tau_scale=_TAU_SCALE.value, reading=_READING.value, gamma=_GAMMA.value,
                epsilon=_EPSILON.value, pgd_steps=_PGD_STEPS.value,
                adversarial_cap=_ADVERSARIAL_CAP.value, **shared)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from kcc import intake
    from kcc import saving

    recipe = _RECIPE.value
    settings = recipe_settings(recipe)
    model_path = _MODEL.value
    cr = _CR.value or None
    suffix = (f"_cc{cr:g}" if recipe == "paper" else f"_kcc{cr:g}") if cr else "_scaled"
    output = _OUTPUT.value or (os.path.splitext(os.path.basename(model_path))[0] + suffix
                               + ".keras")
    report_path = os.path.splitext(output)[0] + ".json"
    saving.check_output(output, _OVERWRITE.value, inputs=[model_path])
    model = intake.load_image_classifier(model_path, trust_source=_TRUST_SOURCE.value)
    _check_model(model, cr, settings["epochs"], recipe, settings["rank_multiple"])
    evaluation = _evaluation(model_path, int(model.outputs[0].shape[-1]))
    purified, report = recipe_lib.purify(model, cr=cr, recipe=recipe, evaluation=evaluation,
                                         seed=_SEED.value, **settings)
    stages = report.get("evaluation", {})
    final = verdict.final_stage(stages)
    r = report["rewrite"]
    closing, judged = verdict.summary(
        stages.get("suspect"), stages.get(final), (r["params_before"], r["params_after"]),
        (r["flops_before"], r["flops_after"]), report["seconds"]["total"], ("suspect", final),
        None if evaluation is None else len(evaluation[1]))
    report = {"input": model_path, "output": output, "format": _FORMAT.value,
              "command": cli.command_line(), **report, "verdict": judged.to_dict()}
    if evaluation is not None:
        report["evaluation_images"] = len(evaluation[1])
    if _FORMAT.value == "plain":
        purified = saving.to_plain(purified)
    saving.save_model(purified, output, overwrite=_OVERWRITE.value)
    saving.write_json(report, report_path)
    print("seconds per stage: " + ", ".join(f"{k} {v}" for k, v in report["seconds"].items()))
    print(f"Wrote {output} ({_FORMAT.value} format) and {report_path}\n")
    print(closing)
    for stage, what in (("purified, BN re-estimated", "re-estimating BatchNorm statistics on "
                         "synthetic images (what a user's fine-tuning does first)"),
                        ("purified, fine-tuned", "a short fine-tune on synthetic images "
                         f"({recipe_lib.FINE_TUNE_EPOCHS} epochs, labels the model's own)")):
        rebound = stages.get(stage)
        if rebound is not None and rebound.get("asr") is not None:
            print(f"ASR after {what}: {100 * rebound['asr']:.2f}%")
    for line in report.get("warnings", []):
        print(f"Warning: {line}")


def run():
    """The `kcc-purify` console script: `main` under `kcc.cli.run`."""
    cli.run(main, HELP)


if __name__ == "__main__":
    run()
