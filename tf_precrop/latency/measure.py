"""Measuring: time single-layer TFLite models and whole models in the LiteRT interpreter.

Runs wherever Python, TensorFlow's converter and ``ai-edge-litert`` run. To
build a table on a phone or a board, run :func:`~tf_precrop.latency.measure_table`
there (or ``tf-precrop latency MODEL --out table.json`` from the command line)
and pass the JSON file back as ``latency=`` to :func:`tf_precrop.plan`.
"""

import sys
import time

import numpy as np

from tf_precrop.errors import LatencyError
from tf_precrop.latency.probes import micro_function

#: Smallest number of timed ``invoke()`` calls per point, and the time spent
#: per point (more runs until it is reached, up to ``MAX_RUNS``).
MIN_RUNS, MIN_SECONDS, MAX_RUNS = 10, 0.05, 400


def _representative(specs, rng, count=2):
    def data():
        for _ in range(count):
            yield [rng.standard_normal(tuple(s.shape)).astype(np.float32) for s in specs]

    return data


def convert_micro(kind, spec, widths, precision):
    """The TFLite bytes of one micro-model (int8: int8 inputs and outputs too)."""
    import tensorflow as tf

    function, specs = micro_function(kind, spec, widths)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function
    )
    if precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(specs, np.random.default_rng(0))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def time_flatbuffer(data, num_threads, min_runs=MIN_RUNS, min_seconds=MIN_SECONDS, warmup=3, blocks=1):
    """Median ms of ``invoke()`` for TFLite bytes (XNNPACK, seeded random inputs).

    With ``blocks > 1`` the runs are repeated in that many blocks and the
    smallest block median is returned: a slow window of a shared machine
    then spoils one block, not the measurement.
    """
    blocks_ms = time_flatbuffers({0: data}, num_threads, min_runs=min_runs, min_seconds=min_seconds,
                                 warmup=warmup, blocks=blocks)
    return min(blocks_ms[0])


def time_flatbuffers(flatbuffers, num_threads, min_runs=MIN_RUNS, min_seconds=MIN_SECONDS, warmup=3,
                     blocks=3, max_runs=MAX_RUNS, verbose=0):
    """``{name: [block median ms, ...]}`` for several TFLite models timed round-robin.

    Every model gets its own interpreter (XNNPACK, seeded random inputs) and
    ``warmup`` untimed calls. Then block ``b`` of every model is timed, one
    model after the other, before block ``b + 1`` of any: at least
    ``min_runs`` calls and ``min_seconds``, at most ``max_runs`` calls per
    block. A model is warmed up again (``warmup`` calls) before each of its
    blocks when others ran in between, so caches hold its weights.

    Why round-robin: on a shared machine, a slow window that would spoil one
    model's whole measurement, timed one after the other, now spoils the
    same block of every model. Take the smallest block median of each (what
    repeats) and their ratios hold, which is what a calibration needs.

    Args:
        flatbuffers: ``{name: bytes}``.
        num_threads: interpreter threads.
        verbose: print a line when each block of all models is done.

    Example:
        >>> ms = time_flatbuffers({"dense": dense_bytes, "thin": thin_bytes}, 2)  # doctest: +SKIP
        >>> min(ms["thin"]) / min(ms["dense"])  # doctest: +SKIP
    """
    from ai_edge_litert.interpreter import Interpreter

    from tf_precrop.export.latency import _random_input

    interpreters = {}
    for name, data in flatbuffers.items():
        interpreter = Interpreter(model_content=data, num_threads=num_threads)
        interpreter.allocate_tensors()
        rng = np.random.default_rng(1234)
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], _random_input(detail, rng))
        for _ in range(warmup):
            interpreter.invoke()
        interpreters[name] = interpreter
    medians = {name: [] for name in flatbuffers}
    for block in range(blocks):
        for position, (name, interpreter) in enumerate(interpreters.items()):
            if len(interpreters) > 1 and (block or position):  # others ran since its last call
                for _ in range(warmup):
                    interpreter.invoke()
            times = []
            start = time.perf_counter()
            while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_seconds):
                t = time.perf_counter()
                interpreter.invoke()
                times.append(time.perf_counter() - t)
            medians[name].append(float(np.median(times) * 1e3))
        if verbose:
            print(f"  round {block + 1}/{blocks} done", flush=True)
    return medians


def measure_points(table, probes, verbose=1, save=None):
    """Times every grid point of ``probes`` that ``table`` lacks; returns how many.

    ``save`` (a callable) is called after the last point and, if measuring
    stops early (an error, Ctrl-C), with what was measured so far, so an
    atomic cache file never loses finished points nor holds partial ones.
    """
    if table.overhead_ms is None:
        table.overhead_ms = measure_overhead(table.num_threads, table.precision)
    todo = {}
    for probe, grids in probes:
        for point in table.missing(probe.signature, grids):
            todo.setdefault((probe.signature, point), probe)
    if not todo:
        return 0
    bar = None
    if verbose:
        import keras

        kept = "; cached for next time" if save is not None else ""
        print(f"Timing {len(todo)} single-layer LiteRT models ({table.precision}, "
              f"{table.num_threads} threads){kept}.")
        interactive = verbose == 1 and sys.stdout.isatty()
        bar = keras.utils.Progbar(len(todo), verbose=1 if interactive else 2)
    done = 0
    try:
        for (signature, point), probe in todo.items():
            try:
                data = convert_micro(probe.kind, probe.spec, point, table.precision)
                ms = time_flatbuffer(data, table.num_threads, min_seconds=0.03, blocks=2)
            except Exception as e:
                raise LatencyError(
                    f"Timing layer '{probe.key}' ({signature}) at widths {point} failed "
                    f"({type(e).__name__}: {str(e)[:300]}). Expected a layer the TFLite "
                    "converter and LiteRT support; set `latency_kind = None` on its rule "
                    "to leave it untimed."
                ) from e
            table.add(signature, point, ms)
            done += 1
            if bar is not None:
                bar.update(done)
    finally:
        if save is not None and done:
            save()
    return done


def measure_overhead(num_threads, precision, repeats=5):
    """The ms of ``invoke()`` on a one-element, one-op model (min of ``repeats`` medians)."""
    data = convert_micro("unary", {"op": "relu", "spatial": [1]}, (1,), precision)
    return min(time_flatbuffer(data, num_threads, min_runs=50, min_seconds=0.05) for _ in range(repeats))


def model_flatbuffer(model, precision):
    """The whole model as TFLite bytes, converted as the export does (int8: calibrated
    on seeded random inputs; float inputs and outputs)."""
    from tf_precrop._inputs import input_specs
    from tf_precrop.backend import line_of
    from tf_precrop.export.convert import to_flatbuffer

    specs = input_specs(model)
    if any(d is None for s in specs for d in s.shape[1:]):
        raise LatencyError(
            f"Model '{model.name}' has inputs of unknown size {[s.shape for s in specs]}. "
            "Expected fixed spatial and channel sizes to time it (build it with a fixed "
            "input shape)."
        )
    calibration = None
    if precision == "int8":
        rng = np.random.default_rng(0)
        calibration = [rng.standard_normal((4, *s.shape[1:])).astype(s.dtype) for s in specs]
    return to_flatbuffer(
        model, line_of(model), "int8" if precision == "int8" else None, calibration, specs,
        False, False,
    )


def measure_models(models, num_threads, precision, runs=30, warmup=5, blocks=5):
    """``{name: ms}``: whole Keras models converted to TFLite (batch 1), timed
    round-robin (:func:`time_flatbuffers`); each the smallest of its block medians."""
    files = {name: model_flatbuffer(model, precision) for name, model in models.items()}
    blocks_ms = time_flatbuffers(files, num_threads, min_runs=runs, min_seconds=0.2, warmup=warmup, blocks=blocks)
    return {name: min(v) for name, v in blocks_ms.items()}


def measure_calibration(graph, num_threads, precision):
    """``(dense_ms, thin)``: the whole model's measured ms, and a uniformly thinned
    copy's (every free group × :data:`~tf_precrop.latency.cost.THIN`), the two
    points that fix the per-model constant and scale.

    The two models are timed round-robin in one run (:func:`measure_models`),
    not one after the other: the constant and scale come from their ratio, and
    a change of the machine's state between two separate timings would shift
    it (a fraction target could then fall below the predicted minimum).
    """
    from tf_precrop.latency.cost import THIN
    from tf_precrop.rebuild import rebuild

    widths = graph.resolve_widths(THIN)
    thin_model = rebuild(graph.model, {k: w for k, w in widths.items() if w != graph[k].width}, graph=graph)
    ms = measure_models({"dense": graph.model, "thin": thin_model}, num_threads, precision)
    return ms["dense"], {"widths": widths, "ms": ms["thin"]}
