"""Inspects an untrusted model file without loading it.

    python -m kcc.inspect suspect.keras [--json] [--trust_source]

Prints the architecture summary (model class, layers by class, trainable parameters, whether
BatchNorm is present, the convolutions kcc can decompose) and every finding, one line each.
Exits with status 1 when the file is refused, 0 when it may be loaded. Nothing in the file is
imported or run, and no weights array is read; see `kcc.intake` for the checks.
"""

import json
import sys

from absl import app
from absl import flags

from kcc import cli
from kcc import intake

_JSON = flags.DEFINE_bool("json", False, "Print the report as one JSON object instead of lines.")
_TRUST_SOURCE = flags.DEFINE_bool(
    "trust_source", False,
    "You vouch for the file: allowlist violations become warnings (loading it with kcc then "
    "uses safe_mode=False). Container, size and weights checks still apply.",
)

HELP = cli.Help(
    tool="kcc.inspect",
    summary="Checks whether a model file you do not trust is safe to load, without loading it: "
            "the archive, the classes its config names (an allowlist) and the weights' sizes "
            "and shapes. Prints the architecture and every finding.",
    examples=["python -m kcc.inspect suspect.keras", "kcc-inspect suspect.keras --json"],
    groups=[("report", [_JSON, _TRUST_SOURCE])],
    notes="Exit status: 0 when the file may be loaded, 1 when it is refused, 2 for a bad "
          "command line.",
)


def main(argv):
    if len(argv) != 2:
        raise app.UsageError(
            f"Expected exactly one model path. Received {len(argv) - 1} argument(s): "
            f"{argv[1:]!r}."
        )
    report = intake.inspect(argv[1], trust_source=_TRUST_SOURCE.value)
    if _JSON.value:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print("\n".join(intake.summary_lines(report)))
    sys.stdout.flush()
    return 0 if report.ok else 1


def run():
    """The `kcc-inspect` console script: `main` under `kcc.cli.run`."""
    cli.run(main, HELP)


if __name__ == "__main__":
    run()
