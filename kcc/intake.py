"""Intake of untrusted model files: inspect a `.keras` archive before Keras ever loads it.

A backdoored model comes from someone kcc does not trust, and a `.keras` file is more than
weights: its `config.json` names the Python classes and functions Keras instantiates, and its
ZIP and HDF5 containers can be crafted to exhaust memory or point outside the file. `inspect`
reads the file with `zipfile` and `h5py` only (nothing is extracted to disk and nothing the file
names is imported) and refuses anything a Keras image classifier does not need:

- container: only `config.json`, `metadata.json`, `model.weights.h5` and `assets/...` members;
  no absolute, `..` or otherwise odd member names; per-member and total size limits and a
  compression-ratio limit, enforced while reading.
- config: size and nesting-depth limits checked before parsing; every object that names a
  `module`, `class_name` or `registered_name` must be on the allowlist below (Keras layers,
  initializers, regularizers, constraints, activations, dtype policies, models, and the
  optimizers, schedules, losses and metrics of `compile_config`, plus kcc's registered
  classes).
- weights: no links, external storage, virtual datasets or HDF5 filters; every dataset numeric,
  fully stored, and of the shape the config implies for the layer it belongs to, checked from
  the HDF5 metadata before any array is read.

Legacy `.h5`/`.hdf5` model files and SavedModel directories are refused outright. `load_suspect`
is the only function in kcc that opens a model path: it copies the file to a private
temporary directory, inspects the copy, and loads that same copy with
`keras.saving.load_model(safe_mode=True)` only if the report is clean.

Keras' own defences, as of Keras 3.15.1 (read from `keras/src/saving`), behind these checks:
`safe_mode` refuses `__lambda__` bytecode and `TFSMLayer`; `NON_MODELING_APIS`
(`keras.config.enable_unsafe_deserialization`, `keras.models.load_model`, `keras.utils.get_file`,
...) cannot be named in a config; only modules of the keras, keras_hub, keras_cv and keras_nlp
packages are imported, and only `KerasSaveable` classes taken from them; ZIP members and HDF5
datasets declaring over 4 GiB with a 100x/1000x expansion are refused; HDF5 soft and external
links, external and virtual datasets are refused; asset paths cannot escape their folder. kcc
checks all of these independently (one missed check in either layer is not enough), with an
allowlist instead of a denylist and with limits sized for image classifiers rather than 4 GiB.
"""

import collections
import dataclasses
import importlib
import io
import json
import math
import os
import re
import stat
import struct
import tempfile
import time
import zipfile
import zlib

import h5py
import numpy as np

ERROR = "error"
WARNING = "warning"
INFO = "info"

CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS = "model.weights.h5"
ASSETS = "assets/"

_MiB = 1 << 20
_GiB = 1 << 30
_CHUNK = _MiB
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_LOCAL_SIGNATURE = b"PK\x03\x04"
_ZIP_END_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP_END_STRUCT = "<4s4H2LH"
_ZIP_END_SIZE = struct.calcsize(_ZIP_END_STRUCT)
_ZIP_MAX_COMMENT = (1 << 16) - 1


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits of `inspect`; the defaults fit paper-size CIFAR/GTSRB classifiers.

    Attributes:
        max_file_bytes: size of the `.keras` file on disk.
        max_members: number of archive members.
        max_config_bytes: uncompressed size of `config.json`.
        max_metadata_bytes: uncompressed size of `metadata.json`.
        max_weights_bytes: uncompressed size of `model.weights.h5`.
        max_asset_bytes: uncompressed size of one asset.
        max_total_bytes: uncompressed size of all members together.
        max_compression_ratio: uncompressed / compressed size of any compressed member
            (Keras stores members uncompressed; deflated JSON stays far below 100).
        max_json_depth: nesting depth of `config.json` (benign configs: about 20).
        max_h5_objects: groups and datasets in the weights file.
        max_dataset_bytes: declared size of one weights array.
    """

    max_file_bytes: int = 2 * _GiB
    max_members: int = 1000
    max_config_bytes: int = 16 * _MiB
    max_metadata_bytes: int = 64 * 1024
    max_weights_bytes: int = _GiB
    max_asset_bytes: int = 64 * _MiB
    max_total_bytes: int = _GiB + 128 * _MiB
    max_compression_ratio: int = 100
    max_json_depth: int = 100
    max_h5_objects: int = 100_000
    max_dataset_bytes: int = 512 * _MiB


# --------------------------------------------------------------------------------------------
# Allowlist. Keras 3 writes `module` as the public API namespace ("keras.layers", "keras") for
# built-ins, "keras.src.models.functional" for Functional models, and "builtins" for functions.

_LAYERS = frozenset({
    "InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense",
    "BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization",
    "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Activation",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
    "GlobalAveragePooling2D", "GlobalMaxPooling2D", "AveragePooling2D", "MaxPooling2D",
    "Flatten", "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
    "Normalization", "Rescaling", "Resizing", "CenterCrop", "ZeroPadding2D", "Cropping2D",
    "UpSampling2D", "Reshape", "Permute", "Identity",
})
_MODELS = frozenset({"Functional", "Sequential"})
_DTYPE_POLICIES = frozenset({"DTypePolicy", "FloatDTypePolicy"})
_INITIALIZERS = frozenset({
    "Constant", "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "Identity",
    "IdentityInitializer", "LecunNormal", "LecunUniform", "Ones", "Orthogonal",
    "OrthogonalInitializer", "RandomNormal", "RandomUniform", "TruncatedNormal",
    "VarianceScaling", "Zeros",
})
_REGULARIZERS = frozenset({"L1", "L2", "L1L2", "OrthogonalRegularizer"})
_CONSTRAINTS = frozenset({"MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm"})
_OPTIMIZERS = frozenset({
    "SGD", "Adam", "AdamW", "RMSprop", "Nadam", "Adamax", "Adagrad", "Adadelta", "Lion",
    "LossScaleOptimizer",
})
_SCHEDULES = frozenset({
    "CosineDecay", "CosineDecayRestarts", "ExponentialDecay", "InverseTimeDecay",
    "PiecewiseConstantDecay", "PolynomialDecay",
})
_LOSSES = frozenset({
    "SparseCategoricalCrossentropy", "CategoricalCrossentropy", "BinaryCrossentropy",
    "CategoricalFocalCrossentropy", "BinaryFocalCrossentropy", "KLDivergence",
    "MeanSquaredError", "CategoricalHinge",
})
_METRICS = frozenset({
    "SparseCategoricalAccuracy", "CategoricalAccuracy", "Accuracy", "BinaryAccuracy",
    "SparseTopKCategoricalAccuracy", "TopKCategoricalAccuracy", "SparseCategoricalCrossentropy",
    "CategoricalCrossentropy", "Mean", "MeanMetricWrapper",
})

#: Allowed `(module, class_name)` pairs of Keras built-in classes.
ALLOWED_CLASSES = frozenset(
    {("keras.layers", name) for name in _LAYERS}
    | {("keras.src.models.functional", "Functional"), ("keras", "Sequential"),
       ("keras.src.models.sequential", "Sequential"), ("keras.models", "Sequential")}
    | {(module, name) for module in ("keras", "keras.dtype_policies") for name in _DTYPE_POLICIES}
    | {("keras.initializers", name) for name in _INITIALIZERS}
    | {("keras.regularizers", name) for name in _REGULARIZERS}
    | {("keras.constraints", name) for name in _CONSTRAINTS}
    | {("keras.optimizers", name) for name in _OPTIMIZERS}
    | {("keras.optimizers.schedules", name) for name in _SCHEDULES}
    | {("keras.losses", name) for name in _LOSSES}
    | {("keras.metrics", name) for name in _METRICS}
)

_ACTIVATION_FUNCTIONS = frozenset({
    "celu", "elu", "exponential", "gelu", "glu", "hard_shrink", "hard_sigmoid", "hard_silu",
    "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish",
    "relu", "relu6", "selu", "sigmoid", "silu", "soft_shrink", "softmax", "softplus",
    "softsign", "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "swish", "tanh",
    "tanh_shrink", "threshold",
})
_LOSS_FUNCTIONS = frozenset({
    "sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
    "categorical_focal_crossentropy", "binary_focal_crossentropy", "kl_divergence",
    "mean_squared_error", "categorical_hinge",
})
_METRIC_FUNCTIONS = frozenset({
    "sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy",
    "sparse_top_k_categorical_accuracy", "top_k_categorical_accuracy",
})
#: Allowed `{"class_name": "function"}` objects: module -> function names.
ALLOWED_FUNCTIONS = {
    "builtins": _ACTIVATION_FUNCTIONS | _LOSS_FUNCTIONS | _METRIC_FUNCTIONS,
    "keras.activations": _ACTIVATION_FUNCTIONS,
    "keras.losses": _LOSS_FUNCTIONS,
    "keras.metrics": _LOSS_FUNCTIONS | _METRIC_FUNCTIONS,
}

#: kcc's classes registered with `@keras.saving.register_keras_serializable(package="kcc")`.
#: A new kcc layer must be added here to load; its weights are only size-checked unless
#: `_weight_specs` knows it (`TuckerConv2D`'s are).
KCC_CLASSES = frozenset({"TuckerConv2D", "CoupledSGD"})
KCC_PACKAGE = "kcc"

# Strings that Keras resolves to objects, by config key.
_INITIALIZER_STRINGS = _INITIALIZERS | {
    "constant", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "identity",
    "lecun_normal", "lecun_uniform", "normal", "one", "ones", "orthogonal", "random_normal",
    "random_uniform", "truncated_normal", "uniform", "variance_scaling", "zero", "zeros",
}
_REGULARIZER_STRINGS = _REGULARIZERS | {"l1", "l2", "l1l2", "l1_l2", "orthogonal_regularizer"}
_CONSTRAINT_STRINGS = _CONSTRAINTS | {"max_norm", "min_max_norm", "non_neg", "unit_norm"}
_OPTIMIZER_STRINGS = frozenset(name.lower() for name in _OPTIMIZERS) | _OPTIMIZERS
_COMPILE_STRINGS = (
    _LOSS_FUNCTIONS | _METRIC_FUNCTIONS | _LOSSES | _METRICS
    | {"accuracy", "acc", "crossentropy", "ce"}
)

# Objects refused with a specific explanation (module-independent).
_REFUSED_CLASSES = {
    "Lambda": "a Lambda layer stores Python bytecode that runs when the model is loaded or "
              "called",
    "__lambda__": "a serialized Python lambda is bytecode that runs when it is deserialized",
    "TFSMLayer": "a TFSMLayer loads and runs a TensorFlow SavedModel from a path outside the "
                 "archive",
    "__typespec__": "TensorFlow type specs make Keras import the module they name",
}
_LOOKUP_LAYERS = frozenset({
    "StringLookup", "IntegerLookup", "TextVectorization", "Hashing", "HashedCrossing",
    "CategoryEncoding", "Discretization",
})
# Keras APIs that load, save or download files or switch safe mode off (see Keras'
# `serialization_lib.NON_MODELING_APIS`); named in a config they are refused with this reason.
_NON_MODELING = frozenset({
    "clear_session", "enable_unsafe_deserialization", "load_model", "model_from_json",
    "save_model", "load_weights", "save_weights", "deserialize_keras_object",
    "serialize_keras_object", "register_keras_serializable", "get_file", "load_img", "save_img",
    "image_dataset_from_directory", "text_dataset_from_directory",
    "audio_dataset_from_directory", "deserialize", "serialize", "get",
})
_SAFE_SPECIAL_CLASSES = frozenset({"__keras_tensor__"})

# Layers with weights whose shapes `_weight_specs` derives from the config; every other
# allowlisted Keras layer has none.
_WEIGHTED_LAYERS = frozenset({
    "TuckerConv2D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "BatchNormalization",
    "LayerNormalization", "GroupNormalization", "PReLU", "Normalization",
})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NUMERIC_DTYPE = re.compile(r"(float(16|32|64)|bfloat16|u?int(8|16|32|64)|bool)\Z")


class UnsafeModelError(ValueError):
    """Raised by `load_suspect` when `inspect` refuses a model file.

    Attributes:
        report: the `Report` with the findings.
    """

    def __init__(self, report):
        self.report = report
        errors = report.errors
        lines = [f"Refusing to load {report.path}: {len(errors)} problem(s) found."]
        lines += [f"  - {finding.line()}" for finding in errors]
        super().__init__("\n".join(lines))


@dataclasses.dataclass
class Finding:
    """One observation about a model file.

    Attributes:
        severity: `"error"` (the file is refused), `"warning"` or `"info"`.
        path: where: a JSON path in `config.json` (`config.layers[7].config.kernel_initializer`),
            `zip:<member>`, `h5:<dataset path>`, or `""` for the whole file.
        message: one line saying what was found and why it matters.
    """

    severity: str
    path: str
    message: str

    def line(self):
        """The finding as one line of text, e.g. `error: config.layers[3]: ...`."""
        where = f"{self.path}: " if self.path else ""
        return f"{self.severity}: {where}{self.message}"


@dataclasses.dataclass
class Report:
    """What `inspect` found in a model file.

    Attributes:
        path: the inspected path.
        format: `"keras"`, `"legacy-h5"`, `"savedmodel"`, `"directory"`, `"missing"` or
            `"unknown"`.
        ok: no error finding: the file may be loaded.
        trusted: inspected with `trust_source=True` (allowlist findings are warnings).
        findings: list of `Finding`.
        keras_version: from `metadata.json`, if readable.
        model_class: class of the top-level model (`"Functional"`, `"Sequential"`).
        model_name: name of the top-level model.
        layer_counts: layers by `class_name`, nested models included.
        num_layers: number of layers, nested models included.
        trainable_params: trainable parameters, from the weights' shapes (datasets of layers
            whose variables kcc does not know count as trainable).
        non_trainable_params: the other parameters (e.g. BatchNorm moving statistics).
        weights_bytes: declared bytes of all weights datasets (optimizer state included).
        has_batchnorm: a `BatchNormalization` layer is present.
        convs: number of `Conv2D` layers.
        decomposable_convs: the `Conv2D` layers kcc can Tucker-decompose (`groups == 1` and
            more than 3 input channels), as dicts with `name`, `kernel_size`, `in_channels`,
            `filters`.
        seconds: inspection time.
    """

    path: str
    format: str = "unknown"
    ok: bool = False
    trusted: bool = False
    findings: list = dataclasses.field(default_factory=list)
    keras_version: str = None
    model_class: str = None
    model_name: str = None
    layer_counts: dict = dataclasses.field(default_factory=dict)
    num_layers: int = 0
    trainable_params: int = None
    non_trainable_params: int = None
    weights_bytes: int = None
    has_batchnorm: bool = False
    convs: int = 0
    decomposable_convs: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def errors(self):
        """The error findings (the reasons for a refusal)."""
        return [f for f in self.findings if f.severity == ERROR]

    def to_dict(self):
        """The report as JSON-serializable dict."""
        return dataclasses.asdict(self)


class _Stop(Exception):
    """Ends an inspection early after a finding that makes further checks meaningless."""


class _Findings:
    """Collects findings; allowlist refusals become warnings for trusted files."""

    def __init__(self, report, limits):
        self.report = report
        self.limits = limits

    def add(self, severity, path, message):
        self.report.findings.append(Finding(severity, path, message))

    def error(self, path, message):
        self.add(ERROR, path, message)

    def fatal(self, path, message):
        self.add(ERROR, path, message)
        raise _Stop()

    def refuse(self, path, message):
        """An allowlist violation: an error, or a warning when the source is trusted."""
        if self.report.trusted:
            self.add(WARNING, path, f"{message} (allowed: trust_source=True)")
        else:
            self.add(ERROR, path, f"{message}; refused")


# --------------------------------------------------------------------------------------------
# Entry points.


def inspect(path, trust_source=False, limits=None):
    """Inspects a model file without loading it.

    Reads the `.keras` archive with `zipfile` and `h5py` only: nothing is extracted to disk,
    nothing the file names is imported, and no weights array is read.

    Args:
        path: a `.keras` file (a directory, `.h5` or SavedModel is refused with a reason).
        trust_source: the caller vouches for the file: allowlist violations become warnings
            (container, size and weights checks still apply).
        limits: a `Limits`; defaults to `Limits()`.

    Returns:
        A `Report`; `report.ok` is False when any finding is an error.
    """
    return _inspect(os.fspath(path), os.fspath(path), trust_source, limits or Limits())


def load_suspect(path, trust_source=False, limits=None):
    """Loads an untrusted `.keras` model after `inspect` found nothing to refuse.

    The file is first copied (size-limited) into a private temporary directory; that copy is
    inspected and that same copy is loaded, so the file cannot change between the check and
    the load. kcc's own layers (`kcc.layers`, when present) are registered first.

    Args:
        path: the `.keras` file.
        trust_source: the caller vouches for the file: the allowlist is not enforced and Keras
            loads with `safe_mode=False` (Lambda layers and other code in the file may run).
        limits: a `Limits`; defaults to `Limits()`.

    Returns:
        The uncompiled `keras.Model`.

    Raises:
        UnsafeModelError: the inspection refused the file; its message lists every problem.
    """
    path = os.fspath(path)
    limits = limits or Limits()
    with tempfile.TemporaryDirectory(prefix="kcc-intake-") as folder:
        copy = os.path.join(folder, "model.keras")
        refusal = _copy_for_loading(path, copy, limits, trust_source)
        if refusal is not None:
            raise UnsafeModelError(refusal)
        report = _inspect(path, copy, trust_source, limits)
        if not report.ok:
            raise UnsafeModelError(report)
        import keras  # Deferred: inspecting does not need a Keras backend.

        return keras.saving.load_model(
            copy, custom_objects=custom_objects(), compile=False, safe_mode=not trust_source
        )


def load_image_classifier(path, trust_source=False, limits=None):
    """`load_suspect`, then checks the model has one `(batch, H, W, C)` image input.

    Raises:
        UnsafeModelError: as `load_suspect`.
        ValueError: the model takes other inputs.
    """
    model = load_suspect(path, trust_source, limits)
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise ValueError(f"kcc works on image classifiers with one (batch, H, W, C) input. "
                         f"Received inputs {[tuple(i.shape) for i in model.inputs]}.")
    return model


def custom_objects():
    """kcc's registered classes (`"kcc>Name"` -> class), importing the modules that define them
    (`kcc.layers`, `kcc.training`) where they exist."""
    import keras

    for module in ("kcc.layers", "kcc.training"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
    prefix = f"{KCC_PACKAGE}>"
    return {
        name: obj for name, obj in keras.saving.get_custom_objects().items()
        if name.startswith(prefix)
    }


def _copy_for_loading(path, copy, limits, trust_source):
    """Copies a regular file to `copy` (size-limited); returns a refusal `Report` or None.

    Anything but a regular file within the size limit gets `inspect`'s report, which refuses
    it (missing, directory, device, too large).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return inspect(path, trust_source, limits)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limits.max_file_bytes:
        os.close(fd)
        return inspect(path, trust_source, limits)
    with os.fdopen(fd, "rb") as src, open(copy, "wb") as dst:
        copied = 0
        while chunk := src.read(_CHUNK):
            copied += len(chunk)
            if copied > limits.max_file_bytes:
                break
            dst.write(chunk)
    if copied > limits.max_file_bytes:
        report = Report(path=path, format="keras", trusted=trust_source)
        report.findings.append(Finding(ERROR, "", (
            f"the file grew beyond the {_size(limits.max_file_bytes)} limit while it was copied")))
        return report
    return None


def _inspect(display_path, path, trust_source, limits):
    start = time.perf_counter()
    report = Report(path=display_path, trusted=bool(trust_source))
    findings = _Findings(report, limits)
    if trust_source:
        findings.add(INFO, "", (
            "trust_source=True: the allowlist is not enforced and Keras loads with "
            "safe_mode=False; the caller vouches for this file"))
    try:
        with _open_regular(path, display_path, findings) as f:
            report.format = _detect_format(f, display_path, findings)
            _inspect_archive(f, report, findings, limits)
    except _Stop:
        pass
    except OSError as e:
        findings.error("", f"cannot read the file: {_q(e.strerror or str(e))}")
    except Exception as e:  # noqa: BLE001 -- fail closed: a crash on crafted input refuses it.
        findings.error("", f"the inspection failed ({type(e).__name__}: {_q(str(e))}); "
                           "refusing a file kcc cannot fully check")
    report.ok = not report.errors
    report.seconds = time.perf_counter() - start
    return report


# --------------------------------------------------------------------------------------------
# Format detection and legacy formats.


def _open_regular(path, display_path, findings):
    """Opens `path` for reading if it is a regular file (without blocking on a FIFO)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        findings.report.format = "missing"
        findings.fatal("", f"no such file: {_q(display_path)}")
    except IsADirectoryError:
        _refuse_directory(path, findings)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            _refuse_directory(path, findings)
        findings.fatal("", f"not a regular file (mode {stat.filemode(mode)}); expected a "
                           ".keras archive")
    return os.fdopen(fd, "rb")


def _detect_format(f, display_path, findings):
    """Returns `"keras"` for a file that may be a ZIP archive, otherwise stops."""
    head = f.read(8)
    lower = display_path.lower()
    if head == _HDF5_SIGNATURE or lower.endswith((".h5", ".hdf5")):
        findings.report.format = "legacy-h5"
        findings.fatal("", (
            "legacy HDF5 model file (.h5/.hdf5): refused. Its config is read by Keras' legacy "
            "loader, which can run code stored in the file (Lambda layers as marshalled "
            "bytecode) and which kcc's allowlist does not cover; weights-only .h5 files "
            "carry no architecture at all. To convert a file you trust, in a trusted "
            "environment: model = keras.models.load_model('model.h5'); "
            "model.save('model.keras'), then inspect the .keras file"))
    if head[:4] != _ZIP_LOCAL_SIGNATURE:
        findings.fatal("", (
            f"unrecognised file format (starts with {head!r}): expected a Keras v3 .keras "
            "archive, a ZIP file starting with b'PK\\x03\\x04'"))
    if not lower.endswith(".keras"):
        findings.add(WARNING, "", "the file name does not end in .keras")
    return "keras"


def _refuse_directory(path, findings):
    names = set(os.listdir(path))
    if names & {"saved_model.pb", "saved_model.pbtxt"}:
        findings.report.format = "savedmodel"
        findings.fatal("", (
            "TensorFlow SavedModel directory: refused. A SavedModel is a TensorFlow graph, "
            "loaded by running its ops (file I/O ops included) and restoring its own Python "
            "objects, not a Keras config kcc can check against an allowlist. To convert a "
            "model you trust, in a trusted environment: rebuild it as a Keras model from the "
            "code that defined it, load the weights, and model.save('model.keras')"))
    findings.report.format = "directory"
    findings.fatal("", (
        "a directory: kcc reads only .keras archives (a ZIP file with config.json, "
        "metadata.json and model.weights.h5); unzipped model folders are refused. If you "
        "trust it, load it in a trusted environment and model.save('model.keras')"))


# --------------------------------------------------------------------------------------------
# The ZIP container.


class _Budget:
    """Uncompressed bytes left for all archive members together."""

    def __init__(self, total):
        self.left = total


def _inspect_archive(f, report, findings, limits):
    f.seek(0, os.SEEK_END)
    size = f.tell()
    if size > limits.max_file_bytes:
        findings.fatal("", f"the file is {_size(size)}, above the {_size(limits.max_file_bytes)} "
                           "limit")
    _check_end_record(f, size, findings, limits)
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as e:
        findings.fatal("", f"truncated or corrupt ZIP archive: {_q(str(e))}")
    with archive:
        members = _check_members(archive, findings, limits)
        budget = _Budget(limits.max_total_bytes)
        if METADATA in members:
            raw = _read_member(archive, members[METADATA], limits.max_metadata_bytes, budget,
                               findings, limits)
            if raw is not None:
                _check_metadata(raw, report, findings, limits)
        raw = _read_member(archive, members[CONFIG], limits.max_config_bytes, budget, findings,
                           limits)
        if raw is None:
            raise _Stop()
        layout = _check_config(raw, report, findings, limits)
        for name, info in members.items():
            if name.startswith(ASSETS) and not info.is_dir():
                _read_member(archive, info, limits.max_asset_bytes, budget, findings, limits)
        raw = _read_member(archive, members[WEIGHTS], limits.max_weights_bytes, budget, findings,
                           limits)
        if raw is None:
            raise _Stop()
        _check_weights(raw, layout, report, findings, limits)


def _check_end_record(f, size, findings, limits):
    """Bounds the ZIP central directory before `zipfile` parses it (as `zipfile` finds it)."""
    tail_start = max(0, size - _ZIP_END_SIZE - _ZIP_MAX_COMMENT)
    f.seek(tail_start)
    tail = f.read()
    if tail[-_ZIP_END_SIZE:-_ZIP_END_SIZE + 4] == _ZIP_END_SIGNATURE and tail[-2:] == b"\0\0":
        at = len(tail) - _ZIP_END_SIZE
    else:
        at = tail.rfind(_ZIP_END_SIGNATURE)
    if at < 0 or len(tail) - at < _ZIP_END_SIZE:
        findings.fatal("", (
            "truncated or corrupt ZIP archive: no end-of-central-directory record (the file "
            "is cut short or is not a .keras archive)"))
    fields = struct.unpack(_ZIP_END_STRUCT, tail[at:at + _ZIP_END_SIZE])
    entries, directory_bytes = fields[4], fields[5]
    locator = tail_start + at - 20
    if locator >= 0 and _read_at(f, locator, 4) == _ZIP64_LOCATOR_SIGNATURE:
        findings.fatal("", (
            "ZIP64 archive: refused (Keras writes ZIP64 records only for archives over 2 GiB "
            "or with more than 65,535 members, both beyond kcc's limits)"))
    if entries > limits.max_members:
        findings.fatal("", f"the archive declares {entries} members, above the limit of "
                           f"{limits.max_members}")
    if directory_bytes > limits.max_members * 512:
        findings.fatal("", f"the archive's central directory declares {_size(directory_bytes)}, "
                           "far more than its members need")


def _read_at(f, offset, n):
    f.seek(offset)
    return f.read(n)


def _check_members(archive, findings, limits):
    """Checks member names and flags; returns `{name: ZipInfo}` of the accepted members."""
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        findings.fatal("", f"the archive has {len(infos)} members, above the limit of "
                           f"{limits.max_members}")
    members = {}
    for info in infos:
        name = info.filename
        where = f"zip:{_q(name)}"
        problem = _member_name_problem(name)
        if problem:
            findings.error(where, f"archive member {_q(name)}: {problem}")
            continue
        if name in members:
            findings.error(where, f"archive member {_q(name)} appears twice; Keras would read "
                                  "one copy and kcc would inspect the other")
            continue
        problem = _member_flags_problem(info)
        if problem:
            findings.error(where, f"archive member {_q(name)}: {problem}")
            continue
        members[name] = info
    for required in (CONFIG, WEIGHTS):
        if required not in members:
            findings.error(f"zip:{required}", f"the archive has no {required}; a Keras v3 "
                                              "model archive always has one")
    if METADATA not in members:
        findings.add(WARNING, f"zip:{METADATA}", "the archive has no metadata.json")
    if any(name.startswith(ASSETS) for name in members):
        findings.add(WARNING, "zip:assets/", (
            "the archive has assets; no allowlisted layer reads assets, they are ignored"))
    if findings.report.errors:
        raise _Stop()
    return members


def _member_name_problem(name):
    """Why a member name is refused, or None."""
    if name in (CONFIG, METADATA, WEIGHTS):
        return None
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "absolute path; refusing a member that could be written outside a folder"
    parts = name.split("/")
    if "\\" in name or ".." in parts or any(c in name for c in "\0\r\n"):
        return ("path traversal ('..', backslashes or control characters); refusing a member "
                "that could be written outside a folder")
    if not name.startswith(ASSETS):
        return (f"not a member of a Keras v3 model archive (expected {CONFIG}, {METADATA}, "
                f"{WEIGHTS} or assets/...)")
    if len(name) > 512 or any(part in ("", ".") for part in parts[1:-1]):
        return "malformed asset path"
    return None


def _member_flags_problem(info):
    """Why a member's ZIP flags are refused, or None."""
    if info.flag_bits & 0x1:
        return "encrypted"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return (f"compression method {info.compress_type} (Keras writes stored or deflated "
                "members only)")
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    return None


def _read_member(archive, info, limit, budget, findings, limits):
    """Reads a member in chunks, enforcing size and ratio limits on the bytes actually read.

    Returns:
        The member's bytes, or None after an error finding.
    """
    name, where = info.filename, f"zip:{_q(info.filename)}"
    cap = min(limit, budget.left)
    if info.compress_type != zipfile.ZIP_STORED:
        expand = max(limits.max_compression_ratio * info.compress_size, 64 * 1024)
        if info.file_size > expand:
            ratio = info.file_size / max(info.compress_size, 1)
            findings.error(where, (
                f"archive member {_q(name)} declares {_size(info.file_size)} uncompressed from "
                f"{_size(info.compress_size)} (ratio {ratio:.0f}:1, limit "
                f"{limits.max_compression_ratio}:1); refusing a potential ZIP bomb"))
            return None
        cap = min(cap, expand)
    if info.file_size > min(limit, budget.left):
        findings.error(where, _too_big(name, f"declares {_size(info.file_size)}", limit, budget))
        return None
    chunks, read = [], 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(_CHUNK):
                read += len(chunk)
                if read > cap:
                    findings.error(where, _too_big(
                        name, f"expands beyond {_size(cap)} while read (header declares "
                              f"{_size(info.file_size)})", limit, budget))
                    return None
                chunks.append(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError,
            NotImplementedError, ValueError) as e:
        findings.error(where, f"archive member {_q(name)} is truncated or corrupt: "
                              f"{_q(str(e))}")
        return None
    budget.left -= read
    return b"".join(chunks)


def _too_big(name, what, limit, budget):
    if budget.left < limit:
        return (f"archive member {_q(name)} {what}, above the {_size(budget.left)} left of the "
                "limit on all members together")
    return f"archive member {_q(name)} {what}, above its {_size(limit)} limit"


# --------------------------------------------------------------------------------------------
# config.json and metadata.json.


def _parse_json(raw, name, findings, limits):
    """Parses untrusted JSON after encoding and depth checks; stops on failure."""
    where = f"zip:{name}"
    encoding = json.detect_encoding(raw)
    if encoding != "utf-8":
        findings.fatal(where, f"{name} is encoded as {encoding}; Keras writes UTF-8 without BOM")
    depth = json_depth(raw)
    if depth > limits.max_json_depth:
        findings.fatal(where, (
            f"{name} nests {depth} levels deep, above the limit of {limits.max_json_depth}; "
            "refused before parsing"))
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        findings.fatal(where, f"{name} is not valid JSON: {_q(str(e))}")


def json_depth(raw):
    """Maximum nesting depth of the arrays and objects in JSON bytes, without parsing them.

    A vectorised scan (no recursion, linear time): a bracket counts when an even number of
    unescaped quotes precede it. Exact for valid JSON, and for invalid JSON exact up to the
    first syntax error, which is as far as a parser gets.

    Args:
        raw: UTF-8 bytes.

    Returns:
        The depth (0 for a scalar, 1 for `[]` or `{}`).
    """
    data = np.frombuffer(raw, dtype=np.uint8)
    quotes = np.flatnonzero(data == ord('"'))
    backslash = data == ord("\\")
    if quotes.size and backslash.any():
        index = np.arange(data.size, dtype=np.int64)
        last_other = np.maximum.accumulate(np.where(backslash, -1, index))
        before = quotes - 1
        run = np.where(before >= 0, before - last_other[np.maximum(before, 0)], 0)
        quotes = quotes[run % 2 == 0]
    opens = np.flatnonzero((data == ord("[")) | (data == ord("{")))
    closes = np.flatnonzero((data == ord("]")) | (data == ord("}")))
    opens = opens[np.searchsorted(quotes, opens) % 2 == 0]
    closes = closes[np.searchsorted(quotes, closes) % 2 == 0]
    if not opens.size:
        return 0
    positions = np.concatenate([opens, closes])
    steps = np.concatenate([np.ones(opens.size, np.int64), -np.ones(closes.size, np.int64)])
    depth = np.cumsum(steps[np.argsort(positions, kind="stable")])
    return int(depth.max())


def _check_metadata(raw, report, findings, limits):
    try:
        metadata = _parse_json(raw, METADATA, findings, limits)
    except _Stop:
        return
    if not isinstance(metadata, dict):
        findings.error(f"zip:{METADATA}", f"{METADATA} is not a JSON object (received "
                                          f"{type(metadata).__name__})")
        return
    version = metadata.get("keras_version")
    if isinstance(version, str) and len(version) < 64:
        report.keras_version = version


def _check_config(raw, report, findings, limits):
    """Checks `config.json`; returns the expected weights layout (see `_Layout`)."""
    config = _parse_json(raw, CONFIG, findings, limits)
    if (not isinstance(config, dict) or config.get("class_name") not in _MODELS
            or not isinstance(config.get("config"), dict)
            or not isinstance(config["config"].get("layers"), list)):
        received = type(config).__name__
        if isinstance(config, dict):
            received = f"an object with keys {_q(sorted(map(str, config))[:8])}"
            if isinstance(config.get("class_name"), str):
                received += f" and class_name {_q(config['class_name'])}"
        findings.fatal(f"zip:{CONFIG}", (
            f"{CONFIG} does not describe a Keras model: expected an object with class_name "
            f"'Functional' or 'Sequential' and config.layers, received {received}"))
    _check_references(config, findings)
    layout = _Layout()
    _summarize_model(config, "", "config", layout, findings, trainable=True)
    report.model_class = _str(config.get("class_name"))
    report.model_name = _str(config["config"].get("name"))
    return layout


def _check_references(config, findings):
    """Walks the config iteratively; checks every object reference against the allowlist."""
    stack = [(config, "", None)]
    while stack:
        node, path, key = stack.pop()
        if isinstance(node, dict):
            if any(k in node for k in ("module", "class_name", "registered_name")):
                problem = _reference_problem(node)
                if problem:
                    findings.refuse(path, problem)
                    continue
            for k, value in node.items():
                if isinstance(value, str):
                    problem = _string_problem(k, value, path)
                    if problem:
                        findings.refuse(_join(path, k), problem)
                elif isinstance(value, (dict, list)):
                    stack.append((value, _join(path, k), k))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                if isinstance(value, str) and key in ("metrics", "weighted_metrics", "loss"):
                    problem = _string_problem(key, value, path)
                    if problem:
                        findings.refuse(f"{path}[{i}]", problem)
                elif isinstance(value, (dict, list)):
                    stack.append((value, f"{path}[{i}]", key))


def _reference_problem(node):
    """Why an object reference (a dict with class_name/module/registered_name) is refused."""
    class_name = node.get("class_name")
    module = node.get("module")
    registered = node.get("registered_name")
    if not isinstance(class_name, str):
        return f"object without a string class_name (received {_q(class_name)})"
    if not isinstance(module, (str, type(None))) or not isinstance(registered,
                                                                   (str, type(None))):
        return f"object {_q(class_name)} with a non-string module or registered_name"
    label = f"{module}.{class_name}" if module else class_name
    if class_name in _SAFE_SPECIAL_CLASSES and module is None and registered is None:
        return None
    if class_name in _REFUSED_CLASSES:
        return f"{_REFUSED_CLASSES[class_name]}: {_q(label)}"
    if class_name in ("__numpy__", "__tensor__"):
        return _array_problem(node)
    if class_name.startswith("__"):
        return f"special object {_q(class_name)} is not used by image classifiers' configs"
    if class_name in _LOOKUP_LAYERS:
        return (f"lookup and text-vectorization layers read vocabulary files and are not used "
                f"by image classifiers: {_q(label)}")
    if class_name == "function":
        return _function_problem(node, module, registered)
    if registered and registered != class_name:
        package, _, name = registered.partition(">")
        if package == KCC_PACKAGE and name in KCC_CLASSES and name == class_name and (
                module is None or module == KCC_PACKAGE or module.startswith("kcc.")):
            return None
        return (f"unknown custom object with registered_name {_q(registered)} (class "
                f"{_q(class_name)}); only Keras built-ins and kcc's registered classes "
                f"({', '.join(sorted(f'kcc>{n}' for n in KCC_CLASSES))}) are allowed")
    if module == KCC_PACKAGE or module and module.startswith("kcc."):
        return (f"kcc object {_q(class_name)} (module {_q(module)}) without the registered_name "
                f"'kcc>{class_name}' of a registered kcc class")
    if module is None:
        return f"object {_q(class_name)} names no module; Keras could only resolve it as a " \
               "registered custom object"
    if module != "keras" and not module.startswith("keras."):
        return f"object {_q(class_name)} names module {_q(module)}, outside keras and kcc"
    if class_name in _NON_MODELING:
        return _non_modeling(label)
    if (module, class_name) not in ALLOWED_CLASSES:
        return (f"Keras object {_q(label)} is not on kcc's allowlist of layers, initializers, "
                "regularizers, constraints, dtype policies, models, optimizers, schedules, "
                "losses and metrics used by image classifiers")
    return None


def _array_problem(node):
    """Keras' `__numpy__`/`__tensor__` constants: numeric dtypes only."""
    config = node.get("config")
    dtype = config.get("dtype") if isinstance(config, dict) else None
    if node.get("module") is not None or node.get("registered_name") is not None \
            or not isinstance(dtype, str) or not _NUMERIC_DTYPE.match(dtype):
        return f"{node['class_name']} constant that is not a plain numeric array"
    return None


def _function_problem(node, module, registered):
    name = node.get("config")
    if not isinstance(name, str):
        return f"function object whose config is not a function name (received {_q(name)})"
    label = f"{module}.{name}" if module else name
    if registered not in (None, "function", name):
        return (f"function {_q(label)} with registered_name {_q(registered)}; only Keras' "
                "built-in activations, losses and metrics are allowed")
    if name in _NON_MODELING or name.rpartition(".")[2] in _NON_MODELING:
        return _non_modeling(label)
    if module not in ALLOWED_FUNCTIONS:
        return (f"function {_q(label)} names module {_q(module)}; only Keras' built-in "
                "activations, losses and metrics are allowed")
    if name not in ALLOWED_FUNCTIONS[module]:
        return (f"function {_q(label)} is not a Keras activation, loss or metric on kcc's "
                "allowlist")
    return None


def _non_modeling(label):
    return (f"{_q(label)} is a non-modeling Keras API (it loads, saves or downloads files, or "
            "switches Keras' safe mode off), never part of a model")


def _string_problem(key, value, path):
    """Why a string that Keras resolves to an object (e.g. `activation: "relu"`) is refused."""
    key = str(key)
    if key in ("activation", "recurrent_activation"):
        allowed, kind = _ACTIVATION_FUNCTIONS, "activation"
    elif key.endswith("_initializer"):
        allowed, kind = _INITIALIZER_STRINGS, "initializer"
    elif key.endswith("_regularizer"):
        allowed, kind = _REGULARIZER_STRINGS, "regularizer"
    elif key.endswith("_constraint"):
        allowed, kind = _CONSTRAINT_STRINGS, "constraint"
    elif key == "optimizer" and path == "compile_config":
        allowed, kind = _OPTIMIZER_STRINGS, "optimizer"
    elif key in ("loss", "metrics", "weighted_metrics") and path.startswith("compile_config"):
        allowed, kind = _COMPILE_STRINGS, "loss or metric"
    else:
        return None
    if value in allowed:
        return None
    return f"{_q(value)} is not a Keras {kind} on kcc's allowlist"


# --------------------------------------------------------------------------------------------
# Architecture summary and the weights layout the config implies.


@dataclasses.dataclass
class _LayerWeights:
    """The weights group of one layer: `specs` is a list of `(shape, trainable)`, or None
    when kcc cannot derive the shapes from the config (only sizes are checked then)."""

    name: str
    class_name: str
    config_path: str
    specs: list


class _Layout:
    """Expected `model.weights.h5` groups: `layers` maps a group path to `_LayerWeights`;
    `containers` are the model groups (`vars` must be empty, `layers` holds children)."""

    def __init__(self):
        self.layers = {}
        self.containers = set()


def _summarize_model(model, prefix, config_path, layout, findings, trainable):
    """Records a Functional/Sequential model's layers in the report and the layout.

    A weighted layer whose weight shapes cannot be derived from its config is refused: Keras
    would allocate its variables from the config before any stored weight is checked.
    """
    report = findings.report
    config = model.get("config") if isinstance(model.get("config"), dict) else {}
    layers = config.get("layers") if isinstance(config.get("layers"), list) else []
    trainable = trainable and config.get("trainable", True) is not False
    layout.containers.add(prefix.rstrip("/"))
    used = collections.Counter()
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or not isinstance(layer.get("class_name"), str):
            continue
        class_name = layer["class_name"]
        layer_config = layer.get("config") if isinstance(layer.get("config"), dict) else {}
        report.layer_counts[class_name] = report.layer_counts.get(class_name, 0) + 1
        report.num_layers += 1
        if model.get("class_name") == "Sequential" and class_name == "InputLayer":
            continue  # Sequential.layers skips its InputLayer, so it has no weights group.
        snake = _snake_case(class_name)
        group = f"{snake}_{used[snake]}" if used[snake] else snake
        used[snake] += 1
        group = f"{prefix}layers/{group}"
        path = f"{config_path}.layers[{i}]"
        name = _str(layer_config.get("name")) or group
        if class_name in _MODELS:
            _summarize_model(layer, f"{group}/", f"{path}.config", layout, findings, trainable)
            continue
        specs = _weight_specs(layer, class_name, layer_config)
        if specs is None and class_name in _WEIGHTED_LAYERS:
            findings.refuse(path, (
                f"cannot derive the weight shapes of {class_name} layer {_q(name)} from its "
                "config (build_config.input_shape and arguments), so the variables Keras "
                "would allocate for it cannot be checked"))
        problem = _allocation_problem(layer, class_name, layer_config, findings.limits)
        if problem:
            findings.error(path, problem)
        layer_trainable = trainable and layer_config.get("trainable", True) is not False
        if specs is not None and not layer_trainable:
            specs = [(shape, False) for shape, _ in specs]
        layout.layers[group] = _LayerWeights(name, class_name, path, specs)
        report.has_batchnorm |= class_name == "BatchNormalization"
        if class_name == "Conv2D":
            _record_conv(report, name, layer, layer_config)


def _allocation_problem(layer, class_name, config, limits):
    """Why a layer's build-time constants would be too large (Normalization broadcasts its
    mean and variance to the kept axes of its input shape), or None."""
    if class_name != "Normalization" or config.get("mean") is None:
        return None
    shape = _input_shape(layer)
    axis = config.get("axis", -1)
    axes = axis if isinstance(axis, list) else [axis]
    if shape is None or not all(isinstance(a, int) and -len(shape) <= a < len(shape)
                                for a in axes):
        return "Normalization layer without a valid build_config.input_shape and axis"
    kept = [shape[a] for a in axes]
    if not _positive(*kept) or 2 * 4 * math.prod(kept) > limits.max_dataset_bytes:
        return (f"Normalization layer would broadcast its mean and variance to shape {kept}, "
                f"above the {_size(limits.max_dataset_bytes)} limit for one array")
    return None


def _record_conv(report, name, layer, config):
    report.convs += 1
    in_channels = _input_channels(layer, config)
    groups = config.get("groups", 1)
    if groups == 1 and isinstance(in_channels, int) and in_channels > 3:
        report.decomposable_convs.append({
            "name": name,
            "kernel_size": _ints(config.get("kernel_size")),
            "in_channels": in_channels,
            "filters": config.get("filters"),
        })


def _weight_specs(layer, class_name, config):
    """`[(shape, trainable), ...]` of a layer's variables as Keras builds them, or None."""
    if class_name not in _LAYERS and class_name != "TuckerConv2D":
        return None
    if class_name not in _WEIGHTED_LAYERS:
        return []
    shape = _input_shape(layer)
    if shape is None:
        return None
    if class_name == "TuckerConv2D":
        return _tucker_specs(config, shape[-1] if len(shape) == 4 else None)
    channels_axis = 1 if config.get("data_format") == "channels_first" else -1
    if class_name in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D"):
        return _conv_specs(class_name, config, shape[channels_axis] if len(shape) == 4 else None)
    if class_name == "Dense":
        units, use_bias = config.get("units"), config.get("use_bias", True)
        if not _positive(units, shape[-1]) or config.get("quantization_config") is not None \
                or config.get("lora_rank"):
            return None
        return [((shape[-1], units), True)] + ([((units,), True)] if use_bias else [])
    return _normalization_specs(class_name, config, shape)


def _conv_specs(class_name, config, in_channels):
    kernel = _ints(config.get("kernel_size"))
    use_bias = config.get("use_bias", True)
    if kernel is None or len(kernel) != 2 or not _positive(in_channels, *kernel) \
            or config.get("lora_rank") or config.get("quantization_config") is not None:
        return None
    if class_name == "Conv2D":
        filters, groups = config.get("filters"), config.get("groups", 1)
        if not _positive(filters, groups) or in_channels % groups:
            return None
        specs = [((*kernel, in_channels // groups, filters), True)]
        return specs + ([((filters,), True)] if use_bias else [])
    multiplier = config.get("depth_multiplier", 1)
    if not _positive(multiplier):
        return None
    specs = [((*kernel, in_channels, multiplier), True)]
    if class_name == "DepthwiseConv2D":
        return specs + ([((in_channels * multiplier,), True)] if use_bias else [])
    filters = config.get("filters")
    if not _positive(filters):
        return None
    specs.append(((1, 1, in_channels * multiplier, filters), True))
    return specs + ([((filters,), True)] if use_bias else [])


def _tucker_specs(config, in_channels):
    """`kcc.layers.TuckerConv2D`: input factor, core, output factor [, bias]."""
    kernel, ranks = _ints(config.get("kernel_size")), _ints(config.get("ranks"))
    filters = config.get("filters")
    if kernel is None or ranks is None or len(kernel) != 2 or len(ranks) != 2 \
            or not _positive(in_channels, filters, *kernel, *ranks):
        return None
    rank1, rank2 = ranks
    specs = [((1, 1, in_channels, rank2), True), ((*kernel, rank2, rank1), True),
             ((1, 1, rank1, filters), True)]
    return specs + ([((filters,), True)] if config.get("use_bias", True) else [])


def _normalization_specs(class_name, config, shape):
    if class_name == "Normalization" and config.get("mean") is not None \
            and config.get("variance") is not None:
        return []  # Constants from the config, bounded by `_allocation_problem`.
    axis = config.get("axis", -1)
    if isinstance(axis, list) and len(axis) == 1:
        axis = axis[0]
    if class_name == "PReLU":
        shared = config.get("shared_axes") or []
        if not all(isinstance(a, int) and 0 < a < len(shape) for a in shared) \
                or not _positive(*shape[1:]):
            return None
        return [(tuple(1 if i in shared else d for i, d in enumerate(shape) if i), True)]
    if not isinstance(axis, int) or not -len(shape) <= axis < len(shape) \
            or not _positive(shape[axis]):
        return None
    channels = shape[axis]
    if class_name == "Normalization":
        if axis != -1:
            return None
        return [((channels,), False), ((channels,), False), ((), False)]
    scale, center = config.get("scale", True), config.get("center", True)
    if class_name == "LayerNormalization" and config.get("rms_scaling"):
        center = False
    specs = ([((channels,), True)] if scale else []) + ([((channels,), True)] if center else [])
    if class_name == "BatchNormalization":
        if config.get("renorm") or config.get("synchronized"):
            return None
        specs += [((channels,), False), ((channels,), False)]
    return specs


def _input_shape(layer):
    """A layer's input shape from its `build_config` (a list of ints/None), or None."""
    build = layer.get("build_config")
    shape = build.get("input_shape") if isinstance(build, dict) else None
    if not isinstance(shape, list) or not 2 <= len(shape) <= 5:
        return None
    if not all(d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 0)
               for d in shape):
        return None
    return shape


def _input_channels(layer, config):
    shape = _input_shape(layer)
    if shape is None or len(shape) != 4:
        return None
    return shape[1] if config.get("data_format") == "channels_first" else shape[-1]


def _snake_case(name):
    """Keras' `naming.to_snake_case`, which names the weights groups."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


# --------------------------------------------------------------------------------------------
# model.weights.h5.


def _check_weights(raw, layout, report, findings, limits):
    """Checks the HDF5 structure and every dataset's metadata; reads no array."""
    if raw[:8] != _HDF5_SIGNATURE:
        findings.fatal(f"zip:{WEIGHTS}", f"{WEIGHTS} is not an HDF5 file (starts with "
                                         f"{raw[:8]!r})")
    try:
        with h5py.File(io.BytesIO(raw), "r") as h5:
            before = len(report.errors)
            datasets = _walk_h5(h5, findings, limits)
            if len(report.errors) > before:
                return  # Links or shared objects: the per-layer checks would only add noise.
            _check_datasets(datasets, layout, report, findings, limits)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as e:
        findings.error(f"zip:{WEIGHTS}", f"{WEIGHTS} is not a readable HDF5 file: "
                                         f"{_q(str(e))}")


def _walk_h5(h5, findings, limits):
    """Lists `{path: dataset}` without following links; refuses links and shared objects."""
    datasets, seen, count = {}, set(), 0
    stack = [(h5, "")]
    while stack:
        group, path = stack.pop()
        for name in group:
            count += 1
            child = f"{path}/{name}" if path else name
            where = f"h5:/{_q_path(child)}"
            if count > limits.max_h5_objects:
                findings.fatal(f"zip:{WEIGHTS}", f"{WEIGHTS} holds more than "
                                                 f"{limits.max_h5_objects} objects")
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                findings.error(where, (
                    f"external link to {_q(link.filename)}:{_q(link.path)}; the weights "
                    "file may only hold its own data"))
                continue
            if isinstance(link, h5py.SoftLink):
                findings.error(where, f"soft link to {_q(link.path)}; Keras never writes links")
                continue
            obj = group[name]
            info = h5py.h5o.get_info(obj.id)
            if info.addr in seen or info.rc != 1:
                findings.error(where, "an HDF5 object linked more than once (hard link); "
                                      "Keras never writes shared objects")
                continue
            seen.add(info.addr)
            if isinstance(obj, h5py.Group):
                stack.append((obj, child))
            elif isinstance(obj, h5py.Dataset):
                datasets[child] = obj
            else:
                findings.error(where, f"unexpected HDF5 object {type(obj).__name__}")
    return datasets


def _check_datasets(datasets, layout, report, findings, limits):
    """Checks each dataset's storage, dtype and shape against the layout; counts parameters."""
    per_group = collections.defaultdict(dict)
    optimizer, refused, total = [], set(), 0
    for path, dataset in sorted(datasets.items()):
        where = f"h5:/{_q_path(path)}"
        group, index = _owner(path, layout)
        nbytes = _dataset_problem(dataset, where, findings, limits)
        if nbytes is None:
            refused.add(group)
            continue
        total += nbytes
        if group == "optimizer":
            optimizer.append((path, tuple(dataset.shape)))
        elif group in layout.containers:
            findings.error(where, "dataset in a model's own vars group, which Keras leaves "
                                  "empty")
        elif group is None:
            findings.error(where, "dataset that belongs to no layer of config.json (Keras "
                                  "stores weights as <layer group>/vars/<index>)")
        else:
            per_group[group][index] = (path, tuple(dataset.shape))
    report.weights_bytes = total
    if total > limits.max_weights_bytes:
        findings.error(f"zip:{WEIGHTS}", f"the weights declare {_size(total)}, above the "
                                         f"{_size(limits.max_weights_bytes)} limit")
    shapes = _check_layer_weights(per_group, layout, refused, report, findings)
    _check_optimizer(optimizer, shapes, findings)


def _owner(path, layout):
    """`(group, index)` of a dataset path: a layer group of the layout, a model's group,
    `"optimizer"`, or `(None, None)`. Layers whose variables kcc does not know own every
    dataset below their group (`index` is then the path)."""
    head, _, index = path.rpartition("/")
    group = "" if head == "vars" else head[:-len("/vars")] if head.endswith("/vars") else None
    if group is not None and index.isdigit() and index == str(int(index)):
        if group == "optimizer" or group in layout.containers:
            return group, int(index)
        expected = layout.layers.get(group)
        if expected is not None and expected.specs is not None:
            return group, int(index)
    parts = path.split("/")
    for end in range(len(parts) - 1, 0, -1):
        expected = layout.layers.get("/".join(parts[:end]))
        if expected is not None:
            return ("/".join(parts[:end]), path) if expected.specs is None else (None, None)
    return None, None


def _dataset_problem(dataset, where, findings, limits):
    """Checks one dataset's metadata; returns its declared bytes, or None after an error."""
    dtype, shape = dataset.dtype, dataset.shape
    bfloat16 = dtype.kind == "V" and dtype.itemsize == 2 and "dtype" in dataset.attrs
    if dtype.kind not in "fiub" and not bfloat16 or dtype.fields or dtype.subdtype:
        findings.error(where, f"dataset of dtype {_q(str(dtype))}; weights must be numeric")
        return None
    if shape is None:
        findings.error(where, "dataset without a shape (null dataspace)")
        return None
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > limits.max_dataset_bytes:
        findings.error(where, (
            f"dataset declares shape {tuple(shape)} ({_size(nbytes)}), above the "
            f"{_size(limits.max_dataset_bytes)} limit for one array; refusing a potential "
            "shape bomb"))
        return None
    if dataset.is_virtual:
        findings.error(where, "virtual dataset (its data lives in other files); refused")
        return None
    if dataset.external:
        findings.error(where, f"dataset stored in external files {_q(str(dataset.external))}; "
                              "refused")
        return None
    if dataset.id.get_create_plist().get_nfilters():
        findings.error(where, "dataset uses HDF5 filters (compression); Keras never writes "
                              "them")
        return None
    stored = dataset.id.get_storage_size()
    if stored < nbytes:
        findings.error(where, (
            f"dataset declares shape {tuple(shape)} ({_size(nbytes)}) but stores only "
            f"{_size(stored)}; refusing a potential shape bomb"))
        return None
    return nbytes


def _check_layer_weights(per_group, layout, refused, report, findings):
    """Compares each layer's datasets with the shapes its config implies; counts parameters.

    Layers in `refused` (a dataset of theirs was already refused) are not checked again.

    Returns:
        The set of weight shapes, for the optimizer check.
    """
    trainable = non_trainable = 0
    shapes = set()
    for group, expected in sorted(layout.layers.items()):
        if group in refused:
            continue
        stored = per_group.get(group, {})
        label = f"layer {_q(expected.name)} ({expected.class_name}, {expected.config_path})"
        if expected.specs is None:
            for _, shape in stored.values():
                trainable += math.prod(shape)
                shapes.add(shape)
            continue
        if sorted(stored) != list(range(len(expected.specs))):
            findings.error(f"h5:/{_q_path(group)}/vars", (
                f"{label} has {len(expected.specs)} weight array(s) but the file stores "
                f"{len(stored)}"))
            continue
        for index, (shape, is_trainable) in enumerate(expected.specs):
            path, actual = stored[index]
            if actual != shape:
                findings.error(f"h5:/{_q_path(path)}", (
                    f"dataset has shape {actual}; the config of {label} implies {shape}"))
                continue
            shapes.add(shape)
            if is_trainable:
                trainable += math.prod(shape)
            else:
                non_trainable += math.prod(shape)
    report.trainable_params = trainable
    report.non_trainable_params = non_trainable
    return shapes


def _check_optimizer(optimizer, shapes, findings):
    """Optimizer slots are scalars or copies of a model variable's shape (the loader skips
    them with `compile=False`, but they are size-checked with the rest of the file)."""
    if len(optimizer) > 8 * max(len(shapes), 1) + 16:
        findings.error("h5:/optimizer/vars", (
            f"{len(optimizer)} optimizer variables for a model with {len(shapes)} weight "
            "shapes"))
        return
    for path, shape in optimizer:
        if shape != () and shape not in shapes:
            findings.error(f"h5:/{_q_path(path)}", (
                f"optimizer variable of shape {shape}, which no model weight has"))


# --------------------------------------------------------------------------------------------
# Small helpers.


def _q(value, limit=80):
    """`repr` of an untrusted value, shortened: safe to print on one line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...'"


def _q_path(path):
    """An HDF5 path from the file, with unprintable characters escaped."""
    text = path if path.isprintable() else repr(path)[1:-1]
    return text if len(text) <= 200 else f"{text[:200]}..."


def _join(path, key):
    key = str(key)
    if _IDENTIFIER.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{_q(key)}]"


def _str(value):
    return value if isinstance(value, str) else None


def _ints(value):
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                       for v in value):
        return tuple(value)
    return None


def _positive(*values):
    return all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)


def _size(nbytes):
    for unit, scale in (("GiB", _GiB), ("MiB", _MiB), ("KiB", 1024)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


def summary_lines(report):
    """The human-readable report printed by `python -m kcc.inspect`, as a list of lines."""
    lines = [f"kcc.inspect: {report.path}", f"  format: {report.format}"
             + (f" (saved by Keras {report.keras_version})" if report.keras_version else "")]
    if report.model_class:
        counts = sorted(report.layer_counts.items(), key=lambda kv: (-kv[1], kv[0]))
        lines.append(f"  model: {report.model_class} {report.model_name!r}, "
                     f"{report.num_layers} layers")
        lines.append("  layers: " + ", ".join(f"{name} x{n}" for name, n in counts))
    if report.trainable_params is not None:
        lines.append(f"  trainable parameters: {report.trainable_params:,} (non-trainable: "
                     f"{report.non_trainable_params:,}; weights file: "
                     f"{_size(report.weights_bytes or 0)})")
    if report.model_class:
        lines.append(f"  BatchNorm present: {'yes' if report.has_batchnorm else 'no'}")
        names = [conv["name"] for conv in report.decomposable_convs]
        lines.append(f"  decomposable convs (Conv2D, groups=1, >3 input channels): "
                     f"{len(names)} of {report.convs}" + (f": {', '.join(names)}" if names
                                                          else ""))
    lines.append(f"  inspected in {report.seconds:.3f} s")
    lines.extend(f"  {finding.line()}" for finding in report.findings)
    verdict = "OK" if report.ok else f"REFUSED ({len(report.errors)} error(s))"
    if report.ok and report.trusted:
        verdict += " (trusted source: allowlist not enforced)"
    lines.append(f"  result: {verdict}")
    return lines
