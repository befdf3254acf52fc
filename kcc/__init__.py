"""kcc: Clean & Compact backdoor purification with Tucker-2 compression, for Keras 3.

`import kcc` registers kcc's Keras layer (`kcc>TuckerConv2D`), so a purified `.keras` file loads
with `keras.saving.load_model` once kcc is imported; `kcc.saving.to_plain` makes a copy that
needs no kcc at all. It also hides TensorFlow's C++ INFO start-up lines
(`TF_CPP_MIN_LOG_LEVEL=1`) unless that variable is already set; warnings and errors still show.
"""

import os

# Read by TensorFlow's C++ runtime when it loads, so it must be set before Keras is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from kcc import layers  # noqa: E402,F401  (registers kcc>TuckerConv2D with Keras)

__version__ = "0.1.0"
