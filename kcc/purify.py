"""Clean & Compact from the command line: `python -m kcc.purify --model=suspect.keras --cr=3`.

A thin absl wrapper over `kcc.cc.purify` (Algorithm 1): it opens the suspect file only through
`kcc.intake.load_suspect` (allowlist first), writes the purified `.keras` file and a JSON report
atomically, never overwrites the input, and prints ranks, parameters, FLOPs and per-stage times.
Reusable settings live in `flags/` (`--flagfile=flags/purify_cpu.flags` for the CPU budget).
Import `kcc.cc` rather than this module from code that defines flags of its own.
"""

import os
import shlex
import sys

from absl import app
from absl import flags

from kcc.cc import purify

DEFAULT_MODEL = os.path.join("examples", "zoo", "badnets_all2one.keras")
DEFAULT_EVAL = os.path.join("examples", "zoo", "cifar10_test_slice.npz")

# ----------------------------------------------------------------------------- command line

_MODEL = flags.DEFINE_string("model", DEFAULT_MODEL, "Suspect .keras model (default: the zoo's BadNets model).")
_OUTPUT = flags.DEFINE_string("output", None, "Output .keras path (default ./<model stem>_cc<cr>.keras).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing output file.")
_TRUST_SOURCE = flags.DEFINE_bool(
    "trust_source", False, "Skip the intake allowlist and allow code in the file to run: only for "
    "files you vouch for.")
_CR = flags.DEFINE_float("cr", 3.0, "Compression ratio (> 1); 0 keeps full rank (scaling only).")
_TAU_SCALE = flags.DEFINE_float("tau_scale", 4.0, "Eq. 5 threshold.")
_READING = flags.DEFINE_enum("reading", "text", ["text", "literal"], "Reading of Eq. 5.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 5120, "Synthetic images (Eq. 9).")
_SYNTHESIS_STEPS = flags.DEFINE_integer("synthesis_steps", 500, "Adam steps per synthetic batch.")
_SYNTHESIS_BATCH = flags.DEFINE_integer("synthesis_batch_size", 256, "Synthetic images per batch.")
_EPOCHS = flags.DEFINE_integer("epochs", 5, "Distillation epochs; 0 = scaling(+truncation) only.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Distillation batch size.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 3e-4, "Distillation Adam learning rate.")
_GAMMA = flags.DEFINE_float("gamma", 1.5, "Weight of the adversarial term of Eq. 10.")
_PGD_STEPS = flags.DEFINE_integer("pgd_steps", 10, "L2 PGD steps.")
_EPSILON = flags.DEFINE_float("epsilon", 0.5, "L2 PGD radius.")
_ADVERSARIAL_CAP = flags.DEFINE_float("adversarial_cap", None, "Cap of Eq. 10's adversarial term.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")
_EVAL_DATA = flags.DEFINE_string(
    "eval_data", None, "Optional .npz with x (N,32,32,3) and y (N,) of your own labelled images, "
    "or a dataset name (cifar10, gtsrb) for its test split, to report ACC/ASR/RA per stage.")
_ATTACK = flags.DEFINE_string(
    "attack", None, "Attack whose trigger to evaluate (default: the model's .json sidecar, if any).")
_MODE = flags.DEFINE_enum("mode", None, ["all2one", "all2all"], "Attack target mode.")
_TARGET = flags.DEFINE_integer("target", None, "All-to-one target class.")


def _evaluation(model_path, num_classes):
    """The `(x, y, attack)` triple asked for on the command line, or None."""
    from kcc import evaluation

    eval_data = _EVAL_DATA.value
    if eval_data is None and os.path.abspath(model_path) == os.path.abspath(DEFAULT_MODEL):
        eval_data = DEFAULT_EVAL if os.path.exists(DEFAULT_EVAL) else None
    return evaluation.evaluation_set(model_path, num_classes, eval_data, _ATTACK.value, _MODE.value,
                                     _TARGET.value)


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
    try:
        saving.check_output(output, _OVERWRITE.value, inputs=[model_path])
        model = intake.load_image_classifier(model_path, trust_source=_TRUST_SOURCE.value)
        evaluation = _evaluation(model_path, int(model.outputs[0].shape[-1]))
        purified, report = purify(
            model, cr=cr, tau_scale=_TAU_SCALE.value, reading=_READING.value,
            num_images=_NUM_IMAGES.value, synthesis_steps=_SYNTHESIS_STEPS.value,
            synthesis_batch_size=_SYNTHESIS_BATCH.value, epochs=_EPOCHS.value,
            batch_size=_BATCH_SIZE.value, learning_rate=_LEARNING_RATE.value, gamma=_GAMMA.value,
            epsilon=_EPSILON.value, pgd_steps=_PGD_STEPS.value,
            adversarial_cap=_ADVERSARIAL_CAP.value, evaluation=evaluation, seed=_SEED.value,
        )
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"kcc.purify: error: {e}", file=sys.stderr)
        sys.exit(2)
    report = {"input": model_path, "output": output, "command": " ".join(shlex.quote(a) for a in sys.argv),
              **report}
    saving.save_model(purified, output, overwrite=_OVERWRITE.value)
    saving.write_json(report, os.path.splitext(output)[0] + ".json")
    r = report["rewrite"]
    print(f"parameters {r['params_before']:,} -> {r['params_after']:,} ({r['ratio']:.2f}x), "
          f"FLOPs {r['flops_before']:,} -> {r['flops_after']:,} ({r['flops_ratio']:.2f}x)")
    print("seconds per stage: " + ", ".join(f"{k} {v}" for k, v in report["seconds"].items()))
    print(f"Wrote {output} and {os.path.splitext(output)[0]}.json")


if __name__ == "__main__":
    app.run(main)
