"""Train a backdoored classifier: `python -m kcc.attack --attack=badnets --output=m.keras`.

A thin absl wrapper over `kcc.attacks.infect`: writes the `.keras` file and a JSON sidecar
(attack parameters, data, architecture, schedule, ACC/ASR/RA, training time, exact command).
Reusable settings live in `flags/` (e.g. `--flagfile=flags/zoo_cifar10.flags`).
"""

import json

from absl import app
from absl import flags

from kcc import attacks
from kcc import data
from kcc import models
from kcc import saving
from kcc import training

_ATTACK = flags.DEFINE_enum("attack", "badnets", ["clean", *sorted(attacks.ATTACKS)], "Attack to plant.")
_MODE = flags.DEFINE_enum("mode", "all2one", list(attacks.MODES), "Target mode.")
_TARGET = flags.DEFINE_integer("target", 0, "All-to-one target class.")
_POISON_RATIO = flags.DEFINE_float("poison_ratio", 0.1, "Fraction of the training set poisoned.")
_DATASET = flags.DEFINE_enum("dataset", "cifar10", sorted(data.DATASETS), "Dataset.")
_ARCHITECTURE = flags.DEFINE_enum("architecture", "resnet18", sorted(models.ARCHITECTURES), "Architecture.")
_WIDTH = flags.DEFINE_integer("width", 16, "Width multiplier (64 = paper size).")
_EPOCHS = flags.DEFINE_integer("epochs", 20, "Training epochs.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.1, "Peak learning rate.")
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", 5e-4, "Weight decay on kernels.")
_SCHEDULE = flags.DEFINE_enum("schedule", "onecycle", list(training.SCHEDULES), "Learning-rate schedule.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")
_TRAIN_SUBSET = flags.DEFINE_integer("train_subset", None, "Use only this many training images.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with offline archives (default $KCC_DATA_DIR).")
_ADAPTIVE_TAU = flags.DEFINE_float(
    "adaptive_tau_scale", None, "C&C-aware adaptive attack (paper's Table 7): constrain the model "
    "with C&C's scaling at this tau_scale after every epoch.")
_ADAPTIVE_READING = flags.DEFINE_enum("adaptive_reading", "text", ["text", "literal"],
                                      "Reading of Eq. 5 for --adaptive_tau_scale.")
_OUTPUT = flags.DEFINE_string("output", None, "Output .keras path (default derived from the attack).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing output file.")


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
    )
    report = attacks.save_infected(model, report, output, overwrite=_OVERWRITE.value, attack=attack)
    print(json.dumps({k: report[k] for k in ("acc", "asr", "ra") if k in report}))
    print(f"Wrote {output}")


if __name__ == "__main__":
    app.run(main)
