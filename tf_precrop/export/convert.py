"""Conversion: a Keras model's inference graph to TFLite flatbuffer bytes, and the atomic write.

The model is saved as a SavedModel whose serving function is
``model(inputs, training=False)`` and converted with
``tf.lite.TFLiteConverter.from_saved_model``.

Why a serving function with ``training=False`` rather than ``model.export``:
Keras 3's ``model.export`` serves ``model.__call__`` without a ``training``
argument, so each layer falls back to the default of its ``call`` signature.
For the random preprocessing layers (``RandomFlip``, ``RandomRotation``,
``RandomZoom``, ``RandomTranslation``, ``RandomContrast``,
``RandomBrightness``, ``RandomCrop``, ...) that default is ``training=True``:
the augmentation itself lands in the graph and the converter fails on its
random ops ("Could not translate MLIR to FlatBuffer"). Calling the model with
``training=False`` traces exactly the inference graph that verification
compares against (``model(x, training=False)``): the augmentation layers are
identities (``RandomCrop`` center-crops to its size, as Keras does at
inference), ``Dropout``/``GaussianNoise`` are identities, and BatchNorm uses
its moving statistics. This also covers augmentation nested in a sub-model and
custom layers with a ``training`` branch, which cloning with the random layers
swapped for identities would have to special-case. The SavedModel keeps the
input signature ``model.export`` would write (same input names), and the
model is not changed.

The file is written atomically (:func:`atomic_destination`, built on
:func:`tf_precrop._io.atomic_path`): under a temporary name in the destination
folder, moved onto ``path`` only when the block (conversion, verification)
succeeds.

Example:

```python
with atomic_destination("model.tflite") as tmp:
    write_bytes(tmp, to_flatbuffer(model, line, None, None, specs, False, False))
```
"""

import contextlib
import os
import tempfile

from tf_precrop._io import atomic_path
from tf_precrop.errors import ExportError, ExportPathError
from tf_precrop.export.runtime import match_names

#: Quantization modes of :func:`~tf_precrop.export.export_tflite`.
QUANTIZE_MODES = (None, "float16", "dynamic", "int8")


def check_quantize(quantize, allow_auto=False):
    """Raises ``ValueError`` unless ``quantize`` is a known mode (or ``"auto"`` if allowed)."""
    allowed = QUANTIZE_MODES + (("auto",) if allow_auto else ())
    if quantize not in allowed:
        raise ValueError(
            f"Unknown quantization mode. Expected one of {allowed}. "
            f"Received: quantize={quantize!r}"
        )


# ------------------------------------------------------------------ savedmodel
def _input_signature(model, line):
    """The input signature ``model.export`` uses: one positional argument."""
    import tensorflow as tf

    signature = line.export_input_signature(model)  # Keras 3: the one model.export writes
    if signature is not None:
        return signature
    # tf_keras' export_model (and the fallback): specs named after the inputs.
    specs = [tf.TensorSpec(t.shape, dtype=t.dtype, name=t.name) for t in model.inputs]
    return [specs] if len(specs) > 1 else specs


def save_inference_model(model, line, directory):
    """Saves ``model(inputs, training=False)`` as a SavedModel in ``directory``.

    Args:
        model: A built Keras 3 or tf_keras Functional or Sequential model.
        line: Its :class:`~tf_precrop.backend.KerasLine`.
        directory: An existing, empty folder.

    Example:

    ```python
    save_inference_model(model, line_of(model), "/tmp/savedmodel")
    ```
    """
    archive = line.keras.export.ExportArchive()
    archive.track(model)

    def serve(inputs):
        return model(inputs, training=False)

    archive.add_endpoint("serve", serve, _input_signature(model, line))
    line.write_export_archive(archive, directory)


def _signature_input_names(directory, specs):
    """Names of the SavedModel's serving inputs, in model input order."""
    import tensorflow as tf

    if len(specs) == 1:
        return None
    loaded = tf.saved_model.load(directory)
    fn = loaded.signatures["serving_default"]
    sig = fn.structured_input_signature[1]
    mapping = match_names(
        [s.name for s in specs],
        list(sig),
        [s.shape for s in specs],
        {k: tuple(v.shape) for k, v in sig.items()},
        "input",
    )
    return [mapping[s.name] for s in specs]


# ------------------------------------------------------------------ converter
def to_flatbuffer(model, line, quantize, calibration, specs, int8_io, select_tf_ops):
    """The model's inference graph converted to TFLite flatbuffer bytes.

    Args:
        model: A built Keras 3 or tf_keras model.
        line: Its :class:`~tf_precrop.backend.KerasLine`.
        quantize: One of :data:`QUANTIZE_MODES`.
        calibration: int8 calibration inputs (one array per model input), or
            ``None``.
        specs: The model's :func:`~tf_precrop._inputs.input_specs`.
        int8_io: With ``"int8"``, make the file's inputs and outputs int8.
        select_tf_ops: Allow TensorFlow ops the builtin set lacks.

    Returns:
        The flatbuffer as ``bytes``.

    Raises:
        ExportError: Saving the SavedModel or converting it failed.

    Example:

    ```python
    data = to_flatbuffer(model, line_of(model), None, None, input_specs(model), False, False)
    ```
    """
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="tf_precrop_savedmodel_") as directory:
        try:
            save_inference_model(model, line, directory)
        except Exception as e:
            raise ExportError(
                f"Saving model '{model.name}' as a SavedModel failed. Expected a "
                f"built, serializable {line.name} model. Received: {type(e).__name__}: {e}"
            ) from e
        converter = tf.lite.TFLiteConverter.from_saved_model(directory)
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if quantize == "int8" else
               tf.lite.OpsSet.TFLITE_BUILTINS]
        if select_tf_ops:
            ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
        converter.target_spec.supported_ops = ops
        if quantize is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            names = _signature_input_names(directory, specs)

            def representative_dataset():
                for i in range(calibration[0].shape[0]):
                    batch = [a[i : i + 1] for a in calibration]
                    yield batch if names is None else dict(zip(names, batch, strict=True))

            converter.representative_dataset = representative_dataset
            if int8_io:
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        try:
            return converter.convert()
        except Exception as e:
            hint = "" if select_tf_ops else " If an op is not supported, try select_tf_ops=True."
            raise ExportError(
                f"TFLite conversion of model '{model.name}' failed. Expected a model "
                f"the converter supports with quantize={quantize!r}.{hint} "
                f"Received: {type(e).__name__}: {str(e)[:2000]}"
            ) from e


# ---------------------------------------------------------------- atomic write
@contextlib.contextmanager
def atomic_destination(path):
    """Yields a temporary file beside ``path``, moved onto it when the block succeeds.

    :func:`tf_precrop._io.atomic_path` with the export's errors: on any
    exception in the block the temporary file is removed and ``path`` keeps
    its previous content.

    Args:
        path: The destination file; its folder must exist.

    Yields:
        The temporary path to write.

    Raises:
        ExportPathError: The destination folder does not exist or is not a
            folder (an ``ExportError`` and a ``FileNotFoundError``).
        ExportError: The folder is not writable.

    Example:

    ```python
    with atomic_destination("model.tflite") as tmp:
        write_bytes(tmp, flatbuffer)
    ```
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise ExportPathError(
            "The destination folder does not exist or is not a folder. Expected an "
            f"existing, writable folder. Received: folder={folder!r}, path={path!r}"
        )
    with contextlib.ExitStack() as stack:
        try:
            tmp = stack.enter_context(atomic_path(path))
        except FileNotFoundError as e:  # removed between the check and here
            raise ExportPathError(
                "The destination folder does not exist. Expected an existing, "
                f"writable folder. Received: folder={folder!r}, path={path!r}"
            ) from e
        except OSError as e:
            raise ExportError(
                "Cannot write to the destination folder. Expected a writable folder. "
                f"Received: folder={folder!r} ({type(e).__name__}: {e})"
            ) from e
        yield tmp


def write_bytes(path, data):
    """Writes ``data`` to ``path`` and flushes it to disk (``fsync``)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
