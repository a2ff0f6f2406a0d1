"""The latency budget: probes, tables, the interpolated cost, caching and the solver.

Every table here but one is synthetic (a known function of the widths filled
in at the grid points), so the cost can be checked against an independent
computation: the same function evaluated on the channel counts of the *built*
cropped model's Keras layers. One test (``slow``) times a tiny model in LiteRT.
"""

import json
import math
import os
import re
import warnings
import zlib

import builders
import keras
import numpy as np
import pytest

import tf_precrop
import tf_precrop.latency.measure as measure_mod
from tf_precrop.backend import line_of
from tf_precrop.errors import BudgetError, BudgetWarning, LatencyError, LatencyWarning
from tf_precrop.latency import (
    LatencyTable,
    cache_path,
    fingerprint,
    latency_cost,
    measure_table,
    parse_target,
    probes_of,
)
from tf_precrop.latency.cost import THIN
from tf_precrop.latency.probes import (
    TWO_AXES,
    grid_axis,
    micro_function,
    parse_signature,
    signature_of,
)
from tf_precrop.latency.table import machine
from tf_precrop.plan import Plan

L = keras.layers

# --------------------------------------------------------------------- helpers


def _coefficients(signature):
    """Per-signature coefficients ``(a, b, c, d) ≥ 0`` (deterministic, from a CRC of the text)."""
    rng = np.random.default_rng(zlib.crc32(signature.encode()))
    return rng.uniform(0.05, 1.0, size=4) * np.array([1e-2, 1e-3, 1e-3, 1e-4])


def bilinear(signature, point):
    """``a + b·ci + c·co + d·ci·co`` (one axis: ``a + b·c``)."""
    a, b, c, d = _coefficients(signature)
    if len(point) == 1:
        return a + b * point[0]
    ci, co = point
    return a + b * ci + c * co + d * ci * co


def power(signature, point):
    """A non-bilinear, increasing function of the widths (``ci**1.5 · co**1.5``-like)."""
    a, b, _, _ = _coefficients(signature)
    return a + b * math.prod(float(w) ** 1.5 for w in point)


def _spec_size(spec):
    spatial = math.prod(spec.get("spatial", spec.get("lead", [])) or [1])
    return spatial, math.prod(spec.get("kernel", [1]))


def macs_like(kind, spec, point, overhead=1e-4):
    """The matrix tables: 1e-6 ms per MAC-like unit of one point, plus a per-point overhead."""
    spatial, taps = _spec_size(spec)
    if len(point) == 2:
        ci, co = point
        units = spatial * (taps * ci * co + ci + co)
    else:
        units = spatial * taps * point[0]
    return 1e-6 * units + overhead


def fill(table, graph, fn):
    """Fills every missing grid point of ``graph``'s probes with ``fn(signature, point)``."""
    for probe, grids in probes_of(graph):
        for point in table.missing(probe.signature, grids):
            table.add(probe.signature, point, fn(probe.signature, point))
    return table


def fill_macs(table, graph, **kwargs):
    for probe, grids in probes_of(graph):
        for point in table.missing(probe.signature, grids):
            table.add(probe.signature, point, macs_like(probe.kind, probe.spec, point, **kwargs))
    return table


def _layer_calls(model, prefix=""):
    """``{key: [(class name, c_in, c_out) per call]}`` read off the Keras layers (nested too)."""
    found = {}
    for layer in model.layers:
        key = prefix + layer.name
        if hasattr(layer, "layers") and hasattr(layer, "inputs"):
            found.update(_layer_calls(layer, key + "/"))
            continue
        line = line_of(layer)
        for node in layer._inbound_nodes:
            ins, outs = line.node_inputs(node), line.node_outputs(node)
            if not ins:
                continue
            found.setdefault(key, []).append(
                (type(layer).__name__, int(ins[0].shape[-1]), int(outs[0].shape[-1]))
            )
    return found


def independent_sum(model, probes, fn):
    """Σ ``fn`` over the probed layers of a built model, at their *real* channel counts.

    The timed axes by kind (the probes module's table): input and output
    channels for conv/separable/dense, input channels for depthwise/pool/unary,
    output channels for element-wise and concat layers.
    """
    calls = _layer_calls(model)
    used = {}
    total = 0.0
    for probe, _ in probes:
        i = used.get(probe.key, 0)
        used[probe.key] = i + 1
        _, ci, co = calls[probe.key][i]
        if probe.kind in TWO_AXES:
            point = (ci, co)
        elif probe.kind in ("elementwise", "concat"):
            point = (co,)
        else:
            point = (ci,)
        total += fn(probe.signature, point)
    return total


def random_widths(graph, rng):
    """Off-grid integer widths: each free group anywhere in [multiple_of, width]."""
    widths = {}
    for g in graph.groups:
        if g.fixed:
            widths[g.key] = g.width
        else:
            steps = g.width // g.multiple_of
            widths[g.key] = int(rng.integers(1, steps + 1)) * g.multiple_of
    return widths


def vector(graph, widths):
    return np.array([widths[g.key] for g in graph.groups], dtype=np.float64)


def tiny_model(name="tiny"):
    """Input 8x8x3 → Conv2D(8, 3) → ReLU → GlobalAveragePooling2D → Dense(4)."""
    x = keras.Input((8, 8, 3), name="image")
    y = L.Conv2D(8, 3, name="c")(x)
    y = L.ReLU(name="relu")(y)
    y = L.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(x, L.Dense(4, name="out")(y), name=name)


def two_conv_model():
    """Conv(16) → Conv(16) → GAP → Dense(2): the second conv has two free timed axes."""
    x = keras.Input((8, 8, 3), name="image")
    y = L.Conv2D(16, 3, padding="same", name="c1")(x)
    y = L.Conv2D(16, 3, padding="same", name="c2")(y)
    y = L.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(x, L.Dense(2, name="out")(y), name="two_conv")


_MODELS = {}


def model_of(name):
    """One built model per builders pattern (plans never modify it)."""
    if name not in _MODELS:
        _MODELS[name] = builders.build(name)
    return _MODELS[name]


def no_tmp_files(folder):
    names = os.listdir(folder) if os.path.isdir(folder) else []
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".")], names
    for n in names:  # whatever is there is a complete, loadable table
        LatencyTable.load(os.path.join(folder, n))
    return names


# ------------------------------------------------------------ 1. interpolation


INTERP_MODELS = [
    "chain", "residual", "se_block_reshape", "concat_channels", "depthwise", "groups_as_depthwise",
    "separable", "conv1d", "flatten_dense", "shuffle_layers", "nested_functional",
    "two_in_two_out", "shared_layer", "densenet_like",
]


@pytest.mark.parametrize("name", INTERP_MODELS)
def test_bilinear_table_is_interpolated_exactly_at_off_grid_widths_of_the_built_model(name):
    model = model_of(name)
    graph = tf_precrop.channel_groups(model)
    table = fill(LatencyTable(), graph, bilinear)
    probes = probes_of(graph)
    dense_ms = 5.0
    cost = latency_cost(graph, table, dense_ms=dense_ms)
    dense_sum = independent_sum(model, probes, bilinear)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    checked = 0
    for _ in range(2):
        widths = random_widths(graph, rng)
        cropped = tf_precrop.rebuild(model, widths)
        expected = dense_ms - dense_sum + independent_sum(cropped, probes, bilinear)
        assert cost.total(vector(graph, widths)) == pytest.approx(expected, rel=1e-10, abs=1e-12)
        checked += widths != graph.widths()
    assert checked  # at least one width vector differed from the dense one


def test_non_bilinear_table_is_exact_on_the_grid_and_monotone_between_points():
    model = two_conv_model()
    graph = tf_precrop.channel_groups(model)
    table = fill(LatencyTable(), graph, power)
    cost = latency_cost(graph, table, dense_ms=1.0)
    probes = {p.key: (p, grids) for p, grids in probes_of(graph)}
    probe, grids = probes["c2"]
    assert grids == [[1, 4, 16], [1, 4, 16]]
    keys = [g.key for g in graph.groups]
    c1, c2 = keys.index("c1"), keys.index("c2")
    w = cost.w0.copy()

    def c2_ms(ci, co):
        w[c1], w[c2] = ci, co
        return cost.per_layer(w)["c2"]

    for ci in grids[0]:
        for co in grids[1]:
            assert c2_ms(ci, co) == pytest.approx(power(probe.signature, (ci, co)), rel=1e-12)
    xs = np.linspace(1, 16, 61)
    for co in (1, 2.5, 4, 9.0, 16):
        values = [c2_ms(ci, co) for ci in xs]
        assert np.all(np.diff(values) > 0)
    for ci, co in [(2, 3), (5, 13), (10, 2), (15.5, 15.5)]:
        lo_i = max(g for g in grids[0] if g <= ci)
        hi_i = min(g for g in grids[0] if g >= ci)
        lo_o = max(g for g in grids[1] if g <= co)
        hi_o = min(g for g in grids[1] if g >= co)
        corners = [power(probe.signature, p) for p in [(lo_i, lo_o), (hi_i, hi_o)]]
        assert corners[0] < c2_ms(ci, co) < corners[1]
    # A one-axis probe (the pooling layer, on c2's width) between its grid neighbours.
    gap, gap_grids = probes["gap"]
    assert gap_grids == [[1, 4, 16]]
    w = cost.w0.copy()
    for c, (lo, hi) in [(2, (1, 4)), (7, (4, 16)), (15, (4, 16))]:
        w[c2] = c
        assert power(gap.signature, (lo,)) < cost.per_layer(w)["gap"] < power(gap.signature, (hi,))
    w[c2] = 4
    assert cost.per_layer(w)["gap"] == pytest.approx(power(gap.signature, (4,)), rel=1e-12)


@pytest.mark.parametrize("name", ["residual", "separable", "densenet_like", "flatten_dense"])
def test_gradient_matches_central_finite_differences_away_from_grid_kinks(name):
    graph = tf_precrop.channel_groups(model_of(name))
    table = fill(LatencyTable(), graph, power)
    cost = latency_cost(graph, table, dense_ms=2.0)
    free = [i for i, g in enumerate(graph.groups) if not g.fixed]
    rng = np.random.default_rng(3)
    for _ in range(3):
        w = cost.w0.copy()
        # Inside the range, nowhere near an integer (every grid point is one).
        w[free] = np.floor(rng.uniform(1.0, cost.w0[free] - 1.0)) + rng.uniform(0.2, 0.8, len(free))
        grad = cost.gradient(w)
        eps = 1e-4
        for g in range(len(w)):
            dw = np.zeros_like(w)
            dw[g] = eps
            numeric = (cost.total(w + dw) - cost.total(w - dw)) / (2 * eps)
            assert grad[g] == pytest.approx(numeric, rel=1e-5, abs=1e-9), graph.groups[g].key
        assert np.count_nonzero(grad[free]) == len(free)  # every free group has a timed cost


def test_batch_equals_total_row_by_row():
    graph = tf_precrop.channel_groups(model_of("nested_functional"))
    cost = latency_cost(graph, fill(LatencyTable(), graph, power), dense_ms=3.0)
    rng = np.random.default_rng(0)
    rows = np.stack([vector(graph, random_widths(graph, rng)) for _ in range(7)] + [cost.w0])
    rows[2] += 0.37  # off-integer rows too
    batch = cost.batch(rows)
    assert batch.shape == (len(rows),)
    for row, value in zip(rows, batch, strict=True):
        assert value == pytest.approx(cost.total(row), rel=1e-13)
    assert len(set(np.round(batch, 9))) > 4  # the rows really differ


def test_the_per_model_constant_makes_the_dense_prediction_the_measurement():
    model = model_of("residual")
    graph = tf_precrop.channel_groups(model)
    # Multiples of 2**-12 ms: every sum below is exact in floating point.
    table = fill(LatencyTable(), graph, lambda s, p: round(bilinear(s, p) * 4096) / 4096)
    dense_ms = 1.75
    table.add_model(fingerprint(graph), model.name, dense_ms)
    cost = latency_cost(graph, table)  # dense_ms from the table, by fingerprint
    assert cost.total(cost.w0) == dense_ms
    assert cost.dense_ms == dense_ms
    per_layer = cost.per_layer(cost.w0)
    expected_layers = independent_sum(
        model, probes_of(graph), lambda s, p: round(bilinear(s, p) * 4096) / 4096
    )
    assert sum(per_layer.values()) == expected_layers
    assert cost.constant == dense_ms - expected_layers
    assert set(per_layer) == {p.key for p, _ in probes_of(graph)}


def test_no_dense_latency_warns_and_leaves_no_constant():
    graph = tf_precrop.channel_groups(model_of("chain"))
    table = fill(LatencyTable(), graph, bilinear)
    with pytest.warns(LatencyWarning, match="'chain'.*no per-model constant"):
        cost = latency_cost(graph, table)
    assert cost.constant == 0.0
    assert cost.total(cost.w0) == pytest.approx(independent_sum(model_of("chain"), probes_of(graph), bilinear))


def test_a_plan_on_a_table_without_the_dense_model_warns():
    model = model_of("residual")
    graph = tf_precrop.channel_groups(model)
    table = fill_macs(LatencyTable(), graph)
    with pytest.warns(LatencyWarning, match="'residual'"):
        plan = tf_precrop.plan(model, 0.5, budget="latency", latency=table, verbose=0)
    assert plan.settings["latency_constant_ms"] == 0.0
    dense = independent_sum(model, probes_of(graph), _macs_fn)
    assert plan.latency_ms[0] == pytest.approx(dense, rel=1e-12)


# ------------------------------------------------------------------- 2. probes


def probe_zoo(line_suffix=""):
    """One layer per probe kind, and the layers that get none."""
    x = keras.Input((16, 16, 3), name="image")
    y = L.BatchNormalization(name="bn_in")(x)  # after the input: timed (unary)
    y = L.Conv2D(8, 3, padding="same", name="c1")(y)  # conv
    y = L.BatchNormalization(name="bn1")(y)  # fused into c1
    y = L.ReLU(name="relu1")(y)  # fused into c1 + bn1
    y = L.MaxPooling2D(name="pool")(y)  # pool
    y = L.Activation("relu", name="act")(y)  # after a pool: timed (unary)
    z = L.Conv2D(8, 3, padding="same", name="c2")(y)
    z = L.Activation("swish", name="swish")(z)  # not fusable: timed (unary)
    y = L.Add(name="add")([y, z])  # elementwise
    y = L.ReLU(name="relu_add")(y)  # fused into the add
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(y)  # depthwise
    y = L.SeparableConv2D(8, 3, padding="same", name="sep")(y)  # separable
    a = L.Conv2D(4, 1, name="a")(y)
    b = L.Conv2D(4, 1, name="b")(y)
    y = L.Concatenate(name="cat")([a, b])  # concat
    y = L.Conv2D(8, 3, groups=2, padding="same", name="grouped")(y)  # not timed
    y = L.Conv2DTranspose(8, 3, strides=2, padding="same", name="up")(y)  # not timed
    y = L.GlobalAveragePooling2D(name="gap")(y)  # pool
    y = L.Dense(4, name="out")(y)  # dense
    return keras.Model(x, y, name="probe_zoo" + line_suffix)


def test_probes_kinds_and_fusion():
    graph = tf_precrop.channel_groups(probe_zoo())
    found = [(p.key, p.kind) for p, _ in probes_of(graph)]
    assert found == [
        ("bn_in", "unary"), ("c1", "conv"), ("pool", "pool"), ("act", "unary"), ("c2", "conv"),
        ("swish", "unary"), ("add", "elementwise"), ("dw", "depthwise"), ("sep", "separable"),
        ("a", "conv"), ("b", "conv"), ("cat", "concat"), ("gap", "pool"), ("out", "dense"),
    ]
    specs = {p.key: p.spec for p, _ in probes_of(graph)}
    assert specs["bn_in"] == {"op": "batch_norm", "spatial": [16, 16]}
    assert specs["act"]["op"] == "relu" and specs["swish"]["op"] == "silu"  # Keras 3 names swish silu
    assert specs["c1"] == {
        "rank": 2, "spatial": [16, 16], "kernel": [3, 3], "strides": [1, 1], "dilation": [1, 1],
        "padding": "same",
    }
    assert specs["pool"] == {
        "mode": "max", "global": False, "spatial": [16, 16], "pool": [2, 2], "strides": [2, 2],
        "padding": "valid",
    }
    assert specs["gap"] == {"mode": "avg", "global": True, "spatial": [16, 16]}  # after the 2x up
    assert specs["add"] == {"op": "Add", "inputs": 2, "spatial": [8, 8]}
    assert specs["cat"] == {"inputs": 2, "spatial": [8, 8]}
    assert specs["out"] == {"lead": []}
    assert specs["dw"]["multiplier"] == 1
    grids = {p.key: g for p, g in probes_of(graph)}
    assert grids["bn_in"] == [[3]] and grids["c1"] == [[3], [1, 4, 8]]
    assert grids["cat"] == [[1, 4, 8]] and grids["out"] == [[1, 4, 8], [4]]


def test_conv_transpose_grouped_and_spatial_concat_get_no_probe_but_groups_as_depthwise_is_depthwise():
    keys = lambda name: {p.key: p.kind for p, _ in probes_of(tf_precrop.channel_groups(model_of(name)))}  # noqa: E731
    assert "up" not in keys("conv_transpose") and keys("conv_transpose") == {"down": "conv", "out": "conv"}
    assert "g" not in keys("grouped_conv")
    assert "cat" not in keys("concat_spatial")  # a height concat is not a channel concat
    assert keys("groups_as_depthwise")["dwg"] == "depthwise"
    (dwg,) = [p for p, _ in probes_of(tf_precrop.channel_groups(model_of("groups_as_depthwise"))) if p.key == "dwg"]
    assert dwg.spec["multiplier"] == 1 and len(dwg.axes) == 1
    # Its micro-model is a depthwise conv: the layer's output shape at each grid width.
    for width in (1, 4, 8):
        function, specs = micro_function(dwg.kind, dwg.spec, (width,))
        out = function(*[np.ones(sp.shape, "float32") for sp in specs])
        assert tuple(out.shape) == (1, 8, 8, width)


def test_micro_models_have_the_output_shape_of_the_layer_they_time():
    model = probe_zoo()
    graph = tf_precrop.channel_groups(model)
    for probe, grids in probes_of(graph):
        dense_point = tuple(g[-1] for g in grids)  # the grid's top is today's width
        function, specs = micro_function(probe.kind, probe.spec, dense_point)
        out = function(*[np.ones(sp.shape, "float32") for sp in specs])
        layer = model.get_layer(probe.key)
        assert tuple(out.shape) == (1, *layer.output.shape[1:]), probe.key
        first_input = layer.input[0] if isinstance(layer.input, list) else layer.input
        assert tuple(specs[0].shape[1:-1]) == tuple(first_input.shape[1:-1]), probe.key


def test_signatures_are_stable_strings_and_parse_back():
    first = [p.signature for p, _ in probes_of(tf_precrop.channel_groups(probe_zoo()))]
    second = [p.signature for p, _ in probes_of(tf_precrop.channel_groups(probe_zoo("_again")))]
    assert first == second
    assert all(isinstance(s, str) for s in first)
    assert first[1] == (
        'conv:{"dilation":[1,1],"kernel":[3,3],"padding":"same","rank":2,"spatial":[16,16],'
        '"strides":[1,1]}'
    )
    for probe, _ in probes_of(tf_precrop.channel_groups(probe_zoo())):
        assert parse_signature(probe.signature) == (probe.kind, probe.spec)
    assert signature_of("pool", {"b": 1, "a": [2]}) == signature_of("pool", {"a": [2], "b": 1})
    for bad in ["conv", "blur:{}", "pool:[1, 2]"]:
        with pytest.raises(ValueError, match="Malformed latency signature"):
            parse_signature(bad)


@pytest.mark.parametrize(
    "high, fixed, expected",
    [
        (1, False, [1]), (3, False, [1, 3]), (4, False, [1, 4]), (5, False, [1, 4, 5]),
        (16, False, [1, 4, 16]), (17, False, [1, 4, 16, 17]), (256, False, [1, 4, 16, 64, 256]),
        (1280, False, [1, 4, 16, 64, 256, 1024, 1280]), (3, True, [3]), (96, True, [96]),
    ],
)
def test_grid_axis(high, fixed, expected):
    assert grid_axis(high, fixed=fixed) == expected


def test_upper_extends_the_grids_for_preconfig():
    graph = tf_precrop.channel_groups(model_of("chain"))
    grids = {p.key: g for p, g in probes_of(graph, upper=2.0)}
    assert grids["c1"] == [[3], [1, 4, 16]] and grids["c2"] == [[1, 4, 16], [1, 4, 16, 24]]


# -------------------------------------------------------- 3. JSON and cache keys


def _some_table():
    graph = tf_precrop.channel_groups(model_of("residual"))
    table = fill(LatencyTable(num_threads=3, precision="int8"), graph, power)
    table.add_model(fingerprint(graph), "residual", 1.0 / 3.0)
    return table


def test_table_json_round_trip_is_exact(tmp_path):
    table = _some_table()
    text = table.to_json()
    back = LatencyTable.from_json(text)
    assert back.to_dict() == table.to_dict()
    assert back.entries == table.entries and back.models == table.models
    assert (back.num_threads, back.precision, back.machine) == (3, "int8", machine())
    path = tmp_path / "sub" / "t.json"
    assert table.save(path) == path
    loaded = LatencyTable.load(path)
    assert loaded.to_dict() == table.to_dict() and loaded.path == os.fspath(path)
    assert loaded.dense_ms(fingerprint(tf_precrop.channel_groups(model_of("residual")))) == 1.0 / 3.0
    assert len(loaded) == len(table) == sum(len(v) for v in json.loads(text)["entries"].values())
    assert os.listdir(path.parent) == ["t.json"]
    # save() without a path writes back to the file it came from.
    loaded.add("pool:{}", (2,), 0.25)
    loaded.save()
    assert LatencyTable.load(path).get("pool:{}", (2,)) == 0.25
    with pytest.raises(ValueError, match="no file yet"):
        LatencyTable().save()


def test_cache_path_per_threads_precision_and_machine(monkeypatch, tmp_path):
    monkeypatch.delenv("TF_PRECROP_CACHE", raising=False)
    home = cache_path(2, "fp32")
    assert home.startswith(os.path.join(os.path.expanduser("~"), ".cache", "tf_precrop"))
    paths = {cache_path(t, p) for t in (1, 2, 4) for p in ("fp32", "int8")}
    assert len(paths) == 6
    mid = machine()["id"]
    assert len(mid) == 12 and all(mid in p for p in paths)
    assert os.path.basename(cache_path(4, "int8")) == f"latency-{mid}-t4-int8.json"
    monkeypatch.setenv("TF_PRECROP_CACHE", str(tmp_path))
    assert cache_path(2, "fp32") == os.path.join(str(tmp_path), f"latency-{mid}-t2-fp32.json")
    assert cache_path(2, "fp32", directory="/elsewhere").startswith("/elsewhere/")


def test_latency_plan_json_round_trip(tmp_path):
    model = model_of("residual")
    graph = tf_precrop.channel_groups(model)
    table = fill_macs(LatencyTable(), graph)
    table.add_model(fingerprint(graph), model.name, dense_of(model))
    plan = tf_precrop.plan(model, 0.5, budget="latency", latency=table, verbose=0)
    assert isinstance(plan.latency_ms, tuple) and len(plan.latency_ms) == 2
    assert plan.latency_ms[0] == pytest.approx(dense_of(model), rel=1e-12)
    timed = [layer for layer in plan.layers if layer.latency_ms_before is not None]
    assert timed and all(layer.latency_ms_after <= layer.latency_ms_before for layer in timed)
    path = tmp_path / "plan.json"
    plan.to_json(path)
    for source in (plan.to_json(), str(path)):
        back = Plan.from_json(source)
        assert back == plan
        assert back.latency_ms == plan.latency_ms and isinstance(back.latency_ms, tuple)
        assert [(x.latency_ms_before, x.latency_ms_after) for x in back.layers] == [
            (x.latency_ms_before, x.latency_ms_after) for x in plan.layers
        ]
        assert back.settings["latency_constant_ms"] == plan.settings["latency_constant_ms"]
    assert back.achieved == pytest.approx(plan.latency_ms[1] / plan.latency_ms[0])
    assert plan.settings["latency_table"] == "(in memory)"
    assert plan.settings["latency_constant_ms"] == pytest.approx(
        dense_of(model) - independent_sum(model, probes_of(graph), _macs_fn), rel=1e-12
    )
    table.save(tmp_path / "table.json")
    from_file = tf_precrop.plan(model, 0.5, budget="latency", latency=tmp_path / "table.json", verbose=0)
    assert from_file.settings["latency_table"] == str(tmp_path / "table.json")
    assert from_file.widths == plan.widths


# -------------------------------------------------------- 4. caching, faked timing


class FakeTimer:
    """Replaces conversion and timing: the 'flatbuffer' is the point as JSON; ms from macs_like."""

    def __init__(self, fail_after=None, error=RuntimeError):
        self.converted = []
        self.timed = 0
        self.models = 0  # whole models timed: the dense one and its thinned copy
        self.overheads = 0
        self.fail_after = fail_after
        self.error = error

    def install(self, monkeypatch):
        monkeypatch.setattr(measure_mod, "convert_micro", self.convert_micro)
        monkeypatch.setattr(measure_mod, "time_flatbuffer", self.time_flatbuffer)
        monkeypatch.setattr(measure_mod, "measure_models", self.measure_models)
        monkeypatch.setattr(measure_mod, "measure_overhead", self.measure_overhead)
        return self

    def measure_overhead(self, num_threads, precision):
        self.overheads += 1
        return 0.0

    def convert_micro(self, kind, spec, widths, precision):
        self.converted.append((signature_of(kind, spec), tuple(int(w) for w in widths), precision))
        return json.dumps([kind, spec, list(widths)]).encode()

    def time_flatbuffer(self, data, num_threads, **kwargs):
        if self.fail_after is not None and self.timed >= self.fail_after:
            raise self.error("the fake interpreter stopped")
        self.timed += 1
        kind, spec, widths = json.loads(data)
        return macs_like(kind, spec, widths) * (1 + 0.01 * num_threads)

    def measure_models(self, models, num_threads, precision, **kwargs):
        self.models += len(models)
        return {name: dense_of(model) for name, model in models.items()}


def dense_of(model):
    """The fakes' 'measured' dense latency: a little above what the fake points add up to."""
    return 1.2e-6 * builders.independent_macs(model) + 1e-3


def _expected_points(graph):
    return {(p.signature, point) for p, grids in probes_of(graph) for point in LatencyTable().missing(p.signature, grids)}


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("TF_PRECROP_CACHE", str(folder))
    return folder


def test_the_cache_is_measured_once_per_setting_and_reused(monkeypatch, cache_dir):
    model = model_of("shared_layer")
    graph = tf_precrop.channel_groups(model)
    expected = _expected_points(graph)
    naive = sum(math.prod(len(g) for g in grids) for _, grids in probes_of(graph))
    assert len(expected) < naive  # the shared conv's two calls are measured once
    fake = FakeTimer().install(monkeypatch)
    first = tf_precrop.plan(model, 0.5, budget="latency", verbose=0)
    assert {(s, p) for s, p, _ in fake.converted} == expected
    assert len(fake.converted) == fake.timed == len(expected)
    assert fake.models == 2 and fake.overheads == 1
    assert sorted(os.listdir(cache_dir)) == [os.path.basename(cache_path(2, "fp32"))]
    on_disk = LatencyTable.load(cache_path(2, "fp32"))
    assert len(on_disk) == len(expected)
    assert on_disk.dense_ms(fingerprint(graph)) == dense_of(model)
    assert first.settings["num_threads"] == 2 and first.settings["precision"] == "fp32"

    again = FakeTimer().install(monkeypatch)
    second = tf_precrop.plan(model, 0.5, budget="latency", verbose=0)
    assert (again.converted, again.timed, again.models) == ([], 0, 0)
    assert second.widths == first.widths and second.latency_ms == first.latency_ms

    four = FakeTimer().install(monkeypatch)
    third = tf_precrop.plan(model, 0.5, budget="latency", num_threads=4, verbose=0)
    assert four.timed == len(expected) and four.models == 2
    assert sorted(os.listdir(cache_dir)) == sorted(
        os.path.basename(cache_path(t, "fp32")) for t in (2, 4)
    )
    assert LatencyTable.load(cache_path(4, "fp32")).num_threads == 4
    assert third.latency_ms[0] == pytest.approx(dense_of(model), rel=1e-12)
    assert third.settings["num_threads"] == 4
    no_tmp_files(cache_dir)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_measuring_keeps_only_finished_points(monkeypatch, cache_dir, error):
    model = model_of("residual")
    graph = tf_precrop.channel_groups(model)
    expected = _expected_points(graph)
    fake = FakeTimer(fail_after=5, error=error).install(monkeypatch)
    raised = LatencyError if error is RuntimeError else KeyboardInterrupt
    with pytest.raises(raised) as info:
        tf_precrop.plan(model, 0.5, budget="latency", verbose=0)
    if raised is LatencyError:
        assert "the fake interpreter stopped" in str(info.value)
        assert "at widths" in str(info.value)
    assert no_tmp_files(cache_dir) == [os.path.basename(cache_path(2, "fp32"))]
    saved = LatencyTable.load(cache_path(2, "fp32"))
    assert len(saved) == 5 and saved.models == {}
    finished = {(s, p) for s, p, _ in fake.converted[:5]}
    assert {(s, tuple(int(w) for w in k.split(","))) for s, v in saved.entries.items() for k in v} == finished
    # The next plan measures only what is left.
    rest = FakeTimer().install(monkeypatch)
    tf_precrop.plan(model, 0.5, budget="latency", verbose=0)
    assert rest.timed == len(expected) - 5 and rest.models == 2
    assert {(s, p) for s, p, _ in rest.converted} == expected - finished
    no_tmp_files(cache_dir)


class SimulatedMachine:
    """A clock and interpreters for it: each model's ``invoke()`` costs its own ms, and
    ``slow`` times more while the clock is inside ``window`` (seconds)."""

    def __init__(self, costs_ms, window=(0.0, 0.0), slow=3.0):
        self.now, self.costs, self.window, self.slow = 0.0, costs_ms, window, slow
        self.calls = []  # the name of every invoke, in order
        machine = self

        class Interpreter:
            def __init__(self, model_content, num_threads):
                self.name = model_content.decode()

            def allocate_tensors(self):
                pass

            def get_input_details(self):
                return [{"index": 0, "dtype": np.float32, "shape": np.array([1, 2])}]

            def set_tensor(self, index, value):
                pass

            def invoke(self):
                factor = machine.slow if machine.window[0] <= machine.now < machine.window[1] else 1.0
                machine.now += machine.costs[self.name] * factor / 1e3
                machine.calls.append(self.name)

        self.Interpreter = Interpreter

    def perf_counter(self):
        return self.now

    def install(self, monkeypatch):
        import types

        import ai_edge_litert.interpreter

        monkeypatch.setattr(ai_edge_litert.interpreter, "Interpreter", self.Interpreter)
        monkeypatch.setattr(measure_mod, "time", types.SimpleNamespace(perf_counter=self.perf_counter))
        return self


def test_round_robin_timing_keeps_the_ratio_through_a_slow_window(monkeypatch):
    # dense 1 ms, thin 0.4 ms; the machine is 3x slower for the first two seconds.
    files = {"dense": b"dense", "thin": b"thin"}
    costs = {"dense": 1.0, "thin": 0.4}
    machine = SimulatedMachine(costs, window=(0.0, 2.0)).install(monkeypatch)
    blocks = measure_mod.time_flatbuffers(files, 2, min_runs=30, min_seconds=0.3, warmup=5, blocks=4)
    assert [len(v) for v in blocks.values()] == [4, 4]
    # Blocks alternate: every dense block is followed by a thin one.
    runs = [name for i, name in enumerate(machine.calls) if i == 0 or machine.calls[i - 1] != name]
    assert runs == ["dense", "thin"] + ["dense", "thin"] * 4
    assert blocks["dense"][0] == pytest.approx(3.0) and blocks["thin"][0] == pytest.approx(1.2)
    fastest = {name: min(v) for name, v in blocks.items()}
    assert fastest == pytest.approx(costs, rel=1e-9)  # the ratio is exactly 0.4
    # One model after the other (the old way), the same window spoils dense only.
    machine = SimulatedMachine(costs, window=(0.0, 2.0)).install(monkeypatch)
    one_by_one = {name: measure_mod.time_flatbuffer(data, 2, min_runs=30, min_seconds=0.3, warmup=5, blocks=4)
                  for name, data in files.items()}
    assert one_by_one["thin"] / one_by_one["dense"] == pytest.approx(0.4 / 3.0, rel=1e-9)


def test_calibration_times_dense_and_thin_round_robin(monkeypatch):
    model = model_of("residual")
    graph = tf_precrop.channel_groups(model)
    timed = []

    def fake_files(files, num_threads, **kwargs):
        timed.append((sorted(files), kwargs["blocks"]))
        return {name: [2.0 if name == "dense" else 1.0, 5.0] for name in files}

    monkeypatch.setattr(measure_mod, "model_flatbuffer", lambda m, precision: m.name.encode())
    monkeypatch.setattr(measure_mod, "time_flatbuffers", fake_files)
    dense_ms, thin = measure_mod.measure_calibration(graph, 2, "fp32")
    assert timed == [(["dense", "thin"], 5)]  # one round-robin run of both
    assert (dense_ms, thin["ms"]) == (2.0, 1.0)
    assert thin["widths"] == graph.resolve_widths(THIN)


# ------------------------------------------------------- 5. the solver on the matrix

#: Every builders pattern the channel graph accepts has timed layers.
TIMED = (
    "chain", "residual", "se_block", "se_block_reshape", "concat_channels", "concat_spatial",
    "depthwise", "grouped_conv", "groups_as_depthwise", "separable", "conv1d", "conv_transpose",
    "flatten_dense", "shuffle_layers", "split_after_conv", "shuffle_reshape", "nested_mobilenet",
    "nested_functional", "two_in_two_out", "shared_layer", "ops", "lambda_agnostic",
    "densenet_like",
)
#: (pattern, target) that miss ±2% with both methods (BudgetWarning, miss="proven"):
#: tiny models whose few free groups of 4-16 channels leave no latency in the band
#: (one channel of ``se_block``'s 16-channel conv moves the total by about 5%).
#: Each is checked below against an enumeration of every width assignment.
MISSES = {
    ("se_block", 0.5), ("se_block", 0.3), ("se_block_reshape", 0.5), ("se_block_reshape", 0.3),
    ("depthwise", 0.3), ("grouped_conv", 0.3), ("conv_transpose", 0.5), ("conv_transpose", 0.3),
    ("split_after_conv", 0.5), ("shuffle_reshape", 0.5), ("two_in_two_out", 0.5),
    ("two_in_two_out", 0.3), ("shared_layer", 0.3),
}
#: (pattern, target) below the smallest reachable latency (BudgetError): every free group
#: at its minimum still costs more than 0.3 of dense (the per-point overheads).
UNREACHABLE = {("split_after_conv", 0.3), ("shuffle_reshape", 0.3)}


def every_assignment(graph, cost):
    """The predicted ms of every integer width assignment (free groups at multiples of
    ``multiple_of`` up to today's width), by brute force."""
    import itertools

    ranges = [
        range(g.multiple_of, g.width + 1, g.multiple_of) if not g.fixed else [g.width]
        for g in graph.groups
    ]
    rows = np.array(list(itertools.product(*ranges)), dtype=np.float64)
    assert len(rows) <= 20000
    return cost.batch(rows)


def test_the_matrix_list_is_every_pattern_with_probes():
    timed, untimed = [], []
    for name in builders.PATTERNS:
        if name in builders.REFUSED:
            with pytest.raises(tf_precrop.errors.UnsupportedLayerError):
                tf_precrop.channel_groups(builders.build(name))
            continue
        (timed if probes_of(tf_precrop.channel_groups(model_of(name))) else untimed).append(name)
    assert tuple(timed) == TIMED and untimed == []


def _matrix_table(name):
    model = model_of(name)
    graph = tf_precrop.channel_groups(model)
    table = fill_macs(LatencyTable(), graph)
    dense = independent_sum(model, probes_of(graph), lambda s, p: table.entries[s][",".join(map(str, p))])
    table.add_model(fingerprint(graph), name, dense + 1e-3)
    return model, table, dense + 1e-3


@pytest.mark.parametrize("name", TIMED)
def test_the_solver_hits_two_percent_of_the_predicted_latency(name):
    model, table, dense_ms = _matrix_table(name)
    graph = tf_precrop.channel_groups(model)
    probes = probes_of(graph)
    dense_sum = independent_sum(model, probes, _macs_fn)
    cost = latency_cost(graph, table)
    outcome = {}
    for target in (0.5, 0.3):
        budget_ms = target * dense_ms
        if (name, target) in UNREACHABLE:
            smallest = every_assignment(graph, cost).min()
            assert smallest > budget_ms
            for method in ("synexp", "uniform_width"):
                with pytest.raises(BudgetError, match=rf"below the smallest.*\({smallest:.3f} ms"):
                    tf_precrop.plan(model, target, budget="latency", method=method, latency=table, verbose=0)
            outcome[target] = "unreachable"
            continue
        for method in ("synexp", "uniform_width"):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                plan = tf_precrop.plan(model, target, budget="latency", method=method, latency=table, verbose=0)
            misses = [w for w in caught if issubclass(w.category, BudgetWarning)]
            assert plan.latency_ms[0] == pytest.approx(dense_ms, rel=1e-12)
            got = plan.latency_ms[1]
            if (name, target) in MISSES:
                assert len(misses) == 1 and plan.miss == "proven", name
                assert "misses its latency budget" in str(misses[0].message)
                # Brute force agrees: no assignment is in the band, none is closer to it.
                all_ms = every_assignment(graph, cost)
                gap = np.maximum(np.maximum(budget_ms * 0.98 - all_ms, all_ms - budget_ms * 1.02), 0)
                assert gap.min() > 0
                plan_gap = max(budget_ms * 0.98 - got, got - budget_ms * 1.02)
                assert plan_gap == pytest.approx(gap.min(), rel=1e-9)
                outcome[target] = "miss"
            else:
                assert not misses, str(misses[0].message) if misses else ""
                assert plan.miss == ""
                assert abs(got / budget_ms - 1) <= 0.02
                outcome[target] = "hit"
            # The plan's prediction is the independent sum over the built, cropped model.
            after = dense_ms - dense_sum + independent_sum(plan.apply(), probes, _macs_fn)
            assert got == pytest.approx(after, rel=1e-9)
            assert got < dense_ms
    expected = {
        t: "unreachable" if (name, t) in UNREACHABLE else "miss" if (name, t) in MISSES else "hit"
        for t in (0.5, 0.3)
    }
    assert outcome == expected


def _lookup(table):
    return lambda s, p: table.entries[s][",".join(map(str, p))]


def _macs_fn(signature, point):
    """The matrix function itself (bilinear in the widths, so interpolation is exact)."""
    kind, spec = parse_signature(signature)
    return macs_like(kind, spec, point)


def test_an_absolute_ms_target():
    model = model_of("nested_functional")
    graph = tf_precrop.channel_groups(model)
    table = LatencyTable()
    for probe, grids in probes_of(graph):
        for point in table.missing(probe.signature, grids):
            table.add(probe.signature, point, 100 * macs_like(probe.kind, probe.spec, point))
    dense = independent_sum(model, probes_of(graph), _lookup(table))
    table.add_model(fingerprint(graph), model.name, dense + 0.2)
    assert 3.0 < 0.8 * (dense + 0.2)  # "3ms" is a real crop of this table's model
    plan = tf_precrop.plan(model, "3ms", budget="latency", latency=table, verbose=0)
    assert abs(plan.latency_ms[1] / 3.0 - 1) <= 0.02
    assert plan.target == "3ms"
    assert plan.achieved == pytest.approx(plan.latency_ms[1] / (dense + 0.2))
    assert parse_target(" 2.5 MS ") == ("ms", 2.5)


# ------------------------------------------------------------------ 6. bad inputs


@pytest.fixture
def residual_table():
    model = model_of("residual")
    graph = tf_precrop.channel_groups(model)
    table = fill_macs(LatencyTable(), graph)
    table.add_model(fingerprint(graph), model.name, dense_of(model))
    return model, graph, table


def _after(cache_dir):
    assert no_tmp_files(cache_dir) == []


def test_target_below_the_smallest_latency(residual_table, cache_dir):
    model, graph, table = residual_table
    smallest = {g.key: (g.width if g.fixed else g.multiple_of) for g in graph.groups}
    low = dense_of(model) - independent_sum(model, probes_of(graph), _lookup(table)) + independent_sum(
        tf_precrop.rebuild(model, smallest), probes_of(graph), _macs_fn
    )
    with pytest.raises(BudgetError, match=rf"below the smallest.*\({low:.3f} ms") as info:
        tf_precrop.plan(model, 0.01, budget="latency", latency=table, verbose=0)
    assert f"target of {0.01 * dense_of(model):.3f} ms" in str(info.value)
    with pytest.raises(BudgetError, match=r"0\.001 ms.*below"):
        tf_precrop.plan(model, "0.001ms", budget="latency", latency=table, verbose=0)
    _after(cache_dir)


def test_unknown_precision_and_bad_thread_counts(residual_table, cache_dir, monkeypatch):
    model, _, table = residual_table
    fake = FakeTimer().install(monkeypatch)
    with pytest.raises(LatencyError, match="precision='fp16'"):
        tf_precrop.plan(model, 0.5, budget="latency", precision="fp16", verbose=0)
    for bad in (0, 2.0, True):
        with pytest.raises(LatencyError, match=rf"num_threads={bad!r}"):
            tf_precrop.plan(model, 0.5, budget="latency", num_threads=bad, verbose=0)
    assert fake.timed == 0
    _after(cache_dir)


def test_table_with_other_settings(residual_table, cache_dir):
    model, _, table = residual_table
    with pytest.raises(LatencyError, match=r"fp32 at 2 threads.*Expected fp32 at 4 threads.*num_threads=2"):
        tf_precrop.plan(model, 0.5, budget="latency", latency=table, num_threads=4, verbose=0)
    with pytest.raises(LatencyError, match=r"Expected int8 at 2 threads.*precision='fp32'"):
        tf_precrop.plan(model, 0.5, budget="latency", latency=table, precision="int8", verbose=0)
    _after(cache_dir)


def test_table_for_another_model(residual_table, cache_dir, tmp_path):
    model, _, table = residual_table
    path = tmp_path / "residual.json"
    table.save(path)
    other = model_of("separable")
    for given in (table, str(path)):
        with pytest.raises(LatencyError, match=r"built for other layer signatures.*'separable'") as info:
            tf_precrop.plan(other, 0.5, budget="latency", latency=given, verbose=0)
        if isinstance(given, str):
            assert str(path) in str(info.value)
    _after(cache_dir)


def test_corrupt_and_foreign_table_files(residual_table, cache_dir, tmp_path):
    model, _, table = residual_table
    good = json.loads(table.to_json())
    sig = next(iter(good["entries"]))
    point = next(iter(good["entries"][sig]))
    cases = {
        "truncated.json": (table.to_json()[:-40], r"is not valid JSON"),
        "other.json": (json.dumps({"format": "tf_precrop.plan/1"}), r"not a latency table.*tf_precrop.plan/1"),
        "list.json": ("[1, 2]", r"not a latency table.*'list'"),
        "negative.json": (None, r"corrupt.*bad latency -0\.5"),
        "nan.json": (None, r"corrupt.*bad latency nan"),
        "nofield.json": (None, r"corrupt.*KeyError.*num_threads"),
    }
    for name, (text, message) in cases.items():
        if text is None:
            data = json.loads(table.to_json())
            if name == "negative.json":
                data["entries"][sig][point] = -0.5
            elif name == "nan.json":
                data["entries"][sig][point] = float("nan")
            else:
                del data["num_threads"]
            text = json.dumps(data)
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(LatencyError, match=message) as info:
            tf_precrop.plan(model, 0.5, budget="latency", latency=str(path), verbose=0)
        assert str(path) in str(info.value), name
    with pytest.raises(LatencyError, match="not found.*missing.json"):
        tf_precrop.plan(model, 0.5, budget="latency", latency=str(tmp_path / "missing.json"), verbose=0)
    with pytest.raises(LatencyError, match="of type dict"):
        tf_precrop.plan(model, 0.5, budget="latency", latency={}, verbose=0)
    _after(cache_dir)


def test_a_corrupt_cache_file_is_named_and_left_alone(residual_table, cache_dir, monkeypatch):
    model, _, _ = residual_table
    fake = FakeTimer().install(monkeypatch)
    os.makedirs(cache_dir)
    path = cache_path(2, "fp32")
    with open(path, "w") as f:
        f.write('{"format": "tf_precrop.latency/1", "entr')
    with pytest.raises(LatencyError, match=rf"{re.escape(path)} is not valid JSON.*delete it"):
        tf_precrop.plan(model, 0.5, budget="latency", verbose=0)
    assert fake.timed == 0
    assert os.listdir(cache_dir) == [os.path.basename(path)]
    with open(path) as f:
        assert f.read().endswith('"entr')


def test_a_cache_file_with_other_settings_is_refused(residual_table, cache_dir, monkeypatch, tmp_path):
    model, _, _ = residual_table
    fake = FakeTimer().install(monkeypatch)
    path = tmp_path / "mine.json"
    LatencyTable(num_threads=3).save(path)
    from tf_precrop.latency import latency_for

    with pytest.raises(LatencyError, match=r"mine.json holds fp32 times at 3 threads"):
        latency_for(tf_precrop.channel_groups(model), None, cache=str(path), verbose=0)
    assert fake.timed == 0


def test_bad_targets_and_options(residual_table, cache_dir):
    model, _, table = residual_table
    with pytest.raises(BudgetError, match=r"budget='latency'.*target='3ms'"):
        tf_precrop.plan(model, "3ms", budget="macs")
    with pytest.raises(BudgetError, match=r"'3ms'.*target=3"):
        tf_precrop.plan(model, 3, budget="latency", latency=table, verbose=0)
    with pytest.raises(BudgetError, match=r"above 1.*needs preconfig=True; for an absolute latency pass milliseconds as a string \('1.5ms'\)"):
        tf_precrop.plan(model, 1.5, budget="latency", latency=table, verbose=0)
    with pytest.raises(BudgetError, match=r"a string of milliseconds.*target=None"):
        tf_precrop.plan(model, None, budget="latency", latency=table, verbose=0)
    for bad in ("3", "fast", "-1ms", "0ms", "nanms", "infms"):
        with pytest.raises(LatencyError, match=rf"target={bad!r}"):
            tf_precrop.plan(model, bad, budget="latency", latency=table, verbose=0)
    for option in ({"latency": table}, {"num_threads": 4}, {"precision": "int8"}):
        with pytest.raises(TypeError, match=rf"\['{next(iter(option))}'\] are for budget='latency'"):
            tf_precrop.plan(model, 0.5, budget="macs", **option)
    _after(cache_dir)


def test_a_model_without_timed_layers(cache_dir, monkeypatch):
    x = keras.Input((4, 4, 4, 2), name="volume")
    y = L.Conv3D(4, 3, padding="same", name="c1")(x)
    model = keras.Model(x, L.Conv3D(2, 1, name="c2")(y), name="volumes")
    graph = tf_precrop.channel_groups(model)
    assert probes_of(graph) == [] and graph.free_groups
    fake = FakeTimer().install(monkeypatch)
    with pytest.raises(LatencyError, match=r"'volumes' has no layer whose latency depends"):
        tf_precrop.plan(model, 0.5, budget="latency", latency=LatencyTable(), verbose=0)
    with pytest.raises(LatencyError, match=r"'volumes' has no layer whose latency depends"):
        tf_precrop.plan(model, 0.5, budget="latency", verbose=0)
    assert (fake.timed, fake.models) == (0, 0)  # nothing measured, not even the dense model
    assert no_tmp_files(cache_dir) == []


# ----------------------------------------------------------- 7. real measuring


@pytest.mark.slow
def test_measure_table_times_a_tiny_model_in_litert():
    model = tiny_model()
    graph = tf_precrop.channel_groups(model)
    probes = probes_of(graph)
    assert [(p.key, p.kind) for p, _ in probes] == [("c", "conv"), ("gap", "pool"), ("out", "dense")]
    table = measure_table(model, num_threads=1, verbose=0)
    expected = {p.signature: math.prod(len(g) for g in grids) for p, grids in probes}
    assert {s: len(v) for s, v in table.entries.items()} == expected == {
        probes[0][0].signature: 3, probes[1][0].signature: 3, probes[2][0].signature: 3,
    }
    values = [ms for v in table.entries.values() for ms in v.values()]
    assert all(math.isfinite(ms) and ms > 0 for ms in values)
    dense = table.dense_ms(fingerprint(graph))
    assert dense is not None and math.isfinite(dense) and dense > 0
    assert table.models[fingerprint(graph)]["name"] == "tiny"
    cost = latency_cost(graph, table)
    assert cost.total(cost.w0) == pytest.approx(dense, rel=1e-12)
    assert LatencyTable.from_json(table.to_json()).to_dict() == table.to_dict()


# ------------------------------------------- overhead and the two-point calibration
def _filled(model, value):
    graph = tf_precrop.channel_groups(model)
    table = LatencyTable(num_threads=2, precision="fp32")
    for probe, grids in probes_of(graph):
        for point in table.missing(probe.signature, grids):
            table.add(probe.signature, point, value(probe, point))
    return graph, table


def test_overhead_is_subtracted_from_every_point():
    model = model_of("chain")
    graph, table = _filled(model, lambda probe, point: 0.25 + 1e-3 * sum(point))
    plain = latency_cost(graph, table, dense_ms=1.0)
    table.overhead_ms = 0.25
    less = latency_cost(graph, table, dense_ms=1.0)
    n_calls = len(probes_of(graph))
    # Every call loses 0.25 ms; the constant takes it back at the dense widths.
    assert less.layer_sum_dense == pytest.approx(plain.layer_sum_dense - 0.25 * n_calls, rel=1e-12)
    assert less.total(less.w0) == pytest.approx(1.0, rel=1e-12)
    w = less.w0.copy()
    w[np.flatnonzero([not g.fixed for g in graph.groups])] = 2
    assert less.total(w) == pytest.approx(plain.total(w), rel=1e-12)  # a constant per call cancels
    # An overhead above a point's time clips it at 0.
    table.overhead_ms = 10.0
    assert latency_cost(graph, table, dense_ms=1.0).layer_sum_dense == 0.0


def test_two_point_calibration_matches_both_measurements():
    model = model_of("residual")
    graph, table = _filled(model, lambda probe, point: 1e-3 * math.prod(point))
    w0 = graph.widths()
    thin = {k: (w if graph[k].fixed else max(1, w // 2)) for k, w in w0.items()}
    vec = np.array([thin[g.key] for g in graph.groups], dtype=np.float64)
    plain = latency_cost(graph, table, dense_ms=1.0)  # scale 1: the raw layer sums
    s0, s1 = plain.layer_sum_dense, plain.total(vec) - plain.constant
    # Measurements that a scale of 0.9 and a constant of 0.1 ms explain exactly.
    m0, m1 = 0.1 + 0.9 * s0, 0.1 + 0.9 * s1
    table.add_model(fingerprint(graph), model.name, m0, {"widths": thin, "ms": m1})
    cost = latency_cost(graph, table)
    assert cost.scale == pytest.approx(0.9, rel=1e-9)
    assert cost.constant == pytest.approx(0.1, rel=1e-9)
    assert cost.total(cost.w0) == pytest.approx(m0, rel=1e-12)
    assert cost.total(vec) == pytest.approx(m1, rel=1e-12)
    assert sum(cost.per_layer(vec).values()) == pytest.approx(0.9 * s1, rel=1e-12)
    assert LatencyTable.from_json(table.to_json()).thin(fingerprint(graph)) == {"widths": thin, "ms": m1}
    # A thinned copy measured slower than dense is a bad measurement: scale 1.
    table.add_model(fingerprint(graph), model.name, m0, {"widths": thin, "ms": m0 * 1.5})
    assert latency_cost(graph, table).scale == 1.0
