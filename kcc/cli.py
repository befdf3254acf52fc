"""What every kcc command line shares: quiet logs, a grouped `--help`, one-line errors.

A kcc tool is a module that defines absl flags, a `main(argv)` and

    HELP = cli.Help("kcc.purify", "Removes a backdoor ...", examples=[...],
                    groups=[("model", [_MODEL, _TRUST_SOURCE]), ...], presets="purify_")

    def run():
        cli.run(main, HELP)

`run` is the tool's console script (`kcc-purify = "kcc.purify:run"` in pyproject.toml) and what
`python -m kcc.purify` calls. Under it:

* Flags are parsed (and checked by their validators) before `main` runs, so a bad value is
  refused before any model is loaded.
* `--help` (`-h`, `-?`, `--helpshort`) prints the tool's flags by group, in words, with the
  presets of `flags/` that fit the tool, and exits 0. `--helpfull` is absl's list of every flag.
* Logs show warnings and errors only. TensorFlow's Python warnings (tf.function retracing) and
  INFO lines such as JAX's "Unable to initialize backend 'tpu'" are hidden unless the user
  passes absl's `--verbosity` (`0` for INFO, `1` for debug, which also shows the traceback of an
  error). Each distinct Python warning is shown once. (`import kcc` already hid TensorFlow's C++
  INFO lines, see `kcc/__init__.py`.)
* A bad flag, a `ValueError`, `FileNotFoundError`, `FileExistsError` or `app.UsageError` from
  `main` is printed as one line, `kcc.purify: error: <message>`, on stderr, and the exit
  status is 2.
"""

import dataclasses
import glob
import logging as std_logging
import os
import shlex
import sys
import textwrap
import warnings

from absl import app
from absl import flags
from absl import logging

#: Exit status of a refused command line or input.
USAGE_ERROR = 2

_FLAGS = flags.FLAGS
_WIDTH = 100
_PLACEHOLDERS = {"int": "N", "float": "X"}

_GENERAL = """\
general:
  --flagfile=FILE
      Read flags from FILE, one per line ('#' starts a comment); later flags override
      earlier ones, so a preset can be adjusted on the same command line.
  --verbosity=N
      Show more: 0 adds INFO logs (TensorFlow, JAX, kcc's details), 1 adds debug logs and
      the traceback of an error. Default: warnings and errors only.
  --helpfull
      Every flag, absl's own included."""


@dataclasses.dataclass
class Help:
    """The `--help` text of one tool.

    Args:
        tool: the module name, e.g. `"kcc.purify"`; errors are prefixed with it.
        summary: what the tool does, in a few sentences.
        examples: command lines, shown as given.
        groups: `(title, [FlagHolder, ...])` in display order; every flag the tool defines
            should be in one.
        presets: file-name prefix of the `flags/*.flags` files that fit the tool (listed with
            the first comment line of each), or None.
        notes: a closing paragraph (definitions, exit status), or "".
    """

    tool: str
    summary: str
    examples: list
    groups: list
    presets: str | None = None
    notes: str = ""

    def text(self):
        """The help as printed: summary, examples, flag groups, presets, general flags, notes."""
        lines = [_wrap(self.summary, ""), "", "usage:"]
        lines += [f"  {example}" for example in self.examples]
        for title, holders in self.groups:
            lines += ["", f"{title}:"]
            for holder in holders:
                lines += _describe(_FLAGS[holder.name])
        found = presets(self.presets) if self.presets else []
        if found:
            lines += ["", "presets (pass with --flagfile=FILE):"]
            lines += [f"  {path}\n{_wrap(about, '      ')}" for path, about in found]
        lines += ["", _GENERAL]
        if self.notes:
            lines += ["", _wrap(self.notes, "")]
        return "\n".join(lines)


def run(main, help_):
    """Runs `main` as the command-line tool `help_.tool` (see the module docstring).

    Args:
        main: `main(argv) -> exit status or None`; `argv` holds the program name and the
            positional arguments.
        help_: the tool's `Help`.
    """
    _install_help(help_)
    app.run(lambda argv: call_main(main, help_.tool, argv),
            flags_parser=lambda argv: parse_flags(help_.tool, argv))


def parse_flags(tool, argv):
    """Parses `argv` into absl's flags; a refused flag ends the program as `fail` does.

    Returns:
        the program name and the positional arguments.
    """
    try:
        return _FLAGS(argv)
    except flags.Error as e:
        fail(tool, e)


def call_main(main, tool, argv):
    """Runs `main(argv)` with quiet logs; a refused input ends the program as `fail` does.

    Returns:
        what `main` returns (the exit status, or None for 0).
    """
    quiet_logs()
    try:
        return main(argv)
    except (ValueError, FileNotFoundError, FileExistsError, app.UsageError) as e:
        if logging.get_verbosity() >= logging.DEBUG:
            raise
        fail(tool, e)


def fail(tool, message):
    """Prints `<tool>: error: <message>` on stderr and exits with status 2."""
    print(f"{tool}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(USAGE_ERROR)


def command_line():
    """The command as the user typed it, for reports.

    `python -m kcc.purify --cr=3` stays that, rather than the path of `purify.py`; a console
    script appears by its name (`kcc-purify --cr=3`).
    """
    main = sys.modules.get("__main__")
    if getattr(main, "__spec__", None) is not None:  # python -m package.module
        return shlex.join(sys.orig_argv)
    if not sys.argv[0].endswith(".py"):  # a console script
        return shlex.join([os.path.basename(sys.argv[0]), *sys.argv[1:]])
    return shlex.join(sys.orig_argv)


def presets(prefix):
    """The `flags/<prefix>*.flags` presets: `[(path, first comment line)]`.

    Looks in `./flags` and in the `flags/` folder of the source tree kcc runs from (an
    editable install); paths under the current folder are shown relative to it.
    """
    roots = [os.path.join(os.getcwd(), "flags"),
             os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flags")]
    found = {}
    for root in roots:
        for path in sorted(glob.glob(os.path.join(root, f"{prefix}*.flags"))):
            real = os.path.realpath(path)
            if real not in found:
                found[real] = (_display_path(path), _first_comment(path))
    return list(found.values())


def quiet_logs():
    """Warnings and errors only, each once, unless `--verbosity` was given."""
    if not sys.warnoptions:  # the user's -W / PYTHONWARNINGS win
        warnings.simplefilter("once", append=True)
    tensorflow = std_logging.getLogger("tensorflow")
    if tensorflow.handlers:  # TensorFlow's own handler, added before absl's: print once, not twice
        tensorflow.propagate = False
    if not _FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
        tensorflow.setLevel(std_logging.ERROR)


class _HelpFlag(flags.BooleanFlag):
    """`--help`: prints `Help.text()` on stdout and exits 0 (absl's own exits 1)."""

    def __init__(self, name, short_name, help_):
        super().__init__(name, False, "show this help", short_name=short_name,
                         allow_hide_cpp=True)
        self.help_ = help_

    def parse(self, argument):
        if self._parse(argument):
            print(self.help_.text(), flush=True)
            sys.exit(0)


def _install_help(help_):
    app.define_help_flags()
    for name in ("help", "?", "helpshort"):
        if name in _FLAGS:
            delattr(_FLAGS, name)
    flags.DEFINE_flag(_HelpFlag("help", "?", help_))
    flags.DEFINE_flag(_HelpFlag("helpshort", "h", help_))


def _describe(flag):
    kind = flag.flag_type()
    if kind == "bool":
        head = f"  --[no]{flag.name}"
        default = "true" if flag.default else "false"
    else:
        if "enum" in kind:
            value = "{" + ",".join(flag.parser.enum_values) + "}"
        elif "list" in kind:
            value = "A,B,..."
        else:
            value = _PLACEHOLDERS.get(kind, flag.name.upper())
        head = f"  --{flag.name}={value}"
        default = "none" if flag.default is None else flag.default_as_str.strip("'\"")
        if isinstance(flag.default, float):
            default = f"{flag.default:g}"
    text = flag.help
    if "enum" in kind:  # absl starts an enum's help with its choices, already in the head
        text = text.split(": ", 1)[-1]
    return [f"{head}  (default: {default or 'none'})", _wrap(text, "      ")]


def _wrap(text, indent):
    return textwrap.fill(" ".join(text.split()), _WIDTH, initial_indent=indent,
                         subsequent_indent=indent)


def _display_path(path):
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else path


def _first_comment(path):
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                return line.lstrip("#").strip()
    return ""
