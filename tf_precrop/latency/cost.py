"""The latency cost of a width assignment: interpolated per-layer times plus a constant.

:class:`LatencyCost` is the width solver's cost for ``budget="latency"``. For
every timed layer call (a :class:`~tf_precrop.latency.probes.Probe`) it holds
the measured times on a grid of widths per axis
(:func:`~tf_precrop.latency.probes.grid_axis`) and predicts the call's time at
any widths by bilinear interpolation (linear for one-axis kinds). The model's
prediction is

    ``latency(w) = constant + scale · Σ_calls t_call(c_in(w), c_out(w))``

where ``t_call`` is the measured time of the call's single-layer model less
the table's ``overhead_ms`` (the interpreter's fixed cost per ``invoke()``,
which every single-layer model pays and a whole model pays once). The
per-model ``constant`` and ``scale`` make the prediction equal two whole-model
measurements: the dense model and a uniformly thinned copy (widths × 0.4,
:data:`THIN`). The constant holds what the probes do not time (reshapes,
padding, the one per-invoke overhead); the scale holds how much faster or
slower a layer runs inside the model than alone (its input in cache or not,
the threads' work split across fused ops). On 2 cores the scale measured
0.8–1.0. Without the thinned measurement (a hand-built table, or an older
one) the scale is 1 and only the dense measurement sets the constant. The cost is separable per layer but piecewise bilinear, not a
polynomial; the solver uses :meth:`LatencyCost.total`,
:meth:`LatencyCost.gradient` and :meth:`LatencyCost.batch`.

Example (a hand-built table; no measuring):

>>> import keras, tf_precrop
>>> from tf_precrop.latency import LatencyTable, probes_of, latency_cost
>>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(16, 3),
...                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
>>> graph = tf_precrop.channel_groups(model)
>>> table = LatencyTable()
>>> for probe, grids in probes_of(graph):
...     for point in table.missing(probe.signature, grids):
...         table.add(probe.signature, point, 0.001 * sum(point))
>>> cost = latency_cost(graph, table, dense_ms=0.1)
>>> round(cost.total(cost.w0), 6)
0.1
"""

import hashlib
import json

import numpy as np

from tf_precrop.errors import LatencyError, LatencyWarning
from tf_precrop.graph.expr import LinearExpr
from tf_precrop.latency.probes import grid_axis, output_fuses, probe_of

#: Width multiplier of the thinned copy that is the second calibration point.
THIN = 0.4


def probes_of(graph, upper=1.0):
    """``[(probe, grids)]`` for every timed layer call of ``graph``, in graph order.

    ``grids`` holds one width list per axis (:func:`grid_axis`), up to the
    largest width the plan may choose (``upper`` times today's, for PreConfig).
    """
    fuse = {}
    found = []
    widths = graph.widths()
    for call in graph._calls:
        producer = call.producers[0] if len(call.producers) == 1 else None
        input_fuses = producer is not None and fuse.get(id(producer), False)
        fuse[id(call)] = output_fuses(call, input_fuses)
        probe = probe_of(call, input_fuses)
        if probe is None:
            continue
        grids = []
        for expr in probe.axes:
            fixed = all(graph[v].fixed for v in expr.terms)
            high = expr.evaluate({k: (w if graph[k].fixed else int(w * upper + 1e-9)) for k, w in widths.items()})
            grids.append(grid_axis(max(1, int(high)), fixed=fixed))
        found.append((probe, grids))
    return found


def fingerprint(graph):
    """A stable hash of the model's layer calls and widths (the per-model constant's key)."""
    w0 = graph.widths()
    parts = [graph.model.name]
    for call in graph._calls:
        outs = [str(e.evaluate(w0)) if isinstance(e, LinearExpr) else "-" for e in call.outputs]
        parts.append(f"{call.key}|{call.class_name}|{call.in_shapes}|{','.join(outs)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class LatencyCost:
    """Predicted milliseconds of a width assignment (see the module docstring).

    Args:
        graph: the model's :class:`~tf_precrop.graph.channel_graph.ChannelGraph`.
        table: a :class:`~tf_precrop.latency.table.LatencyTable` holding every
            grid point of ``probes``.
        probes: ``[(probe, grids)]`` from :func:`probes_of`.
        dense_ms: the measured dense latency (None: the constant is 0 and a
            :class:`~tf_precrop.errors.LatencyWarning` says so).
        thin: ``{"widths": {group: width}, "ms": float}``, a thinned copy's
            measured latency (None: scale 1).
    """

    quadratic = False

    def __init__(self, graph, table, probes, dense_ms=None, thin=None):
        keys = [g.key for g in graph.groups]
        index = {k: i for i, k in enumerate(keys)}
        self.w0 = np.array([g.width for g in graph.groups], dtype=np.float64)
        self.keys = [p.key for p, _ in probes]
        self.signatures = [p.signature for p, _ in probes]
        n, t = len(keys), len(probes)
        self.a_in = np.zeros((t, n))
        self.a_out = np.zeros((t, n))
        size = max([len(g) for _, grids in probes for g in grids] + [2])
        self.gx = np.full((t, size), np.inf)
        self.gy = np.full((t, size), np.inf)
        self.v = np.zeros((t, size, size))
        self.lx = np.zeros(t, dtype=np.int64)
        self.ly = np.zeros(t, dtype=np.int64)
        for i, (probe, grids) in enumerate(probes):
            for var, coeff in probe.axes[0].terms.items():
                self.a_in[i, index[var]] = float(coeff)
            if len(probe.axes) > 1:
                for var, coeff in probe.axes[1].terms.items():
                    self.a_out[i, index[var]] = float(coeff)
            # A point's time less the per-invoke overhead of its single-layer model.
            values = np.maximum(table.values(probe.signature, grids) - (table.overhead_ms or 0.0), 0.0)
            if values.ndim == 1:
                values = values[:, None]
            gx = list(grids[0])
            gy = list(grids[1]) if len(grids) > 1 else [0]
            # A single grid point (a fixed axis) is duplicated one width up, so the
            # interpolation is constant along that axis.
            if len(gx) == 1:
                gx, values = [gx[0], gx[0] + 1], np.vstack([values, values])
            if len(gy) == 1:
                gy, values = [gy[0], gy[0] + 1], np.hstack([values, values])
            self.lx[i], self.ly[i] = len(gx), len(gy)
            self.gx[i, : len(gx)] = gx
            self.gy[i, : len(gy)] = gy
            self.v[i, : len(gx), : len(gy)] = values
        self.layer_sum_dense = float(self._per_call(self.w0[None, :])[0].sum())
        if dense_ms is None:
            import warnings

            warnings.warn(
                f"No measured dense latency for model '{graph.model.name}' in the table: the "
                "prediction has no per-model constant (untimed layers and per-invoke overhead "
                "count as 0 ms). Measure it with `tf_precrop.latency.measure_table(model, ...)`.",
                LatencyWarning,
                stacklevel=3,
            )
            self.constant = 0.0
        else:
            self.constant = float(dense_ms) - self.layer_sum_dense
        self.scale = 1.0
        if dense_ms is not None and thin is not None and set(thin["widths"]) == set(keys):
            w1 = np.array([thin["widths"][k] for k in keys], dtype=np.float64)
            s1 = float(self._per_call(w1[None, :])[0].sum())
            span = self.layer_sum_dense - s1
            if span > 1e-12 and float(dense_ms) > float(thin["ms"]):
                # Two points fix the line: a scale far from 1 means a bad measurement.
                self.scale = float(np.clip((float(dense_ms) - float(thin["ms"])) / span, 0.25, 4.0))
                self.constant = float(dense_ms) - self.scale * self.layer_sum_dense
        self.dense_ms = self.constant + self.scale * self.layer_sum_dense

    # ------------------------------------------------------------ evaluation
    def _interp(self, widths):
        """Per call (values, d/dx, d/dy) for a batch of width vectors (B, n_groups)."""
        x = widths @ self.a_in.T  # (B, T)
        y = widths @ self.a_out.T
        t = np.arange(len(self.keys))[None, :]

        def locate(g, length, z):
            last = np.take_along_axis(g, (length - 1)[:, None], axis=1)[:, 0]
            z = np.clip(z, g[:, 0], last)
            i = np.sum(g[None, :, 1:] <= z[..., None], axis=-1)
            i = np.minimum(i, length[None, :] - 2)
            lo = g[t, i]
            hi = g[t, i + 1]
            return i, (z - lo) / (hi - lo), hi - lo

        i, fx, dx = locate(self.gx, self.lx, x)
        j, fy, dy = locate(self.gy, self.ly, y)
        v00, v10 = self.v[t, i, j], self.v[t, i + 1, j]
        v01, v11 = self.v[t, i, j + 1], self.v[t, i + 1, j + 1]
        value = (1 - fx) * (1 - fy) * v00 + fx * (1 - fy) * v10 + (1 - fx) * fy * v01 + fx * fy * v11
        ddx = ((1 - fy) * (v10 - v00) + fy * (v11 - v01)) / dx
        ddy = ((1 - fx) * (v01 - v00) + fx * (v11 - v10)) / dy
        return value, ddx, ddy

    def _per_call(self, widths):
        return self._interp(widths)[0]

    def total(self, w):
        """Predicted ms at one width vector (in the graph's group order)."""
        return self.constant + self.scale * float(self._per_call(np.asarray(w, dtype=np.float64)[None, :])[0].sum())

    def batch(self, widths):
        """Predicted ms of each row of a ``(B, n_groups)`` array."""
        return self.constant + self.scale * self._per_call(np.asarray(widths, dtype=np.float64)).sum(axis=1)

    def gradient(self, w):
        """d total / d w (one entry per group)."""
        _, ddx, ddy = self._interp(np.asarray(w, dtype=np.float64)[None, :])
        return self.scale * (ddx[0] @ self.a_in + ddy[0] @ self.a_out)

    def per_layer(self, w):
        """``{layer key: predicted ms}`` (a shared layer's calls summed)."""
        values = self._per_call(np.asarray(w, dtype=np.float64)[None, :])[0]
        result = {}
        for key, value in zip(self.keys, values, strict=True):
            result[key] = result.get(key, 0.0) + self.scale * float(value)
        return result


def latency_cost(graph, table, dense_ms=None, upper=1.0, probes=None):
    """A :class:`LatencyCost` for ``graph`` from a table that holds all its points.

    ``dense_ms`` defaults to the table's measurement for this model
    (:func:`fingerprint`), if any.
    """
    probes = probes if probes is not None else probes_of(graph, upper=upper)
    thin = None
    if dense_ms is None:
        dense_ms = table.dense_ms(fingerprint(graph))
        thin = table.thin(fingerprint(graph))
    if not probes:
        raise LatencyError(
            f"Model '{graph.model.name}' has no layer whose latency depends on its widths "
            "(no conv, dense, depthwise, pooling or element-wise layer the latency model "
            "times). Expected such layers for budget='latency'; use budget='macs'."
        )
    return LatencyCost(graph, table, probes, dense_ms=dense_ms, thin=thin)


def describe(probes):
    """``{signature: number of calls}`` — what a table must hold for a model (JSON-able)."""
    counts = {}
    for probe, _ in probes:
        counts[probe.signature] = counts.get(probe.signature, 0) + 1
    return json.loads(json.dumps(counts))
