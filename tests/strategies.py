"""Hypothesis strategies: random valid functional CNNs (Keras 3) from tf_precrop's vocabulary.

A model is drawn as a *spec* — plain, printable data (dicts, lists, ints,
strings) — and built by :func:`build_model`. A failing example therefore
prints as a spec that rebuilds the exact model::

    from strategies import build_model
    model = build_model({...the printed spec...})

Vocabulary (2-D images and 1-D sequences): plain / strided convolutions,
depthwise, separable and grouped convolutions, BatchNormalization, activations,
Dropout, residual ``Add`` (identity or projected shortcut), squeeze-excite
``Multiply`` (1x1-conv or Dense + Reshape gates), ``Concatenate`` of branches
(including DenseNet-style identity branches), ``ChannelSplit`` +
``ChannelShuffle`` units (:mod:`tf_precrop.layers`), pooling, nested functional
sub-models, dense heads (global pooling or Flatten, optional hidden layer),
1–2 inputs (a second image/sequence merged after the stem, or a vector merged
before the head) and 1–2 outputs (a second classifier, or a 1x1-conv map).

Spatial sizes are guarded at build time: a stride or a pooling that would take
a side below 2 is skipped, so every spec builds.
"""

import math

from hypothesis import strategies as st

ACTIVATIONS = ("relu", "relu6", "swish", "tanh", "sigmoid", "leaky_relu")
SIMPLE_BLOCKS = ("conv", "bn", "act", "depthwise", "residual")

# ------------------------------------------------------------------ drawing
channels = st.integers(1, 12)
wide_channels = st.sampled_from([8, 16, 24, 32, 40, 48])


@st.composite
def _block(draw, dims, depth=0):
    kinds = [
        "conv", "conv", "grouped", "depthwise", "separable", "bn", "act", "dropout",
        "residual", "se", "concat", "shuffle", "pool",
    ]
    if depth == 0:
        kinds.append("nested")
    kind = draw(st.sampled_from(kinds))
    kernel = st.sampled_from([1, 3]) if dims == 2 else st.sampled_from([1, 3, 5])
    if kind == "conv":
        return (kind, {
            "filters": draw(st.one_of(channels, wide_channels)),
            "kernel": draw(kernel),
            "stride": draw(st.sampled_from([1, 1, 2])),
            "bias": draw(st.booleans()),
            "act": draw(st.sampled_from((None,) + ACTIVATIONS)),
        })
    if kind == "grouped":
        return (kind, {
            "groups": draw(st.sampled_from([2, 3, 4])),
            "per_in": draw(st.integers(1, 4)),
            "per_out": draw(st.integers(1, 4)),
            "kernel": draw(kernel),
        })
    if kind == "depthwise":
        return (kind, {
            "mult": draw(st.sampled_from([1, 1, 2])),
            "kernel": draw(kernel),
            "stride": draw(st.sampled_from([1, 2])),
        })
    if kind == "separable":
        return (kind, {
            "filters": draw(st.one_of(channels, wide_channels)),
            "kernel": draw(kernel),
            "mult": draw(st.sampled_from([1, 2])),
        })
    if kind == "act":
        return (kind, {"name": draw(st.sampled_from(ACTIVATIONS))})
    if kind == "residual":
        return (kind, {
            "mid": draw(channels),
            "project": draw(st.booleans()),
            "bn": draw(st.booleans()),
        })
    if kind == "se":
        return (kind, {"reduce": draw(st.integers(1, 4)), "dense": draw(st.booleans())})
    if kind == "concat":
        branch = st.one_of(
            st.tuples(st.just("conv"), channels, kernel),
            st.just(("identity",)),
            st.tuples(st.just("pool_conv"), channels),
            st.tuples(st.just("sep"), channels),
        )
        return (kind, {"branches": draw(st.lists(branch, min_size=2, max_size=3))})
    if kind == "shuffle":
        return (kind, {"half": draw(st.integers(1, 6)), "units": draw(st.integers(1, 2))})
    if kind == "pool":
        return (kind, {"type": draw(st.sampled_from(["max", "avg"]))})
    if kind == "nested":
        inner = draw(st.lists(_block(dims, depth=1), min_size=1, max_size=3))
        return (kind, {"blocks": inner})
    return (kind, {})


@st.composite
def model_specs(draw, dims=None, max_blocks=5):
    """Specs of random valid functional CNNs; build with :func:`build_model`."""
    dims = draw(st.sampled_from([2, 2, 1])) if dims is None else dims
    sizes = [4, 8, 12, 16] if dims == 2 else [8, 16, 24, 32]
    spec = {
        "dims": dims,
        "size": draw(st.sampled_from(sizes)),
        "in_channels": draw(st.integers(1, 4)),
        "stem": draw(st.one_of(channels, wide_channels)),
        "extra_input": draw(st.sampled_from([None, None, "image", "vector"])),
        "merge": draw(st.sampled_from(["add", "concat"])),
        "blocks": draw(st.lists(_block(dims), min_size=1, max_size=max_blocks)),
        "head": draw(st.sampled_from(["gap", "gmp", "flatten"])),
        "hidden": draw(st.sampled_from([None, None, 8, 16])),
        "classes": draw(st.sampled_from([2, 5, 10])),
        "second_output": draw(st.sampled_from([None, None, "dense", "map"])),
    }
    return spec


# ----------------------------------------------------------------- building
class _Builder:
    def __init__(self, keras, dims):
        self.k = keras
        self.L = keras.layers
        self.dims = dims
        self.count = 0

    def name(self, kind):
        self.count += 1
        return f"{kind}{self.count}"

    # layer constructors by dimensionality
    def conv(self, filters, kernel, stride=1, bias=True, act=None, groups=1, name="conv"):
        cls = self.L.Conv2D if self.dims == 2 else self.L.Conv1D
        return cls(
            filters, kernel, strides=stride, padding="same", use_bias=bias,
            groups=groups, activation=_activation(act), name=self.name(name),
        )

    def depthwise(self, kernel, mult=1, stride=1):
        cls = self.L.DepthwiseConv2D if self.dims == 2 else self.L.DepthwiseConv1D
        return cls(kernel, strides=stride, depth_multiplier=mult, padding="same", name=self.name("dw"))

    def separable(self, filters, kernel, mult=1):
        cls = self.L.SeparableConv2D if self.dims == 2 else self.L.SeparableConv1D
        return cls(filters, kernel, depth_multiplier=mult, padding="same", name=self.name("sep"))

    def pool(self, kind):
        if self.dims == 2:
            cls = self.L.MaxPooling2D if kind == "max" else self.L.AveragePooling2D
        else:
            cls = self.L.MaxPooling1D if kind == "max" else self.L.AveragePooling1D
        return cls(2, name=self.name(f"{kind}pool"))

    def global_pool(self, kind, keepdims=False):
        if self.dims == 2:
            cls = self.L.GlobalAveragePooling2D if kind == "avg" else self.L.GlobalMaxPooling2D
        else:
            cls = self.L.GlobalAveragePooling1D if kind == "avg" else self.L.GlobalMaxPooling1D
        return cls(keepdims=keepdims, name=self.name(f"g{kind}"))

    def activation(self, name):
        if name == "relu6":
            return self.L.ReLU(max_value=6.0, name=self.name("relu6"))
        if name == "leaky_relu":
            return self.L.LeakyReLU(negative_slope=0.1, name=self.name("lrelu"))
        return self.L.Activation(name, name=self.name(name))

    # tensors
    @staticmethod
    def channels(x):
        return int(x.shape[-1])

    @staticmethod
    def side(x):
        return int(x.shape[1])

    def block(self, x, kind, p):
        L = self.L
        c = self.channels(x)
        if kind == "conv":
            stride = p["stride"] if self.side(x) >= 4 else 1
            return self.conv(p["filters"], p["kernel"], stride, p["bias"], p["act"])(x)
        if kind == "grouped":
            g = p["groups"]
            x = self.conv(g * p["per_in"], 1, name="gin")(x)
            return self.conv(g * p["per_out"], p["kernel"], groups=g, name="gconv")(x)
        if kind == "depthwise":
            stride = p["stride"] if self.side(x) >= 4 else 1
            return self.depthwise(p["kernel"], p["mult"], stride)(x)
        if kind == "separable":
            return self.separable(p["filters"], p["kernel"], p["mult"])(x)
        if kind == "bn":
            return L.BatchNormalization(name=self.name("bn"))(x)
        if kind == "act":
            return self.activation(p["name"])(x)
        if kind == "dropout":
            return L.Dropout(0.1, name=self.name("drop"))(x)
        if kind == "residual":
            y = self.conv(p["mid"], 3, name="res_a")(x)
            if p["bn"]:
                y = L.BatchNormalization(name=self.name("res_bn"))(y)
            y = L.ReLU(name=self.name("res_relu"))(y)
            y = self.conv(c, 3, name="res_b")(y)
            shortcut = self.conv(c, 1, name="res_proj")(x) if p["project"] else x
            return L.Add(name=self.name("add"))([shortcut, y])
        if kind == "se":
            hidden = max(1, c // p["reduce"])
            if p["dense"]:
                s = self.global_pool("avg")(x)
                s = L.Dense(hidden, activation="relu", name=self.name("se_fc1"))(s)
                s = L.Dense(c, activation="sigmoid", name=self.name("se_fc2"))(s)
                s = L.Reshape((1,) * self.dims + (c,), name=self.name("se_reshape"))(s)
            else:
                s = self.global_pool("avg", keepdims=True)(x)
                s = self.conv(hidden, 1, act="relu", name="se_reduce")(s)
                s = self.conv(c, 1, act="sigmoid", name="se_expand")(s)
            return L.Multiply(name=self.name("excite"))([x, s])
        if kind == "concat":
            parts = []
            for branch in p["branches"]:
                if branch[0] == "identity":
                    parts.append(x)
                elif branch[0] == "conv":
                    parts.append(self.conv(branch[1], branch[2], name="br")(x))
                elif branch[0] == "sep":
                    parts.append(self.separable(branch[1], 3)(x))
                else:
                    y = self._same_pool(x)
                    parts.append(self.conv(branch[1], 1, name="br_pool")(y))
            return L.Concatenate(name=self.name("cat"))(parts)
        if kind == "shuffle":
            from tf_precrop.layers import ChannelShuffle, ChannelSplit

            half = p["half"]
            x = self.conv(2 * half, 1, name="sh_in")(x)
            for _ in range(p["units"]):
                passed, branch = ChannelSplit(2, name=self.name("split"))(x)
                branch = self.conv(half, 1, act="relu", name="sh_branch")(branch)
                x = L.Concatenate(name=self.name("sh_cat"))([passed, branch])
                x = ChannelShuffle(2, name=self.name("shuffle"))(x)
            return x
        if kind == "pool":
            if self.side(x) < 4:
                return x
            return self.pool(p["type"])(x)
        if kind == "nested":
            inner_in = self.k.Input(tuple(x.shape[1:]), name=self.name("nested_in"))
            y = inner_in
            for inner_kind, inner_p in p["blocks"]:
                y = self.block(y, inner_kind, inner_p)
            sub = self.k.Model(inner_in, y, name=self.name("nested"))
            return sub(x)
        raise ValueError(f"unknown block kind {kind!r}")

    def _same_pool(self, x):
        cls = self.L.MaxPooling2D if self.dims == 2 else self.L.MaxPooling1D
        return cls(3, strides=1, padding="same", name=self.name("brpool"))(x)


def _activation(name):
    if name is None:
        return None
    return {"relu6": "relu6", "leaky_relu": "leaky_relu"}.get(name, name)


def build_model(spec):
    """Builds the Keras 3 functional model described by ``spec``."""
    import keras

    b = _Builder(keras, spec["dims"])
    L = keras.layers
    dims, size = spec["dims"], spec["size"]
    shape = (size,) * dims + (spec["in_channels"],)
    image = keras.Input(shape, name="image")
    inputs = [image]
    x = b.conv(spec["stem"], 3, name="stem")(image)
    extra = spec["extra_input"]
    if extra == "image":
        other = keras.Input((size,) * dims + (2,), name="image2")
        inputs.append(other)
        if spec["merge"] == "add":
            y = b.conv(spec["stem"], 3, name="stem2")(other)
            x = L.Add(name=b.name("merge_add"))([x, y])
        else:
            y = b.conv(4, 1, name="stem2")(other)
            x = L.Concatenate(name=b.name("merge_cat"))([x, y])
    for kind, p in spec["blocks"]:
        x = b.block(x, kind, p)
    features_map = x
    if spec["head"] == "flatten":
        f = L.Flatten(name=b.name("flatten"))(x)
    else:
        f = b.global_pool("avg" if spec["head"] == "gap" else "max")(x)
    if extra == "vector":
        meta = keras.Input((3,), name="meta")
        inputs.append(meta)
        m = L.Dense(6, activation="relu", name=b.name("meta_fc"))(meta)
        f = L.Concatenate(name=b.name("join"))([f, m])
    if spec["hidden"]:
        f = L.Dense(spec["hidden"], activation="relu", name=b.name("hidden"))(f)
    outputs = [L.Dense(spec["classes"], name="logits")(f)]
    if spec["second_output"] == "dense":
        outputs.append(L.Dense(3, name="aux")(f))
    elif spec["second_output"] == "map":
        outputs.append(b.conv(2, 1, name="map_out")(features_map))
    return keras.Model(
        inputs[0] if len(inputs) == 1 else inputs,
        outputs[0] if len(outputs) == 1 else outputs,
        name="random_cnn",
    )


def sample_inputs(model, n=2, seed=0):
    """Seeded standard-normal inputs for every model input (list if several)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((n, *t.shape[1:])).astype("float32") for t in model.inputs]
    return arrays[0] if len(arrays) == 1 else arrays


#: Targets, budgets and methods the property draws.
targets = st.floats(0.2, 0.9, allow_nan=False)
budgets = st.sampled_from(["params", "macs"])
methods = st.sampled_from(["synexp", "uniform_width", "magnitude", "random"])


# ----------------------------------------------------------------- property
def snapshot(model):
    """Config and weight bytes of ``model`` (for "bitwise untouched" checks)."""
    import json

    return (
        json.dumps(model.get_config(), sort_keys=True, default=repr),
        [w.tobytes() for w in model.get_weights()],
    )


def min_fraction(model, budget):
    """Smallest cost fraction the channel graph allows (every free group at its minimum)."""
    import tf_precrop
    from tf_precrop.widths import WidthProblem

    problem = WidthProblem(tf_precrop.channel_groups(model), budget=budget)
    return problem.min_cost() / problem.dense_cost


def width_costs(problem, limit=None):
    """Brute force: the cost of every assignment of the free widths, or None.

    Every free group ranges over the multiples of its ``multiple`` up to its
    current width (PreCrop's bounds; ``round_to`` is ignored, so this is
    channel granularity). Returns None, without enumerating, when there are
    more than ``limit`` assignments.
    """
    import itertools

    import numpy as np

    free = np.flatnonzero(problem.free)
    ranges = [range(int(problem.multiple[i]), int(problem.w0[i]) + 1, int(problem.multiple[i])) for i in free]
    if limit is not None and math.prod(len(r) for r in ranges) > limit:
        return None
    costs = []
    w = problem.w0.copy()
    for combo in itertools.product(*ranges):
        w[free] = combo
        costs.append(problem.cost(w))
    return np.array(costs)


def feasible_widths(problem, budget, tolerance=0.01, limit=None):
    """Can any assignment of the free widths cost within ``tolerance`` of ``budget``?

    Brute force over :func:`width_costs`; None when there are more than
    ``limit`` assignments.
    """
    import numpy as np

    costs = width_costs(problem, limit)
    return None if costs is None else bool(np.any(np.abs(costs - budget) <= tolerance * budget))


def check_crop_property(spec, target, budget, method, export_dir=None):
    """The property of tests/test_property.py for one drawn example.

    ``target`` is raised to just above the smallest reachable fraction when it
    is below it (a target below the minimum is a bad input, tested in
    tests/test_bad_inputs.py). Returns a dict describing the example; raises
    ``AssertionError`` (or the library's exception) when the property fails.
    """
    import math
    import os

    import numpy as np

    import tf_precrop

    model = build_model(spec)
    before = snapshot(model)
    lowest = min_fraction(model, budget)
    effective = target if target >= lowest * 1.05 else min(1.0, math.ceil(lowest * 1.05 * 1e4) / 1e4)
    import warnings

    from tf_precrop.errors import BudgetWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BudgetWarning)
        plan = tf_precrop.plan(model, effective, budget=budget, method=method, seed=0, verbose=0)
    warned = [w for w in caught if issubclass(w.category, BudgetWarning)]
    assert bool(warned) == (not plan.within_tolerance), [str(w.message) for w in warned]
    new = plan.apply()
    assert [tuple(t.shape) for t in new.inputs] == [tuple(t.shape) for t in model.inputs]
    assert [tuple(t.shape) for t in new.outputs] == [tuple(t.shape) for t in model.outputs]
    prof = tf_precrop.profile(new)
    assert plan.params[0] == model.count_params(), (plan.params, model.count_params())
    assert prof.params == plan.params[1] == new.count_params(), (
        prof.params, plan.params, new.count_params())
    assert prof.macs == plan.macs[1], (prof.macs, plan.macs)
    assert plan.macs[0] == tf_precrop.profile(model).macs
    cost = plan.params[1] if budget == "params" else plan.macs[1]
    dense = plan.params[0] if budget == "params" else plan.macs[0]
    assert abs(plan.budget_value - effective * dense) <= 1e-6 * dense + 1
    if plan.within_tolerance:
        assert plan.miss == ""
        assert abs(cost - plan.budget_value) <= 0.01 * plan.budget_value, (cost, plan.budget_value)
    else:
        # A miss is never silent: it is "proven" (every assignment tried) or
        # "searched"; a proven miss is checked by brute force here.
        assert plan.miss in ("proven", "searched"), plan.miss
        if plan.miss == "proven":
            from tf_precrop.widths import WidthProblem

            problem = WidthProblem(tf_precrop.channel_groups(model), budget=budget)
            assert feasible_widths(problem, plan.budget_value, limit=20_000) is not True
    outputs = new(sample_inputs(new), training=False)
    for out in outputs if isinstance(outputs, (list, tuple)) else [outputs]:
        assert np.all(np.isfinite(np.asarray(out)))
    exported = None
    if export_dir is not None:
        path = os.path.join(export_dir, "random_cnn.tflite")
        exported = tf_precrop.export_tflite(new, path)
        assert exported.relative_error is not None and exported.relative_error <= 1e-4
    assert snapshot(model) == before, "the original model changed"
    return {
        "target": effective,
        "achieved": cost / dense,
        "within_tolerance": plan.within_tolerance,
        "exported": exported is not None,
    }
