"""Train a backdoored classifier: `python -m kcc.attack --attack=badnets --output=m.keras`.

A thin absl wrapper over `kcc.attacks.infect`: writes the `.keras` file and a JSON sidecar
(attack parameters, data, architecture, schedule, ACC/ASR/RA, training time, exact command).
Reusable settings live in `flags/` (e.g. `--flagfile=flags/zoo_cifar10.flags`).
"""

import json

from absl import app
from absl import flags

from kcc import attacks
from kcc import cli
from kcc import data
from kcc import flag_groups
from kcc import models
from kcc import progress
from kcc import saving
from kcc import training

# ----------------------------------------------------------------------------- attack
_ATTACK = flags.DEFINE_enum(
    "attack", "badnets", ["clean", *sorted(attacks.ATTACKS)],
    "The backdoor to plant ('clean' trains a model without one, for comparison).")
_MODE = flags.DEFINE_enum(
    "mode", "all2one", list(attacks.MODES),
    "all2one: every triggered image is sent to --target; all2all: class c to c + 1.")
_TARGET = flags.DEFINE_integer("target", 0, "The all-to-one target class.", lower_bound=0)
_POISON_RATIO = flags.DEFINE_float(
    "poison_ratio", 0.1, "Share of the training images that get the trigger and the attacker's "
    "label.", lower_bound=0, upper_bound=1)
_ADAPTIVE_TAU = flags.DEFINE_float(
    "adaptive_tau_scale", None, "Make the attack C&C-aware (the paper's Table 7): after every "
    "epoch the model is constrained with C&C's scaling at this tau_scale, so the backdoor "
    "learns to survive it.")
_ADAPTIVE_READING = flags.DEFINE_enum(
    "adaptive_reading", "text", ["text", "literal"],
    "Reading of Eq. 5 for --adaptive_tau_scale (see kcc.purify --help, --reading).")
# ----------------------------------------------------------------------------- data and model
_DATASET = flags.DEFINE_enum("dataset", "cifar10", sorted(data.DATASETS),
                             "Training data (read from $KCC_DATA_DIR, else TFDS).")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "Folder with the offline archives. Default: $KCC_DATA_DIR.")
_TRAIN_SUBSET = flags.DEFINE_integer(
    "train_subset", None, "Train on this many images only (class-balanced), for quick runs.",
    lower_bound=1)
_ARCHITECTURE = flags.DEFINE_enum("architecture", "resnet18", sorted(models.ARCHITECTURES),
                                  "Network to train.")
_WIDTH = flags.DEFINE_integer("width", 16, "Width multiplier (64 = the paper's ResNet-18).",
                              lower_bound=1)
# ----------------------------------------------------------------------------- training
_EPOCHS = flags.DEFINE_integer("epochs", 20, "Training epochs.", lower_bound=1)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Images per step.", lower_bound=1)
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.1, "Peak SGD learning rate.")
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", 5e-4, "Weight decay on kernels.",
                                   lower_bound=0)
_SCHEDULE = flags.DEFINE_enum("schedule", "onecycle", list(training.SCHEDULES),
                              "Learning-rate schedule.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of poisoning, initialisation and shuffling.")
# ----------------------------------------------------------------------------- output
_OUTPUT, _OVERWRITE = flag_groups.output(
    "the infected model", "./<attack>_<mode>_<architecture>_w<width>.keras; the .json "
    "sidecar beside it names the attack, data, ACC/ASR/RA and command")

flag_groups.positive(_LEARNING_RATE, _ADAPTIVE_TAU)

HELP = cli.Help(
    tool="kcc.attack",
    summary="Trains an image classifier with a backdoor planted by a published attack, to "
            "test defenses on. Writes the .keras model and a JSON sidecar that kcc.purify and "
            "kcc.defend read to know which trigger to test.",
    examples=[
        "python -m kcc.attack --flagfile=flags/zoo_cifar10.flags --attack=wanet "
        "--output=wanet.keras",
        "kcc-attack --attack=badnets --adaptive_tau_scale=2 --output=adaptive.keras",
    ],
    groups=[
        ("attack", [_ATTACK, _MODE, _TARGET, _POISON_RATIO, _ADAPTIVE_TAU, _ADAPTIVE_READING]),
        ("data and model", [_DATASET, _DATA_DIR, _TRAIN_SUBSET, _ARCHITECTURE, _WIDTH]),
        ("training", [_EPOCHS, _BATCH_SIZE, _LEARNING_RATE, _WEIGHT_DECAY, _SCHEDULE, _SEED]),
        ("output", [_OUTPUT, _OVERWRITE]),
    ],
    presets="zoo_",
    notes="Exit status: 0 when the model was written, 2 when a flag or an input was refused.",
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    attack = None
    if _ATTACK.value != "clean":
        attack = attacks.get(
            _ATTACK.value, target=_TARGET.value, mode=_MODE.value,
            poison_ratio=_POISON_RATIO.value, num_classes=data.num_classes(_DATASET.value),
            seed=_SEED.value,
        )
    output = _OUTPUT.value or f"{_ATTACK.value}_{_MODE.value}_{_ARCHITECTURE.value}_w{_WIDTH.value}.keras"
    saving.check_output(output, _OVERWRITE.value)
    model, report = attacks.infect(
        attack,
        architecture=_ARCHITECTURE.value,
        dataset=_DATASET.value,
        width=_WIDTH.value,
        epochs=_EPOCHS.value,
        batch_size=_BATCH_SIZE.value,
        learning_rate=_LEARNING_RATE.value,
        weight_decay=_WEIGHT_DECAY.value,
        schedule=_SCHEDULE.value,
        seed=_SEED.value,
        data_dir=_DATA_DIR.value,
        train_subset=_TRAIN_SUBSET.value,
        adaptive_tau_scale=_ADAPTIVE_TAU.value,
        adaptive_reading=_ADAPTIVE_READING.value,
        verbose=progress.keras_verbose(),
    )
    report = attacks.save_infected(model, report, output, overwrite=_OVERWRITE.value,
                                   command=cli.command_line(), attack=attack)
    print(json.dumps({k: report[k] for k in ("acc", "asr", "ra") if k in report}))
    print(f"Wrote {output}")


def run():
    """The `kcc-attack` console script: `main` under `kcc.cli.run`."""
    cli.run(main, HELP)


if __name__ == "__main__":
    run()
