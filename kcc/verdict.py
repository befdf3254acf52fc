"""Did the backdoor go away? One verdict and one before/after table for every kcc defense.

The rates are those of `kcc.metrics`, measured on labelled images the defense never saw:

* ACC (clean accuracy): share of clean images classified correctly.
* ASR (attack success rate): share of triggered images classified as the attacker's target
  (for an all-to-one attack, images of the target class are left out).
* RA (robust accuracy): share of the same triggered images classified as their true class.

The verdict reads ASR only; what the defense cost in ACC is stated beside it, not judged:

* **removed**: ASR after is at most `REMOVED_ASR` (10%). A model without a backdoor gives an
  all-to-one ASR near 0% (it rarely sends another class's image to the target) and an
  all-to-all ASR near 1 / classes.
* **reduced**: ASR fell by at least `REDUCED_DROP` (10 points) but is still above 10%; the
  backdoor still works on a share of the triggered images, so it is reported as NOT removed.
* **not removed**: ASR fell by less than 10 points; if it rose, the sentence says so in capitals.
* **not seen**: the suspect's own ASR was already at most 10%, so the trigger tested does not
  work on it: a clean model, or the wrong `--attack` / `--target`.
* **unknown**: no labelled images were given, or no trigger to test them with.
"""

import dataclasses

#: ASR at or below which the backdoor counts as removed.
REMOVED_ASR = 0.10
#: Fall of ASR (in absolute terms, 0.10 = 10 points) from which it counts as reduced.
REDUCED_DROP = 0.10

NO_DATA = "no evaluation data given: run `kcc.scan` or pass `--eval_data`"
NO_ATTACK = ("no trigger to test the evaluation images with (the model has no .json sidecar "
             "naming its attack): pass `--attack` (and `--target`, `--mode`) or run `kcc.scan`")

LEGEND = ("ACC: clean images classified correctly. ASR (attack success rate): triggered images "
          "classified as the attacker's target (target-class images left out). RA (robust "
          "accuracy): triggered images classified as their true class.")


@dataclasses.dataclass
class Verdict:
    """What happened to the backdoor.

    Attributes:
        backdoor: `"removed"`, `"reduced"`, `"not_removed"`, `"not_seen"` or `"unknown"`.
        sentence: the verdict in words, with the numbers it rests on.
        asr_before, asr_after, acc_before, acc_after: the rates (fractions), None if unknown.
    """

    backdoor: str
    sentence: str
    asr_before: float | None = None
    asr_after: float | None = None
    acc_before: float | None = None
    acc_after: float | None = None

    def to_dict(self):
        """A JSON-serialisable dict, with the thresholds the verdict used."""
        return {**dataclasses.asdict(self),
                "thresholds": {"removed_asr": REMOVED_ASR, "reduced_drop": REDUCED_DROP}}


def judge(before, after):
    """The verdict on a defense from the rates before and after it.

    Args:
        before, after: dicts of `kcc.metrics.evaluate` (`acc`, and `asr`, `ra` when an attack
            was tested), or None when there were no evaluation images.

    Returns:
        a `Verdict`.
    """
    if before is None or after is None:
        return Verdict("unknown", f"Backdoor unknown: {NO_DATA}.")
    acc = (f"ACC {_pct(before['acc'])} -> {_pct(after['acc'])} "
           f"({_points(before['acc'] - after['acc'])})")
    if "asr" not in before or "asr" not in after:
        return Verdict("unknown", f"Backdoor unknown: {NO_ATTACK}; {acc}.",
                       acc_before=before["acc"], acc_after=after["acc"])
    b, a = before["asr"], after["asr"]
    asr = f"ASR {_pct(b)} -> {_pct(a)}"
    if b <= REMOVED_ASR:
        label, words = "not_seen", (
            f"No backdoor seen with this trigger: {asr} (the suspect's ASR was already "
            f"{100 * REMOVED_ASR:g}% or less; a clean model, or check --attack and --target)")
    elif a <= REMOVED_ASR:
        label, words = "removed", f"Backdoor removed for the trigger tested: {asr}"
    elif a <= b - REDUCED_DROP:
        label, words = "reduced", (f"Backdoor reduced but NOT removed: {asr} "
                                   f"(removed means {100 * REMOVED_ASR:g}% or less)")
    elif a > b:
        label, words = "not_removed", f"Backdoor NOT removed, and ASR ROSE: {asr}"
    else:
        label, words = "not_removed", f"Backdoor NOT removed: {asr}"
    return Verdict(label, f"{words}; {acc}.", b, a, before["acc"], after["acc"])


def table(before, after, params, flops, seconds, columns=("suspect", "purified")):
    """The before/after table every defense ends with.

    Args:
        before, after: dicts of `kcc.metrics.evaluate`, or None (rows ACC/ASR/RA then say "-").
        params, flops: `(before, after)` counts.
        seconds: wall time of the defense.
        columns: the names of the two models.

    Returns:
        the table as text, one row per line: ACC, ASR, RA, parameters, FLOPs, seconds.
    """
    rows = [("", *columns)]
    for key in ("acc", "asr", "ra"):
        rows.append((key.upper(), *(_pct(m[key]) if m and key in m else "-"
                                    for m in (before, after))))
    rows.append(("parameters", f"{params[0]:,}", f"{params[1]:,}", _fewer(params)))
    rows.append(("FLOPs", f"{flops[0]:,}", f"{flops[1]:,}", _fewer(flops)))
    rows.append(("seconds", "-", f"{seconds:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join([row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:3], widths[1:])),
                   *row[3:]]).rstrip()
        for row in rows
    )


def summary(before, after, params, flops, seconds, columns=("suspect", "purified"), images=None):
    """The closing lines of a defense: the table, the legend and the verdict.

    Args:
        before, after, params, flops, seconds, columns: as for `table`.
        images: how many labelled images the rates were measured on, or None.

    Returns:
        `(text, verdict)`: the lines to print last and the `Verdict` (for the JSON report).
    """
    judged = judge(before, after)
    lines = [table(before, after, params, flops, seconds, columns), judged.sentence]
    if images is not None:
        triggered = (after or {}).get("n_triggered")
        also = f" ({triggered:,} of them with the trigger)" if triggered is not None else ""
        lines[:0] = [f"Measured on {images:,} labelled images{also}:"]
        lines[-1:-1] = [LEGEND]
    return "\n".join(lines), judged


def _pct(rate):
    return f"{100 * rate:.2f}%"


def _points(loss):
    return f"{100 * abs(loss):.2f} points {'lost' if loss >= 0 else 'gained'}"


def _fewer(pair):
    return f"{pair[0] / pair[1]:.2f}x fewer" if pair[1] else ""


def final_stage(evaluation):
    """The stage of a recipe's `evaluation` that the closing table and the verdict compare with
    the suspect: the last one measured on the model written ("purified", or "compressed" with
    no distillation). Stages named "purified, ..." measure copies of it after what a user might
    do next (BatchNorm re-estimation, a short fine-tune) and are reported beside it."""
    written = [k for k in evaluation if not k.startswith("purified, ")]
    return written[-1] if written else "purified"
