"""Clean & Compact, Algorithm 1 of the paper, as one function: `purify`.

1. scaling + truncation (Eq. 1-8): `kcc.rewrite.compress`;
2. synthetic data from the compressed model's BatchNorm statistics (Eq. 9): `kcc.synthesis`;
3. BN-only adversarial distillation from the suspect model (Eq. 10): `kcc.distillation`.

The command line over it is `python -m kcc.purify` (`kcc/purify.py`); this module defines no
flags, so programs with flags of their own can import it.

Reference: Phan et al., "Clean and Compact: Efficient Data-Free Backdoor Defense with Model
Compactness", ECCV 2024, Algorithm 1.
"""

import math
import time

from absl import logging

from kcc import distillation
from kcc import metrics
from kcc import rewrite
from kcc import synthesis


def purify(
    model,
    cr=3.0,
    tau_scale=4.0,
    reading="text",
    rank_multiple=1,
    num_images=5120,
    synthesis_steps=500,
    synthesis_learning_rate=0.1,
    synthesis_batch_size=256,
    epochs=5,
    batch_size=128,
    learning_rate=3e-4,
    gamma=1.5,
    epsilon=0.5,
    pgd_steps=10,
    adversarial_cap=None,
    evaluation=None,
    seed=0,
    verbose=True,
):
    """Purifies and compresses a suspect classifier without data (Algorithm 1).

    Args:
        model: the suspect functional/Sequential classifier on [0, 1] images (not modified).
        cr: compression ratio of the parameters (> 1), or None for scaling without truncation.
        tau_scale: Eq. 5 threshold (paper: 4); `math.inf` disables scaling.
        reading: `"text"` or `"literal"` reading of Eq. 5 (`kcc.tucker.scale_factors`).
        rank_multiple: ranks rounded up to multiples of it (`kcc.rewrite.compress`; 1 = the
            paper's ranks).
        num_images, synthesis_steps, synthesis_learning_rate, synthesis_batch_size: Eq. 9
            (paper: 5120 images, 500 Adam steps, lr 0.1).
        epochs: distillation epochs (paper: 5); 0 skips synthesis and distillation
            (scaling-only mode, also for models without BatchNorm).
        batch_size, learning_rate, gamma: Eq. 10 with Adam (paper: 128, 3e-4, 1.5).
        epsilon, pgd_steps: L2 attack of Eq. 10 (paper: 0.5, 10).
        adversarial_cap: cap of Eq. 10's unbounded term (`kcc.distillation`), None = paper.
        evaluation: optional `(x, y, attack)` of the user's own labelled images (attack may be
            None) to report ACC/ASR/RA after every stage; never used for purification.
        seed: seeds synthesis and distillation.
        verbose: progress bars and stage lines.

    Returns:
        `(purified_model, report)`: a new model and a JSON-serialisable dict.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be non-negative. Received epochs={epochs}.")
    report = {"settings": {k: v for k, v in locals().items() if k not in ("model", "evaluation")}}
    report["settings"]["tau_scale"] = tau_scale if math.isfinite(tau_scale) else "inf"
    stages, evaluations = {}, {}

    def log(text):
        if verbose:
            print(text, flush=True)

    def evaluate(name, candidate):
        if evaluation is not None:
            x, y, attack = evaluation
            evaluations[name] = metrics.evaluate(candidate, x, y, attack)
            log(f"  {name}: " + ", ".join(f"{k.upper()} {100 * v:.2f}%" for k, v in
                                          evaluations[name].items() if k != "n_triggered"))

    evaluate("suspect", model)
    start = time.time()
    if cr is None:
        student, rewrite_report = rewrite.constrain(model, tau_scale, reading)
    else:
        if evaluation is not None:  # ASR after scaling alone, before truncation
            evaluate("scaled", rewrite.constrain(model, tau_scale, reading)[0])
        student, rewrite_report = rewrite.compress(model, cr, tau_scale, reading,
                                                   rank_multiple)
    stages["rewrite"] = time.time() - start
    log(f"[1/3] scaling{'' if cr is None else ' + truncation'}: "
        f"{rewrite_report.params_before:,} -> {rewrite_report.params_after:,} parameters "
        f"({stages['rewrite']:.1f} s)")
    logging.info("ranks kept per layer:\n%s", rewrite_report)  # --verbosity=0; in the report
    evaluate("compressed" if cr else "scaled", student)
    report["rewrite"] = rewrite_report.to_dict()

    if epochs > 0:
        start = time.time()
        log(f"[2/3] synthesising {num_images} images ({synthesis_steps} steps each)")
        images, labels, info = synthesis.synthesize(
            student, num_images, synthesis_steps, synthesis_learning_rate, synthesis_batch_size,
            seed, verbose=verbose,
        )
        stages["synthesis"] = time.time() - start
        report["synthesis"] = info
        start = time.time()
        log(f"[3/3] BN-only adversarial distillation, {epochs} epochs")
        callbacks = [distillation.StopOnDivergence()]
        if evaluation is not None:
            callbacks.append(distillation.BackdoorMonitor(student, *evaluation))
        history, refresh = distillation.distill(
            model, student, images, labels, epochs, batch_size, learning_rate, gamma, epsilon,
            pgd_steps, adversarial_cap, callbacks, seed, verbose=verbose,
        )
        stages["distillation"] = time.time() - start
        report["distillation"] = {
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
            "stopped_on_divergence_at_epoch": callbacks[0].stopped_epoch,
            "teacher_class_rates_on_adversarial": refresh.target_rates,
        }
        evaluate("purified", student)
    report["seconds"] = {k: round(v, 1) for k, v in stages.items()}
    report["seconds"]["total"] = round(sum(stages.values()), 1)
    if evaluations:
        report["evaluation"] = evaluations
    return student, report
