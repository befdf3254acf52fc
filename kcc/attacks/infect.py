"""Training of backdoored ("infected") classifiers, used by `python -m kcc.attack` and the zoo."""

import glob
import os
import shlex
import sys
import time

import numpy as np

from kcc import data
from kcc import metrics
from kcc import models
from kcc import saving
from kcc import training
from kcc.attacks import adaptive


def infect(
    attack,
    architecture="resnet18",
    dataset="cifar10",
    width=16,
    epochs=20,
    batch_size=128,
    learning_rate=0.1,
    weight_decay=5e-4,
    schedule="onecycle",
    decay="decoupled",
    seed=0,
    data_dir=None,
    train_subset=None,
    verbose="auto",
    checkpoint=None,
    adaptive_tau_scale=None,
    adaptive_reading="text",
):
    """Trains `architecture` on `dataset` poisoned by `attack` (or clean if `attack` is None).

    Args:
        attack: a `kcc.attacks.Attack`, or None for a clean model.
        architecture: a name in `kcc.models.ARCHITECTURES`.
        dataset: a name in `kcc.data.DATASETS`.
        width: model width (64 = paper size).
        epochs, batch_size, learning_rate, weight_decay, schedule, decay: see
            `kcc.training.train`.
        seed: seeds poisoning, initialisation and batches.
        data_dir: folder of offline archives (default `$KCC_DATA_DIR`).
        train_subset: optional number of training images (class-balanced), for quick runs.
        verbose: Keras progress-bar setting.
        checkpoint: optional path prefix for per-epoch, resumable checkpoints.
        adaptive_tau_scale: if set, the C&C-aware adaptive attack (paper's Table 7): the model
            is constrained with C&C's scaling step at this tau_scale (and `adaptive_reading`)
            after every epoch (`kcc.attacks.adaptive`). Attacks with their own multi-stage
            training do not support it.

    Returns:
        `(model, report)`: the trained model and a JSON-serialisable dict with ACC/ASR/RA on the
        test split (fractions) and the training time in seconds.
    """
    callbacks = []
    if adaptive_tau_scale is not None:
        if attack is not None and hasattr(attack, "train"):
            raise ValueError(f"The adaptive attack needs plain supervised training; {attack.name} "
                             "trains in several stages of its own.")
        callbacks.append(adaptive.ConstrainEachEpoch(adaptive_tau_scale, adaptive_reading))
    x, y = data.load(dataset, "train", data_dir)
    if train_subset:
        x, y, _ = data.subset(x, y, per_class=train_subset // data.num_classes(dataset), seed=seed)
    x_test, y_test = data.load(dataset, "test", data_dir)
    model = models.get(architecture, data.num_classes(dataset), width, dataset)
    start = time.time()
    poisoned = 0
    if attack is not None and hasattr(attack, "train"):
        attack.train(model, x, y, epochs=epochs, batch_size=batch_size,
                     learning_rate=learning_rate, weight_decay=weight_decay,
                     schedule=schedule, seed=seed, verbose=verbose, checkpoint=checkpoint,
                     decay=decay)
        poisoned = int(round(attack.poison_ratio * len(y)))
    else:
        transform = None
        if attack is not None:
            if hasattr(attack, "transform"):
                transform = attack.transform
                poisoned = int(round(attack.poison_ratio * len(y)))
            else:
                x, y, indices = attack.poison(x, y, seed=seed)
                poisoned = len(indices)
        training.train(model, x, y, epochs, batch_size, learning_rate, weight_decay, schedule,
                       transform=transform, callbacks=callbacks, seed=seed, verbose=verbose,
                       checkpoint=checkpoint, decay=decay)
    seconds = time.time() - start
    if checkpoint:  # every training phase's epochs, including those of earlier runs
        # `{checkpoint}.state.npz` and a phase's `{checkpoint}.<phase>.state.npz`, not another
        # entry's whose name starts the same (`clean` and `clean_seed1` share a folder).
        states = glob.glob(f"{glob.escape(checkpoint)}.*state.npz")
        recorded = 0.0
        for state in states:
            with np.load(state) as f:
                recorded += float(f["seconds"])
        # One uninterrupted run's wall time also counts what no phase records (Trojan's trigger
        # search); a resumed run's phases add up to more than its own wall time.
        seconds = max(seconds, recorded)
    result = metrics.evaluate(model, x_test, y_test, attack)
    report = {
        "attack": attack.get_config() if attack is not None else None,
        "adaptive": None if adaptive_tau_scale is None else {
            "tau_scale": float(adaptive_tau_scale), "reading": adaptive_reading,
            "components_scaled_per_epoch": callbacks[0].scaled},
        "dataset": dataset,
        "architecture": architecture,
        "width": width,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "weight_decay": weight_decay,
        "decay": decay,
        "schedule": schedule,
        "seed": seed,
        "train_images": int(len(y)),
        "poisoned_images": poisoned,
        "trainable_params": models.trainable_params(model),
        "train_seconds": round(seconds, 1),
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()},
    }
    return model, report


def save_infected(model, report, output, overwrite=False, command=None, attack=None):
    """Writes `output` (`.keras`) and its sidecar `output` with `.json`, both atomically.

    An attack whose trigger is a trained network (it has `save_generators`, e.g. InputAware)
    must be passed as `attack`: its generators are written beside the model as
    `{stem}.generators.weights.h5`, and the sidecar's `attack.generator_weights` names that file
    relative to the sidecar's folder.
    """
    saving.check_output(output, overwrite)
    report = {**report, "command": command or " ".join(shlex.quote(a) for a in sys.argv)}
    if attack is not None and hasattr(attack, "save_generators"):
        generators = os.path.splitext(output)[0] + ".generators.weights.h5"
        attack.save_generators(generators)
        report["attack"] = {**report["attack"], "generator_weights": os.path.basename(generators)}
    saving.save_model(model, output, overwrite=overwrite)
    saving.write_json(report, os.path.splitext(output)[0] + ".json")
    return report
