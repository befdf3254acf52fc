"""The reproduction report (benchmarks/reproduce_report.py) renders from JSON fixtures alone:
numbers land in their cells beside the paper's, missing runs read "not run", and
benchmarks/reproduce.py --quick directs every output to its own folder; the zoo's test slice
fits datasets whose smallest class is small (GTSRB)."""

import json
import os
import pathlib
import subprocess
import sys
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

import paper_numbers  # benchmarks/paper_numbers.py, on the path above
import reproduce_report  # benchmarks/reproduce_report.py

COMMANDS = {"regenerate": "REGENERATE-ALL", "render": "RENDER-ONLY", "made_by": "MADE-BY"}


def _ev(acc, asr, ra):
    return {"acc": acc, "asr": asr, "ra": ra, "n_triggered": 900}


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _sidecar(attack, mode, acc, asr, ra, **extra):
    return {"attack": {"name": attack, "mode": mode, "target": 0} if attack else None,
            "dataset": "cifar10", "width": 16, "epochs": 20, "trainable_params": 701466,
            "train_seconds": 600.0, "acc": acc, "asr": asr, "ra": ra, **extra}


def _purify_row(key, suspect, scaled, compressed, purified, params_after=350654):
    model, cr, run, tau, reading = key.split("/")
    return {"model": model, "cr": float(cr[2:]), "run": run,
            "tau_scale": "inf" if tau == "tauinf" else float(tau[3:]),
            "budget": {"num_images": 1024, "synthesis_steps": 100, "epochs": 5,
                       "reading": reading, "adversarial_cap": None,
                       "distillation_bn_momentum": 0.9},
            "machine": "fixture-machine",
            "evaluation": {"suspect": suspect, "scaled": scaled, "compressed": compressed,
                           "purified": purified},
            "params": [701466, params_after], "seconds": {}}


def _defend_row(model, method, defended, data=None, **extra):
    return {"model": model, "method": method, "budget": {"iterations": 300, "seed": 0},
            "data": data, "suspect": _ev(0.81, 0.97, 0.02), "defended": defended,
            "params_before": 701466, "params_after": 701466, "ratio": 2.0, "report": extra}


@pytest.fixture
def sources(tmp_path):
    """Fixture results: BadNets and WaNet all-to-one, the adaptive BadNets and the clean model in
    the zoo; C&C, fine-tuning only, ANP 2x and FT on BadNets; a tau sweep; a TFLite run."""
    zoo, results = tmp_path / "zoo", tmp_path / "results"
    _write(zoo / "badnets_all2one.json", _sidecar("badnets", "all2one", 0.81, 0.97, 0.02))
    _write(zoo / "wanet_all2one.json", _sidecar("wanet", "all2one", 0.83, 0.95, 0.04))
    _write(zoo / "adaptive_badnets_all2one.json", _sidecar(
        "badnets", "all2one", 0.78, 0.91, 0.05, adaptive={"tau_scale": 2.0, "reading": "text"}))
    _write(zoo / "clean.json", _sidecar(None, None, 0.85, None, None))
    data = {"dataset": "cifar10", "split": "train", "fraction": 0.01, "per_class": None,
            "train_images": 450, "validation_images": 50}
    _write(results / "purify_zoo.json", {
        "eval_per_class": 200,
        "rows": {
            "badnets_all2one/cr2/cc/tau2.0/text": _purify_row(
                "badnets_all2one/cr2/cc/tau2.0/text",
                _ev(0.80, 0.96, 0.03), _ev(0.50, 0.30, 0.31), _ev(0.45, 0.25, 0.33),
                _ev(0.6123, 0.0456, 0.40)),
            "badnets_all2one/cr2/ft_only/tauinf/text": _purify_row(
                "badnets_all2one/cr2/ft_only/tauinf/text",
                _ev(0.80, 0.96, 0.03), _ev(0.80, 0.96, 0.03), _ev(0.78, 0.88, 0.1),
                _ev(0.79, 0.90, 0.07)),
            # Another C&C setting: the report (tau 2, text) must not show it.
            "badnets_all2one/cr3/cc/tau3.0/literal": _purify_row(
                "badnets_all2one/cr3/cc/tau3.0/literal",
                _ev(0.80, 0.96, 0.03), _ev(0.2, 0.1, 0.2), _ev(0.2, 0.1, 0.2),
                _ev(0.11, 0.22, 0.33), 233612),
            "adaptive_badnets_all2one/cr2/cc/tau2.0/text": _purify_row(
                "adaptive_badnets_all2one/cr2/cc/tau2.0/text",
                _ev(0.78, 0.91, 0.05), _ev(0.6, 0.2, 0.3), _ev(0.6, 0.2, 0.3),
                _ev(0.70, 0.03, 0.60)),
        }})
    _write(results / "defend_zoo.json", {"machine": "fixture-machine", "rows": {
        "badnets_all2one/anp2x": _defend_row("badnets_all2one", "anp2x", _ev(0.20, 0.01, 0.15),
                                             data, effective_params_after=350000),
        "badnets_all2one/ft": _defend_row("badnets_all2one", "ft", _ev(0.80, 0.50, 0.10), data),
    }})
    def recipe_row(model, revision, suspect, purified, refreshed, steps=100):
        return {"model": model, "cr": 2.0, "machine": "fixture-machine",
                "budget": {"num_images": 1024, "synthesis_steps": steps, "epochs": 5,
                           "per_class": 100, "revision": revision},
                "evaluation": {"suspect": suspect, "purified": purified,
                               "purified, BN re-estimated": refreshed},
                "params": [701466, 350694]}

    _write(results / "recipe_zoo.json", {
        # An older revision of kcc's recipe: the report (newest revision) must not show it.
        "badnets_all2one|old": recipe_row("badnets_all2one", 6, _ev(0.80, 0.96, 0.03),
                                          _ev(0.11, 0.11, 0.11), _ev(0.11, 0.11, 0.11)),
        "badnets_all2one|new": recipe_row("badnets_all2one", 7, _ev(0.80, 0.96, 0.03),
                                          _ev(0.785, 0.02, 0.77), _ev(0.78, 0.12, 0.7)),
        # Same revision at another synthesis budget, written last: not the report's row.
        "badnets_all2one|200": recipe_row("badnets_all2one", 7, _ev(0.80, 0.96, 0.03),
                                          _ev(0.22, 0.22, 0.22), _ev(0.22, 0.22, 0.22),
                                          steps=200),
        "clean|new": recipe_row("clean", 7, _ev(0.85, None, None), _ev(0.84, None, None),
                                _ev(0.84, None, None)),
    })
    point = {"acc": 0.8, "asr": 0.9, "ra": 0.05, "h_clean": 0.3, "h_trigger": 0.5,
             "recalibrated": _ev(0.77, 0.99, 0.01)}
    _write(results / "tau_sweep.json", {"per_class": 200, "points": {
        "badnets_all2one/none/inf": point,
        "badnets_all2one/text/4": {**point, "scaled": 1},
        "badnets_all2one/text/2": {**point, "acc": 0.45, "asr": 0.05, "h_trigger": 0.31,
                                   "scaled": 100},
    }})
    latency = {"1": {"median_ms": 10.0, "speedup": 1.0}}
    _write(tmp_path / "tflite.json", {
        "environment": {"cpu": "fixture-cpu", "cores": 2, "tensorflow": "x", "ai_edge_litert": "y"},
        "flags": {"xnnpack": True, "warmup": 3, "runs": 20, "tau_scale": 4.0},
        "models": {"resnet18_w64": {"rows": {
            "original/float": {"params": 11173962, "latency": latency},
            "cr2_m1/float": {"params": 5585728,
                             "latency": {"1": {"median_ms": 6.25, "speedup": 1.6}}},
        }}}})
    discussion = tmp_path / "discussion.md"
    discussion.write_text("# notes\n\n## Table 2: a heading\n\nHuman words for table two.\n")
    return reproduce_report.Sources(
        root=str(tmp_path), zoo_dir=str(zoo), results_dir=str(results),
        tflite_json=str(tmp_path / "tflite.json"), discussion=str(discussion),
        output=str(tmp_path / "out" / "REPORT.md"), figures_dir=str(tmp_path / "out" / "figs"))


def _render(sources, **choice):
    return reproduce_report.write_report(sources, reproduce_report.Choice(**choice), COMMANDS,
                                         figures=False)


def _table(text, heading):
    """`{first cell: {column: cell}}` of the first table after the line `heading`."""
    lines = text.split(heading + "\n", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    header, body = rows[0], rows[2:]
    return {row[0]: dict(zip(header, row)) for row in body}


def test_numbers_land_in_their_cells(sources):
    text = _render(sources)
    table_2 = _table(text, "## Table 2: purification and compression together")
    assert table_2["BadNet"]["No Defense: ACC / ASR"] == "81.00 / 97.00 (paper 94.13 / 97.96)"
    assert table_2["BadNet"]["ANP 2x: ACC / ASR"] == "20.00 / 1.00 (paper 10.00 / 0.00)"
    assert table_2["BadNet"]["C&C 2x: ACC / ASR"] == "61.23 / 4.56 (paper 92.16 / 2.88)"
    # The cr 3 row was made at another tau and reading, so C&C 3x was not run at this setting.
    assert table_2["BadNet"]["C&C 3x: ACC / ASR"] == "not run (paper 91.25 / 1.30)"
    assert table_2["Parameters"]["ANP 2x: ACC / ASR"] == "350,000 effective (paper 5.58M)"
    assert table_2["Parameters"]["C&C 2x: ACC / ASR"] == "350,654 (paper 5.58M)"
    latency = table_2["TFLite median latency, 1 thread (paper: GPU)"]
    assert latency["C&C 2x: ACC / ASR"] == "6.250 ms (paper 0.143 ms)"
    assert table_2["Speed Up, 1 thread"]["C&C 2x: ACC / ASR"] == "1.60x (paper 1.41x)"

    table_3 = _table(text, "### all-to-one")
    assert table_3["FT"]["BadNet (`badnets_all2one`)"] == "80.00 / 50.00 / 10.00 (not in paper)"
    assert table_3["FT"]["data used (kcc)"] == (
        "cifar10 train, 1% per class: 450 + 50 validation images")
    assert table_3["C&C"]["BadNet (`badnets_all2one`)"] == (
        "61.23 / 4.56 / 40.00 (paper 92.27 / 4.52)")
    assert table_3["No defense"]["Average"] == (
        "82.00 / 96.00 / 3.00 over 2 of 6 (paper over the same: 93.92 / 98.64)")

    table_7 = _table(text, "## Table 7: the C&C-aware adaptive attack")
    assert table_7["BadNet"]["C&C, Adap. Att.: ACC / ASR"] == "70.00 / 3.00 (paper 92.58 / 3.79)"
    assert table_7["BadNet"]["No defense, adaptive attack (kcc only): ACC / ASR"] == (
        "78.00 / 91.00 (not in paper)")

    table_8 = _table(text, "## Table 8: scaling only, fine-tuning only, full C&C")
    assert table_8["BadNet"]["Scaling Only: ACC / ASR"] == "50.00 / 30.00 (paper 92.01 / 14.29)"
    assert table_8["BadNet"]["F.T. Only: ACC / ASR"] == "79.00 / 90.00 (paper 93.93 / 96.70)"
    assert table_8["BadNet"]["Full C&C: ACC / ASR"] == "61.23 / 4.56 (paper 92.27 / 4.52)"


def test_kcc_recipe_rows_show_the_newest_revision_against_the_issue_bars(sources):
    text = _render(sources)
    table_2 = _table(text, "## Table 2: purification and compression together")
    assert table_2["BadNet"]["kcc recipe 2x: ACC / ASR"] == "78.50 / 2.00 (not in paper)"
    assert table_2["BadNet"]["kcc recipe 3x: ACC / ASR"] == "not run (not in paper)"
    assert table_2["Parameters"]["kcc recipe 2x: ACC / ASR"] == "350,694 (not in paper)"
    table_3 = _table(text, "### all-to-one")
    assert table_3["kcc recipe"]["BadNet (`badnets_all2one`)"] == (
        "78.50 / 2.00 / 77.00 (not in paper)")
    assert table_3["kcc recipe"]["data used (kcc)"] == "data-free: 1024 synthetic images"
    assert _table(text, "## Table 8: scaling only, fine-tuning only, full C&C")["BadNet"][
        "kcc recipe: ACC / ASR"] == "78.50 / 2.00 (not in paper)"
    assert ("kcc recipe (revision 7) on `badnets_all2one` at cr 2: ACC 80.00 -> 78.50, ASR "
            "96.00 -> 2.00%; ACC bar (within 3 points): met; ASR bar (5%): met; after "
            "BatchNorm re-estimation ASR 12.00% (bar 10%: missed by 2.00 points).") in text
    assert ("kcc recipe (revision 7) on `clean` at cr 2: ACC 85.00 -> 84.00; the clean model's "
            "bar (within 2 points): met.") in text
    assert "kcc recipe (recipe_zoo.json, revision 7 of `benchmarks/recipe_zoo.py`)" in text
    # Pinning the older revision shows it instead.
    old = _table(_render(sources, recipe_revision=6), "### all-to-one")
    assert old["kcc recipe"]["BadNet (`badnets_all2one`)"] == "11.00 / 11.00 / 11.00 (not in paper)"


def test_flagged_models_rows_stand_for_a_revision_that_changed_only_the_unflagged_path():
    def row(model, revision, scan):
        return {"model": model, "cr": 2.0, "budget": {"revision": revision}, "scan": scan}

    flagged = row("badnets_all2one", 8, "BACKDOORED: suspected target class(es) 0 (p = 1e-9).")
    rows = {"a": row("badnets_all2one", 7, flagged["scan"]), "b": flagged,
            "c": row("badnets_all2all", 8, "No backdoor found: no class stands out."),
            "d": row("clean", 9, "No backdoor found: no class stands out.")}
    choice = reproduce_report.Choice()
    assert reproduce_report.kcc_row(rows, "badnets_all2one", 2, choice) is flagged
    assert reproduce_report.kcc_row(rows, "badnets_all2all", 2, choice) is None  # path changed
    assert reproduce_report.kcc_row(rows, "clean", 2, choice) is rows["d"]
    rows["a"]["budget"]["revision"] = 9
    assert reproduce_report.kcc_row(rows, "badnets_all2one", 2, choice) is rows["a"]


def test_missing_runs_and_models_read_not_run(sources):
    text = _render(sources)
    table_2 = _table(text, "## Table 2: purification and compression together")
    for column, value in table_2["WaNet A2A"].items():
        if column.startswith("kcc recipe"):
            assert value == "not run (not in paper)", (column, value)
        elif column not in ("Attack", "zoo entry"):
            assert value.startswith("not run (paper "), (column, value)
    assert table_2["WaNet"]["No Defense: ACC / ASR"].startswith("83.00 / 95.00")
    assert table_2["WaNet"]["C&C 2x: ACC / ASR"] == "not run (paper 92.38 / 1.41)"
    missing = text.split("Not in the zoo yet (not run): ", 1)[1].split("\n", 1)[0]
    assert "`blended_all2one`" in missing and "`wanet_all2one`" not in missing
    assert "The zoo holds no GTSRB model yet" in text
    gtsrb = _table(text, "## GTSRB: the paper's Table 4, GTSRB half")
    assert gtsrb["BadNet"]["CLP: ACC / ASR"] == "not run (paper 98.70 / 8.52)"


def test_renders_with_no_results_at_all(tmp_path):
    empty = reproduce_report.Sources(
        root=str(tmp_path), zoo_dir=str(tmp_path / "zoo"), results_dir=str(tmp_path / "r"),
        tflite_json=str(tmp_path / "none.json"), discussion=str(tmp_path / "none.md"),
        output=str(tmp_path / "REPORT.md"), figures_dir=str(tmp_path / "figs"))
    text = _render(empty)
    table_2 = _table(text, "## Table 2: purification and compression together")
    assert table_2["BadNet"]["C&C 4x: ACC / ASR"] == "not run (paper 90.77 / 0.71)"
    assert table_2["BadNet"]["No Defense: ACC / ASR"] == "not run (paper 94.13 / 97.96)"
    assert "C&C: not run (no purify_zoo.json)" in text
    assert "The tau sweep is not run." in text
    assert not os.path.exists(tmp_path / "figs")


def test_paper_columns_budgets_and_machines_are_shown(sources):
    text = _render(sources)
    table_3 = _table(text, "### all-to-all")
    assert table_3["NAD"]["data (paper)"] == "1% clean"
    assert table_3["CLP"]["BadNet A2A (`badnets_all2all`)"] == "not run (paper 86.67 / 1.88)"
    assert table_3["C&C"]["Average"] == "not run (paper 92.45 / 1.64)"
    assert "num_images=1024, synthesis_steps=100, epochs=5" in text
    # Only the budgets of the rows shown (text reading) are listed, not the literal-reading row's.
    assert "reading=text" in text and "reading=literal" not in text
    assert "anp2x: iterations=300, seed=0" in text
    assert "machine: fixture-machine" in text and "machine: fixture-cpu, 2 cores" in text
    assert "full test split; machine: not recorded)" in text  # the fixture sidecars name none


def test_generated_sentences_state_the_bar(sources):
    text = _render(sources)
    assert ("C&C 2x on `badnets_all2one`: ACC 80.00 -> 61.23 (-18.77 points; paper -1.97), "
            "ASR 96.00 -> 4.56 (paper 97.96 -> 2.88).") in text
    assert "ACC drop 18.77 points, missed by 14.77 points; ASR 4.56%, met." in text
    assert "the paper's claim of ASR below 5%: met." in text
    assert "moves ASR from 5.00% to 99.00%" in text


def test_header_command_and_discussion_slot(sources):
    text = _render(sources)
    head = text.splitlines()[:6]
    assert head[0].startswith("# ")
    assert "`REGENERATE-ALL`" in head[2] and "`RENDER-ONLY`" in head[4]
    slot = text.split("<!-- discussion: Table 2", 1)[1].split("<!-- /discussion -->", 1)[0]
    assert "Human words for table two." in slot
    slot = text.split("<!-- discussion: Table 7", 1)[1].split("<!-- /discussion -->", 1)[0]
    assert "(No `## Table 7: ...` section in discussion.md yet.)" in slot


def test_paper_averages_agree_with_their_rows():
    """Catches a mistyped transcription: each printed Average is the mean of its rows."""
    blocks = [*paper_numbers.TABLE_3.values(), paper_numbers.TABLE_4_GTSRB]
    for block in blocks:
        rows = [r for name, r in block.items() if name != "Average"]
        for column, average in block["Average"].items():
            for i in (0, 1):
                mean = sum(r[column][i] for r in rows) / len(rows)
                assert abs(mean - average[i]) <= 0.015, (column, i, mean, average)


def test_figures_are_drawn(sources):
    pytest.importorskip("matplotlib")
    text = reproduce_report.write_report(sources, reproduce_report.Choice(), COMMANDS)
    for name in ("figure1.png", "figure3.png"):
        assert os.path.getsize(os.path.join(sources.figures_dir, name)) > 1000
        assert f"(figs/{name})" in text


def test_quick_dry_run_writes_only_under_its_folder(tmp_path):
    quick = str(tmp_path / "quick")
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "reproduce.py"), "--quick", "--dry_run",
         f"--quick_dir={quick}"], capture_output=True, text=True, timeout=60, cwd=ROOT,
        check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("== ")]
    steps = [line.split(":", 1)[0][3:] for line in lines]
    assert steps == ["zoo", "tau_sweep", "purify", "defend", "tflite", "report"]
    for line in lines[:4]:
        assert f"--results_dir={quick}/results" in line, line
    assert f"--output={quick}/tflite/benchmark" in lines[4]
    assert f"--work_dir={quick}/tflite/work" in lines[4]
    assert f"{quick}/REPORT.md" in lines[5]
    assert "benchmarks/results" not in proc.stdout and "tflite/results" not in proc.stdout
    assert "--table_only" in lines[0] and "--epochs=1" in lines[2]
    assert not os.path.exists(quick)


def test_rows_with_their_own_evaluation_size_are_named(sources):
    assert "evaluated on 200 test images per class;" in _render(sources)
    path = pathlib.Path(sources.results_dir, "purify_zoo.json")
    with open(path) as f:
        purify = json.load(f)
    purify["rows"]["adaptive_badnets_all2one/cr2/cc/tau2.0/text"]["eval_per_class"] = 60
    _write(path, purify)
    text = _render(sources)
    assert ("evaluated on 200 test images per class for badnets_all2one; 60 test images per class "
            "for adaptive_badnets_all2one;") in text


def test_zoo_test_slice_shrinks_to_the_smallest_class(monkeypatch):
    # GTSRB's smallest test class has 60 images, so purify_zoo's default of 200 per class must
    # give way to it instead of stopping the reproduce run.
    import numpy as np
    import zoo  # benchmarks/zoo.py

    y = np.repeat(np.arange(43), 5)
    y[:2] = 1  # class 0 keeps 3 images
    x = np.zeros((len(y), 32, 32, 3), "float32")
    monkeypatch.setattr(zoo.data, "load", lambda name, split: (x, y))
    monkeypatch.setattr(zoo.intake, "load_suspect",
                        lambda path: types.SimpleNamespace(outputs=[np.zeros((1, 43))]))
    monkeypatch.setattr(zoo.evaluation, "attack_for", lambda path, num_classes: None)
    _, _, x_slice, y_slice, sidecar = zoo.load_entry("gtsrb_badnets_all2one", per_class=200)
    assert sidecar["dataset"] == "gtsrb"
    assert np.bincount(y_slice).tolist() == [3] * 43
    assert len(x_slice) == 3 * 43
    _, _, _, y_slice, _ = zoo.load_entry("gtsrb_badnets_all2one", per_class=2)
    assert np.bincount(y_slice).tolist() == [2] * 43
