"""The command lines as a user meets them: help, refusals, quiet output, the verdict, reports."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from kcc import models
from kcc import progress
from kcc import synthesis
from kcc import verdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISE = ("cpu_feature_guard", "absl::InitializeLog", "WARNING:tensorflow", "retracing",
         "Unable to initialize backend", "Traceback")
TINY = ["--recipe=paper", "--cr=2", "--num_images=16", "--synthesis_steps=2", "--synthesis_batch_size=16",
        "--epochs=1", "--batch_size=16", "--pgd_steps=1"]


def _run(*args, backend=None, cwd=None):
    """`python *args` as a user would run it: no TF_CPP_MIN_LOG_LEVEL of the developer's."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if backend:
        env["KERAS_BACKEND"] = backend
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def _flags_defined_in(module):
    """Names of the flags a kcc tool defines, read from its source and `kcc/flag_groups.py`."""

    def parse(name):
        with open(os.path.join(ROOT, "kcc", f"{name}.py")) as f:
            return ast.parse(f.read())

    def defined(tree):
        return [node.args[0].value for node in ast.walk(tree)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr.startswith("DEFINE_") and isinstance(node.args[0], ast.Constant)]

    groups = {f.name: defined(f) for f in parse("flag_groups").body
              if isinstance(f, ast.FunctionDef)}
    tree = parse(module)
    used = [node.func.attr for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and getattr(node.func.value, "id", "") == "flag_groups"]
    return defined(tree) + [name for group in used for name in groups[group]]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny ResNet with BatchNorm statistics, a micro model (fast to load and train), one
    without BatchNorm, 64 labelled images."""
    folder = tmp_path_factory.mktemp("cli")
    model = models.resnet18(width=4)
    rng = np.random.default_rng(0)
    for layer in synthesis.batchnorm_layers(model):
        layer.moving_mean.assign(rng.normal(0, 0.3, layer.moving_mean.shape).astype("float32"))
        variance = rng.uniform(0.5, 2, layer.moving_variance.shape)
        layer.moving_variance.assign(variance.astype("float32"))
    model.save(folder / "tiny.keras")
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(32, 3),
                      keras.layers.Conv2D(32, 3), keras.layers.GlobalAveragePooling2D(),
                      keras.layers.Dense(10)]).save(folder / "nobn.keras")
    micro = keras.Sequential([
        keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, strides=2), keras.layers.Conv2D(8, 3),
        keras.layers.BatchNormalization(), keras.layers.ReLU(),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
    micro.layers[2].moving_variance.assign(rng.uniform(0.5, 2, 8).astype("float32"))
    micro.save(folder / "micro.keras")
    np.savez(folder / "eval.npz", x=rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
             y=np.arange(64) % 10)
    return folder


@pytest.mark.parametrize("tool, spelling, groups", [
    ("purify", "--help", ["model", "compression", "scan (kcc recipe)", "synthesis (no real data)",
                          "distillation",
                          "evaluation (only measured on)", "output"]),
    ("inspect", "-h", ["report"]),
    ("attack", "--helpshort", ["attack", "data and model", "training", "output"]),
    ("defend", "-?", ["defense", "model", "defender data", "evaluation (only measured on)",
                      "output"]),
])
def test_help_lists_every_flag_by_group(tool, spelling, groups):
    proc = _run("-m", f"kcc.{tool}", spelling, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    headers = [line[:-1] for line in text.splitlines() if re.fullmatch(r"[a-z][a-z ()]*:", line)]
    assert headers[:len(groups) + 1] == ["usage", *groups] and headers[-1] == "general", headers
    names = _flags_defined_in(tool)
    assert len(names) >= 2 and (tool == "inspect" or {"output", "overwrite"} <= set(names))
    for name in names:
        assert re.search(rf"^  --(\[no\])?{name}\b", text, re.M), name
    assert "--flagfile=FILE" in text and "--verbosity=N" in text
    if tool == "purify":
        assert ("presets (pass with --flagfile=FILE):\n  flags/purify_cpu.flags\n"
                "      kcc's recipe (the default) on a 2-core") in text
        assert verdict.LEGEND.split(".")[0] in " ".join(text.split())
        assert "0 to keep every rank" in text  # --help says what the --cr validator says
    assert not any(noise in proc.stderr for noise in NOISE), proc.stderr


# One process tries every command line (absl flags re-parsed each time) through the same
# functions as the console scripts, so each case costs no Python and Keras start-up.
_TRY_ALL = """
import contextlib, io, json, sys
from absl import flags
from kcc import cli
from kcc import purify
results = []
for argv in json.loads(sys.argv[1]):
    flags.FLAGS.unparse_flags()
    err, out, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = cli.call_main(purify.main, "kcc.purify",
                                 cli.parse_flags("kcc.purify", ["kcc.purify", *argv]))
        except SystemExit as e:
            code = e.code
    results.append([code, err.getvalue(), out.getvalue()])
print(json.dumps(results))
"""


def test_purify_refuses_bad_input_in_one_line_naming_the_flag(files, tmp_path):
    tiny, out = str(files / "tiny.keras"), str(tmp_path / "out.keras")
    existing = tmp_path / "existing.keras"
    existing.write_bytes(b"")
    evaluation = [f"--eval_data={files / 'eval.npz'}", "--attack=badnets"]
    cases = [  # before any file is read
        (["--cr=0.5"], r"flag --cr=0\.5: must be greater than 1 .*or 0 to keep every rank"),
        (["--cr=-2"], r"flag --cr=-2\.0: must be greater than 1"),
        (["--tau_scale=0"], r"flag --tau_scale=0\.0: must be greater than 0 \(inf turns "),
        (["--epochs=-1"], r"flag --epochs=-1: -1 is not a non-negative integer"),
        (["--synthesis_batch_size=1"], r"flag --synthesis_batch_size=1: 1 is not integer >= 2"),
        (["--epsilon=0"], r"flag --epsilon=0\.0: must be greater than 0"),
        (["--adversarial_cap=-1"], r"flag --adversarial_cap=-1\.0: must be greater than 0"),
        (["--output=out.h5"], r"flag --output=out\.h5: must end in \.keras"),
        (["--eval_data=nowhere.npz"], r"flag --eval_data=nowhere\.npz: must be a dataset name "
                                      r".*no such file"),
        (["--attack=nope"], r"flag --attack=nope: value should be one of"),
        (["--format=onnx"], r"flag --format=onnx: value should be one of"),
        (["--no_such_flag"], r"Unknown command line flag 'no_such_flag'"),
        (["stray"], r"Unexpected arguments: \['stray'\]"),
        # after reading the model, before evaluating it
        ([f"--model={tiny}", f"--output={tiny}", "--overwrite"],
         r"Refusing to overwrite the input file .*: choose another path with --output\."),
        ([f"--model={tiny}", f"--output={existing}"],
         r"existing\.keras exists: pass --overwrite \(overwrite=True\) to replace it, or choose "
         r"another path with --output\."),
        ([f"--model={tmp_path / 'missing.keras'}", f"--output={out}"],
         r"flag --model=.*missing\.keras: no such file"),
        ([f"--model={tiny}", f"--output={out}", "--cr=1000", *evaluation],
         r"--cr=1000 cannot be reached for this model: .* the largest ratio is \d+\.\d\d\.$"),
        ([f"--model={tiny}", f"--output={out}", "--cr=5", "--rank_multiple=8",  # 25.93 at 1
          *evaluation],
         r"--cr=5 cannot be reached for this model: with every decomposable convolution at its "
         r"lowest rank \(--rank_multiple=8; 1 allows rank 1\) the largest ratio is 3\.80\.$"),
        ([f"--model={files / 'nobn.keras'}", f"--output={out}", "--recipe=paper", *evaluation],
         r"no BatchNormalization layer.*--epochs=0 on the command line"),
        ([f"--model={files / 'nobn.keras'}", f"--output={out}", *evaluation],
         r"no BatchNormalization layer: the kcc recipe .* --recipe=paper --epochs=0"),
        (["--tau_scale=2"], r"--tau_scale is not used by --recipe=kcc; drop it or choose the other"),
        (["--recipe=paper", "--temperature=2", "--unlearning_weight=0"],
         r"--temperature, --unlearning_weight are not used by --recipe=paper"),
        (["--epochs=0"], r"--epochs=0 is the paper recipe's compression-only mode"),
    ]
    proc = _run("-c", _TRY_ALL, json.dumps([argv for argv, _ in cases]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.splitlines()[-1])
    for (argv, pattern), (code, stderr, stdout) in zip(cases, results):
        assert code == 2, (argv, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("kcc.purify: error: "), (argv, stderr)
        assert re.search(pattern, lines[0]), (argv, pattern, lines[0])
        assert "suspect:" not in stdout, argv  # refused before evaluating anything
    assert not os.path.exists(out)


def test_a_piped_purify_run_is_quiet_and_ends_with_the_verdict(files, tmp_path):
    output = str(tmp_path / "clean.keras")
    args = ["-m", "kcc.purify", f"--model={files / 'micro.keras'}", f"--output={output}",
            f"--eval_data={files / 'eval.npz'}", "--attack=badnets", *TINY]
    proc = _run(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not any(noise in proc.stderr for noise in NOISE), proc.stderr
    assert not re.search(r"[\x1b\r\b]", proc.stdout), "control characters in a piped log"
    assert re.search(r"^synthesis: 2/2 steps, \d+ s, .*bn_loss", proc.stdout, re.M)
    assert re.search(r"^adversarial images \(L2 PGD\): 1/1 steps, \d+ s$", proc.stdout, re.M)
    assert re.search(r"^distillation: 1/1 steps, \d+ s, .*eval_asr", proc.stdout, re.M)
    lines = proc.stdout.strip().splitlines()
    assert lines[-10] == "Measured on 64 labelled images (57 of them with the trigger):"
    assert [line.split()[0] for line in lines[-9:-2]] == [
        "suspect", "ACC", "ASR", "RA", "parameters", "FLOPs", "seconds"]
    assert lines[-2] == verdict.LEGEND
    report = json.load(open(tmp_path / "clean.json"))
    assert lines[-1] == report["verdict"]["sentence"]
    assert report["verdict"]["backdoor"] in ("removed", "reduced", "not_removed", "not_seen")
    assert report["command"] == " ".join([sys.executable, *args])
    assert report["rewrite"]["ratio"] >= 2 and report["format"] == "kcc"
    loaded = keras.saving.load_model(output)
    assert all(layer.trainable for layer in loaded.layers)


def test_jax_start_up_is_quiet_and_verbosity_brings_the_details_back(files, tmp_path):
    common = ["-m", "kcc.purify", f"--model={files / 'micro.keras'}", "--cr=2", "--recipe=paper",
              "--epochs=0"]
    proc = _run(*common, f"--output={tmp_path / 'a.keras'}", backend="jax")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not any(noise in proc.stderr for noise in NOISE), proc.stderr
    assert "no evaluation data given: run `kcc.scan` or pass `--eval_data`" in proc.stdout
    proc = _run(*common, f"--output={tmp_path / 'b.keras'}", "--verbosity=0", backend="jax")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ranks kept per layer" in proc.stderr  # the rank table is an INFO log


def test_console_scripts_are_installed(files):
    folder = os.path.dirname(sys.executable)
    for name in ("kcc-purify", "kcc-scan", "kcc-inspect", "kcc-attack", "kcc-defend"):
        assert shutil.which(name, path=folder), f"{name}: run pip install -e . again"
    script = os.path.join(folder, "kcc-inspect")
    proc = subprocess.run([script, str(files / "tiny.keras"), "--json"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["ok"] is True


def test_progress_is_plain_lines_when_stdout_is_not_a_terminal(monkeypatch, capsys):
    monkeypatch.setattr(progress, "interactive", lambda: False)
    shown = progress.Progress(10, "stage", interval=3600)
    for step in range(1, 11):
        shown.update(step, [("loss", 1.0 / step)])
    assert re.fullmatch(r"stage: 10/10 steps, \d+ s, loss 0\.1\n", capsys.readouterr().out)
    every = progress.Progress(3, "stage", unit="batch", interval=0)
    for step in (1, 2, 3):
        every.update(step)
    assert len(capsys.readouterr().out.splitlines()) == 3


@pytest.mark.slow  # about a minute: training data, and ACC/ASR on the whole CIFAR-10 test split
def test_a_piped_attack_run_writes_plain_epoch_lines_and_the_command(tmp_path):
    from tests.conftest import cifar10_or_skip

    cifar10_or_skip()
    output = str(tmp_path / "infected.keras")
    args = ["-m", "kcc.attack", "--attack=badnets", "--train_subset=200", "--epochs=1",
            "--width=4", "--batch_size=50", f"--output={output}"]
    proc = _run(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not re.search(r"[\x1b\r\b]", proc.stdout), "control characters in a piped log"
    assert re.search(r"^4/4 - \d+s - ", proc.stdout, re.M), proc.stdout  # Keras' plain epoch line
    assert not any(noise in proc.stderr for noise in NOISE), proc.stderr
    sidecar = json.load(open(tmp_path / "infected.json"))
    assert sidecar["command"] == " ".join([sys.executable, *args])
