"""Export Keras models to TFLite/LiteRT flatbuffers and check the result.

The model goes through a SavedModel (``model.export`` for both Keras lines)
and ``tf.lite.TFLiteConverter.from_saved_model``. The file is written
atomically: it is converted and verified under a temporary name in the
destination folder, and only a file that verified replaces ``path``
(``os.replace``). A failed export never leaves a half-written or wrong file in
place of an existing good one.

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
"""

import contextlib
import dataclasses
import io
import os
import tempfile

import numpy as np

from tf_precrop.backend import line_of
from tf_precrop.errors import ExportError

QUANTIZE_MODES = (None, "float16", "dynamic", "int8")

#: Largest allowed ``relative_error`` per quantization mode.
TOLERANCES = {None: 1e-4, "float16": 1e-2, "dynamic": 5e-2, "int8": 1e-1}

#: Smallest allowed top-1 agreement of int8 classifier outputs, over the
#: decisive samples.
INT8_MIN_TOP1 = 0.95

#: Top-1 margin, as a fraction of ``max(1, output scale)``, from which a
#: sample counts as decisive for the int8 agreement gate.
INT8_DECISIVE_MARGIN = 0.05

_SEED = 1234


# --------------------------------------------------------------------- results
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
    """

    path: str
    size_bytes: int
    quantize: str | None
    max_abs_error: float | None
    relative_error: float | None
    top1_agreement: float | None
    num_samples: int
    decisive_top1_agreement: float | None = None

    def to_dict(self):
        """The fields as a plain ``dict`` (JSON-serializable)."""
        return dataclasses.asdict(self)


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


# ---------------------------------------------------------------- input specs
@dataclasses.dataclass(frozen=True)
class _InputSpec:
    name: str
    shape: tuple  # with the batch dimension, None where unknown
    dtype: str


def _input_specs(model):
    import tensorflow as tf

    specs = []
    for tensor in model.inputs:
        name = str(getattr(tensor, "name", "") or f"input_{len(specs)}").split(":")[0]
        shape = tuple(None if d is None else int(d) for d in tuple(tensor.shape))
        specs.append(_InputSpec(name, shape, tf.as_dtype(tensor.dtype).name))
    return specs


def _model_output_names(model, count):
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != count:
        names = [f"output_{i}" for i in range(count)]
    return names


# -------------------------------------------------------------- sample inputs
def _to_numpy(value):
    if hasattr(value, "numpy"):
        value = value.numpy()
    return np.asarray(value)


def _is_array_like(value):
    return isinstance(value, np.ndarray) or (
        hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, dict)
    )


def _fits(array, spec):
    """Whether ``array`` is a batch (or one sample) of ``spec``'s input."""
    rank = len(spec.shape)
    if array.ndim not in (rank, rank - 1):
        return False
    tail = array.shape[-(rank - 1) :] if rank > 1 else ()
    return all(s is None or s == a for s, a in zip(spec.shape[1:], tail, strict=True))


def _element_inputs(element, specs, what):
    """One element (a batch) of user data as a list of arrays, model order."""
    if isinstance(element, dict):
        missing = [s.name for s in specs if s.name not in element]
        if missing:
            raise ValueError(
                f"{what} is a dict but lacks model inputs. Expected keys "
                f"{[s.name for s in specs]}. Received: keys={sorted(element)}"
            )
        return [_to_numpy(element[s.name]) for s in specs]
    if _is_array_like(element):
        if len(specs) != 1:
            raise ValueError(
                f"{what} gives one array but the model has {len(specs)} inputs. "
                "Expected a list (model input order) or a dict (by input name) "
                f"of arrays. Received: array of shape {tuple(element.shape)}"
            )
        return [_to_numpy(element)]
    if isinstance(element, (list, tuple)):
        items = list(element)
        if len(items) == len(specs) and all(
            _is_array_like(v) and _fits(_to_numpy(v), s) for v, s in zip(items, specs, strict=True)
        ):
            return [_to_numpy(v) for v in items]
        if 2 <= len(items) <= 3:  # (x, y) or (x, y, sample_weight)
            return _element_inputs(items[0], specs, what)
        if len(items) == 1:
            return _element_inputs(items[0], specs, what)
    raise TypeError(
        f"Could not read model inputs from {what}. Expected an array, a list "
        "or dict of arrays (one per model input), or an (x, y) tuple. "
        f"Received: element of type {type(element).__name__}"
    )


def _iter_elements(data, what):
    """Yields batches from an array, list, dict, Dataset, generator or callable."""
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        yield from data.as_numpy_iterator()
        return
    if _is_array_like(data) or isinstance(data, (dict, list, tuple)):
        yield data
        return
    if callable(data):
        data = data()
    if hasattr(data, "__iter__") or hasattr(data, "__next__"):
        yield from data
        return
    raise TypeError(
        f"{what} must be a numpy array, a list/dict of arrays, a tf.data.Dataset, "
        "a generator, or a callable returning an iterable of batches. "
        f"Received: {what}={type(data).__name__}"
    )


def _collect_samples(data, specs, limit, what):
    """Up to ``limit`` samples of ``data`` as one array per model input."""
    chunks = [[] for _ in specs]
    count = 0
    for element in _iter_elements(data, what):
        arrays = _element_inputs(element, specs, what)
        batch = None
        for i, (array, spec) in enumerate(zip(arrays, specs, strict=True)):
            if not _fits(array, spec):
                raise ValueError(
                    f"{what} does not match model input '{spec.name}'. Expected "
                    f"shape {spec.shape} (or one sample of it). Received: "
                    f"shape={tuple(array.shape)}"
                )
            if array.ndim == len(spec.shape) - 1:
                array = array[None]
            arrays[i] = array.astype(spec.dtype, copy=False)
            if batch is None:
                batch = array.shape[0]
            elif array.shape[0] != batch:
                raise ValueError(
                    f"{what} gives inputs with different batch sizes. Expected one "
                    f"batch size for all inputs. Received: sizes="
                    f"{[a.shape[0] for a in arrays]}"
                )
        take = min(batch, limit - count)
        for i, array in enumerate(arrays):
            chunks[i].append(array[:take])
        count += take
        if count >= limit:
            break
    if count == 0:
        raise ValueError(f"{what} is empty. Expected at least one sample. Received: 0 samples")
    return [np.concatenate(c, axis=0) for c in chunks]


def _random_samples(specs, count, seed=_SEED):
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in specs:
        if any(d is None for d in spec.shape[1:]):
            raise ValueError(
                f"Model input '{spec.name}' has unknown dimensions, so random "
                "verification inputs cannot be drawn. Pass `representative_data` "
                f"(or `inputs`) instead. Received: shape={spec.shape}"
            )
        shape = (count,) + tuple(spec.shape[1:])
        if np.issubdtype(np.dtype(spec.dtype), np.floating):
            arrays.append(rng.standard_normal(shape).astype(spec.dtype))
        elif spec.dtype == "bool":
            arrays.append(rng.integers(0, 2, shape).astype(bool))
        else:
            arrays.append(rng.integers(0, 10, shape).astype(spec.dtype))
    return arrays


# ------------------------------------------------------------------ keras run
def _keras_outputs(model, arrays, batch_size=16):
    import tensorflow as tf

    n = arrays[0].shape[0]
    per_output = None
    for start in range(0, n, batch_size):
        batch = [a[start : start + batch_size] for a in arrays]
        result = model(batch[0] if len(batch) == 1 else batch, training=False)
        flat = [np.asarray(_to_numpy(t), dtype=np.float64) for t in tf.nest.flatten(result)]
        if per_output is None:
            per_output = [[] for _ in flat]
        for store, value in zip(per_output, flat, strict=True):
            store.append(value)
    return [np.concatenate(v, axis=0) for v in per_output]


# ------------------------------------------------------------------ tflite run
def _load_interpreter(path, num_threads=None, use_xnnpack=True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
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


def _quantize_input(array, detail):
    dtype = np.dtype(detail["dtype"])
    if dtype in (np.int8, np.uint8, np.int16) and np.issubdtype(array.dtype, np.floating):
        scale, zero = detail["quantization"]
        if scale == 0:
            return array.astype(dtype)
        info = np.iinfo(dtype)
        q = np.round(array / scale + zero)
        return np.clip(q, info.min, info.max).astype(dtype)
    return array.astype(dtype, copy=False)


def _dequantize_output(array, detail):
    array = np.asarray(array)
    if np.dtype(detail["dtype"]) in (np.int8, np.uint8, np.int16):
        scale, zero = detail["quantization"]
        if scale != 0:
            return (array.astype(np.float64) - zero) * scale
    return array.astype(np.float64)


def _match_names(wanted, available, shapes_wanted, shapes_available, kind):
    """Maps each wanted name to an available name: by name, then by shape."""
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
    in_map = _match_names(
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
                in_map[spec.name]: _quantize_input(array[i : i + 1], in_details[in_map[spec.name]])
                for spec, array in zip(specs, arrays, strict=True)
            }
            out = runner(**feed)
            for k, v in out.items():
                results[k].append(_dequantize_output(v, out_details[k]))
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


def _infer_quantize(interpreter):
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


# --------------------------------------------------------------------- verify
def _check_quantize(quantize, allow_auto=False):
    allowed = QUANTIZE_MODES + (("auto",) if allow_auto else ())
    if quantize not in allowed:
        raise ValueError(
            f"Unknown quantization mode. Expected one of {allowed}. "
            f"Received: quantize={quantize!r}"
        )


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
        FileNotFoundError: ``path`` does not exist.

    Example:

    ```python
    report = verify_tflite("model.tflite", model, x_val[:64])
    print(report.relative_error, report.top1_agreement)
    ```
    """
    _check_quantize(quantize, allow_auto=True)
    line_of(model)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(
            f"num_samples must be a positive integer. Received: num_samples={num_samples!r}"
        )
    path = os.fspath(path)
    interpreter = _load_interpreter(path)
    if quantize == "auto":
        quantize = _infer_quantize(interpreter)
    specs = _input_specs(model)
    if inputs is None:
        arrays = _random_samples(specs, num_samples)
    else:
        arrays = _collect_samples(inputs, specs, num_samples, "inputs")
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


# --------------------------------------------------------------------- export
def _saved_model(model, line, directory):
    if line.name == "keras3":
        model.export(directory, format="tf_saved_model", verbose=False)
    else:
        # tf_keras' export has no verbose flag; it prints the endpoint summary.
        with contextlib.redirect_stdout(io.StringIO()):
            model.export(directory)


def _signature_input_names(directory, specs):
    """Names of the SavedModel's serving inputs, in model input order."""
    import tensorflow as tf

    if len(specs) == 1:
        return None
    loaded = tf.saved_model.load(directory)
    fn = loaded.signatures["serving_default"]
    sig = fn.structured_input_signature[1]
    mapping = _match_names(
        [s.name for s in specs],
        list(sig),
        [s.shape for s in specs],
        {k: tuple(v.shape) for k, v in sig.items()},
        "input",
    )
    return [mapping[s.name] for s in specs]


def _convert(
    model, line, quantize, calibration, specs, int8_io, select_tf_ops
):
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="tf_precrop_savedmodel_") as directory:
        try:
            _saved_model(model, line, directory)
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


def _temp_file_in(folder, path):
    if not os.path.isdir(folder):
        raise ExportError(
            "The destination folder does not exist or is not a folder. Expected an "
            f"existing, writable folder. Received: folder={folder!r}, path={path!r}"
        )
    try:
        fd, tmp = tempfile.mkstemp(
            dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp"
        )
    except OSError as e:
        raise ExportError(
            "Cannot write to the destination folder. Expected a writable folder. "
            f"Received: folder={folder!r} ({type(e).__name__}: {e})"
        ) from e
    os.close(fd)
    return tmp


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
):
    """Converts a Keras model to a ``.tflite`` file, verified and written atomically.

    The model is saved as a SavedModel (``model.export``) and converted with
    ``tf.lite.TFLiteConverter.from_saved_model``, built-in ops only unless
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

    Returns:
        A :class:`TFLiteExport`.

    Raises:
        ValueError: Bad ``quantize``, or ``"int8"`` without representative data.
        ExportError: The folder is missing or not writable, conversion failed,
            or the file did not verify.

    Example:

    ```python
    result = export_tflite(model, "model_int8.tflite", quantize="int8",
                           representative_data=x_train[:256])
    print(result.size_bytes, result.top1_agreement)
    ```
    """
    _check_quantize(quantize)
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
    specs = _input_specs(model)
    samples = None
    if representative_data is not None:
        samples = _collect_samples(
            representative_data,
            specs,
            max(num_calibration_samples, num_verify_samples),
            "representative_data",
        )
    tmp = _temp_file_in(os.path.dirname(path), path)
    try:
        calibration = None
        if samples is not None:
            calibration = [a[:num_calibration_samples] for a in samples]
        flatbuffer = _convert(model, line, quantize, calibration, specs, int8_io, select_tf_ops)
        with open(tmp, "wb") as f:
            f.write(flatbuffer)
            f.flush()
            os.fsync(f.fileno())
        report = None
        if verify:
            inputs = None if samples is None else [a[:num_verify_samples] for a in samples]
            try:
                report = verify_tflite(
                    tmp, model, inputs, quantize=quantize, num_samples=num_verify_samples
                )
            except ExportError as e:
                raise ExportError(
                    f"{e} The export was not written; {path!r} is left as it was."
                ) from e
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return TFLiteExport(
        path=path,
        size_bytes=os.path.getsize(path),
        quantize=quantize,
        max_abs_error=None if report is None else report.max_abs_error,
        relative_error=None if report is None else report.relative_error,
        top1_agreement=None if report is None else report.top1_agreement,
        num_samples=0 if report is None else report.num_samples,
        decisive_top1_agreement=None if report is None else report.decisive_top1_agreement,
    )
