"""kcc: Clean & Compact backdoor purification with Tucker-2 compression, for Keras 3.

`import kcc` registers kcc's Keras layer (`kcc>TuckerConv2D`), so a purified `.keras` file loads
with `keras.saving.load_model` once kcc is imported; `kcc.saving.to_plain` makes a copy that
needs no kcc at all. It also hides TensorFlow's C++ INFO start-up lines
(`TF_CPP_MIN_LOG_LEVEL=1`) unless that variable is already set; warnings and errors still show.
On CPUs where TensorFlow turns its oneDNN kernels on by default (AVX-512 VNNI and newer), it
prints a notice about them that no log level hides, and those kernels round differently from
the plain ones; kcc turns them off (`TF_ENABLE_ONEDNN_OPTS=0`) unless that variable is set, so
a TensorFlow run is quiet and gives the same numbers on such a CPU as on others.
"""

import os

# Read by TensorFlow's C++ runtime when it loads, so it must be set before Keras is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from kcc import layers  # noqa: E402,F401  (registers kcc>TuckerConv2D with Keras)

__version__ = "0.1.0"
