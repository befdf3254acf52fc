import os
import subprocess
import sys

import numpy as np

from kcc import models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_clean_and_compact_example_runs_on_a_tiny_model(tmp_path):
    path = str(tmp_path / "tiny.keras")
    models.resnet18(width=4).save(path)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "eval.npz", x=rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
             y=rng.integers(0, 10, 16))
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "clean_and_compact.py"), f"--model={path}",
         f"--eval_data={tmp_path / 'eval.npz'}", "--num_images=16", "--steps=2", "--epochs=1"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "purified:" in proc.stdout and "parameters" in proc.stdout
