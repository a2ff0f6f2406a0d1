"""Verification: a ``.tflite`` file run in LiteRT against its Keras model.

Verification runs the file in the LiteRT interpreter
(``ai_edge_litert.interpreter.Interpreter``) on sample inputs, compares with
the Keras model and raises :class:`~tf_precrop.errors.ExportError` on a
mismatch. With ``scale_i = max |keras output i|`` and
``relative_error = max_i max|tflite_i - keras_i| / max(1, scale_i)``, the
tolerances are:

========== =========================================================
quantize   check
========== =========================================================
``None``   ``relative_error <= 1e-4`` (float32 kernels, reordered sums)
float16    ``relative_error <= 1e-2`` (weights rounded to 11 bits)
dynamic    ``relative_error <= 5e-2`` (int8 weights, activations
           quantized on the fly per batch)
int8       ``relative_error <= 0.1``; classifier outputs (last dim > 1)
           also need top-1 agreement ``>= 0.95`` on the *decisive*
           samples (see below)
========== =========================================================

int8 and top-1 agreement: a sample whose Keras top-1 logit leads the
runner-up by less than the int8 rounding noise can flip its arg-max in any
faithful int8 file, so agreement over *all* samples measures how confident the
model is (a briefly trained model can fall below 95 % with a correct file),
not whether the conversion is right. The gate therefore counts only samples
whose top-1 margin is at least ``INT8_DECISIVE_MARGIN * max(1, scale_i)``
(5 % of the output scale); a flip there needs an error well above the typical
int8 error and points at a broken calibration or kernel. With no decisive
sample the agreement gate is vacuous and the relative-error gate stands alone.
Both agreements are reported.

Example:

```python
report = verify_tflite("model.tflite", model, x_val[:64])
assert report.passed
```
"""

import dataclasses
import os

import numpy as np

from tf_precrop._inputs import input_specs, to_numpy
from tf_precrop.backend import line_of
from tf_precrop.errors import ExportError
from tf_precrop.export.convert import check_quantize
from tf_precrop.export.runtime import (
    dequantize_output,
    infer_quantize,
    load_interpreter,
    match_names,
    quantize_input,
)
from tf_precrop.export.samples import sample_inputs

#: Largest allowed ``relative_error`` per quantization mode.
TOLERANCES = {None: 1e-4, "float16": 1e-2, "dynamic": 5e-2, "int8": 1e-1}

#: Smallest allowed top-1 agreement of int8 classifier outputs, over the
#: decisive samples.
INT8_MIN_TOP1 = 0.95

#: Top-1 margin, as a fraction of ``max(1, output scale)``, from which a
#: sample counts as decisive for the int8 agreement gate.
INT8_DECISIVE_MARGIN = 0.05


@dataclasses.dataclass(frozen=True)
class TFLiteVerification:
    """Result of :func:`verify_tflite`.

    Attributes:
        path: The verified file.
        quantize: The quantization mode the tolerance was chosen for.
        max_abs_error: Largest ``|tflite - keras|`` over samples and outputs.
        relative_error: Per-output ``max_abs_error / max(1, output_scale)``,
            maximum over outputs.
        output_scale: ``max |keras output|`` over all outputs.
        tolerance: Largest allowed ``relative_error``.
        top1_agreement: Arg-max agreement over classifier outputs (the lowest
            one if there are several), ``None`` if there is none.
        num_samples: Number of samples compared.
        passed: Whether the file is within tolerance.
        decisive_top1_agreement: Arg-max agreement over the decisive samples
            of each classifier output (lowest over outputs); ``None`` if no
            output has a decisive sample.
        num_decisive: Decisive samples of the output with the fewest.
    """

    path: str
    quantize: str | None
    max_abs_error: float
    relative_error: float
    output_scale: float
    tolerance: float
    top1_agreement: float | None
    num_samples: int
    passed: bool
    decisive_top1_agreement: float | None = None
    num_decisive: int = 0

    def to_dict(self):
        """The fields as a plain ``dict`` (JSON-serializable)."""
        return dataclasses.asdict(self)


def _model_output_names(model, count):
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != count:
        names = [f"output_{i}" for i in range(count)]
    return names


# ------------------------------------------------------------------ keras run
def _keras_outputs(model, arrays, batch_size=16):
    import tensorflow as tf

    n = arrays[0].shape[0]
    per_output = None
    for start in range(0, n, batch_size):
        batch = [a[start : start + batch_size] for a in arrays]
        result = model(batch[0] if len(batch) == 1 else batch, training=False)
        flat = [np.asarray(to_numpy(t), dtype=np.float64) for t in tf.nest.flatten(result)]
        if per_output is None:
            per_output = [[] for _ in flat]
        for store, value in zip(per_output, flat, strict=True):
            store.append(value)
    return [np.concatenate(v, axis=0) for v in per_output]


# ------------------------------------------------------------------ tflite run
def _tflite_outputs(interpreter, arrays, specs, num_outputs, output_names, path):
    """Runs ``interpreter`` sample by sample; returns one array per model output."""
    signatures = interpreter.get_signature_list()
    if not signatures:
        raise ExportError(
            "The TFLite file has no signature, so its inputs cannot be matched to "
            "the model's. Expected a file converted from a SavedModel (as "
            f"export_tflite writes). Received: path={path!r}"
        )
    key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
    runner = interpreter.get_signature_runner(key)
    in_details = runner.get_input_details()
    out_details = runner.get_output_details()
    in_map = match_names(
        [s.name for s in specs],
        list(in_details),
        [s.shape for s in specs],
        {k: tuple(v["shape_signature"]) for k, v in in_details.items()},
        "input",
    )
    if len(out_details) != num_outputs:
        raise ExportError(
            "The TFLite file and the model have different numbers of outputs. "
            f"Expected {num_outputs}. Received: file outputs={list(out_details)}"
        )
    n = arrays[0].shape[0]
    results = {k: [] for k in out_details}
    try:
        for i in range(n):
            feed = {
                in_map[spec.name]: quantize_input(array[i : i + 1], in_details[in_map[spec.name]])
                for spec, array in zip(specs, arrays, strict=True)
            }
            out = runner(**feed)
            for k, v in out.items():
                results[k].append(dequantize_output(v, out_details[k]))
    except (ValueError, RuntimeError) as e:
        raise ExportError(
            "Running the TFLite file failed. Expected it to accept the model's "
            f"inputs {[(s.name, s.shape) for s in specs]}. Received: path={path!r} ({e})"
        ) from e
    stacked = {k: np.concatenate(v, axis=0) for k, v in results.items()}
    return _map_outputs(output_names, stacked)


def _map_outputs(output_names, stacked):
    """The file's outputs in the model's output order."""
    keys = list(stacked)
    if set(output_names) <= set(keys):
        return [stacked[name] for name in output_names]
    if len(keys) == 1:
        return [stacked[keys[0]]]
    indexed = [f"output_{i}" for i in range(len(output_names))]
    if set(indexed) == set(keys):
        return [stacked[k] for k in indexed]
    raise ExportError(
        "Could not match the model's outputs to the TFLite file's outputs. Expected "
        f"outputs named {output_names} or {indexed}. Received: file outputs={keys}"
    )


# --------------------------------------------------------------------- verify
def verify_tflite(
    path,
    model,
    inputs=None,
    quantize="auto",
    num_samples=64,
    tolerance=None,
    strict=True,
):
    """Checks that a ``.tflite`` file computes what a Keras model computes.

    Runs the file in the LiteRT interpreter (XNNPACK, batch 1 per sample)
    and the model in Keras on the same inputs, then compares outputs (int8
    outputs are dequantized, int8 inputs quantized with the file's scales).
    Inputs are matched to the file's signature inputs by name, then shape.

    Args:
        path: The ``.tflite`` file.
        model: The Keras 3 or tf_keras model the file should match.
        inputs: Sample inputs: an array, a list/dict of arrays, a
            ``tf.data.Dataset``, a generator or a callable returning batches
            (``(x, y)`` elements are fine). ``None`` draws seeded standard
            normal inputs from the model's input signature.
        quantize: Mode the tolerance is chosen for (see the module table);
            ``"auto"`` reads it from the file.
        num_samples: Most samples to compare.
        tolerance: Largest allowed ``relative_error``; ``None`` uses
            ``TOLERANCES[quantize]``.
        strict: Raise on a mismatch (default). ``False`` only returns the
            report, with ``passed=False``.

    Returns:
        A :class:`TFLiteVerification`.

    Raises:
        ExportError: The file cannot be loaded or run, or does not match.
        ExportPathError: ``path`` does not exist (an ``ExportError`` and a
            ``FileNotFoundError``).

    Example:

    ```python
    report = verify_tflite("model.tflite", model, x_val[:64])
    print(report.relative_error, report.top1_agreement)
    ```
    """
    check_quantize(quantize, allow_auto=True)
    line_of(model)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(
            f"num_samples must be a positive integer. Received: num_samples={num_samples!r}"
        )
    path = os.fspath(path)
    interpreter = load_interpreter(path)
    if quantize == "auto":
        quantize = infer_quantize(interpreter)
    specs = input_specs(model)
    arrays = sample_inputs(model, inputs, num_samples, "inputs")
    expected = _keras_outputs(model, arrays)
    names = _model_output_names(model, len(expected))
    got = _tflite_outputs(interpreter, arrays, specs, len(expected), names, path)
    tol = TOLERANCES[quantize] if tolerance is None else float(tolerance)
    return _compare(path, quantize, expected, got, tol, strict)


def _compare(path, quantize, expected, got, tol, strict):
    max_abs, rel, scale_all = 0.0, 0.0, 0.0
    top1s, decisive, num_decisive, problems = [], [], [], []
    for i, (e, g) in enumerate(zip(expected, got, strict=True)):
        if e.shape != g.shape:
            raise ExportError(
                f"Output {i} of the TFLite file has another shape than the model's. "
                f"Expected {e.shape}. Received: shape={g.shape}, path={path!r}"
            )
        if not np.all(np.isfinite(g)):
            problems.append(f"output {i} has non-finite values")
        err = float(np.max(np.abs(g - e))) if e.size else 0.0
        scale = float(np.max(np.abs(e))) if e.size else 0.0
        out_rel = err / max(1.0, scale)
        max_abs, rel, scale_all = max(max_abs, err), max(rel, out_rel), max(scale_all, scale)
        if not out_rel <= tol:
            problems.append(f"output {i} relative error {out_rel:.3g} > {tol:.3g}")
        if not (e.ndim >= 2 and e.shape[-1] > 1 and e.size):
            continue
        hit, margin = _top1_hits(e, g)
        top1s.append(float(np.mean(hit)))
        sure = margin >= INT8_DECISIVE_MARGIN * max(1.0, scale)
        num_decisive.append(int(np.sum(sure)))
        if num_decisive[-1]:
            decisive.append(float(np.mean(hit[sure])))
            if quantize == "int8" and decisive[-1] < INT8_MIN_TOP1:
                problems.append(
                    f"output {i} top-1 agreement {decisive[-1]:.3f} < {INT8_MIN_TOP1} "
                    f"on its {num_decisive[-1]} decisive samples"
                )
    report = TFLiteVerification(
        path=path,
        quantize=quantize,
        max_abs_error=max_abs,
        relative_error=rel,
        output_scale=scale_all,
        tolerance=tol,
        top1_agreement=min(top1s) if top1s else None,
        num_samples=int(expected[0].shape[0]) if expected else 0,
        passed=not problems,
        decisive_top1_agreement=min(decisive) if decisive else None,
        num_decisive=min(num_decisive) if num_decisive else 0,
    )
    if problems and strict:
        raise ExportError(
            f"The TFLite file does not match the Keras model ({'; '.join(problems)}). "
            f"Expected relative error <= {tol:.3g}"
            + (
                f" and top-1 agreement >= {INT8_MIN_TOP1} on decisive samples"
                if quantize == "int8"
                else ""
            )
            + f" for quantize={quantize!r}. Received: max_abs_error={max_abs:.4g}, "
            f"relative_error={rel:.4g}, output_scale={scale_all:.4g}, "
            f"top1_agreement={report.top1_agreement}, "
            f"decisive_top1_agreement={report.decisive_top1_agreement}, "
            f"num_samples={report.num_samples}, path={path!r}"
        )
    return report


def _top1_hits(expected, got):
    """Per-sample top-1 agreement and the Keras top-1 margin.

    Tie-aware: quantized outputs (an int8 softmax) may tie at the top, and a
    tie that includes the Keras top-1 class counts as agreement.
    """
    e = expected.reshape(-1, expected.shape[-1])
    g = got.reshape(-1, got.shape[-1])
    k_top = np.argmax(e, axis=-1)[:, None]
    hit = np.take_along_axis(g, k_top, axis=-1)[:, 0] >= np.max(g, axis=-1)
    two = np.sort(e, axis=-1)[:, -2:]
    return hit, two[:, 1] - two[:, 0]
