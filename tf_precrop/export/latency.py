"""On-device-style latency of ``.tflite`` files in the LiteRT interpreter."""

import dataclasses
import os
import time

import numpy as np

from tf_precrop.export.runtime import load_interpreter

_SEED = 1234


@dataclasses.dataclass(frozen=True)
class TFLiteLatency:
    """Latency of one ``.tflite`` file (batch 1, times in milliseconds).

    Attributes:
        path: The benchmarked file.
        median_ms: Median time of one ``invoke()``.
        p90_ms: 90th percentile.
        mean_ms: Mean.
        runs: Number of timed runs.
        num_threads: Interpreter threads.
        delegate: ``"xnnpack"`` or ``"none"`` (builtin reference-optimized kernels).
    """

    path: str
    median_ms: float
    p90_ms: float
    mean_ms: float
    runs: int
    num_threads: int
    delegate: str

    def to_dict(self):
        """The fields as a plain ``dict`` (JSON-serializable)."""
        return dataclasses.asdict(self)


def _random_input(detail, rng):
    """A random tensor for one input detail (dtype- and quantization-aware)."""
    dtype = np.dtype(detail["dtype"])
    shape = tuple(int(d) for d in detail["shape"])
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    if dtype in (np.int8, np.uint8, np.int16):
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)
    return rng.integers(0, 10, shape).astype(dtype)


def benchmark_tflite(path, num_threads=2, runs=50, warmup=5, use_xnnpack=True):
    """Times ``invoke()`` of a ``.tflite`` file in the LiteRT interpreter.

    Inputs are seeded random tensors drawn from the file's input details
    (float, int8/uint8 quantized, integer); an unknown batch dimension is set
    to 1. With ``use_xnnpack=True`` the interpreter applies its default
    XNNPACK delegate; with ``False`` it uses
    ``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`` (builtin kernels only).

    Args:
        path: The ``.tflite`` file.
        num_threads: Interpreter threads.
        runs: Number of timed ``invoke()`` calls.
        warmup: Untimed calls first (allocation, delegate warm-up, caches).
        use_xnnpack: Use the XNNPACK delegate (the default LiteRT CPU path).

    Returns:
        A :class:`TFLiteLatency`.

    Raises:
        ExportPathError: ``path`` does not exist (an ``ExportError`` and a
            ``FileNotFoundError``).
        ExportError: The file is corrupt or cannot run.
        ValueError: Bad ``num_threads``, ``runs`` or ``warmup``, or an input
            has an unknown non-batch dimension.

    Example:

    ```python
    lat = benchmark_tflite("model_int8.tflite", num_threads=2)
    print(f"{lat.median_ms:.2f} ms")
    ```
    """
    for name, value, low in (("num_threads", num_threads, 1), ("runs", runs, 1), ("warmup", warmup, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(
                f"{name} must be an integer >= {low}. Received: {name}={value!r}"
            )
    path = os.fspath(path)
    interpreter = load_interpreter(path, num_threads=num_threads, use_xnnpack=use_xnnpack)
    resized = False
    for detail in interpreter.get_input_details():
        signature = [int(d) for d in detail.get("shape_signature", detail["shape"])]
        if any(d < 0 for d in signature[1:]):
            raise ValueError(
                f"Input '{detail['name']}' of the TFLite file has unknown non-batch "
                "dimensions, so no benchmark input can be drawn. Expected fixed "
                f"spatial/channel sizes. Received: shape_signature={signature}"
            )
        if signature and signature[0] < 0 and int(detail["shape"][0]) != 1:
            interpreter.resize_tensor_input(detail["index"], [1] + signature[1:])
            resized = True
    if resized:
        interpreter.allocate_tensors()
    rng = np.random.default_rng(_SEED)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], _random_input(detail, rng))
    for _ in range(warmup):
        interpreter.invoke()
    times = np.empty(runs, dtype=np.float64)
    for i in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times[i] = (time.perf_counter() - start) * 1e3
    return TFLiteLatency(
        path=path,
        median_ms=float(np.median(times)),
        p90_ms=float(np.percentile(times, 90)),
        mean_ms=float(np.mean(times)),
        runs=runs,
        num_threads=num_threads,
        delegate="xnnpack" if use_xnnpack else "none",
    )
