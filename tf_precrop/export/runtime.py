"""The LiteRT side of a ``.tflite`` file: loading, tensor (de)quantization, names.

Shared by verification (:mod:`tf_precrop.export.verify`), latency
(:mod:`tf_precrop.export.latency`) and conversion (matching the SavedModel's
signature inputs to the model's).

Example:

```python
interpreter = load_interpreter("model.tflite", num_threads=2)
print(infer_quantize(interpreter))
```
"""

import os

import numpy as np

from tf_precrop.errors import ExportError, ExportPathError


def load_interpreter(path, num_threads=None, use_xnnpack=True):
    """A LiteRT ``Interpreter`` for ``path``, tensors allocated.

    Args:
        path: The ``.tflite`` file.
        num_threads: Interpreter threads (``None``: LiteRT's default).
        use_xnnpack: Apply the default XNNPACK delegate; ``False`` uses the
            builtin kernels only.

    Returns:
        An ``ai_edge_litert.interpreter.Interpreter``.

    Raises:
        ExportPathError: ``path`` does not exist (a ``FileNotFoundError``).
        ExportError: The file is corrupt or uses ops this runtime lacks.

    Example:

    ```python
    interpreter = load_interpreter("model.tflite")
    ```
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ExportPathError(
            f"TFLite file not found. Expected an existing .tflite file. Received: path={path!r}"
        )
    resolver = OpResolverType.AUTO if use_xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interpreter = Interpreter(
            model_path=path,
            num_threads=num_threads,
            experimental_op_resolver_type=resolver,
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ExportError(
            "The LiteRT interpreter could not load the file; it is corrupt, "
            "truncated, or uses ops this runtime lacks (Select TF ops need the "
            f"Flex delegate). Expected a valid .tflite flatbuffer. Received: "
            f"path={path!r} ({e})"
        ) from e
    return interpreter


def quantize_input(array, detail):
    """``array`` in the dtype of an input ``detail`` (quantized with its scale for int8)."""
    dtype = np.dtype(detail["dtype"])
    if dtype in (np.int8, np.uint8, np.int16) and np.issubdtype(array.dtype, np.floating):
        scale, zero = detail["quantization"]
        if scale == 0:
            return array.astype(dtype)
        info = np.iinfo(dtype)
        q = np.round(array / scale + zero)
        return np.clip(q, info.min, info.max).astype(dtype)
    return array.astype(dtype, copy=False)


def dequantize_output(array, detail):
    """An output tensor as float64 (dequantized with its scale for int8)."""
    array = np.asarray(array)
    if np.dtype(detail["dtype"]) in (np.int8, np.uint8, np.int16):
        scale, zero = detail["quantization"]
        if scale != 0:
            return (array.astype(np.float64) - zero) * scale
    return array.astype(np.float64)


def match_names(wanted, available, shapes_wanted, shapes_available, kind):
    """Maps each wanted name to an available name: by name, then by shape.

    Raises:
        ExportError: A wanted name matches no available name, or several.
    """
    if set(wanted) <= set(available):
        return {w: w for w in wanted}
    if len(wanted) == 1 and len(available) == 1:
        return {wanted[0]: available[0]}
    mapping, left = {}, list(available)
    for w, shape in zip(wanted, shapes_wanted, strict=True):
        hits = [a for a in left if _shape_matches(shape, shapes_available[a])]
        if len(hits) != 1:
            raise ExportError(
                f"Could not match the model's {kind}s to the TFLite file's {kind}s "
                f"by name or shape. Expected {kind}s named {wanted}. Received: "
                f"file {kind}s={available}"
            )
        mapping[w] = hits[0]
        left.remove(hits[0])
    return mapping


def _shape_matches(a, b):
    a, b = tuple(a)[1:], tuple(b)[1:]
    return len(a) == len(b) and all(
        x is None or y is None or x < 0 or y < 0 or x == y for x, y in zip(a, b, strict=True)
    )


def infer_quantize(interpreter):
    """Best guess of the quantization mode a file was converted with."""
    ops = interpreter._get_ops_details()
    names = {op["op_name"] for op in ops}
    io_types = {np.dtype(d["dtype"]) for d in interpreter.get_input_details()}
    io_types |= {np.dtype(d["dtype"]) for d in interpreter.get_output_details()}
    if "QUANTIZE" in names or io_types & {np.dtype(np.int8), np.dtype(np.uint8)}:
        return "int8"
    tensor_types = {np.dtype(t["dtype"]) for t in interpreter.get_tensor_details()}
    if np.dtype(np.float16) in tensor_types:
        return "float16"
    if np.dtype(np.int8) in tensor_types:
        return "dynamic"
    return None
