"""Export Keras models to TFLite/LiteRT flatbuffers and check the result.

:func:`export_tflite` is the pipeline: coerce the sample data
(:mod:`~tf_precrop.export.samples`), convert the model's inference graph
(:mod:`~tf_precrop.export.convert`), run the file in LiteRT against the model
(:mod:`~tf_precrop.export.verify`, where the tolerances are documented), and
move the file onto ``path`` only when all of that succeeded. A failed export
never leaves a half-written or wrong file in place of an existing good one.

This module also re-exports the names that used to live here
(``verify_tflite``, ``TOLERANCES``, ...), so ``tf_precrop.export.tflite``
keeps its public names.

Example:

```python
result = export_tflite(model, "model.tflite")
print(result.size_bytes, result.relative_error)
```
"""

import dataclasses
import os

from tf_precrop._inputs import input_specs
from tf_precrop.backend import line_of
from tf_precrop.errors import ExportError
from tf_precrop.export.convert import (
    QUANTIZE_MODES,
    atomic_destination,
    check_quantize,
    write_bytes,
)
from tf_precrop.export.convert import to_flatbuffer as _convert
from tf_precrop.export.runtime import load_interpreter as _load_interpreter  # noqa: F401
from tf_precrop.export.samples import collect_samples
from tf_precrop.export.verify import (
    INT8_DECISIVE_MARGIN,
    INT8_MIN_TOP1,
    TOLERANCES,
    TFLiteVerification,
    _compare,  # noqa: F401
    verify_tflite,
)

__all__ = [
    "INT8_DECISIVE_MARGIN",
    "INT8_MIN_TOP1",
    "QUANTIZE_MODES",
    "TOLERANCES",
    "TFLiteExport",
    "TFLiteVerification",
    "export_tflite",
    "verify_tflite",
]

# ``_convert``, ``_compare`` and ``_load_interpreter`` keep their old names
# here; export_tflite looks ``_convert`` up in this module at call time, so a
# test can replace it with ``monkeypatch.setattr(tflite, "_convert", ...)``.


@dataclasses.dataclass(frozen=True)
class TFLiteExport:
    """What :func:`export_tflite` wrote.

    Attributes:
        path: Path of the ``.tflite`` file.
        size_bytes: Size of the file in bytes.
        quantize: Quantization mode (``None``, ``"float16"``, ``"dynamic"``
            or ``"int8"``).
        max_abs_error: Largest ``|tflite - keras|`` over the verification
            samples (dequantized for int8 outputs); ``None`` if not verified.
        relative_error: ``max_abs_error`` of each output divided by
            ``max(1, max |keras output|)``, maximum over outputs; this is the
            number the tolerance applies to. ``None`` if not verified.
        top1_agreement: Fraction of samples whose arg-max agrees (classifier
            outputs only, i.e. last dim > 1); ``None`` otherwise.
        decisive_top1_agreement: The same over the decisive samples (top-1
            margin ``>= INT8_DECISIVE_MARGIN * max(1, scale)``), the number
            the int8 gate applies to; ``None`` without classifier outputs or
            decisive samples.
        num_samples: Number of verification samples (0 if not verified).
        num_decisive: How many of them are decisive (for several classifier
            outputs, the fewest of any output); 0 if not verified. Report it
            with ``decisive_top1_agreement``: an agreement over few samples
            says little, and a barely trained model may have none.
    """

    path: str
    size_bytes: int
    quantize: str | None
    max_abs_error: float | None
    relative_error: float | None
    top1_agreement: float | None
    num_samples: int
    decisive_top1_agreement: float | None = None
    num_decisive: int = 0

    def to_dict(self):
        """The fields as a plain ``dict`` (JSON-serializable)."""
        return dataclasses.asdict(self)


def export_tflite(
    model,
    path,
    quantize=None,
    representative_data=None,
    verify=True,
    int8_io=False,
    select_tf_ops=False,
    num_verify_samples=64,
    num_calibration_samples=256,
    verification_data=None,
    tolerance=None,
):
    """Converts a Keras model to a ``.tflite`` file, verified and written atomically.

    The model's inference graph (``model(x, training=False)``: augmentation
    layers such as ``RandomFlip`` are identities, see
    :mod:`tf_precrop.export.convert`) is saved as a SavedModel and converted
    with ``tf.lite.TFLiteConverter.from_saved_model``, built-in ops only unless
    ``select_tf_ops=True``. The file is written under a temporary name in the
    destination folder, verified there, and only then moved onto ``path``
    with ``os.replace``; on any failure ``path`` keeps its previous content.

    Args:
        model: A built Keras 3 or tf_keras model (Functional or Sequential).
        path: Destination ``.tflite`` file; its folder must exist.
        quantize: ``None`` (float32), ``"float16"`` (float16 weights),
            ``"dynamic"`` (int8 weights, dynamic-range activations) or
            ``"int8"`` (full-integer; needs ``representative_data``).
        representative_data: Inputs for int8 calibration and for verification:
            an array, a list/dict of arrays (several model inputs), a
            ``tf.data.Dataset``, a generator or a callable returning an
            iterable of batches; ``(x, y)`` elements are fine.
        verify: Run the file in LiteRT and compare with the model (see the
            module docstring for the tolerances). A mismatch raises
            :class:`~tf_precrop.errors.ExportError`.
        int8_io: With ``quantize="int8"``, make the file's inputs and
            outputs int8 too (otherwise they stay float32).
        select_tf_ops: Allow TensorFlow ops the builtin set lacks (the file
            then needs the Flex delegate; the LiteRT pip wheel cannot verify it).
        num_verify_samples: Most samples used for verification (taken from
            ``representative_data`` if given, else seeded random inputs).
        num_calibration_samples: Most samples used for int8 calibration.
        verification_data: Inputs to verify on instead of the first samples of
            ``representative_data`` (same kinds). Pass held-back samples so
            that an int8 file is not checked on the data it was calibrated on.
        tolerance: Largest allowed ``relative_error``; ``None`` (default)
            uses ``TOLERANCES[quantize]`` (0.1 for int8). The error is the
            worst sample's, so a barely trained network, whose logits spread
            wide, can exceed 0.1 with every decisive top-1 intact (the int8
            top-1 gate still applies). Raise it only knowingly, for such a
            network; never lower the top-1 gate this way.

    Returns:
        A :class:`TFLiteExport`.

    Raises:
        ValueError: Bad ``quantize``, or ``"int8"`` without representative data.
        ExportPathError: The destination folder does not exist (an
            ``ExportError`` and a ``FileNotFoundError``).
        ExportError: ``path`` is a folder, the folder is not writable,
            conversion failed, or the file did not verify.

    Example:

    ```python
    result = export_tflite(model, "model_int8.tflite", quantize="int8",
                           representative_data=x_train[:256])
    print(result.size_bytes, result.top1_agreement)
    ```
    """
    check_quantize(quantize)
    line = line_of(model)
    for name, value in (
        ("num_verify_samples", num_verify_samples),
        ("num_calibration_samples", num_calibration_samples),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(
                f"{name} must be a positive integer. Received: {name}={value!r}"
            )
    if int8_io and quantize != "int8":
        raise ValueError(
            "int8_io only applies to full-integer quantization. Expected "
            f"quantize='int8'. Received: quantize={quantize!r}, int8_io=True"
        )
    if quantize == "int8" and representative_data is None:
        raise ValueError(
            "Full-integer (int8) quantization needs calibration data to choose the "
            "activation ranges. Expected `representative_data` (an array, a "
            "tf.data.Dataset or a generator of input batches). Received: "
            "representative_data=None"
        )
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise ExportError(
            f"The destination is a folder. Expected a file path such as "
            f"'{os.path.join(path, 'model.tflite')}'. Received: path={path!r}"
        )
    specs = input_specs(model)
    samples = None
    if representative_data is not None:
        samples = collect_samples(
            model,
            representative_data,
            max(num_calibration_samples, num_verify_samples),
            "representative_data",
        )
    report = None
    with atomic_destination(path) as tmp:
        calibration = None
        if samples is not None:
            calibration = [a[:num_calibration_samples] for a in samples]
        write_bytes(tmp, _convert(model, line, quantize, calibration, specs, int8_io, select_tf_ops))
        if verify:
            inputs = None if samples is None else [a[:num_verify_samples] for a in samples]
            if verification_data is not None:
                inputs = collect_samples(
                    model, verification_data, num_verify_samples, "verification_data"
                )
            try:
                report = verify_tflite(
                    tmp,
                    model,
                    inputs,
                    quantize=quantize,
                    num_samples=num_verify_samples,
                    tolerance=tolerance,
                )
            except ExportError as e:
                raise type(e)(
                    f"{e} The export was not written; {path!r} is left as it was."
                ) from e
    return TFLiteExport(
        path=path,
        size_bytes=os.path.getsize(path),
        quantize=quantize,
        max_abs_error=None if report is None else report.max_abs_error,
        relative_error=None if report is None else report.relative_error,
        top1_agreement=None if report is None else report.top1_agreement,
        num_samples=0 if report is None else report.num_samples,
        decisive_top1_agreement=None if report is None else report.decisive_top1_agreement,
        num_decisive=0 if report is None else report.num_decisive,
    )
