"""A corpus of crafted model files that kcc's intake must refuse, built from benign models.

`build_corpus(folder)` writes every file into `folder` and returns `Case`s: the file and a
regular expression its refusal must match (in `UnsafeModelError`'s message and in the report's
error lines). Every payload, if it ever ran, would create `canary_path(folder)`; Keras is only
needed to build the benign models the crafted files start from. Reusable by any command that
opens untrusted models (e.g. `kcc.purify`).
"""

import base64
import collections
import io
import json
import marshal
import os
import struct
import warnings
import zipfile

import h5py
import keras
import numpy as np

from kcc import models

Case = collections.namedtuple("Case", ["name", "path", "match"])

CANARY = "CANARY"

#: Names of the cases `build_corpus` returns, in order.
NAMES = (
    "lambda_layer", "module_os_system", "builtins_exec", "enable_unsafe_deserialization",
    "nested_load_model", "load_model_function", "tfsm_layer", "string_lookup",
    "unknown_custom_object", "unlisted_keras_layer", "unknown_activation_string",
    "normalization_broadcast_bomb", "dense_units_bomb", "nested_deep_payload", "invalid_json", "json_not_a_model", "json_list", "deep_json",
    "utf16_json", "path_traversal", "absolute_member", "extra_member", "asset_traversal",
    "duplicate_member", "missing_weights", "zip_bomb", "zip_bomb_lying_header",
    "truncated_archive", "not_a_zip", "h5_external_link", "h5_soft_link", "h5_virtual_dataset",
    "h5_wrong_shape", "h5_huge_shape", "h5_unallocated", "h5_string_dataset",
    "h5_stray_dataset", "legacy_h5", "legacy_h5_disguised", "savedmodel", "missing_file",
)


def canary_path(folder):
    """The file a payload would create if it ran."""
    return os.path.join(folder, CANARY)


def save_benign(folder, name="benign.keras"):
    """A tiny kcc ResNet-18 (width 4), saved uncompiled; returns its path."""
    path = os.path.join(folder, name)
    models.resnet18(width=4).save(path)
    return path


def nested_model():
    """A tiny functional model whose body is a nested functional model."""
    inner_in = keras.Input((16, 16, 4), name="body_in")
    y = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="body_conv")(inner_in)
    y = keras.layers.BatchNormalization(name="body_bn")(y)
    body = keras.Model(inner_in, keras.layers.ReLU(name="body_relu")(y), name="body")
    inputs = keras.Input((16, 16, 3), name="pixels")
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem_conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(body(x))
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="nested")


def build_corpus(folder):
    """Writes the crafted files into `folder`.

    Args:
        folder: an existing directory (e.g. pytest's `tmp_path`).

    Returns:
        A list of `Case(name, path, match)`, one per attack class.
    """
    folder = os.fspath(folder)
    canary = canary_path(folder)
    benign = save_benign(folder)
    nested = os.path.join(folder, "nested_benign.keras")
    nested_model().save(nested)
    members = _members(benign)
    config = json.loads(members["config.json"])
    cases = []

    def add(name, match, path):
        cases.append(Case(name, path, match))

    def with_config(name, match, edit, source=members):
        cfg = json.loads(source["config.json"])
        edit(cfg)
        add(name, match, _write(folder, name, {**source, "config.json": json.dumps(cfg)}))

    # Config payloads.
    relu = _index(config, LAMBDA_TARGET)
    conv = _index(config, "stage1_block1_1_conv")
    add("lambda_layer", rf"config\.layers\[{relu}\]: .*Lambda layer stores Python bytecode",
        write_lambda_model(folder, benign))

    def set_conv(key, value):
        def edit(cfg):
            cfg["config"]["layers"][conv]["config"][key] = value
        return edit

    with_config(
        "module_os_system",
        rf"config\.layers\[{conv}\]\.config\.kernel_initializer: .*module 'os', outside keras",
        set_conv("kernel_initializer", {
            "module": "os", "class_name": "system", "registered_name": None,
            "config": {"command": f"touch {canary}"}}))
    with_config(
        "builtins_exec",
        rf"config\.layers\[{conv}\]\.config\.activation: .*function 'builtins\.exec' is not a "
        "Keras activation",
        set_conv("activation", {
            "module": "builtins", "class_name": "function", "registered_name": "function",
            "config": "exec"}))
    with_config(
        "enable_unsafe_deserialization",
        rf"config\.layers\[{conv}\]\.config\.activation: .*"
        r"'keras\.config\.enable_unsafe_deserialization' is a non-modeling Keras API",
        set_conv("activation", {
            "module": "keras.config", "class_name": "function",
            "registered_name": "enable_unsafe_deserialization",
            "config": "enable_unsafe_deserialization"}))
    lambda_file = os.path.join(folder, "lambda_layer.keras")
    with_config(
        "nested_load_model",
        rf"config\.layers\[{conv}\]\.config\.kernel_initializer: .*"
        r"'keras\.src\.saving\.saving_api\.load_model' is a non-modeling Keras API",
        set_conv("kernel_initializer", {
            "module": "keras.src.saving.saving_api", "class_name": "load_model",
            "registered_name": None,
            "config": {"filepath": lambda_file, "safe_mode": False, "compile": False}}))
    with_config(
        "load_model_function",
        r"'keras\.models\.load_model' is a non-modeling Keras API",
        set_conv("bias_initializer", {
            "module": "keras.models", "class_name": "function", "registered_name": "load_model",
            "config": "load_model"}))

    def replace_layer(class_name, layer_config, module="keras.layers", registered=None):
        def edit(cfg):
            layer = cfg["config"]["layers"][relu]
            layer.update(module=module, class_name=class_name, registered_name=registered)
            layer["config"] = {"name": layer["config"]["name"], "trainable": True,
                               **layer_config}
        return edit

    with_config("tfsm_layer", rf"config\.layers\[{relu}\]: .*TFSMLayer loads and runs a "
                "TensorFlow SavedModel", replace_layer("TFSMLayer", {
                    "filepath": os.path.join(folder, "savedmodel"), "call_endpoint": "serve",
                    "call_training_endpoint": None}))
    with_config("string_lookup", rf"config\.layers\[{relu}\]: .*lookup and text-vectorization "
                "layers read vocabulary files", replace_layer("StringLookup", {
                    "vocabulary": "/etc/passwd", "max_tokens": None, "num_oov_indices": 1}))
    with_config("unknown_custom_object", rf"config\.layers\[{relu}\]: unknown custom object "
                "with registered_name 'mypkg>Foo'", replace_layer(
                    "Foo", {"command": f"touch {canary}"}, module="mypkg.layers",
                    registered="mypkg>Foo"))
    with_config("unlisted_keras_layer", rf"config\.layers\[{relu}\]: Keras object "
                r"'keras\.layers\.MultiHeadAttention' is not on kcc's allowlist",
                replace_layer("MultiHeadAttention", {"num_heads": 2, "key_dim": 2}))
    with_config("unknown_activation_string",
                rf"config\.layers\[{conv}\]\.config\.activation: 'mypkg>evil' is not a Keras "
                "activation", set_conv("activation", "mypkg>evil"))

    normalize = _index(config, "normalize")

    def broadcast_bomb(cfg):
        layer = cfg["config"]["layers"][normalize]
        layer["config"].update(axis=[1, 2, 3], mean=0.5, variance=0.25)
        layer["build_config"]["input_shape"] = [None, 100_000, 100_000, 3]

    with_config("normalization_broadcast_bomb", rf"config\.layers\[{normalize}\]: Normalization "
                r"layer would broadcast its mean and variance to shape \[100000, 100000, 3\]",
                broadcast_bomb)
    logits = _index(config, "logits")

    def units_bomb(cfg):
        layer = cfg["config"]["layers"][logits]
        layer["config"]["units"] = 1_000_000_000
        del layer["build_config"]

    with_config("dense_units_bomb", rf"config\.layers\[{logits}\]: cannot derive the weight "
                "shapes of Dense layer 'logits'", units_bomb)

    nested_members = _members(nested)
    nested_config = json.loads(nested_members["config.json"])
    body = _index(nested_config, "body")
    body_conv = _index(nested_config["config"]["layers"][body], "body_conv")

    def deep(cfg):
        layer = cfg["config"]["layers"][body]["config"]["layers"][body_conv]
        layer["config"]["kernel_initializer"] = {
            "module": "keras.initializers", "class_name": "VarianceScaling",
            "registered_name": None,
            "config": {"scale": 1.0, "seed": {
                "module": "builtins", "class_name": "eval", "registered_name": None,
                "config": {"source": f"open({canary!r}, 'w')"}}}}

    with_config(
        "nested_deep_payload",
        rf"config\.layers\[{body}\]\.config\.layers\[{body_conv}\]\.config\.kernel_initializer"
        r"\.config\.seed: .*module 'builtins', outside keras", deep, source=nested_members)

    # JSON structure.
    add("invalid_json", r"config\.json is not valid JSON",
        _write(folder, "invalid_json", {**members, "config.json": b'{"class_name": "Func'}))
    add("json_not_a_model", r"config\.json does not describe a Keras model",
        _write(folder, "json_not_a_model", {**members, "config.json": b'{"hello": "world"}'}))
    add("json_list", r"config\.json does not describe a Keras model.*received list",
        _write(folder, "json_list", {**members, "config.json": b"[1, 2, 3]"}))
    add("deep_json", r"config\.json nests 100000 levels deep, above the limit",
        _write(folder, "deep_json", {
            **members, "config.json": b"[" * 100_000 + b"]" * 100_000}))
    add("utf16_json", r"config\.json is encoded as utf-16",
        _write(folder, "utf16_json", {
            **members, "config.json": members["config.json"].decode().encode("utf-16-le")}))

    # Container.
    script = f"open({canary!r}, 'w').write('pwned')\n".encode()
    add("path_traversal", r"zip:'\.\./evil\.py'.*path traversal",
        _write(folder, "path_traversal", {**members, "../evil.py": script}))
    add("absolute_member", r"zip:'/tmp/evil\.py'.*absolute path",
        _write(folder, "absolute_member", {**members, "/tmp/evil.py": script}))
    add("extra_member", r"zip:'evil\.py'.*not a member of a Keras v3 model archive",
        _write(folder, "extra_member", {**members, "evil.py": script}))
    add("asset_traversal", r"zip:'assets/\.\./\.\./evil\.py'.*path traversal",
        _write(folder, "asset_traversal", {**members, "assets/../../evil.py": script}))
    add("duplicate_member", r"zip:'config\.json'.*appears twice",
        _write_duplicate(folder, members))
    add("missing_weights", r"the archive has no model\.weights\.h5",
        _write(folder, "missing_weights", {
            k: v for k, v in members.items() if k != "model.weights.h5"}))
    add("zip_bomb", r"'config\.json' declares 200\.\d MiB uncompressed from .* refusing a "
        "potential ZIP bomb", _write_bomb(folder, members, "zip_bomb"))
    add("zip_bomb_lying_header", r"'config\.json' is truncated or corrupt: .*Bad CRC-32",
        _write_bomb(folder, members, "zip_bomb_lying_header", declare=1_000_000))
    truncated = os.path.join(folder, "truncated.keras")
    with open(benign, "rb") as src, open(truncated, "wb") as dst:
        dst.write(src.read()[: os.path.getsize(benign) // 2])
    add("truncated_archive", r"truncated or corrupt ZIP archive", truncated)
    add("not_a_zip", r"unrecognised file format \(starts with b'#!/bin/s'\)",
        _write_raw(folder, "not_a_zip.keras", b"#!/bin/sh\ntouch " + canary.encode() + b"\n"))

    # Weights.
    def with_weights(name, match, edit):
        add(name, match, _write(folder, name, {
            **members, "model.weights.h5": _edit_h5(members["model.weights.h5"], edit)}))

    kernel = "layers/conv2d_1/vars/0"

    def external_link(h5):
        del h5[kernel]
        h5[kernel] = h5py.ExternalLink(os.path.join(folder, "evil.h5"), "/kernel")

    def soft_link(h5):
        del h5[kernel]
        h5[kernel] = h5py.SoftLink("/layers/conv2d/vars/0")

    def virtual(h5):
        shape = h5[kernel].shape
        del h5[kernel]
        layout = h5py.VirtualLayout(shape=shape, dtype="float32")
        layout[...] = h5py.VirtualSource(os.path.join(folder, "evil.h5"), "kernel", shape=shape)
        h5.create_virtual_dataset(kernel, layout)

    def wrong_shape(h5):
        shape = h5[kernel].shape
        del h5[kernel]
        h5[kernel] = np.zeros((*shape[:3], shape[3] + 1), "float32")

    def huge_shape(h5):
        del h5["layers/dense/vars/0"]
        h5.create_dataset("layers/dense/vars/0", shape=(1 << 20, 1 << 20), dtype="float32",
                          chunks=(64, 64))

    def unallocated(h5):
        shape = h5[kernel].shape
        del h5[kernel]
        h5.create_dataset(kernel, shape=shape, dtype="float32", chunks=shape)

    def string_dataset(h5):
        del h5[kernel]
        h5[kernel] = np.array([b"touch CANARY"])

    def stray_dataset(h5):
        h5["_layer_checkpoint_dependencies/conv2d/vars/0"] = np.zeros(3, "float32")

    with_weights("h5_external_link", rf"h5:/{kernel}: external link to", external_link)
    with_weights("h5_soft_link", rf"h5:/{kernel}: soft link", soft_link)
    with_weights("h5_virtual_dataset", rf"h5:/{kernel}: virtual dataset", virtual)
    with_weights("h5_wrong_shape", rf"h5:/{kernel}: dataset has shape \(3, 3, 4, 5\); the config "
                 r"of layer 'stage1_block1_1_conv' \(Conv2D, config\.layers\[\d+\]\) implies "
                 r"\(3, 3, 4, 4\)", wrong_shape)
    with_weights("h5_huge_shape", r"h5:/layers/dense/vars/0: dataset declares shape "
                 r"\(1048576, 1048576\) \(4096\.0 GiB\), above the .* limit", huge_shape)
    with_weights("h5_unallocated", rf"h5:/{kernel}: dataset declares shape .* but stores only "
                 "0 bytes", unallocated)
    with_weights("h5_string_dataset", rf"h5:/{kernel}: dataset of dtype .*weights must be "
                 "numeric", string_dataset)
    with_weights("h5_stray_dataset", r"h5:/_layer_checkpoint_dependencies/conv2d/vars/0: "
                 "dataset that belongs to no layer", stray_dataset)

    # Other formats.
    legacy = os.path.join(folder, "legacy.h5")
    with h5py.File(legacy, "w") as h5:
        h5.attrs["keras_version"] = "2.15.0"
        h5.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {
            "layers": [{"class_name": "Lambda", "config": {
                "function": ["touch CANARY", None, None], "function_type": "lambda"}}]}})
    add("legacy_h5", r"legacy HDF5 model file.*model\.save\('model\.keras'\)", legacy)
    with open(legacy, "rb") as f:
        disguised = _write_raw(folder, "disguised_h5.keras", f.read())
    add("legacy_h5_disguised", r"legacy HDF5 model file", disguised)
    savedmodel = os.path.join(folder, "savedmodel")
    os.makedirs(os.path.join(savedmodel, "variables"))
    _write_raw(savedmodel, "saved_model.pb", b"\x08\x01" + script)
    add("savedmodel", r"TensorFlow SavedModel directory: refused", savedmodel)
    add("missing_file", r"no such file", os.path.join(folder, "does_not_exist.keras"))
    assert tuple(case.name for case in cases) == NAMES, "update NAMES"
    return cases


LAMBDA_TARGET = "stage1_block1_1_relu"


def write_lambda_model(folder, benign):
    """`benign` with its layer `LAMBDA_TARGET` (a ReLU) replaced by a Lambda layer whose
    bytecode creates `canary_path(folder)`: the model still works, plus the payload."""
    members = _members(benign)
    config = json.loads(members["config.json"])
    layer = config["config"]["layers"][_index(config, LAMBDA_TARGET)]
    layer.update(module="keras.layers", class_name="Lambda", registered_name=None)
    layer["config"] = {"name": layer["config"]["name"], "trainable": True,
                       "function": _lambda_payload(canary_path(folder)), "arguments": {}}
    return _write(folder, "lambda_layer", {**members, "config.json": json.dumps(config)})


def _members(path):
    """`{name: bytes}` of a benign archive (trusted: written by the test itself)."""
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _index(model_config, name):
    for i, layer in enumerate(model_config["config"]["layers"]):
        if layer["config"].get("name") == name:
            return i
    raise KeyError(name)


def _write(folder, name, members):
    path = os.path.join(folder, f"{name}.keras")
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            archive.writestr(zipfile.ZipInfo(member), data)
    return path


def _write_raw(folder, name, data):
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _write_duplicate(folder, members):
    path = os.path.join(folder, "duplicate_member.keras")
    evil = json.loads(members["config.json"])
    evil["config"]["layers"][-1]["class_name"] = "Lambda"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name.
        with zipfile.ZipFile(path, "w") as archive:
            for member, data in members.items():
                archive.writestr(member, data)
            archive.writestr("config.json", json.dumps(evil))
    return path


def _write_bomb(folder, members, name, declare=None):
    """config.json padded with 200 MiB of spaces, deflated (about 1000:1).

    With `declare`, the headers claim that uncompressed size instead (a lying header).
    """
    path = os.path.join(folder, f"{name}.keras")
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            if member != "config.json":
                archive.writestr(member, data)
        info = zipfile.ZipInfo("config.json")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w") as f:
            f.write(members["config.json"])
            spaces = b" " * (1 << 20)
            for _ in range(200):
                f.write(spaces)
    if declare is not None:
        _patch_declared_size(path, "config.json", declare)
    return path


def _patch_declared_size(path, member, size):
    """Rewrites a member's uncompressed size in its local and central headers."""
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        end = data.rfind(b"PK\x05\x06")
        count, _, offset = struct.unpack("<HLL", data[end + 10:end + 20])
        at = offset
        for _ in range(count):
            name_len, extra_len, comment_len = struct.unpack("<HHH", data[at + 28:at + 34])
            name = data[at + 46:at + 46 + name_len].decode()
            if name == member:
                struct.pack_into("<L", data, at + 24, size)
                local = struct.unpack("<L", data[at + 42:at + 46])[0]
                struct.pack_into("<L", data, local + 22, size)
            at += 46 + name_len + extra_len + comment_len
        f.seek(0)
        f.write(data)


def _edit_h5(raw, edit):
    buffer = io.BytesIO(raw)
    with h5py.File(buffer, "r+") as h5:
        edit(h5)
    return buffer.getvalue()


def _lambda_payload(canary):
    """A Keras `__lambda__` config whose bytecode creates `canary` when deserialized."""
    function = eval(f"lambda x: (open({canary!r}, 'w').close(), x)[1]")
    code = base64.b64encode(marshal.dumps(function.__code__)).decode("ascii")
    return {"class_name": "__lambda__", "config": {"code": code, "defaults": None,
                                                   "closure": None}}
