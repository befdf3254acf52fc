"""Atomic writes of models and reports: an interrupted run never leaves a half-written file,
and an existing file is replaced only when the caller says so."""

import json
import os
import tempfile


def check_output(path, overwrite=False, inputs=()):
    """Refuses an output path that exists (unless `overwrite`) or that names one of `inputs`."""
    real = os.path.realpath(path)
    for src in inputs:
        if src and os.path.realpath(src) == real:
            raise ValueError(f"Refusing to overwrite the input file {src}; choose another output path.")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists. Pass overwrite=True (--overwrite) to replace it.")


def _atomic(path, write):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_model(model, path, overwrite=False):
    """Saves a Keras model to a `.keras` file atomically."""
    if not path.endswith(".keras"):
        raise ValueError(f"Model files must end in .keras. Received path={path!r}.")
    check_output(path, overwrite)
    _atomic(path, lambda tmp: model.save(tmp))


def write_json(obj, path, overwrite=True):
    """Writes `obj` as indented JSON atomically."""
    check_output(path, overwrite)

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")

    _atomic(path, write)


def write_text(text, path):
    """Writes a text file atomically (replacing any existing one)."""

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    _atomic(path, write)


def write_bytes(content, path, overwrite=False):
    """Writes `content` (bytes, e.g. a `.tflite` flatbuffer) atomically."""
    check_output(path, overwrite)

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(content)

    _atomic(path, write)
