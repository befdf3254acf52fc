"""kcc: Clean & Compact backdoor purification with Tucker-2 compression, for Keras 3."""

__version__ = "0.1.0"
