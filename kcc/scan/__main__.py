"""The data-free backdoor scan from the command line: `python -m kcc.scan --model=suspect.keras`.

A thin absl wrapper over `kcc.scan.scan`: the suspect is opened only through
`kcc.intake.load_image_classifier` (allowlist first, nothing in the file runs), the inverted
triggers are written as upscaled PNGs and one `.npz`, and the verdict is printed as one line
(or, with `--json`, one JSON object on stdout). The exit status is 0 whether or not a backdoor
is found, 2 when a flag or the input is refused.
"""

import json
import os
import sys

from absl import app
from absl import flags

from kcc import cli
from kcc import flag_groups

DEFAULT_MODEL = os.path.join("examples", "zoo", "badnets_all2one.keras")

_MODEL, _TRUST_SOURCE = flag_groups.suspect(DEFAULT_MODEL)
# ----------------------------------------------------------------------------- budget
_BUDGET = flag_groups.scan_budget()
_DISTRIBUTION = flag_groups.distribution(
    "the margin ascent, synthesis and trigger inversion (not the feature posteriors)")
# ----------------------------------------------------------------------------- output
_JSON = flags.DEFINE_bool(
    "json", False,
    "Print one JSON object on stdout (backdoored, target_classes, p_value, per_class, "
    "triggers, seconds, ...) and send the progress lines to stderr.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None,
    "Folder for the inverted triggers (PNG, upscaled 8x, and triggers.npz) and scan.json. "
    "Default: ./<model name>_scan.")

HELP = cli.Help(
    tool="kcc.scan",
    summary="Says whether an image classifier looks backdoored, which class is the target and "
            "what the trigger looks like, without any data: the maximum logit margin each "
            "class can reach (MM-BD), how much the other classes' dummy features lean towards it "
            "(FreeEagle) and the smallest trigger that sends other classes' images "
            "to it, reverse-engineered on images synthesised from the model's own BatchNorm "
            "statistics. A class that stands out in any is a suspected target (a trigger only "
            "if it also works on held-aside synthetic images).",
    examples=[
        "python -m kcc.scan --model=suspect.keras",
        "python -m kcc.scan --model=suspect.keras --flagfile=flags/scan_cpu.flags --json",
        "kcc-scan --model=suspect.keras --output_dir=scan_out",
    ],
    groups=[
        ("model", [_MODEL, _TRUST_SOURCE]),
        ("budget", [*_BUDGET.values(), _DISTRIBUTION]),
        ("output", [_JSON, _OUTPUT_DIR]),
    ],
    presets="scan_",
    notes="A p-value is the chance that a class of a clean model stands out this much; a class "
          "below 0.05 (after combining the signals) is reported as a suspected target. An "
          "all-to-all backdoor (every class sent to another) has no single target; it is "
          "reported as all-to-all when an untargeted patch moves most images out of their "
          "class, spread over the classes (a patch trigger; blended, warped and input-aware "
          "all-to-all triggers are not found so). Exit status: 0 whether or not a "
          "backdoor is found, 2 when a flag or the input was refused.",
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from kcc import intake
    from kcc import saving
    from kcc import scan as scan_lib

    model_path = _MODEL.value
    folder = _OUTPUT_DIR.value or (os.path.splitext(os.path.basename(model_path))[0] + "_scan")
    model = intake.load_image_classifier(model_path, trust_source=_TRUST_SOURCE.value)
    scan_lib.check_model(model)
    stdout = sys.stdout
    if _JSON.value:
        sys.stdout = sys.stderr  # progress goes to stderr; stdout carries the JSON only
    try:
        report = scan_lib.scan(model, distribution=_DISTRIBUTION.value,
                               **{k: v.value for k, v in _BUDGET.items()})
        paths = scan_lib.save_triggers(report, folder) if report.triggers else []
        result = {"model": model_path, "command": cli.command_line(),
                  **report.to_dict(paths)}
        saving.write_json(result, os.path.join(folder, "scan.json"))
    finally:
        sys.stdout = stdout
    if _JSON.value:
        print(json.dumps(result))
        return
    print()
    print(summary(report))
    if paths:
        print(f"Triggers: {len(paths) - 1} PNG images (the inverted triggers and the suspected "
              f"targets' max-margin images) and {paths[0]} in {folder}/ "
              f"(report: {os.path.join(folder, 'scan.json')})")
    for note in report.notes:
        print(f"Note: {note}")
    print(report.verdict())


def summary(report):
    """A per-class table: each signal's statistic and p-value, and the combined p-value."""
    names = report.settings["signals"]
    header = ["class", *[n.replace("_", " ") for n in names], "p"]
    rows = [header]
    for row in report.per_class:
        cells = [str(row["class"])]
        for name in names:
            cells.append(f"{row[name]:.3g} (p {row[name + '_p']:.2g})")
        cells.append(f"{row['p']:.2g}" + ("  <- suspected target"
                                          if row["class"] in report.target_classes else ""))
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    legend = ("max margin: the largest logit margin reached (MM-BD); feature posterior: the "
              "class's mean share of the other classes' runner-up posteriors on dummy features "
              "(FreeEagle); local/global/warp/smooth "
              "trigger: 1 / size of the smallest trigger found (mask pixels / L2 norm of the "
              "perturbation / mean displacement in pixels / L2 norm of the smooth perturbation). "
              "Larger = more suspicious. A trigger's p-value counts towards p only when the "
              "trigger sends at least half of the held-aside synthetic images to the class.")
    return "\n".join([*lines, legend, f"seconds: {report.seconds}"])


def run():
    """The `kcc-scan` console script: `main` under `kcc.cli.run`."""
    cli.run(main, HELP)


if __name__ == "__main__":
    run()
