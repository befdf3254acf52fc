"""Untrusted-model intake: every crafted file is refused with its own message, quickly, without
running its payload; every benign kcc model passes and loads unchanged."""

import glob
import importlib
import json
import math
import os
import re
import subprocess
import sys
import time

import h5py
import keras
import numpy as np
import pytest

from kcc import intake
from kcc import models
from kcc import training
from tests import intake_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = sorted(glob.glob(os.path.join(ROOT, "examples", "zoo", "*.keras")))
MAX_SECONDS = 2.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    cases = intake_corpus.build_corpus(folder)
    yield folder, {case.name: case for case in cases}
    assert not os.path.exists(intake_corpus.canary_path(folder)), "a payload ran"


def _error_text(report):
    return "\n".join(finding.line() for finding in report.errors)


def _timed_inspect(path, **kwargs):
    start = time.perf_counter()
    report = intake.inspect(path, **kwargs)
    return report, time.perf_counter() - start


@pytest.mark.parametrize("name", intake_corpus.NAMES)
def test_crafted_file_is_refused(corpus, name):
    folder, cases = corpus
    case = cases[name]
    report, seconds = _timed_inspect(case.path)
    assert not report.ok
    assert report.errors, report.findings
    assert re.search(case.match, _error_text(report)), (
        f"{name}: expected /{case.match}/ in:\n{_error_text(report)}")
    assert seconds < MAX_SECONDS, f"{name} took {seconds:.2f} s"
    with pytest.raises(intake.UnsafeModelError, match=case.match):
        intake.load_suspect(case.path)
    assert not os.path.exists(intake_corpus.canary_path(folder)), f"{name}: the payload ran"


def test_refusal_lines_are_single_lines(corpus):
    _, cases = corpus
    for case in cases.values():
        for finding in intake.inspect(case.path).findings:
            assert "\n" not in finding.line() and finding.line().isprintable(), finding


def test_lambda_payload_is_live_and_trust_source_runs_it(tmp_path):
    """The corpus has teeth: with trust_source=True the Lambda's bytecode does run."""
    path = intake_corpus.write_lambda_model(tmp_path, intake_corpus.save_benign(tmp_path))
    canary = intake_corpus.canary_path(tmp_path)
    report = intake.inspect(path, trust_source=True)
    assert report.ok and report.trusted
    assert any(f.severity == intake.WARNING and "Lambda" in f.message for f in report.findings)
    assert any(f.severity == intake.INFO and "trust_source=True" in f.message
               for f in report.findings)
    assert not os.path.exists(canary)
    intake.load_suspect(path, trust_source=True)
    assert os.path.exists(canary)


def test_trust_source_keeps_container_and_weights_checks(corpus):
    _, cases = corpus
    for name in ("zip_bomb", "path_traversal", "h5_external_link", "deep_json", "legacy_h5",
                 "savedmodel"):
        report = intake.inspect(cases[name].path, trust_source=True)
        assert not report.ok, name
        assert report.trusted


def _check_benign(model, path, expect_batchnorm=True):
    report, seconds = _timed_inspect(path)
    assert report.ok, _error_text(report)
    assert [f for f in report.findings if f.severity != intake.INFO] == []
    assert seconds < MAX_SECONDS
    assert report.format == "keras" and report.keras_version == keras.__version__
    assert report.trainable_params == models.trainable_params(model)
    total = sum(math.prod(w.shape) for w in model.weights)
    assert report.trainable_params + report.non_trainable_params == total
    assert report.has_batchnorm == expect_batchnorm
    json.dumps(report.to_dict())
    x = np.random.default_rng(0).uniform(size=(2, *model.input_shape[1:])).astype("float32")
    loaded = intake.load_suspect(path)
    np.testing.assert_array_equal(_outputs(loaded, x), _outputs(model, x))
    return report


def _outputs(model, x):
    """Inference outputs: one compiled program on JAX (eager JAX compiles every op), eager
    elsewhere (faster than tracing a graph for a single batch)."""
    if keras.backend.backend() == "jax":
        return model.predict(x, verbose=0)
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.mark.parametrize("name", sorted(models.ARCHITECTURES))
def test_kcc_architectures_pass_and_load_unchanged(tmp_path, name):
    model = models.get(name, width=4)
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    report = _check_benign(model, path)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
             and layer.get_config()["groups"] == 1 and layer.kernel.shape[2] > 3]
    assert sorted(c["name"] for c in report.decomposable_convs) == sorted(c.name for c in convs)
    assert report.model_class == "Functional" and report.model_name == name
    assert sum(report.layer_counts.values()) == report.num_layers == len(model.layers)


def test_nested_model_passes_and_loads_unchanged(tmp_path):
    model = intake_corpus.nested_model()
    path = str(tmp_path / "nested.keras")
    model.save(path)
    report = _check_benign(model, path)
    assert report.layer_counts["Functional"] == 1


def test_compiled_model_with_optimizer_state_passes(tmp_path):
    model = models.resnet18(width=4)
    training.compile_classifier(model, training.sgd(0.1, 100))
    model.optimizer.build(model.trainable_variables)
    path = str(tmp_path / "compiled.keras")
    model.save(path)
    report = _check_benign(model, path)
    weights = sum(math.prod(w.shape) * 4 for w in model.weights)
    assert report.weights_bytes > weights  # The optimizer's momentum is in the file too.


def test_tucker_model_passes_and_loads_unchanged(tmp_path):
    layers = pytest.importorskip("kcc.layers")
    conv = keras.layers.Conv2D(8, 3, padding="same", name="conv")
    conv.build((None, 8, 8, 6))
    inputs = keras.Input((8, 8, 6))
    x = layers.TuckerConv2D.from_conv(conv, ranks=(4, 3))(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    path = str(tmp_path / "tucker.keras")
    model.save(path)
    _check_benign(model, path, expect_batchnorm=False)


@pytest.mark.parametrize("path", ZOO or [None], ids=[os.path.basename(p) for p in ZOO] or
                         ["none"])
def test_zoo_model_passes(path):
    if path is None:
        pytest.skip("no examples/zoo/*.keras yet")
    report, seconds = _timed_inspect(path)
    assert report.ok, _error_text(report)
    assert seconds < MAX_SECONDS


def test_limits_are_configurable(corpus):
    folder, _ = corpus
    path = os.path.join(folder, "benign.keras")
    report = intake.inspect(path, limits=intake.Limits(max_weights_bytes=1024))
    assert not report.ok
    assert "'model.weights.h5' declares" in _error_text(report)


def test_weights_shapes_are_checked_before_reading(corpus, monkeypatch):
    """`inspect` reads no weights array: only HDF5 metadata."""
    folder, cases = corpus

    def no_read(*args, **kwargs):
        raise AssertionError("inspect read a dataset")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", no_read)
    monkeypatch.setattr(h5py.Dataset, "__array__", no_read)
    assert intake.inspect(os.path.join(folder, "benign.keras")).ok
    assert not intake.inspect(cases["h5_wrong_shape"].path).ok


@pytest.mark.parametrize("raw, depth", [
    (b"1", 0), (b"[]", 1), (b'{"a": [[1], {"b": {}}]}', 4), (b'["[[[", "]"]', 1),
    (b'["\\"[[[", 2]', 1), (b'["\\\\", [[]]]', 3), (b"[" * 100_000, 100_000),
])
def test_json_depth(raw, depth):
    assert intake.json_depth(raw) == depth


def test_allowlist_names_exist_in_keras():
    for module, name in intake.ALLOWED_CLASSES:
        namespace = importlib.import_module(module)
        assert isinstance(getattr(namespace, name, None), type), f"{module}.{name}"
    for module, names in intake.ALLOWED_FUNCTIONS.items():
        namespaces = [keras.activations, keras.losses, keras.metrics] if module == "builtins" \
            else [importlib.import_module(module)]
        for name in names:
            assert any(callable(getattr(ns, name, None)) for ns in namespaces), f"{module}.{name}"


def _cli(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "kcc.inspect", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_cli(corpus):
    folder, cases = corpus
    code, out = _cli(os.path.join(folder, "benign.keras"))
    assert code == 0, out
    assert "result: OK" in out and "BatchNorm present: yes" in out
    assert "decomposable convs" in out and "trainable parameters: " in out
    # One refusal through the command line (each case is refused in-process above).
    code, out = _cli(cases["lambda_layer"].path)
    assert code == 1, out
    assert "Traceback" not in out
    assert re.search(cases["lambda_layer"].match, out), out
    code, out = _cli("--json", cases["h5_wrong_shape"].path)
    assert code == 1 and "Traceback" not in out
    report = json.loads(out)
    assert report["ok"] is False and report["findings"][0]["severity"] == "error"
    code, out = _cli()  # a bad command line is status 2, as in every kcc tool; 1 means refused
    assert code == 2 and "Traceback" not in out
    assert out.strip().splitlines()[-1].startswith("kcc.inspect: error: Expected exactly one")
