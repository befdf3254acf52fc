"""TFLite (LiteRT) export of kcc models, float or quantised, without any training data.

`to_tflite(model, path, quantization=...)` writes a `.tflite` file for a functional or
Sequential model, `TuckerConv2D` layers included (each becomes three builtin `CONV_2D` ops,
with the following BatchNorm folded into the last). Three forms:

* `None`: float32 weights and activations.
* `"dynamic"`: int8 weights, float32 activations (dynamic-range quantisation); no calibration.
* `"int8"`: int8 weights and activations, float32 input and output (a `QUANTIZE` op at the
  entry, a `DEQUANTIZE` op at the exit, so the file is a drop-in replacement for the float
  one). Activation ranges are calibrated on images synthesised from the model's own
  BatchNorm statistics (`kcc.synthesis.synthesize`, C&C Eq. 9), so quantisation stays
  data-free like the rest of kcc.

The converter is restricted to TFLite builtin ops: an op without a builtin kernel makes the
conversion fail instead of silently becoming a (slow, large) Flex op, and the written file is
checked to hold no custom op.

Export needs the TensorFlow backend of Keras; inference (`interpreter`, `predict`) needs the
`ai-edge-litert` package (`pip install "kcc[tflite]"`), not TensorFlow or Keras's backend. TensorFlow and LiteRT
are imported inside the functions, so `kcc` imports without them (e.g. on the JAX backend).

Reference: LiteRT model conversion and post-training quantisation,
https://ai.google.dev/edge/litert/models/post_training_quantization
"""

import collections
import contextlib
import io
import os
import re
import warnings

import keras
import numpy as np

from kcc import saving

QUANTIZATIONS = (None, "dynamic", "int8")


def convert(model, quantization=None, representative_images=None, num_calibration_images=256,
            calibration_steps=50, batch_size=1, seed=0, verbose=False):
    """Converts a Keras model to a TFLite flatbuffer with builtin ops only.

    Args:
        model: a functional or Sequential `keras.Model` with one image input
            `(batch, H, W, C)`, e.g. the output of `kcc.rewrite.compress`.
        quantization: `None` (float32), `"dynamic"` or `"int8"` (see the module docstring).
        representative_images: for `"int8"`, calibration images `(N, H, W, C)` float32 in
            [0, 1]. Default: `num_calibration_images` images synthesised from `model`'s
            BatchNorm statistics with `calibration_steps` Adam steps (data-free).
        num_calibration_images: synthetic calibration images when none are given.
        calibration_steps: synthesis steps per calibration batch (the paper's synthesis uses
            500; a few tens give usable activation ranges).
        batch_size: the static batch dimension of the TFLite input (1 for on-device latency).
        seed: seed of the synthetic calibration images.
        verbose: show the synthesis progress bar.

    Returns:
        `(content, info)`: the flatbuffer as `bytes`, and a dict with `quantization`, `ops`
        (`{op name: count}`) and, for `"int8"`, `calibration` (how the images were made).

    Raises:
        RuntimeError: the active Keras backend is not TensorFlow, or TensorFlow is missing.
        ValueError: bad arguments, a model that is not a single-input image classifier, or a
            converted model that still holds custom (e.g. Flex) ops.
            Also when an op has no builtin TFLite kernel (the converter's error is chained).
    """
    tf = _tensorflow()
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}. "
                         f"Received quantization={quantization!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1. Received batch_size={batch_size}.")
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise ValueError("TFLite export takes models with one (batch, H, W, C) input. Received "
                         f"inputs {[tuple(i.shape) for i in model.inputs]}.")
    image_shape = tuple(model.inputs[0].shape[1:])
    # A static batch dimension: the TFLite graph gets fixed shapes, as deployed on a device.
    inputs = keras.Input(batch_shape=(batch_size, *image_shape), name="pixels")
    fixed = keras.Model(inputs, model(inputs), name=model.name)
    converter = tf.lite.TFLiteConverter.from_keras_model(fixed)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    info = {"quantization": quantization}
    if quantization is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "int8":
        if representative_images is None:
            from kcc import synthesis

            representative_images, _, synthesis_info = synthesis.synthesize(
                model, num_images=num_calibration_images, steps=calibration_steps,
                batch_size=max(2, min(256, num_calibration_images)), seed=seed, verbose=verbose,
            )
            info["calibration"] = {
                "source": "synthetic (kcc.synthesis.synthesize, Eq. 9)",
                "images": int(num_calibration_images), "steps": int(calibration_steps),
                "seed": int(seed), "seconds": synthesis_info["seconds"],
            }
        else:
            info["calibration"] = {"source": "given", "images": len(representative_images)}
        images = np.asarray(representative_images, np.float32)
        if images.shape[1:] != image_shape or len(images) < batch_size:
            raise ValueError(f"representative_images must have shape (N >= {batch_size}, "
                             f"{', '.join(map(str, image_shape))}). Received {images.shape}.")

        def representative_dataset():
            for first in range(0, len(images) - batch_size + 1, batch_size):
                yield [images[first:first + batch_size]]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    content = _run_converter(converter, verbose)
    info["ops"] = ops(content)
    custom = sorted(name for name in info["ops"] if name.startswith("CUSTOM"))
    if custom:
        raise ValueError(f"The converted model holds non-builtin ops {custom}; kcc exports "
                         "builtin ops only (Flex ops are slow and need the TF runtime).")
    return content, info


def to_tflite(model, path, quantization=None, overwrite=False, **kwargs):
    """Converts `model` with `convert` and writes the `.tflite` file atomically.

    Args:
        model: a functional or Sequential `keras.Model` with one image input.
        path: the output file, ending in `.tflite`.
        quantization: `None`, `"dynamic"` or `"int8"`.
        overwrite: replace an existing file.
        **kwargs: passed to `convert` (`representative_images`, `num_calibration_images`,
            `calibration_steps`, `batch_size`, `seed`, `verbose`).

    Returns:
        `convert`'s info dict plus `path` and `size_bytes`.

    Raises:
        as `convert`; `FileExistsError` when `path` exists and `overwrite` is false.

    Example:

    >>> compact, _ = kcc.rewrite.compress(model, cr=3)
    >>> kcc.export.to_tflite(compact, "compact_int8.tflite", quantization="int8")
    """
    path = os.fspath(path)
    if not path.endswith(".tflite"):
        raise ValueError(f"TFLite files must end in .tflite. Received path={path!r}.")
    saving.check_output(path, overwrite)
    content, info = convert(model, quantization=quantization, **kwargs)
    saving.write_bytes(content, path, overwrite=overwrite)
    return {"path": path, "size_bytes": len(content), **info}


def ops(content):
    """Operator histogram of a TFLite flatbuffer.

    Args:
        content: the flatbuffer (`bytes`), or a path to a `.tflite` file.

    Returns:
        `{op name: count}` over all subgraphs, e.g. `{"CONV_2D": 52, "ADD": 8, ...}`; custom
        ops appear as `"CUSTOM:<code>"` (Flex ops as `"CUSTOM:Flex..."`).
    """
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # TensorFlow ships the same generated schema.
        from tensorflow.lite.python import schema_py_generated as schema

    if isinstance(content, (str, os.PathLike)):
        with open(content, "rb") as f:
            content = f.read()
    model = schema.Model.GetRootAs(bytearray(content), 0)
    builtin_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Codes above 127 live in BuiltinCode; DeprecatedBuiltinCode holds the small ones.
        name = builtin_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")
        if name == "CUSTOM":
            name += ":" + (code.CustomCode() or b"").decode()
        names.append(name)
    counts = collections.Counter()
    for g in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(g)
        for o in range(subgraph.OperatorsLength()):
            counts[names[subgraph.Operators(o).OpcodeIndex()]] += 1
    return dict(counts.most_common())


def interpreter(model, num_threads=1, xnnpack=True):
    """A ready LiteRT interpreter (tensors allocated) for a `.tflite` file or flatbuffer.

    Args:
        model: path to a `.tflite` file, or the flatbuffer as `bytes`.
        num_threads: CPU threads, >= 1.
        xnnpack: apply the XNNPACK delegate (LiteRT's default CPU path); `False` runs the
            reference builtin kernels.

    Returns:
        an `ai_edge_litert.interpreter.Interpreter`.

    Raises:
        ImportError: `ai-edge-litert` is not installed.
    """
    try:
        from ai_edge_litert import interpreter as litert
    except ImportError as e:
        raise ImportError('TFLite inference needs the ai-edge-litert package: '
                          'pip install "kcc[tflite]" (or pip install ai-edge-litert).') from e

    resolver = (litert.OpResolverType.AUTO if xnnpack
                else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    source = {"model_content": model} if isinstance(model, bytes) else {"model_path": os.fspath(model)}
    runner = litert.Interpreter(num_threads=num_threads, experimental_op_resolver_type=resolver,
                                **source)
    runner.allocate_tensors()
    return runner


def predict(model, x, num_threads=1, xnnpack=True):
    """Outputs of a single-input, single-output TFLite model on a batch of images.

    The model's static batch size is kept: images go through in chunks of it (the last one
    padded), so a batch-1 file is evaluated exactly as it runs on a device.

    Args:
        model: path to a `.tflite` file, its bytes, or an `interpreter(...)`.
        x: images `(N, H, W, C)` in [0, 1] (uint8 images are divided by 255).
        num_threads: CPU threads.
        xnnpack: use the XNNPACK delegate.

    Returns:
        float32 array `(N, ...)`, e.g. logits `(N, num_classes)`.
    """
    runner = model if hasattr(model, "invoke") else interpreter(model, num_threads, xnnpack)
    x = np.asarray(x)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    (inp,), (out,) = runner.get_input_details(), runner.get_output_details()
    batch = int(inp["shape"][0])
    outputs = []
    for first in range(0, len(x), batch):
        chunk = x[first:first + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), np.float32)])
        runner.set_tensor(inp["index"], chunk.astype(inp["dtype"], copy=False))
        runner.invoke()
        outputs.append(np.array(runner.get_tensor(out["index"]), np.float32)[:n])
    return np.concatenate(outputs)


def _run_converter(converter, verbose):
    """`converter.convert()`, quiet unless `verbose`; a missing builtin kernel -> ValueError."""
    with warnings.catch_warnings(), contextlib.ExitStack() as stack:
        # Float input and output around an int8 graph is what kcc asks for.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        if not verbose:  # Keras prints the temporary SavedModel's signature.
            stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        try:
            return converter.convert()
        except Exception as e:
            if type(e).__name__ != "ConverterError":
                raise
            missing = re.findall(r"(?:Custom|Flex|TF Select) ops: ([^\n]+)", str(e))
            raise ValueError(
                "TFLite conversion with builtin ops only failed"
                + (f": no builtin kernel for {', '.join(missing)}" if missing else "")
                + ". kcc does not fall back to Flex (TF select) ops, which are slow and need the "
                f"TensorFlow runtime on the device. Converter message: {str(e)[:2000]}"
            ) from e


def _tensorflow():
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"TFLite export needs the TensorFlow backend of Keras; the active backend is "
            f"{backend!r}. Save the model (.keras files are backend-independent) and export it "
            "in a process started with KERAS_BACKEND=tensorflow."
        )
    try:
        import tensorflow as tf
    except ImportError as e:
        raise RuntimeError("TFLite export needs TensorFlow: pip install tensorflow-cpu.") from e
    return tf
