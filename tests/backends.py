"""Runs a snippet of Python under a given Keras backend in a subprocess (cross-backend tests)."""

import json
import os
import subprocess
import sys
import textwrap

import keras

#: The backend this process does not run on: a cross-backend test runs its snippet there, where
#: the in-process tests beside it already cover `keras.backend.backend()`.
OTHER = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"


def run(backend, code, timeout=600, env=None):
    """Runs `code` with `KERAS_BACKEND=backend` (and the variables of `env` set); the code must
    print one JSON line last.

    Returns:
        the decoded JSON object.
    """
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"{backend} subprocess failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
