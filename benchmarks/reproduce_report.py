"""Renders benchmarks/REPORT.md and its figures from the benchmark results, beside the paper.

Reads files only, never a model: the zoo sidecars (`examples/zoo/<name>.json`, written by
`benchmarks/train_zoo.py`), `tau_sweep.json`, `purify_zoo.json` and `defend_zoo.json` in a
results folder, and the `benchmark.json` of `tflite/benchmark.py`. The paper's numbers come from
`paper_numbers.py`. A kcc cell holds a value read from those files or "not run"; a paper cell
holds a transcribed value or "not in paper". The sentences under each table are computed from
the same numbers; the human discussion is copied from `report_discussion.md` into a marked
slot. `benchmarks/reproduce.py` calls `write_report`; tests call `render` on small fixtures.

Units: the JSONs store ACC, ASR and RA as fractions; the report shows percentages with two
decimals, "points" are differences of percentages, latencies are milliseconds and parameters
are trainable weights.
"""

import dataclasses
import glob
import io
import json
import math
import os
import statistics

from kcc import saving

import paper_numbers as paper  # benchmarks/paper_numbers.py, beside this module

NOT_RUN = "not run"
NOT_IN_PAPER = "not in paper"

# The paper's rows and kcc's zoo entries for them (names of benchmarks/train_zoo.py).
CIFAR10_ENTRIES = {
    "BadNet": "badnets_all2one", "Blended": "blended_all2one",
    "InputAware": "inputaware_all2one", "WaNet": "wanet_all2one",
    "Trojan": "trojan_all2one", "CLA": "cla_all2one",
    "BadNet A2A": "badnets_all2all", "Blended A2A": "blended_all2all",
    "InputAware A2A": "inputaware_all2all", "WaNet A2A": "wanet_all2all",
}
GTSRB_ENTRIES = {
    "BadNet": "gtsrb_badnets_all2one", "BadNet A2A": "gtsrb_badnets_all2all",
    "InputAware": "gtsrb_inputaware_all2one", "InputAware A2A": "gtsrb_inputaware_all2all",
}
ADAPTIVE_ENTRIES = {
    "BadNet": "adaptive_badnets_all2one", "Blended": "adaptive_blended_all2one",
    "InputAware": "adaptive_inputaware_all2one", "WaNet": "adaptive_wanet_all2one",
}

# Table 3's defenses, the paper's and kcc's extra baselines: (label, how kcc ran it, the
# paper's column or None). "none" = no defense, "cc" = C&C, anything else a defend_zoo method.
TABLE_3_DEFENSES = (
    ("No defense", "none", "No Defense"),
    ("FT", "ft", None),
    ("FP", "fp", None),
    ("NAD", "nad", "NAD"),
    ("I-BAU", "ibau", "I-BAU"),
    ("ANP", "anp", "ANP"),
    ("CLP", "clp", "CLP"),
    ("Grad. unlearning pruning", "grad_prune", None),
    ("C&C", "cc", "C&C (Ours)"),
    ("kcc recipe", "kcc", None),
)
#: Table 3's rows that are defend_zoo baselines (not no defense, C&C or kcc's recipe).
BASELINES = tuple(how for _, how, _ in TABLE_3_DEFENSES if how not in ("none", "cc", "kcc"))

# Issue 5's bar for full C&C at cr 2 on every all-to-one zoo model.
BAR_CR = 2.0
BAR_ACC_DROP = 4.0  # points below the suspect model's ACC
BAR_ASR = 10.0  # percent, per model
BAR_MEAN_ASR = 5.0  # percent, mean over the all-to-one models
ADAPTIVE_ASR_CLAIM = 5.0  # percent: the paper's "less than 5% ASR" under the adaptive attack
SWEEP_ASR = 10.0  # percent: the sweep sentences name the first tau that brings ASR this low
# The recipe issue's bars for kcc's recipe at cr 2 (points of ACC below the suspect; ASR %).
RECIPE_ACC_DROP = 3.0
RECIPE_CLEAN_DROP = 2.0
RECIPE_ASR = 5.0
RECIPE_LOOSE_ASR = 10.0  # all-to-all and adaptive models, and any model after BN re-estimation

DISCUSSION_KEYS = ("Table 2", "Table 3", "Table 7", "Table 8", "Figures 1 and 3", "GTSRB")


@dataclasses.dataclass(frozen=True)
class Sources:
    """Where the report reads and writes (absolute paths).

    Attributes:
        root: the repository; paths in the report are written relative to it.
        zoo_dir: folder of the zoo sidecars (`<entry>.json`).
        results_dir: folder of `tau_sweep.json`, `purify_zoo.json` and `defend_zoo.json`.
        tflite_json: the TFLite harness's results (`tflite/results/benchmark.json`).
        discussion: the hand-written markdown copied into the discussion slots.
        output: the report (`benchmarks/REPORT.md`).
        figures_dir: folder of the PNG figures.
    """

    root: str
    zoo_dir: str
    results_dir: str
    tflite_json: str
    discussion: str
    output: str
    figures_dir: str


@dataclasses.dataclass(frozen=True)
class Choice:
    """Which runs the tables show where a JSON holds several.

    Attributes:
        tau: tau_scale of full C&C (purify_zoo's `--tau`); fine-tuning only is tau = inf.
        reading: reading of Eq. 5 (`"text"` or `"literal"`).
        adversarial_cap: cap of Eq. 10's adversarial term (None = the paper's, uncapped).
        distillation_bn_momentum: Keras BN momentum during distillation (0.9 = PyTorch's 0.1,
            kcc's since session 3; rows made with Keras' 0.99 are not shown by default).
        crs: compression ratios of Table 2's C&C and kcc recipe columns.
        table_cr: compression ratio of C&C and kcc's recipe in Tables 3, 7, 8 and in the GTSRB
            table.
        recipe_revision: the revision of kcc's recipe shown (`REVISION` of
            `benchmarks/recipe_zoo.py`); None: the newest in recipe_zoo.json. Rows of other
            revisions are not shown, so every kcc recipe cell is the same recipe.
    """

    tau: float = 2.0
    reading: str = "text"
    adversarial_cap: float = None
    distillation_bn_momentum: float = 0.9
    crs: tuple = (2.0, 3.0, 4.0)
    table_cr: float = 2.0
    recipe_revision: int = None


# ----------------------------------------------------------------------------- reading


def _read_json(path):
    """The parsed file, or None if it does not exist."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def load_zoo(zoo_dir):
    """`{entry: sidecar}` for every zoo model with a sidecar (a `.json` naming its dataset)."""
    zoo = {}
    for path in sorted(glob.glob(os.path.join(zoo_dir, "*.json"))):
        sidecar = _read_json(path)
        if isinstance(sidecar, dict) and "dataset" in sidecar:
            zoo[os.path.basename(path)[:-len(".json")]] = sidecar
    return zoo


def load(sources):
    """Every input of the report; a results file not written yet reads as None."""
    results = sources.results_dir
    return {
        "zoo": load_zoo(sources.zoo_dir),
        "tau_sweep": _read_json(os.path.join(results, "tau_sweep.json")),
        "purify": _read_json(os.path.join(results, "purify_zoo.json")),
        "defend": _read_json(os.path.join(results, "defend_zoo.json")),
        "recipe": _read_json(os.path.join(results, "recipe_zoo.json")),
        "tflite": _read_json(sources.tflite_json),
    }


def cc_row(purify, model, cr, kind, choice):
    """The purify_zoo.json row of `model` at `cr`, or None.

    Args:
        purify: the parsed purify_zoo.json (or None).
        model: zoo entry.
        cr: compression ratio.
        kind: `"cc"` (full C&C at `choice.tau`) or `"ft_only"` (tau_scale = inf).
        choice: a `Choice` (tau, reading, adversarial cap).

    Returns:
        The last matching row (rows carry `model`, `cr`, `run`, `tau_scale` and `budget`).
    """
    if not purify:
        return None
    found = None
    for row in purify["rows"].values():
        if (row["model"] == model and float(row["cr"]) == float(cr) and row["run"] == kind
                and _chosen(row, choice)):
            found = row
    return found


def _chosen(row, choice):
    """Whether a purify_zoo row was made with the setting `choice` shows."""
    budget = row["budget"]
    return (row["tau_scale"] == (choice.tau if row["run"] == "cc" else "inf")
            and budget["reading"] == choice.reading
            and budget.get("adversarial_cap") == choice.adversarial_cap
            and budget.get("distillation_bn_momentum") == choice.distillation_bn_momentum)


def recipe_revision(recipe, choice):
    """The revision of kcc's recipe the report shows (`Choice.recipe_revision` or the newest
    in recipe_zoo.json; rows written before revisions were recorded are revision 1)."""
    if choice.recipe_revision is not None or not recipe:
        return choice.recipe_revision
    return max(row["budget"].get("revision", 1) for row in recipe.values())


#: The oldest revision whose row is shown while a model has no row of the shown revision, for a
#: model the scan flagged and for one it did not (revision 9 changed only what happens when no
#: class is flagged, `benchmarks/recipe_zoo.py`); the provenance line names each row's revision.
RECIPE_FLAGGED_SINCE = 8
RECIPE_UNFLAGGED_SINCE = 9


#: The synthesis steps of the recipe rows the report shows (the CPU budget's); rows made at
#: another budget are in recipe_zoo.md only.
RECIPE_SYNTHESIS_STEPS = 100


def _shows(row, revision):
    if row["budget"].get("synthesis_steps", RECIPE_SYNTHESIS_STEPS) != RECIPE_SYNTHESIS_STEPS:
        return False
    made = row["budget"].get("revision", 1)
    flagged = row.get("scan", "").startswith("BACKDOORED")
    since = RECIPE_FLAGGED_SINCE if flagged else RECIPE_UNFLAGGED_SINCE
    return made == revision or since <= made < revision


def kcc_row(recipe, model, cr, choice):
    """The recipe_zoo.json row of `model` at `cr` for the shown revision (the newest revision
    that stands for it, `RECIPE_FLAGGED_SINCE`; the last such row), or None."""
    revision = recipe_revision(recipe, choice)
    rows = [row for row in (recipe or {}).values()
            if row["model"] == model and float(row["cr"]) == float(cr) and _shows(row, revision)]
    return sorted(rows, key=lambda r: r["budget"].get("revision", 1))[-1] if rows else None


def _compression_row(data, choice, model, how, cr):
    """The row of full C&C (`how` "cc", purify_zoo.json) or of kcc's recipe ("kcc",
    recipe_zoo.json) on `model` at `cr`, or None."""
    if how == "cc":
        return cc_row(data["purify"], model, cr, "cc", choice)
    return kcc_row(data["recipe"], model, cr, choice)


def defense_rows(defend, model, method):
    """defend_zoo.json rows of one model and method, in the order they were run."""
    if not defend:
        return []
    return [r for r in defend["rows"].values() if r["model"] == model and r["method"] == method]


def tflite_row(tflite, model, cr):
    """The float32 row of `model`'s original (`cr` None) or compressed variant in the TFLite
    results, or None; runs made before rank_multiple was removed name cr 2 `cr2_m1`."""
    if not tflite:
        return None
    rows = tflite["models"].get(model, {}).get("rows", {})
    names = ["original"] if cr is None else [f"cr{cr:g}", f"cr{cr:g}_m1"]
    for name in names:
        if f"{name}/float" in rows:
            return rows[f"{name}/float"]
    return None


def outcome(data, choice, model, how, cr=None):
    """`(before, after)` evaluations of one defense on one zoo model, or None if not run.

    Args:
        data: `load`'s result.
        choice: a `Choice`.
        model: zoo entry.
        how: `"none"` (the zoo sidecar), `"cc"` / `"scaled"` / `"compressed"` (stages of full
            C&C), `"ft_only"`, `"kcc"` (kcc's recipe, recipe_zoo.json) or a defend_zoo method.
        cr: compression ratio of the C&C kinds (default `choice.table_cr`).

    Returns:
        Two dicts of fractions (`acc`, `asr`, `ra`): the suspect model and the defended one,
        measured on the same images (the full test split for the sidecar and defend_zoo, a
        class-balanced slice for purify_zoo).
    """
    if how == "none":
        sidecar = data["zoo"].get(model)
        return (sidecar, sidecar) if sidecar else None
    if how in ("cc", "scaled", "compressed", "ft_only"):
        kind = "ft_only" if how == "ft_only" else "cc"
        row = cc_row(data["purify"], model, cr or choice.table_cr, kind, choice)
        stage = how if how in ("scaled", "compressed") else "purified"
        if row is None or stage not in row["evaluation"]:
            return None
        return row["evaluation"]["suspect"], row["evaluation"][stage]
    if how == "kcc":
        row = kcc_row(data["recipe"], model, cr or choice.table_cr, choice)
        return (row["evaluation"]["suspect"], row["evaluation"]["purified"]) if row else None
    rows = defense_rows(data["defend"], model, how)
    return (rows[-1]["suspect"], rows[-1]["defended"]) if rows else None


def outcome_cell(data, choice, model, how, reference, cr=None):
    """kcc's ACC / ASR after `how` on `model` (`outcome`), beside the paper's `reference`."""
    pair = outcome(data, choice, model, how, cr)
    return cell(percents(pair[1]) if pair else None, reference)


def percents(evaluation, keys=("acc", "asr")):
    """Percentages of `keys` (fractions in the JSONs), or None if any is missing."""
    if not evaluation or any(evaluation.get(k) is None for k in keys):
        return None
    return tuple(100 * evaluation[k] for k in keys)


# ----------------------------------------------------------------------------- formatting


def _join(values):
    return " / ".join(f"{v:.2f}" for v in values)


def cell(kcc, reference):
    """`"<kcc values> (paper <values>)"`; `NOT_RUN` / `NOT_IN_PAPER` stand for a missing side."""
    left = _join(kcc) if kcc else NOT_RUN
    right = f"paper {_join(reference)}" if reference else NOT_IN_PAPER
    return f"{left} ({right})"


def markdown_table(header, rows):
    """Markdown lines of a table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _points(value):
    return f"{value:+.2f}"


def _bar_verdict(value, limit):
    """"met" when `value <= limit`, else how far above it (points)."""
    return "met" if value <= limit else f"missed by {value - limit:.2f} points"


def _relative(path, start):
    return os.path.relpath(path, start).replace(os.sep, "/")


def _data_text(data_source):
    """A defense's data, from `DefenderData.describe()` (None: data-free)."""
    if not data_source:
        return "data-free"
    share = (f"{100 * data_source['fraction']:g}% per class" if data_source.get("fraction")
             else f"{data_source.get('per_class')} per class")
    return (f"{data_source['dataset']} {data_source['split']}, {share}: "
            f"{data_source['train_images']} + {data_source['validation_images']} validation images")


def _budget_text(budget):
    return ", ".join(f"{k}={v}" for k, v in budget.items()) or "no budget arguments"


def _models(entries, zoo):
    """`(label, entry)` pairs of `entries` whose model is in the zoo."""
    return [(label, entry) for label, entry in entries.items() if entry in zoo]


# ----------------------------------------------------------------------------- provenance


def _purify_provenance(data, choice):
    purify = data["purify"]
    if not purify:
        return f"C&C: {NOT_RUN} (no purify_zoo.json)"
    rows = [r for r in purify["rows"].values() if _chosen(r, choice)]
    if not rows:
        return f"C&C: {NOT_RUN} (no purify_zoo.json row with the chosen setting)"
    budgets = sorted({_budget_text(r["budget"]) for r in rows})
    machines = sorted({r["machine"] for r in rows})
    sizes = {}  # rows written before rows kept their own evaluation size used the file's
    for r in rows:
        sizes.setdefault(r.get("eval_per_class", purify["eval_per_class"]), []).append(r["model"])
    evaluated = (f"{next(iter(sizes))} test images per class" if len(sizes) == 1 else
                 "; ".join(f"{n} test images per class for {', '.join(sorted(set(m)))}"
                           for n, m in sorted(sizes.items(), reverse=True)))
    return (f"C&C (purify_zoo.json): {' | '.join(budgets)}; evaluated on {evaluated}; "
            f"machine: {' | '.join(machines)}")


def _recipe_provenance(data, choice):
    revision = recipe_revision(data["recipe"], choice)
    recipe = data["recipe"] or {}
    shown = {(r["model"], float(r["cr"])) for r in recipe.values()}
    rows = [kcc_row(recipe, model, cr, choice) for model, cr in sorted(shown)]
    rows = [r for r in rows if r is not None]
    if not rows:
        return f"kcc recipe: {NOT_RUN} (no recipe_zoo.json row of revision {revision})"
    budgets = sorted({_budget_text({k: v for k, v in r["budget"].items()
                                    if k not in ("revision", "per_class")}) for r in rows})
    older = {}
    for r in rows:
        if r["budget"].get("revision", 1) != revision:
            older.setdefault(r["budget"].get("revision", 1), []).append(r["model"])
    older = ("; models without a row of that revision yet show their newest earlier one: " +
             "; ".join(f"revision {k}: {', '.join(sorted(set(v)))}" for k, v in
                       sorted(older.items(), reverse=True)) if older else "")
    sizes = sorted({r["budget"]["per_class"] for r in rows})
    machines = sorted({r["machine"] for r in rows})
    return (f"kcc recipe (recipe_zoo.json, revision {revision} of `benchmarks/recipe_zoo.py`"
            f"{older}): "
            f"{' | '.join(budgets)}; evaluated on {'/'.join(map(str, sizes))} test images per "
            f"class; machine: {' | '.join(machines)}")


def _defend_provenance(data, methods):
    defend = data["defend"]
    if not defend:
        return f"baselines: {NOT_RUN} (no defend_zoo.json)"
    parts = []
    for method in methods:
        budgets = []
        for row in defend["rows"].values():
            text = _budget_text(row["budget"])
            if row["method"] == method and text not in budgets:
                budgets.append(text)
        if budgets:
            parts.append(f"{method}: " + " | ".join(budgets))
    if not parts:
        return f"baselines: {NOT_RUN}"
    return (f"baselines (defend_zoo.json, full test split; one budget per method unless "
            f"listed with |, the last row shown): {'; '.join(parts)}; machine: "
            f"{defend.get('machine', 'not recorded')}")


def _tflite_provenance(data):
    tflite = data["tflite"]
    if not tflite:
        return f"TFLite: {NOT_RUN} (no benchmark.json)"
    env, used = tflite["environment"], tflite["flags"]
    return (f"TFLite (benchmark.json): batch 1, XNNPACK {'on' if used['xnnpack'] else 'off'}, "
            f"{used['warmup']} warm-up + {used['runs']} timed runs, compressed by "
            f"`rewrite.compress` at tau_scale {used['tau_scale']:g}; machine: {env['cpu']}, "
            f"{env['cores']} cores, TensorFlow {env['tensorflow']}, ai-edge-litert "
            f"{env['ai_edge_litert']}")


def _zoo_provenance(data):
    trained = sorted({(s.get("width"), s.get("epochs")) for s in data["zoo"].values()},
                     key=str)
    if not trained:
        return f"no defense: {NOT_RUN} (no zoo sidecar)"
    shapes = ", ".join(f"width {w}, {e} epochs" for w, e in trained)
    machines = {}  # sidecars older than session 5 do not record one
    for name, sidecar in data["zoo"].items():
        machines.setdefault(sidecar.get("machine", "not recorded"), []).append(name)
    where = (next(iter(machines)) if len(machines) == 1 else
             "; ".join(f"{m} for {', '.join(sorted(n))}" for m, n in sorted(machines.items())))
    return f"no defense: the zoo sidecars (ResNet-18 {shapes}; full test split; machine: {where})"


def _provenance_line(parts):
    return "Budgets and machines: " + ". ".join(parts) + "."


# ----------------------------------------------------------------------------- Table 2


def _table_2_columns(choice):
    """`(label, how, cr)` per column: the paper's six, with C&C at `choice.crs`, then kcc's
    recipe at the same ratios."""
    columns = [("No Defense", "none", None), ("ANP 2x", "anp2x", None),
               ("CLP 2x", "clp2x", None)]
    return (columns + [(f"C&C {cr:g}x", "cc", cr) for cr in choice.crs]
            + [(f"kcc recipe {cr:g}x", "kcc", cr) for cr in choice.crs])


def _footer_cells(data, choice, model, how, cr):
    """kcc's `(data used, compression type, parameters)` of one Table 2 column on `model`."""
    if how == "none":
        sidecar = data["zoo"].get(model)
        return "N/A", "N/A", f"{sidecar['trainable_params']:,}" if sidecar else NOT_RUN
    if how in ("cc", "kcc"):
        row = _compression_row(data, choice, model, how, cr)
        if row is None:
            return NOT_RUN, NOT_RUN, NOT_RUN
        return (f"data-free: {row['budget']['num_images']} synthetic images",
                "low-rank (Tucker-2)", f"{row['params'][1]:,}")
    rows = defense_rows(data["defend"], model, how)
    if not rows:
        return NOT_RUN, NOT_RUN, NOT_RUN
    row = rows[-1]
    if how == "anp2x":  # zeroed weights stay in the dense graph; defend_zoo's ratio is effective
        effective = row["report"].get("effective_params_after", row["params_after"])
        return (_data_text(row["data"]), f"unstructured: zeroed channels, ratio {row['ratio']}",
                f"{effective:,} effective")
    return (_data_text(row["data"]), f"channel: removed, ratio {row['ratio']}",
            f"{row['params_after']:,}")


def _table_2_footer(data, choice, columns):
    """The paper's lower rows (data, compression type, parameters on the first Table 2 zoo
    model), then the TFLite rows."""
    present = [entry for _, entry in _models(CIFAR10_ENTRIES, data["zoo"])]
    model = present[0] if present else None
    names = ("Data Req.", "Comp. Type", "Parameters")
    rows = [[name, f"`{model}`" if model and name == "Parameters" else ""] for name in names]
    for label, how, cr in columns:
        cells = _footer_cells(data, choice, model, how, cr) if model else (NOT_RUN,) * 3
        for row, name, value in zip(rows, names, cells):
            row.append(f"{value} ({_paper_footer(name, label)})")
    return rows + _table_2_latency_rows(data, columns)


def _paper_footer(name, label):
    """"paper <value>" of one of Table 2's lower rows, or `NOT_IN_PAPER` (kcc's own columns)."""
    value = paper.TABLE_2_FOOTER[name].get(label)
    return f"paper {value}" if value is not None else NOT_IN_PAPER


def _table_2_latency_rows(data, columns):
    """Per TFLite model: parameters, median latency (1 thread) and speedup of each column."""
    tflite = data["tflite"]
    rows = []
    for model in (tflite["models"] if tflite else {}):
        params, latency, speedup = [], [], []
        for label, how, cr in columns:
            row = tflite_row(tflite, model, cr) if how in ("none", "cc") else None
            lat = row["latency"]["1"] if row else None
            params.append(f"{row['params']:,}" if row else NOT_RUN)
            params[-1] += f" ({_paper_footer('Parameters', label)})"
            latency.append(f"{lat['median_ms']:.3f} ms" if lat else NOT_RUN)
            latency[-1] += f" ({_paper_footer('Inference Time', label)})"
            speedup.append(f"{lat['speedup']:.2f}x" if lat else NOT_RUN)
            speedup[-1] += f" ({_paper_footer('Speed Up', label)})"
        name = f"`{model}`"
        rows.append(["Parameters (TFLite model)", name] + params)
        rows.append(["TFLite median latency, 1 thread (paper: GPU)", name] + latency)
        rows.append(["Speed Up, 1 thread", name] + speedup)
    if not rows:
        rows.append(["TFLite latency", NOT_RUN] + [
            f"{NOT_RUN} ({_paper_footer('Inference Time', label)})" for label, _, _ in columns])
    return rows


def table_2(data, choice):
    """Table 2 as `(header, rows)`: ACC / ASR per attack, then the paper's lower rows."""
    columns = _table_2_columns(choice)
    header = ["Attack", "zoo entry"] + [f"{label}: ACC / ASR" for label, _, _ in columns]
    rows = []
    for label, reference in paper.TABLE_2.items():
        model = CIFAR10_ENTRIES[label]
        cells = [label, f"`{model}`"]
        for column, how, cr in columns:
            cells.append(outcome_cell(data, choice, model, how, reference.get(column), cr))
        rows.append(cells)
    return header, rows + _table_2_footer(data, choice, columns)


def _change_sentence(what, before, after, paper_before, paper_after):
    """'<what>: ACC a -> b (+d points; paper +e), ASR c -> f (paper g -> h).'"""
    text = f"{what}: ACC {before[0]:.2f} -> {after[0]:.2f} ({_points(after[0] - before[0])} points"
    if paper_before and paper_after:
        text += f"; paper {_points(paper_after[0] - paper_before[0])}"
    text += f"), ASR {before[1]:.2f} -> {after[1]:.2f}"
    if paper_before and paper_after:
        text += f" (paper {paper_before[1]:.2f} -> {paper_after[1]:.2f})"
    return text + "."


def _table_2_facts(data, choice):
    facts = []
    for label, model in _models(CIFAR10_ENTRIES, data["zoo"]):
        reference = paper.TABLE_2.get(label, {})
        for column, how, cr in _table_2_columns(choice)[1:]:
            pair = outcome(data, choice, model, how, cr)
            if pair:
                facts.append(_change_sentence(
                    f"{column} on `{model}`", percents(pair[0]), percents(pair[1]),
                    reference.get("No Defense"), reference.get(column)))
    facts += _bar_facts(data, choice)
    facts += _latency_facts(data, choice)
    return facts or [f"Every kcc cell of this table is {NOT_RUN}."]


def _bar_facts(data, choice):
    """Issue 5's bar (full C&C at cr 2 on every all-to-one CIFAR-10 zoo model)."""
    if BAR_CR not in [float(c) for c in choice.crs]:
        return []
    all2one = {k: v for k, v in CIFAR10_ENTRIES.items() if not k.endswith("A2A")}
    facts, asrs = [], []
    for model in all2one.values():
        pair = outcome(data, choice, model, "cc", BAR_CR)
        if not pair:
            continue
        before, after = percents(pair[0]), percents(pair[1])
        drop = before[0] - after[0]
        asrs.append(after[1])
        facts.append(
            f"Issue 5's bar at cr {BAR_CR:g} on `{model}` (ACC within {BAR_ACC_DROP:g} points "
            f"of the suspect, ASR <= {BAR_ASR:g}%): ACC drop {drop:.2f} points, "
            f"{_bar_verdict(drop, BAR_ACC_DROP)}; ASR {after[1]:.2f}%, "
            f"{_bar_verdict(after[1], BAR_ASR)}.")
    if asrs:
        mean = statistics.fmean(asrs)
        facts.append(
            f"Mean ASR of C&C {BAR_CR:g}x over the {len(asrs)} of {len(all2one)} all-to-one "
            f"models run: {mean:.2f}% (bar <= {BAR_MEAN_ASR:g}%: "
            f"{_bar_verdict(mean, BAR_MEAN_ASR)})"
            + ("." if len(asrs) == len(all2one) else
               f"; the other {len(all2one) - len(asrs)} are {NOT_RUN}, so the bar is not "
               "judged on every model yet."))
    return facts


def _latency_facts(data, choice):
    tflite = data["tflite"]
    facts = []
    for model in (tflite["models"] if tflite else {}):
        measured = [(cr, tflite_row(tflite, model, cr)) for cr in choice.crs]
        measured = [(cr, row) for cr, row in measured if row]
        if not measured:
            continue
        ours = " / ".join(f"{row['latency']['1']['speedup']:.2f}x" for _, row in measured)
        theirs = " / ".join(paper.TABLE_2_FOOTER["Speed Up"].get(f"C&C {cr:g}x", NOT_IN_PAPER)
                            for cr, _ in measured)
        crs = " / ".join(f"{cr:g}" for cr, _ in measured)
        facts.append(f"TFLite speedup of `{model}` at cr {crs}, 1 thread: {ours} (paper, "
                     f"{paper.TABLE_2_DEVICE}: {theirs}).")
    return facts


# ----------------------------------------------------------------------------- Table 3


def _average_cell(kcc, reference, reported):
    """Average of the kcc values present, beside the paper's average over the same attacks.

    Args:
        kcc: `{attack: (acc, asr, ra) or None}`.
        reference: `{attack: (acc, asr) or None}` (the paper's rows).
        reported: the paper's own average over every attack (or None).
    """
    have = [a for a, v in kcc.items() if v]
    if not have:
        return cell(None, reported)
    mean = tuple(statistics.fmean(kcc[a][i] for a in have) for i in range(3))
    if len(have) == len(kcc):
        return cell(mean, reported)
    same = [reference[a] for a in have if reference.get(a)]
    text = f"{_join(mean)} over {len(have)} of {len(kcc)} ("
    if len(same) == len(have):
        paper_mean = tuple(statistics.fmean(p[i] for p in same) for i in range(2))
        return text + f"paper over the same: {_join(paper_mean)})"
    return text + f"{NOT_IN_PAPER})"


def _defense_data(data, choice, how, models):
    """What data a Table 3 defense used (from its last defend_zoo row, or the C&C budget);
    `NOT_RUN` when it has not been run on any of `models`."""
    if how == "none":
        return "N/A"
    if how in ("cc", "kcc"):
        rows = [_compression_row(data, choice, model, how, choice.table_cr) for model in models]
        images = sorted({r["budget"]["num_images"] for r in rows if r})
        return f"data-free: {'/'.join(map(str, images))} synthetic images" if images else NOT_RUN
    for model in models:
        rows = defense_rows(data["defend"], model, how)
        if rows:
            return _data_text(rows[-1]["data"])
    return NOT_RUN


def table_3(data, choice, block):
    """One block of Table 3 (`"all-to-one"` or `"all-to-all"`) as `(header, rows)`.

    Rows are defenses and columns attacks (the paper's table transposed, so that nine defenses
    fit); a cell is kcc's ACC / ASR / RA with the paper's ACC / ASR in parentheses.
    """
    reference_rows = paper.TABLE_3[block]
    attacks = [a for a in reference_rows if a != "Average"]
    models = [CIFAR10_ENTRIES[a] for a in attacks]
    header = ["Defense", "data used (kcc)", "data (paper)"] + [
        f"{a} (`{CIFAR10_ENTRIES[a]}`)" for a in attacks] + ["Average"]
    rows = []
    for label, how, column in TABLE_3_DEFENSES:
        kcc, reference = {}, {}
        for attack, model in zip(attacks, models):
            pair = outcome(data, choice, model, how)
            kcc[attack] = percents(pair[1], ("acc", "asr", "ra")) if pair else None
            reference[attack] = reference_rows[attack].get(column) if column else None
        reported = reference_rows["Average"].get(column) if column else None
        rows.append([label, _defense_data(data, choice, how, models),
                     paper.TABLE_3_DATA.get(column, NOT_IN_PAPER)]
                    + [cell(kcc[a], reference[a]) for a in attacks]
                    + [_average_cell(kcc, reference, reported)])
    return header, rows


def _table_3_facts(data, choice):
    facts = []
    for block, reference_rows in paper.TABLE_3.items():
        attacks = [a for a in reference_rows if a != "Average"]
        for label, how, column in TABLE_3_DEFENSES[1:]:
            changes, asrs, paper_changes, paper_asrs = [], [], [], []
            for attack in attacks:
                pair = outcome(data, choice, CIFAR10_ENTRIES[attack], how)
                if not pair:
                    continue
                before, after = percents(pair[0]), percents(pair[1])
                changes.append(after[0] - before[0])
                asrs.append(after[1])
                if column:
                    ref = reference_rows[attack]
                    paper_changes.append(ref[column][0] - ref["No Defense"][0])
                    paper_asrs.append(ref[column][1])
            if not changes:
                continue
            text = (f"{label}, {block}: run on {len(changes)} of {len(attacks)} attacks; mean ACC "
                    f"change {_points(statistics.fmean(changes))} points from the suspect on the "
                    f"same images, mean ASR {statistics.fmean(asrs):.2f}%")
            if paper_changes:
                text += (f" (paper, same attacks: {_points(statistics.fmean(paper_changes))} "
                         f"points, {statistics.fmean(paper_asrs):.2f}%)")
            else:
                text += f" ({NOT_IN_PAPER})"
            facts.append(text + ".")
    facts += _recipe_facts(data, choice)
    return facts or [f"Every kcc cell of this table is {NOT_RUN} (no defense has been run)."]


def _recipe_facts(data, choice):
    """kcc's recipe on every zoo model it was run on, against the recipe issue's bars at
    `choice.table_cr`: ACC within `RECIPE_ACC_DROP` points of the suspect (the clean model:
    `RECIPE_CLEAN_DROP`), ASR at most `RECIPE_ASR` (all-to-all and adaptive models:
    `RECIPE_LOOSE_ASR`), and after BatchNorm re-estimation at most `RECIPE_LOOSE_ASR`."""
    facts = []
    revision = recipe_revision(data["recipe"], choice)
    for model in sorted({r["model"] for r in (data["recipe"] or {}).values()}):
        row = kcc_row(data["recipe"], model, choice.table_cr, choice)
        if row is None:
            continue
        ev = row["evaluation"]
        before, after = percents(ev["suspect"], ("acc",)), percents(ev["purified"], ("acc",))
        drop = before[0] - after[0]
        made = row["budget"].get("revision", 1)
        shown = revision if made == revision else f"{revision}, row made at {made}"
        text = (f"kcc recipe (revision {shown}) on `{model}` at cr {choice.table_cr:g}: ACC "
                f"{before[0]:.2f} -> {after[0]:.2f}")
        if ev["suspect"].get("asr") is None:
            facts.append(text + f"; the clean model's bar (within {RECIPE_CLEAN_DROP:g} points): "
                         f"{_bar_verdict(drop, RECIPE_CLEAN_DROP)}.")
            continue
        loose = "all2all" in model or model.startswith("adaptive_")
        limit = RECIPE_LOOSE_ASR if loose else RECIPE_ASR
        asr = 100 * ev["purified"]["asr"]
        text += (f", ASR {100 * ev['suspect']['asr']:.2f} -> {asr:.2f}%; ACC bar (within "
                 f"{RECIPE_ACC_DROP:g} points): {_bar_verdict(drop, RECIPE_ACC_DROP)}; ASR bar "
                 f"({limit:g}%): {_bar_verdict(asr, limit)}")
        refreshed = ev.get("purified, BN re-estimated")
        if refreshed and refreshed.get("asr") is not None:
            text += (f"; after BatchNorm re-estimation ASR {100 * refreshed['asr']:.2f}% (bar "
                     f"{RECIPE_LOOSE_ASR:g}%: {_bar_verdict(100 * refreshed['asr'], RECIPE_LOOSE_ASR)})")
        tuned = ev.get("purified, fine-tuned")
        if tuned and tuned.get("asr") is not None:
            text += (f"; after a short fine-tune on synthetic images ASR "
                     f"{100 * tuned['asr']:.2f}%, ACC {100 * tuned['acc']:.2f}")
        facts.append(text + ".")
    return facts


# ----------------------------------------------------------------------------- Tables 7, 8


def table_7(data, choice):
    """Table 7 as `(header, rows)`: the original attack without defense and under C&C, and the
    C&C-aware adaptive attack (zoo entry `adaptive_<attack>_all2one`) under C&C."""
    header = ["Attack", "zoo entries", "No Defense: ACC / ASR",
              "No defense, adaptive attack (kcc only): ACC / ASR",
              "C&C, Orig. Att.: ACC / ASR", "C&C, Adap. Att.: ACC / ASR",
              "kcc recipe, Orig. Att.: ACC / ASR", "kcc recipe, Adap. Att.: ACC / ASR"]
    rows = []
    for label, reference in paper.TABLE_7.items():
        original, adaptive = CIFAR10_ENTRIES[label], ADAPTIVE_ENTRIES[label]
        cells = [label, f"`{original}`, `{adaptive}`"]
        for model, how, column in ((original, "none", "No Defense"), (adaptive, "none", None),
                                   (original, "cc", "Orig. Att."), (adaptive, "cc", "Adap. Att."),
                                   (original, "kcc", None), (adaptive, "kcc", None)):
            cells.append(outcome_cell(data, choice, model, how,
                                      reference.get(column) if column else None))
        rows.append(cells)
    return header, rows


def _table_7_facts(data, choice):
    facts = []
    for label, reference in paper.TABLE_7.items():
        adaptive = ADAPTIVE_ENTRIES[label]
        pair = outcome(data, choice, adaptive, "cc")
        if not pair:
            continue
        after = percents(pair[1])
        trained = data["zoo"].get(adaptive, {}).get("adaptive")
        how = (f" (trained against tau_scale {trained['tau_scale']:g}, {trained['reading']} "
               "reading)" if trained else "")
        facts.append(
            f"Adaptive {label}{how} under C&C: ACC {after[0]:.2f}, ASR {after[1]:.2f}% "
            f"(paper {_join(reference['Adap. Att.'])}); the paper's claim of ASR below "
            f"{ADAPTIVE_ASR_CLAIM:g}%: {_bar_verdict(after[1], ADAPTIVE_ASR_CLAIM)}.")
        original = outcome(data, choice, CIFAR10_ENTRIES[label], "cc")
        if original:
            orig = percents(original[1])
            facts.append(
                f"{label}, adaptive minus original attack under C&C: ACC "
                f"{_points(after[0] - orig[0])} points, ASR {_points(after[1] - orig[1])} points "
                f"(paper {_points(reference['Adap. Att.'][0] - reference['Orig. Att.'][0])}, "
                f"{_points(reference['Adap. Att.'][1] - reference['Orig. Att.'][1])}).")
    return facts or [(f"No adaptive zoo model has been purified: the C&C, Adap. Att. column is "
                     f"{NOT_RUN}.")]


TABLE_8_COLUMNS = (("Scaling Only", "scaled"), ("Scaling + truncation (kcc only)", "compressed"),
                   ("F.T. Only", "ft_only"), ("Full C&C", "cc"), ("kcc recipe", "kcc"))


def table_8(data, choice):
    """Table 8 as `(header, rows)`: purify_zoo's stages at `choice.table_cr` (scaling only =
    the "scaled" stage; F.T. only = the tau = inf run; full C&C = the "purified" stage)."""
    header = ["Attack", "zoo entry"] + [f"{label}: ACC / ASR" for label, _ in TABLE_8_COLUMNS]
    rows = []
    for label, reference in paper.TABLE_8.items():
        model = CIFAR10_ENTRIES[label]
        cells = [label, f"`{model}`"]
        for column, how in TABLE_8_COLUMNS:
            cells.append(outcome_cell(data, choice, model, how, reference.get(column)))
        rows.append(cells)
    return header, rows


def _table_8_facts(data, choice):
    facts = []
    for label, reference in paper.TABLE_8.items():
        model = CIFAR10_ENTRIES[label]
        full, scaled, tuned = (outcome(data, choice, model, how)
                               for how in ("cc", "scaled", "ft_only"))
        if full and scaled:
            f, s = percents(full[1]), percents(scaled[1])
            p_full, p_scaled = reference["Full C&C"], reference["Scaling Only"]
            facts.append(
                f"`{model}`, full C&C minus scaling only: ACC {_points(f[0] - s[0])} points, ASR "
                f"{_points(f[1] - s[1])} points (paper {_points(p_full[0] - p_scaled[0])}, "
                f"{_points(p_full[1] - p_scaled[1])}).")
        if tuned:
            t = percents(tuned[1])
            facts.append(f"`{model}`, fine-tuning only leaves ASR at {t[1]:.2f}% with ACC "
                         f"{t[0]:.2f} (paper {_join(reference['F.T. Only'])}).")
    return facts or [f"Every kcc cell of this table is {NOT_RUN}."]


# ----------------------------------------------------------------------------- GTSRB


def table_gtsrb(data, choice):
    """The GTSRB half of the paper's Table 4 as `(header, rows)` for what the zoo holds."""
    header = ["Attack", "zoo entry", "No Defense: ACC / ASR", "CLP: ACC / ASR",
              "C&C: ACC / ASR"]
    columns = (("none", "No Defense"), ("clp", "CLP"), ("cc", "C&C (Ours)"))
    rows = []
    for label, reference in paper.TABLE_4_GTSRB.items():
        if label == "Average":
            continue
        model = GTSRB_ENTRIES[label]
        cells = [label, f"`{model}`"]
        for how, column in columns:
            cells.append(outcome_cell(data, choice, model, how, reference.get(column)))
        rows.append(cells)
    return header, rows


# ----------------------------------------------------------------------------- Figures 1, 3


def sweep_curves(tau_sweep):
    """`{model: {reading: [(tau, point), ...] by decreasing tau}}` and `{model: unscaled point}`
    from tau_sweep.json's points (keys `<model>/<reading>/<tau>`; reading "none" = unscaled)."""
    curves, unscaled = {}, {}
    for key, point in (tau_sweep or {}).get("points", {}).items():
        model, reading, tau = key.split("/")
        if reading == "none":
            unscaled[model] = point
        else:
            curves.setdefault(model, {}).setdefault(reading, []).append((float(tau), point))
    for readings in curves.values():
        for points in readings.values():
            points.sort(key=lambda p: -p[0])
    return curves, unscaled


def _gap(point):
    """h_trigger - h_clean rounded to 3 decimals (no "-0.000"), or None if not recorded."""
    if point.get("h_trigger") is None or point.get("h_clean") is None:
        return None
    return round(point["h_trigger"] - point["h_clean"], 3) or 0.0


def _sweep_facts(data, choice):
    curves, unscaled = sweep_curves(data["tau_sweep"])
    facts = []
    for model, readings in curves.items():
        base = unscaled.get(model)
        for reading, points in readings.items():
            tau, last = points[-1]
            text = f"`{model}`, {reading} reading:"
            if base:
                text += f" unscaled ACC {100 * base['acc']:.2f}, ASR {100 * base['asr']:.2f}%"
                text += (f", h_trigger - h_clean {_gap(base):+.3f};" if _gap(base) is not None
                         else ";")
            text += f" at tau {tau:g} ACC {100 * last['acc']:.2f}, ASR {100 * last['asr']:.2f}%"
            text += f", h_trigger - h_clean {_gap(last):+.3f}" if _gap(last) is not None else ""
            low = [(t, p) for t, p in points if 100 * p["asr"] <= SWEEP_ASR]
            text += (f"; ASR first at or below {SWEEP_ASR:g}% at tau {low[0][0]:g} (ACC "
                     f"{100 * low[0][1]['acc']:.2f})." if low else
                     f"; ASR stays above {SWEEP_ASR:g}% down to tau {tau:g}.")
            facts.append(text)
            chosen = [p for t, p in points if t == choice.tau and reading == choice.reading]
            if chosen and chosen[0].get("recalibrated"):
                facts.append(
                    f"`{model}` at the report's C&C setting (tau {choice.tau:g}, {reading}): "
                    f"re-estimating BatchNorm statistics on clean training images moves ASR from "
                    f"{100 * chosen[0]['asr']:.2f}% to "
                    f"{100 * chosen[0]['recalibrated']['asr']:.2f}% (a diagnostic, not a "
                    "defense).")
    return facts or [f"The tau sweep is {NOT_RUN}."]


def plot_figures(tau_sweep, folder):
    """Draws Figure 1 (h_clean and h_trigger against tau_scale) and Figure 3 (ACC and ASR
    against tau_scale) from tau_sweep.json, one panel per zoo model, both readings.

    Returns:
        `{"Figure 1": path, "Figure 3": path}` of the PNG files written under `folder`.

    Raises:
        ImportError: matplotlib is not installed (it is the `[report]` extra).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError as error:
        raise ImportError("The report's figures need matplotlib: pip install -e '.[report]' "
                          "(or render without them: --nofigures).") from error
    curves, unscaled = sweep_curves(tau_sweep)
    paths = {}
    panels = {
        "Figure 1": (("h_clean", "h_clean", "g"), ("h_trigger", "h_trigger", "m")),
        "Figure 3": (("acc", "ACC %", "b"), ("asr", "ASR %", "r")),
    }
    for figure, series in panels.items():
        models = sorted(curves)
        fig, axes = pyplot.subplots(1, max(len(models), 1), figsize=(5 * max(len(models), 1), 4),
                                    squeeze=False)
        for ax, model in zip(axes[0], models):
            _plot_panel(ax, curves[model], unscaled.get(model), series, figure == "Figure 3")
            ax.set_title(f"{model}: {figure}")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        pyplot.close(fig)
        paths[figure] = os.path.join(folder, f"{figure.lower().replace(' ', '')}.png")
        saving.write_bytes(buffer.getvalue(), paths[figure], overwrite=True)
    return paths


def _plot_panel(ax, readings, base, series, percent):
    """One model's curves: each series per reading (solid text, dashed literal), the unscaled
    model as a dotted horizontal line; tau decreases to the right, as in the paper."""
    scale = 100 if percent else 1
    for reading, points in readings.items():
        style = "-" if reading == "text" else "--"
        taus = [t for t, _ in points]
        for key, name, color in series:
            values = [scale * p[key] if p.get(key) is not None else math.nan for _, p in points]
            ax.plot(taus, values, color + style, marker="o", markersize=3,
                    label=f"{name} ({reading})")
    for key, name, color in series:
        if base and base.get(key) is not None:
            ax.axhline(scale * base[key], color=color, linestyle=":", linewidth=1,
                       label=f"{name} unscaled")
    ax.set_xlabel("tau_scale")
    ax.set_ylabel("%" if percent else "mean activation of the last conv block")
    ax.invert_xaxis()
    ax.legend(fontsize=7)


# ----------------------------------------------------------------------------- the report


def discussion_sections(text):
    """`{key: body}` of report_discussion.md, where a section starts at `## <key>: <title>`."""
    sections, key = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            key = line[3:].split(":", 1)[0].strip()
            sections[key] = []
        elif key is not None:
            sections[key].append(line)
    return {k: "\n".join(lines).strip() for k, lines in sections.items()}


def _discussion_slot(discussion, key, source):
    body = discussion.get(key) or f"(No `## {key}: ...` section in {source} yet.)"
    return ["", f"<!-- discussion: {key}, copied from {source}; edit it there -->", "",
            body, "", "<!-- /discussion -->", ""]


def _missing(data, entries):
    """A sentence naming the entries that are not in the zoo (their cells read "not run")."""
    absent = [entry for entry in entries if entry not in data["zoo"]]
    if not absent:
        return []
    return [f"Not in the zoo yet ({NOT_RUN}): " + ", ".join(f"`{e}`" for e in absent) + "."]


def _section(title, intro, tables, facts, provenance, slot):
    """A report section: intro, tables (`(subtitle or None, (header, rows))`), the budgets
    and machines, the generated sentences and the discussion slot."""
    lines = [f"## {title}", ""]
    for paragraph in intro:
        lines += [paragraph, ""]
    for subtitle, table in tables:
        lines += ([f"### {subtitle}", ""] if subtitle else []) + markdown_table(*table) + [""]
    lines += [provenance, "", "What the numbers say (generated from them):", ""]
    lines += [f"- {fact}" for fact in facts]
    return lines + slot


def _header(sources, choice, commands):
    tables = _relative(sources.results_dir, sources.root)
    return [
        "# Clean & Compact at CPU scale: kcc's numbers beside the paper's",
        "",
        f"Regenerate everything (resumable; finished runs are kept): `{commands['regenerate']}`",
        "",
        f"Re-render from the results already written: `{commands['render']}`",
        "",
        (f"This file was made by `{commands['made_by']}`. It is generated: edit "
        f"`{_relative(sources.discussion, sources.root)}` for the discussion paragraphs, not "
        "this file."),
        "",
        (f"Every kcc number is read from `{tables}/` (tau_sweep.json, purify_zoo.json, "
        f"defend_zoo.json, recipe_zoo.json), `{_relative(sources.tflite_json, sources.root)}` and the zoo "
        f"sidecars in `{_relative(sources.zoo_dir, sources.root)}/`; every paper number from "
        f"`benchmarks/paper_numbers.py` ({paper.CITATION}). A cell shows kcc's value first and "
        f"the paper's in parentheses; \"{NOT_RUN}\" marks a run that has not been made (or a "
        f"model not in the zoo), \"{NOT_IN_PAPER}\" a value the paper does not print. ACC, "
        "ASR and RA are percentages."),
        "",
        f"kcc runs C&C at tau_scale {choice.tau:g} ({choice.reading} reading of Eq. 5"
        + (f", adversarial cap {choice.adversarial_cap:g}" if choice.adversarial_cap else "")
        + f"); Tables 3, 7 and 8 and the GTSRB table use cr {choice.table_cr:g} (the paper does "
        f"not say which cr its Table 3 used). The paper's protocol: {paper.PROTOCOL}.",
        "",
    ]


def _provenance_section(data, choice):
    lines = ["## How these numbers were made", ""]
    lines += [f"- {part}." for part in (
        _zoo_provenance(data),
        (f"tau sweep (tau_sweep.json): scaling only, {data['tau_sweep']['per_class']} test "
         "images per class; machine not recorded" if data["tau_sweep"] else
         f"tau sweep: {NOT_RUN}"),
        _purify_provenance(data, choice),
        _defend_provenance(data, list(BASELINES) + ["anp2x", "clp2x"]),
        _recipe_provenance(data, choice),
        _tflite_provenance(data),
    )]
    lines.append("")
    return lines


def _zoo_section(data):
    rows = []
    for name, s in data["zoo"].items():
        attack = f"{s['attack']['name']} ({s['attack']['mode']})" if s.get("attack") else "none"
        ev = percents(s, ("acc",))
        rows.append([f"`{name}`", s["dataset"], attack, s.get("width"), s.get("epochs"),
                     f"{ev[0]:.2f}" if ev else NOT_RUN,
                     *(f"{100 * s[k]:.2f}" if s.get(k) is not None else "-" for k in ("asr", "ra")),
                     f"{s['train_seconds'] / 60:.0f}" if s.get("train_seconds") else "-"])
    lines = ["## The zoo", "", ("ResNet-18 models trained by `benchmarks/train_zoo.py` "
             "(full test split; the paper trains width 64 for 100-200 epochs)."), ""]
    if rows:
        lines += markdown_table(["model", "dataset", "attack", "width", "epochs", "ACC", "ASR",
                                 "RA", "train minutes"], rows)
    else:
        lines.append(f"The zoo is empty: every kcc cell below reads {NOT_RUN}.")
    return lines + [""]


def _figures_section(data, sources, choice, figure_paths, slot):
    lines = ["## Figures 1 and 3: scaling only against tau_scale", ""]
    lines += [f"The paper's {name}: {claim}" for name, claim in paper.FIGURE_CLAIMS.items()]
    lines.append("")
    if not data["tau_sweep"]:
        lines += [f"kcc's figures: {NOT_RUN} (no tau_sweep.json).", ""]
    elif not figure_paths:
        lines += ["kcc's figures were not drawn in this render (--nofigures).", ""]
    for name, path in figure_paths.items():
        link = _relative(path, os.path.dirname(sources.output))
        lines += [f"![{name}, kcc]({link})", ""]
    lines += [("Solid: text reading, dashed: literal reading, dotted: the unscaled model. "
               "Points: tau_sweep.md beside tau_sweep.json."), "",
              "What the numbers say (generated from them):", ""]
    lines += [f"- {fact}" for fact in _sweep_facts(data, choice)]
    return lines + slot


def _gtsrb_intro(data):
    gtsrb = [name for name, s in data["zoo"].items() if s["dataset"] == "gtsrb"]
    if not gtsrb:
        return [(f"The zoo holds no GTSRB model yet, so every kcc cell reads {NOT_RUN}. The "
                "paper's numbers are its Table 4 (GTSRB half).")]
    return ["GTSRB models in the zoo: " + ", ".join(f"`{g}`" for g in gtsrb)
            + ". The paper's numbers are its Table 4 (GTSRB half)."]


def _gtsrb_facts(data, choice):
    facts = []
    for label, model in _models(GTSRB_ENTRIES, data["zoo"]):
        reference = paper.TABLE_4_GTSRB[label]
        for how, column in (("clp", "CLP"), ("cc", "C&C (Ours)")):
            pair = outcome(data, choice, model, how)
            if pair:
                facts.append(_change_sentence(
                    f"{column} on `{model}`", percents(pair[0]), percents(pair[1]),
                    reference["No Defense"], reference[column]))
    return facts or [f"No GTSRB defense has been run: every kcc cell reads {NOT_RUN}."]


def render(data, sources, choice, commands, figure_paths=None, discussion_text=""):
    """The report's markdown.

    Args:
        data: `load(sources)`.
        sources: a `Sources` (for the paths the report names).
        choice: a `Choice`.
        commands: `{"regenerate": ..., "render": ..., "made_by": ...}` command lines.
        figure_paths: `{"Figure 1": path, "Figure 3": path}` of drawn figures, if any.
        discussion_text: the contents of report_discussion.md.

    Returns:
        The markdown text.
    """
    discussion = discussion_sections(discussion_text)
    source = _relative(sources.discussion, sources.root)

    def slot(key):
        return _discussion_slot(discussion, key, source)

    zoo, purify = _zoo_provenance(data), _purify_provenance(data, choice)
    recipe = _recipe_provenance(data, choice)
    lines = _header(sources, choice, commands) + _provenance_section(data, choice) + _zoo_section(data)
    lines += _section(
        "Table 2: purification and compression together",
        [("ResNet-18 on CIFAR-10. No defense and the baselines on the full test split, C&C on "
         "purify_zoo's class-balanced slice, kcc's recipe (truncation, scan, distillation with "
         "the inverted triggers unlearned, or a refit where the scan flags nothing; `kcc.recipe`) "
         "on recipe_zoo's. Latency: kcc's on CPU with TFLite (1 thread), the "
         f"paper's on an {paper.TABLE_2_DEVICE}. tflite/benchmark.py times the original and "
         "C&C-compressed architectures only, so the ANP 2x, CLP 2x and kcc recipe latencies read "
         f"{NOT_RUN}."),
         *_missing(data, [CIFAR10_ENTRIES[a] for a in paper.TABLE_2])],
        [(None, table_2(data, choice))], _table_2_facts(data, choice),
        _provenance_line([zoo, _defend_provenance(data, ["anp2x", "clp2x"]), purify, recipe,
                          _tflite_provenance(data)]),
        slot("Table 2"))
    lines += _section(
        "Table 3: defenses against each attack",
        [("Rows are defenses, columns attacks (the paper's Table 3 transposed, so that nine "
         "defenses fit). A cell is kcc's ACC / ASR / RA with the paper's ACC / ASR in "
         "parentheses; the paper reports no RA and has no FT, FP or gradient-unlearning-pruning "
         "columns. An Average over fewer attacks than the paper's stands beside the paper's "
         "average over the same attacks. No defense and the baselines: full test split; C&C: "
         "purify_zoo's slice; kcc recipe: recipe_zoo's slice."),
         *_missing(data, [CIFAR10_ENTRIES[a] for block in paper.TABLE_3.values()
                          for a in block if a != "Average"])],
        [(block, table_3(data, choice, block)) for block in paper.TABLE_3],
        _table_3_facts(data, choice),
        _provenance_line([zoo, _defend_provenance(data, BASELINES), purify, recipe]),
        slot("Table 3"))
    lines += _section(
        "Table 7: the C&C-aware adaptive attack",
        [("The adaptive attack constrains the model with C&C's scaling step after every training "
         "epoch (`kcc.attacks.adaptive`); C&C is then run on it as on the original. No defense: "
         "full test split; C&C: purify_zoo's slice. kcc's recipe is run on both as a user would "
         "run it: the adaptive attack targets C&C's scaling, which kcc's recipe does not use."),
         *_missing(data, list(ADAPTIVE_ENTRIES.values()))],
        [(None, table_7(data, choice))], _table_7_facts(data, choice),
        _provenance_line([zoo, purify, recipe]), slot("Table 7"))
    lines += _section(
        "Table 8: scaling only, fine-tuning only, full C&C",
        [("From purify_zoo's stages: scaling only = Eq. 5-7 without truncation or fine-tuning; "
         "scaling + truncation adds Eq. 8 (kcc only); F.T. only = the same truncation and "
         "distillation at tau_scale = inf; full C&C = every step; kcc recipe = truncation "
         "without scaling, then distillation of every weight with the scan's inverted triggers "
         "unlearned, or a refit where the scan flags nothing (recipe_zoo's slice)."),
         *_missing(data, [CIFAR10_ENTRIES[a] for a in paper.TABLE_8])],
        [(None, table_8(data, choice))], _table_8_facts(data, choice),
        _provenance_line([purify, recipe]), slot("Table 8"))
    lines += _figures_section(data, sources, choice, figure_paths or {}, slot("Figures 1 and 3"))
    lines += _section(
        "GTSRB: the paper's Table 4, GTSRB half", _gtsrb_intro(data),
        [(None, table_gtsrb(data, choice))], _gtsrb_facts(data, choice),
        _provenance_line([zoo, _defend_provenance(data, ["clp"]), purify]), slot("GTSRB"))
    return "\n".join(lines).rstrip() + "\n"


def write_report(sources, choice, commands, figures=True):
    """Reads the inputs, draws the figures (if `figures` and the sweep exists) and writes the
    report atomically.

    Returns:
        The markdown text written to `sources.output`.
    """
    data = load(sources)
    figure_paths = {}
    if figures and data["tau_sweep"]:
        figure_paths = plot_figures(data["tau_sweep"], sources.figures_dir)
    discussion_text = ""
    if os.path.exists(sources.discussion):
        with open(sources.discussion) as f:
            discussion_text = f.read()
    text = render(data, sources, choice, commands, figure_paths, discussion_text)
    saving.write_text(text, sources.output)
    return text
