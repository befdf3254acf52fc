"""benchmarks/paper_scale.py: the carry-sized archive and the table rendered from its JSON."""

import io
import os
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

import paper_scale  # benchmarks/paper_scale.py, on the path above


def _archive(path, per_class):
    with zipfile.ZipFile(path, "w") as zf:
        for split, count in per_class.items():
            for label in ("airplane", "cat"):
                for i in range(count):
                    image = io.BytesIO()
                    Image.fromarray(np.full((32, 32, 3), i, np.uint8)).save(image, "PNG")
                    zf.writestr(f"cifar10/{split}/{label}/{i:04d}.png", image.getvalue())


def test_pack_keeps_every_training_image_and_samples_the_test_split(tmp_path, monkeypatch):
    _archive(tmp_path / "cifar10.zip", {"train": 6, "test": 5})
    monkeypatch.setenv("KCC_DATA_DIR", str(tmp_path))
    paper_scale._pack(str(tmp_path / "packed"), test_per_class=2)
    names = zipfile.ZipFile(tmp_path / "packed" / "cifar10.zip").namelist()
    assert sum(n.startswith("cifar10/train/") for n in names) == 12
    for label in ("airplane", "cat"):
        assert sum(n.startswith(f"cifar10/test/{label}/") for n in names) == 2
    paper_scale._pack(str(tmp_path / "again"), test_per_class=2)  # seeded: the same sample
    assert zipfile.ZipFile(tmp_path / "again" / "cifar10.zip").namelist() == names


def test_table_shows_every_stage_and_sweep_point():
    evaluation = {stage: {"acc": 0.5, "asr": 0.25, "ra": 0.125} for stage in
                  ("suspect", "scaled", "compressed", "purified")}
    state = {
        "machine": "test machine", "commands": ["paper_scale.py --runs=2:4"], "test_images": 20,
        "budget": {"num_images": 8, "synthesis_steps": 2, "epochs": 5, "batch_size": 128,
                   "pgd_steps": 10, "reading": "text"},
        "models": {"badnets_all2one": {
            "train": {"epochs": 1, "width": 4, "train_seconds": 1.0, "acc": 0.9, "asr": 0.8},
            "purify": {"cr2/tau4": {"run": "cc", "cr": 2.0, "tau_scale": 4.0, "evaluation": evaluation,
                                    "params": [100, 50], "seconds": {"rewrite": 1.0}}},
            "sweep": {"text/4": {"scaled": 3, "acc": 0.6, "asr": 0.1, "h_clean": 0.3,
                                 "h_trigger": 0.4, "recalibrated": {"asr": 0.99}}}}},
    }
    table = paper_scale._table(state)
    assert "`paper_scale.py --runs=2:4`" in table and "test machine" in table
    assert "| cc | 2 | 4.0 | purified | 50.00 | 25.00 | 12.50 | 50 |" in table
    assert "| text | 4 | 3 | 60.00 | 10.00 | 0.300 | 0.400 | 99.00 |" in table
    assert "ACC 90.00, ASR 80.00" in table


def test_refuses_to_mix_results_of_two_models(tmp_path):
    from absl import app
    from absl import flags
    from absl.testing import flagsaver

    was_parsed = flags.FLAGS.is_parsed()
    flags.FLAGS.mark_as_parsed()  # flag defaults, without parsing this process's argv
    measured = {"sweep": {"text/4": {}}, "purify": {}}
    try:
        with flagsaver.flagsaver(work_dir=str(tmp_path), width=64, epochs=20):
            with pytest.raises(app.UsageError, match="retraining would mix two models"):
                paper_scale._trained("badnets_all2one", measured)  # no model in work_dir
            with pytest.raises(app.UsageError, match="trained at width 16"):
                paper_scale._trained("badnets_all2one",
                                     {**measured, "train": {"width": 16, "epochs": 20}})
    finally:
        if not was_parsed:
            flags.FLAGS.unparse_flags()
