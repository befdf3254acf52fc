"""The flag groups several kcc command lines share, defined once with the same words.

Each function defines its flags in absl's global `FLAGS` (call it once per program, at import
of the tool's module), registers their parse-time checks, and returns the `FlagHolder`s for the
tool's `main` and its `kcc.cli.Help` groups:

    _MODEL, _TRUST_SOURCE = flag_groups.suspect(DEFAULT_MODEL)
    _EVAL_DATA, _ATTACK, _MODE, _TARGET = flag_groups.evaluation()
    _OUTPUT, _OVERWRITE = flag_groups.output("the purified model", "./<model name>_cc<cr>.keras")
"""

import os

from absl import flags

from kcc import attacks
from kcc import data


def suspect(default):
    """`--model` (must exist) and `--trust_source`: the model nobody vouches for.

    Args:
        default: the `--model` default, a path.

    Returns:
        `(model, trust_source)` flag holders.
    """
    model = flags.DEFINE_string(
        "model", default,
        "The suspect model, a .keras file you do not trust. It is inspected before it is "
        "loaded and nothing in it runs (see `python -m kcc.inspect`). Default: kcc's demo "
        "BadNets model.")
    trust_source = flags.DEFINE_bool(
        "trust_source", False,
        "You vouch for the file: classes outside kcc's allowlist only warn and Keras loads it "
        "with safe_mode off, so code in the file may run. Only for files you would run as code.")
    flags.register_validator(model, os.path.exists, "no such file")
    return model, trust_source


def evaluation():
    """`--eval_data`, `--attack`, `--mode`, `--target`: what ACC, ASR and RA are measured on.

    Returns:
        `(eval_data, attack, mode, target)` flag holders.
    """
    eval_data = flags.DEFINE_string(
        "eval_data", None,
        "Labelled images to measure ACC, ASR and RA on, before and after; never used to "
        f"defend. A dataset name ({', '.join(sorted(data.DATASETS))}: its test split, from "
        "$KCC_DATA_DIR or TFDS) or an .npz with x (N, H, W, 3) and y (N,). Without it there "
        "is no verdict.")
    attack = flags.DEFINE_enum(
        "attack", None, sorted(attacks.ATTACKS),
        "The trigger to test for ASR and RA (and to give the defenses that need one). Default: "
        "the attack named in the model's .json sidecar (<model>.json), if there is one.")
    mode = flags.DEFINE_enum(
        "mode", None, list(attacks.MODES),
        "all2one: every triggered image is sent to one target class; all2all: class c to "
        "c + 1. Default: the sidecar's.")
    target = flags.DEFINE_integer(
        "target", None, "The all-to-one target class. Default: the sidecar's, else 0.",
        lower_bound=0)
    images(eval_data)
    return eval_data, attack, mode, target


def output(what, default):
    """`--output` (must end in `.keras`) and `--overwrite`.

    Args:
        what: what is written, e.g. `"the purified model"`.
        default: the default path, in words.

    Returns:
        `(output, overwrite)` flag holders.
    """
    path = flags.DEFINE_string(
        "output", None, f"Where to write {what}, a .keras file; the JSON report goes beside it "
                        f"(same name, .json). Default: {default}.")
    overwrite = flags.DEFINE_bool(
        "overwrite", False, "Replace --output if it exists.")
    flags.register_validator(path, lambda v: v is None or v.endswith(".keras"),
                             "must end in .keras")
    return path, overwrite


def images(holder):
    """Checks an images flag at parse time: unset, a dataset name, or an existing file."""
    flags.register_validator(
        holder, lambda v: v is None or v in data.DATASETS or os.path.isfile(v),
        f"must be a dataset name ({', '.join(sorted(data.DATASETS))}) or an existing .npz "
        "file: no such file")


def positive(*holders):
    """Checks number flags at parse time: each unset or greater than 0."""
    for holder in holders:
        flags.register_validator(holder, lambda v: v is None or v > 0, "must be greater than 0")


def scan_budget():
    """`--margin_images`, `--margin_steps`, `--feature_steps`, `--num_images`, `--synthesis_steps`,
    `--inversion_steps`, `--inversion_batch_size`, `--seed`: the budget of `kcc.scan.scan`,
    defaulting to its `BUDGETS["full"]`.

    Returns:
        `{scan keyword argument: flag holder}`.
    """
    from kcc import scan

    full = scan.BUDGETS["full"]
    helps = {
        "margin_images": "Random starting images per class for the maximum-margin signal (MM-BD: "
                         "30). With many classes each gets fewer, so that one step stays within "
                         "512 images.",
        "margin_steps": "Optimisation steps of the maximum-margin signal (MM-BD: 300).",
        "feature_steps": "Optimisation steps of the feature-posterior signal (FreeEagle: dummy "
                         "intermediate features, 5 per class).",
        "num_images": "Synthetic images made from the model's own BatchNorm statistics (no real "
                      "data): half to reverse-engineer triggers on, half held aside to measure "
                      "how many each trigger flips.",
        "synthesis_steps": "Optimisation steps of the synthetic images.",
        "inversion_steps": "Optimisation steps of trigger inversion (a local patch and an "
                           "image-wide perturbation per class, all classes at once).",
        "inversion_batch_size": "Synthetic images per inversion step; each is stamped with "
                                "every class's two triggers.",
    }
    holders = {name: flags.DEFINE_integer(name, full[name], text,
                                          lower_bound=4 if name == "num_images" else 1)
               for name, text in helps.items()}
    holders["seed"] = flags.DEFINE_integer(
        "seed", 0, "Seed of every random start: same flags, same scan.")
    return holders


def distribution(work):
    """`--distribution`: where `work` runs (`kcc.parallel.get`), one device by default.

    Args:
        work: what is split, in words (e.g. "synthesis, the scan and distillation").

    Returns:
        the flag holder.
    """
    return flags.DEFINE_enum(
        "distribution", "off", ["off", "data_parallel", "auto"],
        f"JAX backend only (kcc.parallel). 'data_parallel': {work} split every batch over all "
        "local devices (the device count must divide the batch sizes); 'auto': so when more "
        "than one accelerator is present; 'off': one device. The result equals the one-device "
        "run up to float rounding.")
