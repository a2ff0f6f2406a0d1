"""Latency as a budget: a per-layer LiteRT latency model the width solver can target.

``tf_precrop.crop(model, 0.5, budget="latency")`` crops to half the dense
model's *measured* LiteRT latency instead of half its MACs. The pieces, in
pipeline order:

1. :mod:`~tf_precrop.latency.probes` — what to time per layer call: each
   layer rule's :attr:`~tf_precrop.graph.rule_base.LayerRule.latency_kind`
   gives a signature (kind, spatial size, kernel, strides, ...) and the width
   axes (input/output channels);
2. :mod:`~tf_precrop.latency.measure` — converts single-layer models to TFLite
   and times them in the LiteRT interpreter (XNNPACK) on a coarse grid of
   widths, and times the dense model once;
3. :mod:`~tf_precrop.latency.table` — the measured points as plain JSON,
   cached per machine, thread count and precision;
4. :mod:`~tf_precrop.latency.cost` — the prediction: interpolated per-layer
   times plus a per-model constant, which the width solver uses as its cost.

Choices (documented here, tested in ``tests/test_latency*.py``):

* **Target.** With ``budget="latency"`` a number ``0 < t ≤ 1`` is a fraction
  of the dense model's latency; a string ``"3.5ms"`` is an absolute target in
  milliseconds (a bare number cannot be both: 0.8 ms is a plausible target).
* **Settings.** ``num_threads`` (default :data:`DEFAULT_THREADS` = 2, the
  latency benchmark's default) and ``precision`` (``"fp32"`` or ``"int8"``,
  the export's quantization) are plan options.
* **Where the table comes from.** ``latency=None`` (default) uses this
  machine's cache (``$TF_PRECROP_CACHE`` or ``~/.cache/tf_precrop``) and
  measures what it lacks, with a progress bar; ``latency="table.json"`` or a
  :class:`LatencyTable` uses a table measured elsewhere (a phone, a board)
  and never measures: a missing layer signature is an error.
* **Calibration.** Two whole-model measurements per model (dense, and every free group × 0.4) fix a per-model constant and scale (`LatencyCost`): a layer runs faster inside the model than alone, and the constant alone cannot say by how much.
* **Tolerance.** The solver reaches the predicted target within ±2% (timing
  noise is of that order; a tighter band buys nothing).

Example:

```python
table = tf_precrop.latency.measure_table(model, num_threads=4)   # on the device
table.save("pixel7_t4.json")
small = tf_precrop.crop(model, 0.5, budget="latency", latency="pixel7_t4.json",
                        num_threads=4)
print(tf_precrop.plan(model, "3ms", budget="latency").latency_ms)
```
"""

import os

from tf_precrop.errors import LatencyError
from tf_precrop.latency.cost import LatencyCost, describe, fingerprint, latency_cost, probes_of
from tf_precrop.latency.table import (
    DEFAULT_THREADS,
    PRECISIONS,
    LatencyTable,
    cache_path,
    check_settings,
)

__all__ = [
    "DEFAULT_THREADS",
    "PRECISIONS",
    "LatencyCost",
    "LatencyTable",
    "cache_path",
    "describe",
    "fingerprint",
    "latency_cost",
    "latency_for",
    "measure_table",
    "parse_target",
    "probes_of",
]


def parse_target(target):
    """``("fraction", t)`` or ``("ms", t)`` from a latency target (LatencyError if neither).

    >>> parse_target(0.5)
    ('fraction', 0.5)
    >>> parse_target("3.5ms")
    ('ms', 3.5)
    """
    if isinstance(target, str):
        text = target.strip().lower()
        if text.endswith("ms"):
            try:
                value = float(text[:-2])
            except ValueError:
                value = None
            if value is not None and value > 0 and value == value and value != float("inf"):
                return "ms", value
        raise LatencyError(
            "A latency target string must be a positive number of milliseconds, like "
            f"'3.5ms'. Received: target={target!r}"
        )
    return "fraction", target


def _own_table(graph, num_threads, precision, cache, verbose, upper):
    """This machine's cached table, extended with what ``graph`` needs and saved."""
    from tf_precrop.latency.measure import measure_calibration, measure_points

    path = cache if isinstance(cache, (str, os.PathLike)) else cache_path(num_threads, precision)
    table = LatencyTable.load(path) if os.path.exists(path) else LatencyTable(num_threads, precision, path=os.fspath(path))
    if (table.num_threads, table.precision) != (num_threads, precision):
        raise LatencyError(
            f"The cached latency table {path} holds {table.precision} times at "
            f"{table.num_threads} threads. Expected {precision} at {num_threads} threads; "
            "delete the file or pass another cache path."
        )
    save = (lambda: table.save(path)) if cache is not False else None
    probes = probes_of(graph, upper=upper)
    if not probes:
        return table, probes  # nothing to time: latency_cost says so, before any measuring
    measure_points(table, probes, verbose=verbose, save=save)
    key = fingerprint(graph)
    if table.dense_ms(key) is None:
        dense_ms, thin = measure_calibration(graph, num_threads, precision)
        table.add_model(key, graph.model.name, dense_ms, thin)
        if save is not None:
            save()
    return table, probes


def latency_for(graph, latency=None, num_threads=DEFAULT_THREADS, precision="fp32", upper=1.0,
                verbose=1, cache=True):
    """The :class:`LatencyCost` of ``graph`` under the given settings.

    Args:
        graph: the model's channel graph.
        latency: None (this machine's cache, measured as needed), a path to a
            JSON table, or a :class:`LatencyTable` (used as is, never measured into).
        num_threads, precision: must match a given table's.
        upper: the largest width ratio the plan may choose (PreConfig).
        verbose: show a progress bar while measuring.
        cache: True (the default cache file), a path, or False (measure, keep in memory).

    Raises:
        LatencyError: unknown precision; a table with other settings, missing
            the model's signatures, or corrupt.
    """
    check_settings(num_threads, precision)
    if latency is None:
        table, probes = _own_table(graph, num_threads, precision, cache, verbose, upper)
    else:
        table = latency if isinstance(latency, LatencyTable) else None
        if table is None:
            if not isinstance(latency, (str, os.PathLike)):
                raise LatencyError(
                    "`latency` must be None, a path to a JSON latency table or a LatencyTable. "
                    f"Received: latency of type {type(latency).__name__}"
                )
            table = LatencyTable.load(latency)
        if (table.num_threads, table.precision) != (num_threads, precision):
            raise LatencyError(
                f"The latency table {table.path or '(in memory)'} was measured in "
                f"{table.precision} at {table.num_threads} threads. Expected {precision} at "
                f"{num_threads} threads: pass num_threads={table.num_threads}, "
                f"precision={table.precision!r} or a table measured with these settings."
            )
        probes = probes_of(graph, upper=upper)
        missing = sorted({p.signature for p, _ in probes} - set(table.entries))
        if missing:
            raise LatencyError(
                f"The latency table {table.path or '(in memory)'} was built for other layer "
                f"signatures: it lacks {len(missing)} of model '{graph.model.name}' (e.g. "
                f"{missing[0]}). Expected a table measured for this model: run "
                "`tf_precrop.latency.measure_table(model, ...)` on the target device."
            )
    return latency_cost(graph, table, probes=probes)


def measure_table(model, num_threads=DEFAULT_THREADS, precision="fp32", table=None, upper=1.0,
                  verbose=1, path=None):
    """Measures (or completes) a latency table for ``model`` on this machine.

    Times every single-layer grid point ``model`` needs that ``table`` lacks,
    and the dense model itself (the per-model constant). Run it on the
    target device and save the table as JSON; :func:`tf_precrop.plan` takes
    it as ``latency=``.

    Args:
        model: a Functional or Sequential model with fixed input shapes.
        num_threads: interpreter threads (default 2).
        precision: ``"fp32"`` or ``"int8"``.
        table: a :class:`LatencyTable` or path to extend (None: a new table).
        upper: the largest width ratio plans will use (PreConfig).
        verbose: progress bar.
        path: if given, the table is saved there (atomically) when measuring
            ends — also if it stops early (an error, Ctrl-C), with the points
            finished so far — so a long run on a board never loses them.

    Returns:
        The :class:`LatencyTable` (saved to ``path`` when given).
    """
    from tf_precrop.graph import channel_groups
    from tf_precrop.latency.measure import measure_calibration, measure_points

    check_settings(num_threads, precision)
    if table is None:
        table = LatencyTable(num_threads, precision)
    elif not isinstance(table, LatencyTable):
        table = LatencyTable.load(table)
    if (table.num_threads, table.precision) != (num_threads, precision):
        raise LatencyError(
            f"Cannot extend a {table.precision} table measured at {table.num_threads} threads "
            f"with {precision} times at {num_threads} threads. Expected matching settings."
        )
    graph = channel_groups(model)
    save = None if path is None else (lambda: table.save(path))
    measure_points(table, probes_of(graph, upper=upper), verbose=verbose, save=save)
    dense_ms, thin = measure_calibration(graph, num_threads, precision)
    table.add_model(fingerprint(graph), model.name, dense_ms, thin)
    if save is not None:
        save()
    return table
