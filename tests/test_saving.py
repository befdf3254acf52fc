import os
import stat

import pytest

from kcc import saving


def test_atomic_writes_get_the_usual_file_mode_and_leave_no_temporaries(tmp_path):
    old = os.umask(0o022)
    try:
        saving.write_json({"a": 1}, str(tmp_path / "r.json"))
        saving.write_text("x", str(tmp_path / "r.md"))
    finally:
        os.umask(old)
    for name in ("r.json", "r.md"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["r.json", "r.md"]


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "r.json"
    saving.write_json({"a": 1}, str(path))
    with pytest.raises(TypeError):
        saving.write_json({"a": object()}, str(path))
    assert path.read_text().strip().startswith("{")
    assert os.listdir(tmp_path) == ["r.json"]


def test_check_output_refuses_the_input_and_existing_files(tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="input file"):
        saving.check_output(str(path), overwrite=True, inputs=[str(path)])
    with pytest.raises(FileExistsError, match="--overwrite"):
        saving.check_output(str(path))
