"""One command for the reproduction report: runs the benchmarks, then writes benchmarks/REPORT.md.

The steps run in this order (`--steps` picks some); each but the last is a resumable script run
as a subprocess with its own flags, so a rerun does only what is missing:

    zoo        benchmarks/train_zoo.py    trains the zoo models not trained yet (about an hour
                                          each on 2 CPU cores)
    tau_sweep  benchmarks/tau_sweep.py    scaling only against tau_scale (Figures 1 and 3)
    purify     benchmarks/purify_zoo.py   full C&C at every --crs; fine-tuning only at --table_cr
    defend     benchmarks/defend_zoo.py   the baselines of Tables 2 and 3
    tflite     tflite/benchmark.py        TFLite latency (not resumable, so skipped when its JSON
                                          exists, unless --rerun_tflite; wants a quiet machine)
    report     reproduce_report.py        REPORT.md and figures, from the JSONs only

    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=tensorflow python benchmarks/reproduce.py
    python benchmarks/reproduce.py --steps=report            # re-render from the JSONs
    KCC_DATA_DIR=../shared/datasets KERAS_BACKEND=tensorflow \\
        python benchmarks/reproduce.py --quick               # smoke run, benchmarks/work/quick/
    python benchmarks/reproduce.py --quick --dry_run         # print the commands, run nothing

`--quick` gives every step one model (badnets_all2one), cr 2 and tiny budgets, and sends all of
their outputs (results JSONs and tables, .tflite files, REPORT.md, figures) under `--quick_dir`,
which git ignores. Its zoo step only rewrites the zoo table there (no training), so the quick
run reads the committed zoo and writes nothing outside `--quick_dir` except ANP's mask cache in
benchmarks/work/defend_zoo/ (also ignored). Its numbers mean nothing; it shows that every
step runs. The tflite step always runs with KERAS_BACKEND=tensorflow (TFLite export needs it).
"""

import os
import shlex
import subprocess
import sys

from absl import app
from absl import flags

import reproduce_report  # benchmarks/reproduce_report.py, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = os.path.join(ROOT, "examples", "zoo")
RESULTS = os.path.join(ROOT, "benchmarks", "results")
TFLITE_OUTPUT = os.path.join(ROOT, "tflite", "results", "benchmark")
TFLITE_WORK = os.path.join(ROOT, "tflite", "work")
REPORT = os.path.join(ROOT, "benchmarks", "REPORT.md")
FIGURES = os.path.join(ROOT, "benchmarks", "report_figures")
DISCUSSION = os.path.join(ROOT, "benchmarks", "report_discussion.md")

STEPS = ("zoo", "tau_sweep", "purify", "defend", "tflite", "report")
DEFENSE_METHODS = ("anp2x", "clp2x", "clp", "anp", "ft", "fp", "nad", "ibau", "grad_prune")
SWEEP_MODELS = ("badnets_all2one", "blended_all2one", "inputaware_all2one", "wanet_all2one")

# --quick: one model, cr --table_cr, and budgets that keep every step to a minute or two on 2
# CPU cores (estimates); the numbers are meaningless.
QUICK_MODEL = "badnets_all2one"
QUICK_METHODS = ("anp2x", "clp2x", "clp", "anp", "ft")
QUICK_FLAGS = {
    "zoo": ["--table_only"],
    "tau_sweep": ["--taus=2", "--per_class=5", "--recal_per_class=2"],
    "purify": ["--per_class=5", "--num_images=128", "--synthesis_steps=5", "--epochs=1"],
    "defend": ["--iterations=5", "--epochs=1", "--fraction=0.004"],
    "tflite": ["--runs=20", "--warmup=3", "--threads=1", "--eval_images=100",
               "--int8_models=", "--nolitert_benchmark", "--profile=never"],
}

_STEPS = flags.DEFINE_list("steps", list(STEPS), f"Steps to run, from {list(STEPS)}; they "
                           "always run in that order.")
_QUICK = flags.DEFINE_bool("quick", False, "Smoke run: tiny budgets, every output under "
                           "--quick_dir.")
_QUICK_DIR = flags.DEFINE_string("quick_dir", os.path.join(ROOT, "benchmarks", "work", "quick"),
                                 "Where --quick writes everything.")
_ZOO_ENTRIES = flags.DEFINE_list("zoo_entries", None, "Zoo entries to train (train_zoo.py "
                                 "--only; default: all of them).")
_MODELS = flags.DEFINE_list("models", None, "Zoo entries for the purify and defend steps "
                            "(default: every backdoored model in the zoo when the step starts).")
_SWEEP_MODELS = flags.DEFINE_list("sweep_models", list(SWEEP_MODELS), "Zoo entries of the tau "
                                  "sweep (those not in the zoo are left out).")
_TAUS = flags.DEFINE_list("taus", None, "tau_sweep.py --taus (default: its own list).")
_CRS = flags.DEFINE_list("crs", ["2", "3", "4"], "Compression ratios of C&C (Table 2).")
_TABLE_CR = flags.DEFINE_float("table_cr", 2.0, "Compression ratio of C&C in Tables 3, 7, 8, "
                               "and of fine-tuning only.")
_TAU = flags.DEFINE_float("tau", 2.0, "tau_scale of full C&C: the setting the adaptive zoo "
                          "model was trained against (benchmarks/train_zoo.py); the paper's is 4.")
_READING = flags.DEFINE_enum("reading", "text", ["text", "literal"], "Reading of Eq. 5.")
_METHODS = flags.DEFINE_list("methods", list(DEFENSE_METHODS), "Baselines of the defend step.")
_RERUN_TFLITE = flags.DEFINE_bool("rerun_tflite", False, "Run tflite/benchmark.py even when its "
                                  "JSON exists (about 25 minutes on 2 quiet cores).")
_FIGURES = flags.DEFINE_bool("figures", True, "Draw Figures 1 and 3 (needs matplotlib: "
                             "pip install -e '.[report]').")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print every step's command; run nothing.")

# Flags that change what the report shows (the regenerating command repeats them).
_CONTENT_FLAGS = (_QUICK, _QUICK_DIR, _ZOO_ENTRIES, _MODELS, _SWEEP_MODELS, _TAUS, _CRS,
                  _TABLE_CR, _TAU, _READING, _METHODS, _FIGURES)


def output_paths(quick, quick_dir):
    """Where the steps write: the committed folders, or all under `quick_dir` for --quick.

    Returns:
        `{"results": folder of the benchmark JSONs, "tflite_output": prefix of the TFLite
        results, "tflite_work": folder of .tflite files, "report": REPORT.md path, "figures":
        folder of the PNG figures}`.
    """
    if not quick:
        return {"results": RESULTS, "tflite_output": TFLITE_OUTPUT, "tflite_work": TFLITE_WORK,
                "report": REPORT, "figures": FIGURES}
    return {"results": os.path.join(quick_dir, "results"),
            "tflite_output": os.path.join(quick_dir, "tflite", "benchmark"),
            "tflite_work": os.path.join(quick_dir, "tflite", "work"),
            "report": os.path.join(quick_dir, "REPORT.md"),
            "figures": os.path.join(quick_dir, "report_figures")}


def backdoored_entries(zoo_dir):
    """Zoo entries whose sidecar names an attack, in name order."""
    return [name for name, sidecar in reproduce_report.load_zoo(zoo_dir).items()
            if sidecar.get("attack")]


def _script(*parts):
    return [sys.executable, os.path.join(ROOT, *parts)]


def zoo_commands(paths, entries, quick):
    """train_zoo.py: trains the missing zoo models (`entries`, None = all); --quick only
    rewrites the zoo table under the quick folder."""
    command = _script("benchmarks", "train_zoo.py") + [f"--results_dir={paths['results']}"]
    if quick:
        return [command + QUICK_FLAGS["zoo"]]
    return [command + ([f"--only={','.join(entries)}"] if entries else [])]


def tau_sweep_commands(paths, models, taus, quick):
    """tau_sweep.py over `models` at `taus` (None: its default list; --quick: one tau)."""
    if not models:
        return []
    command = _script("benchmarks", "tau_sweep.py") + [
        f"--results_dir={paths['results']}", f"--models={','.join(models)}"]
    if quick:
        return [command + QUICK_FLAGS["tau_sweep"]]
    return [command + ([f"--taus={','.join(taus)}"] if taus else [])]


def purify_commands(paths, models, crs, table_cr, tau, reading, quick):
    """purify_zoo.py: full C&C at every cr, fine-tuning only (tau = inf) at `table_cr` only,
    and the adaptive-attack models (Table 7) at `table_cr` only.

    Args:
        paths: `output_paths`'s result.
        models: zoo entries.
        crs: compression ratios (strings, as purify_zoo's keys spell them).
        table_cr: compression ratio of Tables 3, 7 and 8.
        tau, reading: the full-C&C setting.
        quick: add --quick's budget.

    Returns:
        Lists of command-line arguments, at most three runs of purify_zoo.py.
    """
    adaptive = [m for m in models if m.startswith("adaptive_")]
    plain = [m for m in models if m not in adaptive]
    table = f"{table_cr:g}"
    others = [cr for cr in crs if float(cr) != table_cr]
    base = _script("benchmarks", "purify_zoo.py") + [
        f"--results_dir={paths['results']}", f"--tau={tau}", f"--reading={reading}",
        *(QUICK_FLAGS["purify"] if quick else [])]
    runs = [(plain, [table], "--ft_only"), (plain, others, "--noft_only"),
            (adaptive, [table], "--noft_only")]
    return [base + [f"--models={','.join(names)}", f"--crs={','.join(ratios)}", ft_only]
            for names, ratios, ft_only in runs if names and ratios]


def defend_commands(paths, models, methods, quick):
    """defend_zoo.py: `methods` on `models` (adaptive-attack models are left out)."""
    models = [m for m in models if not m.startswith("adaptive_")]
    if not models or not methods:
        return []
    return [_script("benchmarks", "defend_zoo.py") + [
        f"--results_dir={paths['results']}", f"--models={','.join(models)}",
        f"--methods={','.join(methods)}", *(QUICK_FLAGS["defend"] if quick else [])]]


def tflite_commands(paths, crs, quick):
    """tflite/benchmark.py with its committed flagfile (--quick: one model, tiny budget)."""
    command = _script("tflite", "benchmark.py") + [
        f"--output={paths['tflite_output']}", f"--work_dir={paths['tflite_work']}"]
    if quick:
        return [command + [f"--models={QUICK_MODEL}", f"--crs={','.join(crs)}",
                           *QUICK_FLAGS["tflite"]]]
    flagfile = os.path.join(ROOT, "tflite", "benchmark.flags")
    return [command[:2] + [f"--flagfile={flagfile}"] + command[2:]]


def step_commands(step, paths):
    """The commands of one step, from the flags and the zoo as it is when the step starts."""
    quick = _QUICK.value
    present = backdoored_entries(ZOO)
    models = [QUICK_MODEL] if quick else (_MODELS.value or present)
    crs = [f"{_TABLE_CR.value:g}"] if quick else _CRS.value
    if step == "zoo":
        return zoo_commands(paths, _ZOO_ENTRIES.value, quick)
    if step == "tau_sweep":
        sweep = [QUICK_MODEL] if quick else [m for m in _SWEEP_MODELS.value if m in present]
        return tau_sweep_commands(paths, sweep, _TAUS.value, quick)
    if step == "purify":
        return purify_commands(paths, models, crs, _TABLE_CR.value, _TAU.value, _READING.value,
                               quick)
    if step == "defend":
        return defend_commands(paths, models, list(QUICK_METHODS) if quick else _METHODS.value,
                               quick)
    if os.path.exists(paths["tflite_output"] + ".json") and not _RERUN_TFLITE.value:
        print(f"== tflite: {_shown(paths['tflite_output'])}.json exists, kept (--rerun_tflite "
              "runs it again)", flush=True)
        return []
    return tflite_commands(paths, crs, quick)


def _shown(path):
    """`path` relative to the repository when inside it."""
    path = os.path.abspath(path)
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def _quote(command):
    """A command as shown to people: `python` for this interpreter, repository paths relative."""
    shown = ["python" if a == sys.executable else a.replace(ROOT + os.sep, "") for a in command]
    return " ".join(shlex.quote(a) for a in shown)


def run_step(step, command):
    """Runs one command from the repository root; stops reproduce.py if it fails."""
    print(f"== {step}: {_quote(command)}", flush=True)
    if _DRY_RUN.value:
        return
    env = dict(os.environ)
    if step == "tflite":
        env["KERAS_BACKEND"] = "tensorflow"
    status = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
    if status != 0:
        raise SystemExit(f"reproduce.py: step {step} failed with exit status {status}: "
                         f"{_quote(command)}")


def commands_for_report():
    """The command lines the report names: regenerate all, re-render only, and this run."""
    parts = ["KCC_DATA_DIR=../shared/datasets", "KERAS_BACKEND=tensorflow", "python",
             "benchmarks/reproduce.py"]
    for holder in _CONTENT_FLAGS:
        if holder.value != holder.default:
            parts.append(shlex.quote(flags.FLAGS[holder.name].serialize()))
    regenerate = " ".join(parts)
    render = " ".join(["python"] + parts[3:] + ["--steps=report"])
    made_by = " ".join(["python", _shown(sys.argv[0])] + [shlex.quote(a) for a in sys.argv[1:]])
    return {"regenerate": regenerate, "render": render, "made_by": made_by}


def write_report(paths):
    """Renders the report and figures from the JSONs under `paths` and the zoo sidecars."""
    sources = reproduce_report.Sources(
        root=ROOT, zoo_dir=ZOO, results_dir=paths["results"],
        tflite_json=paths["tflite_output"] + ".json", discussion=DISCUSSION,
        output=paths["report"], figures_dir=paths["figures"])
    choice = reproduce_report.Choice(
        tau=_TAU.value, reading=_READING.value,
        crs=tuple(float(c) for c in ([f"{_TABLE_CR.value:g}"] if _QUICK.value else _CRS.value)),
        table_cr=_TABLE_CR.value)
    print(f"== report: {_shown(sources.output)} from {_shown(sources.results_dir)}/, "
          f"{_shown(sources.tflite_json)} and {_shown(ZOO)}/", flush=True)
    if _DRY_RUN.value:
        return
    reproduce_report.write_report(sources, choice, commands_for_report(), figures=_FIGURES.value)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    unknown = sorted(set(_STEPS.value) - set(STEPS))
    if unknown:
        raise app.UsageError(f"Unknown steps {unknown}; known: {list(STEPS)}.")
    paths = output_paths(_QUICK.value, _QUICK_DIR.value)
    for step in STEPS:
        if step not in _STEPS.value:
            continue
        if step == "report":
            write_report(paths)
            continue
        for command in step_commands(step, paths):
            run_step(step, command)


if __name__ == "__main__":
    app.run(main)
