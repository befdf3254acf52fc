"""Clean & Compact from the command line: `python -m kcc.purify --model=suspect.keras --cr=3`.

A thin absl wrapper over `kcc.cc.purify` (Algorithm 1): it opens the suspect file only through
`kcc.intake.load_suspect` (allowlist first), writes the purified `.keras` file and a JSON report
atomically, never overwrites the input, and ends with a before/after table and a verdict
(`kcc.verdict`). `--help` explains every flag; reusable settings live in `flags/`.
Import `kcc.cc` rather than this module from code that defines flags of its own.
"""

import math
import os

from absl import app
from absl import flags

from kcc import cli
from kcc import flag_groups
from kcc import verdict
from kcc.cc import purify

DEFAULT_MODEL = os.path.join("examples", "zoo", "badnets_all2one.keras")
DEFAULT_EVAL = os.path.join("examples", "zoo", "cifar10_test_slice.npz")
FORMATS = ("kcc", "plain")

_MODEL, _TRUST_SOURCE = flag_groups.suspect(DEFAULT_MODEL)

# ----------------------------------------------------------------------------- compression
_CR = flags.DEFINE_float(
    "cr", 3.0,
    "Compression ratio: the purified model has this many times fewer parameters (3 = a third). "
    "Must be greater than 1, or 0 to keep every rank and only scale (no compression); a ratio "
    "the model cannot reach is refused with the largest it can. (Eq. 8)")
_TAU_SCALE = flags.DEFINE_float(
    "tau_scale", 4.0,
    "How hard to damp the dominant directions of each convolution, where backdoors tend to "
    "live: singular values more than tau_scale standard deviations above their layer's mean "
    "are scaled down to that level. Lower removes more and costs more accuracy; inf turns "
    "scaling off. Paper: 4. (Eq. 5)")
_READING = flags.DEFINE_enum(
    "reading", "text", ["text", "literal"],
    "How to read the paper's Eq. 5: 'text' (the sentence under it, as described for "
    "--tau_scale) or 'literal' (the formula as printed: a threshold of tau_scale times the "
    "standard deviation, on the normalised values).")
# ----------------------------------------------------------------------------- synthesis
_NUM_IMAGES = flags.DEFINE_integer(
    "num_images", 5120,
    "Synthetic images to make from the compressed model's BatchNorm statistics; no real data "
    "is used. Paper: 5120. (Eq. 9)", lower_bound=1)
_SYNTHESIS_STEPS = flags.DEFINE_integer(
    "synthesis_steps", 500, "Optimisation (Adam) steps per batch of synthetic images. Paper: 500.",
    lower_bound=1)
_SYNTHESIS_BATCH = flags.DEFINE_integer(
    "synthesis_batch_size", 256,
    "Synthetic images optimised together; their batch statistics are matched to BatchNorm's.",
    lower_bound=2)
# ----------------------------------------------------------------------------- distillation
_EPOCHS = flags.DEFINE_integer(
    "epochs", 5,
    "Passes of distillation: only the BatchNorm layers of the compressed model are retrained, "
    "to agree with the suspect on synthetic images and to disagree with it on adversarial "
    "ones. 0 skips synthesis and distillation (scaling and compression only), which is also "
    "the mode for models without BatchNorm. Paper: 5. (Eq. 10)", lower_bound=0)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 128, "Synthetic images per distillation step. Paper: 128.", lower_bound=1)
_LEARNING_RATE = flags.DEFINE_float(
    "learning_rate", 3e-4, "Adam learning rate of distillation. Paper: 3e-4.")
_GAMMA = flags.DEFINE_float(
    "gamma", 1.5,
    "Weight of the adversarial term: how strongly the purified model is pushed away from the "
    "suspect's answers on adversarial images. Paper: 1.5. (Eq. 10)", lower_bound=0)
_PGD_STEPS = flags.DEFINE_integer(
    "pgd_steps", 10, "Steps of the L2 attack (PGD) that makes those adversarial images. Paper: 10.",
    lower_bound=1)
_EPSILON = flags.DEFINE_float(
    "epsilon", 0.5, "L2 size of the adversarial perturbations, in [0, 1] pixel units. Paper: 0.5.")
_ADVERSARIAL_CAP = flags.DEFINE_float(
    "adversarial_cap", None,
    "Upper bound on the adversarial term per image, so that distillation cannot gain without "
    "limit by moving away from the suspect. Default: none, the paper's unbounded form.")
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seed of synthesis and distillation: the same flags and seed give the same model.")

# ----------------------------------------------------------------------------- evaluation, output
_EVAL_DATA, _ATTACK, _MODE, _TARGET = flag_groups.evaluation()
_OUTPUT, _OVERWRITE = flag_groups.output(
    "the purified model", "./<model name>_cc<cr>.keras (_scaled with --cr=0)")
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
flag_groups.positive(_LEARNING_RATE, _EPSILON, _ADVERSARIAL_CAP)

HELP = cli.Help(
    tool="kcc.purify",
    summary="Removes a backdoor from an image classifier you do not trust and compresses it, "
            "without training data: Clean & Compact (Phan et al., ECCV 2024). The suspect's "
            "convolutions are factored (Tucker-2) with their dominant directions damped, then "
            "the BatchNorm layers are retrained on synthetic images by adversarial "
            "distillation. The run ends with ACC/ASR/RA before and after and a verdict.",
    examples=[
        "python -m kcc.purify --model=suspect.keras --cr=3 --eval_data=cifar10",
        "python -m kcc.purify --model=suspect.keras --flagfile=flags/purify_cpu.flags",
        "kcc-purify --model=suspect.keras --cr=0 --epochs=0      # scaling only, seconds",
    ],
    groups=[
        ("model", [_MODEL, _TRUST_SOURCE]),
        ("compression", [_CR, _TAU_SCALE, _READING]),
        ("synthesis (no real data)", [_NUM_IMAGES, _SYNTHESIS_STEPS, _SYNTHESIS_BATCH]),
        ("distillation", [_EPOCHS, _BATCH_SIZE, _LEARNING_RATE, _GAMMA, _PGD_STEPS, _EPSILON,
                          _ADVERSARIAL_CAP, _SEED]),
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


def _check_model(model, cr):
    """Refuses what would fail later, before the suspect is evaluated."""
    from kcc import rewrite
    from kcc import synthesis

    if cr is not None:
        largest = rewrite.largest_ratio(model)
        if cr > largest:
            raise ValueError(f"--cr={cr:g} cannot be reached for this model: with every "
                             "decomposable convolution at rank 1 the largest ratio is "
                             f"{math.floor(largest * 100) / 100:.2f}.")
    if _EPOCHS.value > 0:
        synthesis.require_batchnorm(model)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from kcc import intake
    from kcc import saving

    model_path = _MODEL.value
    cr = _CR.value or None
    output = _OUTPUT.value or (
        os.path.splitext(os.path.basename(model_path))[0] + (f"_cc{cr:g}" if cr else "_scaled") + ".keras"
    )
    report_path = os.path.splitext(output)[0] + ".json"
    saving.check_output(output, _OVERWRITE.value, inputs=[model_path])
    model = intake.load_image_classifier(model_path, trust_source=_TRUST_SOURCE.value)
    _check_model(model, cr)
    evaluation = _evaluation(model_path, int(model.outputs[0].shape[-1]))
    purified, report = purify(
        model, cr=cr, tau_scale=_TAU_SCALE.value, reading=_READING.value,
        num_images=_NUM_IMAGES.value, synthesis_steps=_SYNTHESIS_STEPS.value,
        synthesis_batch_size=_SYNTHESIS_BATCH.value, epochs=_EPOCHS.value,
        batch_size=_BATCH_SIZE.value, learning_rate=_LEARNING_RATE.value, gamma=_GAMMA.value,
        epsilon=_EPSILON.value, pgd_steps=_PGD_STEPS.value,
        adversarial_cap=_ADVERSARIAL_CAP.value, evaluation=evaluation, seed=_SEED.value,
    )
    stages = report.get("evaluation", {})
    final = list(stages)[-1] if stages else "purified"
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


def run():
    """The `kcc-purify` console script: `main` under `kcc.cli.run`."""
    cli.run(main, HELP)


if __name__ == "__main__":
    run()
