"""Latency probes: what to time for one layer call, and the micro-model that times it.

A layer's rule names its *latency kind* (:attr:`LayerRule.latency_kind
<tf_precrop.graph.rule_base.LayerRule.latency_kind>`); this module turns a call
of that kind into a :class:`Probe`: a JSON-able *signature* (the kind and
everything but the channel counts that sets its cost: spatial size, kernel,
strides, padding, op) and the width expressions of its one or two timed axes
(input and output channels; one axis for depthwise, element-wise, pooling,
concatenation and unary ops). :func:`micro_function` builds the single-layer
``tf.function`` that the measuring code converts to TFLite and times at a
given width.

Kinds and what they time:

========== ============================================= ====
kind       micro-model                                    axes
========== ============================================= ====
conv       Conv1D/2D (ungrouped) + bias                   in, out
depthwise  DepthwiseConv2D + bias                         in
separable  SeparableConv2D (depthwise, pointwise) + bias  in, out
dense      Dense on a ``(1, …, c_in)`` input + bias       in, out
elementwise Add/Subtract/Multiply/Maximum/Minimum/Average out
concat     Concatenate of equal parts on the channels     out
pool       Max/Average pooling, 1-D/2-D, or global        in
unary      a standalone BatchNormalization or activation  in
========== ============================================= ====

A BatchNormalization or a ReLU/ReLU6 that directly follows a conv, dense,
depthwise, separable or element-wise layer (or such a chain) is fused by the
TFLite converter and costs nothing of its own, so it gets no probe. Layers
without a probe (reshapes, padding, dropout, custom layers whose rule names no
kind, grouped or transposed convs, 3-D ops) are not timed: their cost is part of
the per-model constant (:class:`~tf_precrop.latency.cost.LatencyCost`).
"""

import dataclasses
import json

from tf_precrop.graph.expr import LinearExpr

#: Kinds with two timed axes (input and output channels); the rest have one.
TWO_AXES = ("conv", "separable", "dense")
#: Every kind a rule may name.
KINDS = ("conv", "depthwise", "separable", "dense", "elementwise", "concat", "pool", "unary")
#: Kinds that fuse a following BatchNormalization or ReLU/ReLU6.
_FUSES = ("conv", "depthwise", "separable", "dense", "elementwise")
_FUSED_ACTIVATIONS = ("linear", "relu", "relu6")
_UNARY_ACTIVATIONS = (
    "relu", "relu6", "sigmoid", "tanh", "swish", "silu", "hard_swish", "hard_sigmoid", "elu",
    "gelu", "softplus", "leaky_relu",
)
_BINARY_OPS = ("Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average")


@dataclasses.dataclass(frozen=True)
class Probe:
    """What one layer call costs, as a function of one or two widths.

    Attributes:
        key: the layer call's key in the graph.
        kind: one of :data:`KINDS`.
        spec: the JSON-able settings besides the widths (spatial shape, kernel...).
        axes: the width expressions of the timed axes (one or two
            :class:`~tf_precrop.graph.expr.LinearExpr`).
    """

    key: str
    kind: str
    spec: dict
    axes: tuple

    @property
    def signature(self):
        """The table key: the kind and the settings, as canonical JSON."""
        return signature_of(self.kind, self.spec)


def signature_of(kind, spec):
    """``"kind:{sorted JSON of spec}"`` — stable across runs and machines."""
    return f"{kind}:{json.dumps(spec, sort_keys=True, separators=(',', ':'))}"


def parse_signature(signature):
    """``(kind, spec)`` of a :func:`signature_of` string (ValueError if malformed)."""
    kind, sep, rest = str(signature).partition(":")
    if not sep or kind not in KINDS:
        raise ValueError(
            f"Malformed latency signature. Expected 'kind:{{json}}' with kind in {KINDS}. "
            f"Received: {signature!r}"
        )
    spec = json.loads(rest)
    if not isinstance(spec, dict):
        raise ValueError(f"Malformed latency signature spec. Received: {signature!r}")
    return kind, spec


def _ints(value, rank):
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return [int(value)] * rank


def _activation_name(config):
    act = config.get("activation", "linear")
    if isinstance(act, dict):  # a serialized activation
        act = act.get("config", {}).get("name", act.get("class_name", "custom"))
    return str(act).lower()


def probe_of(call, input_fuses=False):
    """The :class:`Probe` of one layer call, or None when it is not timed.

    Args:
        call: a :class:`~tf_precrop.graph.builder.LayerCall` (widths already
            expressed in group keys).
        input_fuses: whether the call's input comes straight from a layer
            that a BN or ReLU/ReLU6 fuses into (see :func:`output_fuses`).
    """
    kind = getattr(call.rule, "latency_kind", None)
    if kind is None or not call.inputs or not isinstance(call.inputs[0], LinearExpr):
        return None
    spatial = [int(d) if d is not None else None for d in call.in_shapes[0][:-1]]
    if any(d is None for d in spatial):
        return None
    cfg = call.config
    if kind == "conv" and "depthwise" in call.meta:
        kind = "depthwise"  # a Conv2D(groups=channels) is timed as the depthwise conv it is
    builder = _SPECS.get(kind)
    if builder is None:
        return None
    made = builder(call, cfg, spatial, input_fuses)
    if made is None:
        return None
    spec, axes = made
    return Probe(key=call.key, kind=kind, spec=spec, axes=tuple(axes))


def _conv(call, cfg, spatial, input_fuses):
    rank = len(spatial)
    groups = int(cfg.get("groups", 1) or 1)
    if rank not in (1, 2) or "depthwise" in call.meta:
        return None if "depthwise" not in call.meta else _depthwise(call, cfg, spatial, input_fuses)
    if groups != 1 or cfg.get("padding") == "causal" or getattr(call.rule, "transpose", False):
        return None
    spec = {
        "rank": rank,
        "spatial": spatial,
        "kernel": _ints(cfg.get("kernel_size", 1), rank),
        "strides": _ints(cfg.get("strides", 1), rank),
        "dilation": _ints(cfg.get("dilation_rate", 1), rank),
        "padding": str(cfg.get("padding", "valid")),
    }
    return spec, [call.inputs[0], call.outputs[0]]


def _depthwise(call, cfg, spatial, input_fuses):
    if len(spatial) != 2:
        return None
    mult = int(cfg.get("depth_multiplier", 1) or 1)
    if "depthwise" in call.meta:  # a Conv2D(groups=channels)
        mult = int(call.meta["depthwise"])
        if mult != call.meta["depthwise"]:
            return None
    spec = {
        "spatial": spatial,
        "kernel": _ints(cfg.get("kernel_size", 1), 2),
        "strides": _ints(cfg.get("strides", 1), 2),
        "dilation": _ints(cfg.get("dilation_rate", 1), 2),
        "padding": str(cfg.get("padding", "valid")),
        "multiplier": mult,
    }
    return spec, [call.inputs[0]]


def _separable(call, cfg, spatial, input_fuses):
    if len(spatial) != 2:
        return None
    spec, _ = _depthwise(call, cfg, spatial, input_fuses)
    return spec, [call.inputs[0], call.outputs[0]]


def _dense(call, cfg, spatial, input_fuses):
    return {"lead": spatial}, [call.inputs[0], call.outputs[0]]


def _elementwise(call, cfg, spatial, input_fuses):
    op = call.class_name if call.class_name in _BINARY_OPS else None
    if op is None or not call.outputs or not isinstance(call.outputs[0], LinearExpr):
        return None
    shapes = {tuple(s) for s in call.in_shapes}
    if len(shapes) != 1 or len(call.inputs) < 2:
        return None  # broadcasting inputs: not timed
    return {"op": op, "inputs": len(call.inputs), "spatial": spatial}, [call.outputs[0]]


def _concat(call, cfg, spatial, input_fuses):
    if not call.outputs or not isinstance(call.outputs[0], LinearExpr):
        return None
    rank = len(call.in_shapes[0]) + 1
    if int(cfg.get("axis", -1)) % rank != rank - 1:
        return None  # a spatial concatenation: not the channel concat the micro-model times
    if len({tuple(s[:-1]) for s in call.in_shapes}) != 1:
        return None
    return {"inputs": len(call.inputs), "spatial": spatial}, [call.outputs[0]]


def _pool(call, cfg, spatial, input_fuses):
    name = call.class_name
    rank = len(spatial)
    if rank not in (1, 2):
        return None
    mode = "max" if "Max" in name else "avg"
    if name.startswith("Global"):
        return {"mode": mode, "global": True, "spatial": spatial}, [call.inputs[0]]
    pool = _ints(cfg.get("pool_size", 2), rank)
    strides = cfg.get("strides")
    spec = {
        "mode": mode,
        "global": False,
        "spatial": spatial,
        "pool": pool,
        "strides": _ints(strides, rank) if strides is not None else pool,
        "padding": str(cfg.get("padding", "valid")),
    }
    return spec, [call.inputs[0]]


def _unary(call, cfg, spatial, input_fuses):
    name = call.class_name
    if "BatchNormalization" in name:
        op = "batch_norm"
    elif name == "ReLU":
        max_value = cfg.get("max_value")
        op = "relu6" if max_value is not None and float(max_value) == 6.0 else "relu"
        if cfg.get("negative_slope") or cfg.get("threshold"):
            op = "leaky_relu"
    elif name == "Activation":
        op = _activation_name(cfg)
    else:
        op = name.lower()
    if op not in _UNARY_ACTIVATIONS and op != "batch_norm":
        return None
    if input_fuses and op in ("batch_norm",) + _FUSED_ACTIVATIONS:
        return None  # fused into the producing conv/dense/add
    return {"op": op, "spatial": spatial}, [call.inputs[0]]


_SPECS = {
    "conv": _conv,
    "depthwise": _depthwise,
    "separable": _separable,
    "dense": _dense,
    "elementwise": _elementwise,
    "concat": _concat,
    "pool": _pool,
    "unary": _unary,
}


def output_fuses(call, input_fuses):
    """Whether a BN or ReLU/ReLU6 right after this call is fused by the converter.

    True after a conv, dense, depthwise, separable or element-wise layer, and
    after a BatchNormalization that itself was fused (conv → BN → ReLU folds
    into one op).
    """
    kind = getattr(call.rule, "latency_kind", None)
    if kind in _FUSES:
        return True
    return kind == "unary" and input_fuses and "BatchNormalization" in call.class_name


# ------------------------------------------------------------------ micro-models
def micro_shapes(kind, spec, widths):
    """Input shapes ``[(1, ..., c)]`` of the micro-model at ``widths`` (one per axis)."""
    c_in = int(widths[0])
    spatial = list(spec.get("spatial", spec.get("lead", [])))
    if kind == "elementwise":
        return [tuple([1] + spatial + [c_in])] * int(spec["inputs"])
    if kind == "concat":
        n = int(spec["inputs"])
        parts = [c_in // n + (1 if i < c_in % n else 0) for i in range(n)]
        return [tuple([1] + spatial + [max(p, 1)]) for p in parts]
    return [tuple([1] + spatial + [c_in])]


def micro_function(kind, spec, widths, seed=0):
    """A ``tf.function`` with one timed layer at the given widths, and its input specs.

    The weights are seeded random constants (the converter folds them); the
    op is what the TFLite converter emits for the Keras layer. Returns
    ``(function, [tf.TensorSpec])``.
    """
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    shapes = micro_shapes(kind, spec, widths)
    specs = [tf.TensorSpec(s, tf.float32) for s in shapes]
    c_in = shapes[0][-1]
    c_out = int(widths[1]) if len(widths) > 1 else c_in

    def const(*shape):
        return tf.constant(rng.standard_normal(shape).astype("float32") * 0.1)

    if kind == "conv":
        kernel = const(*spec["kernel"], c_in, c_out)
        bias = const(c_out)
        pad = spec["padding"].upper()

        def body(x):
            if spec["rank"] == 1:
                y = tf.nn.conv1d(x, kernel, spec["strides"][0], pad, dilations=spec["dilation"][0])
            else:
                y = tf.nn.conv2d(x, kernel, spec["strides"], pad, dilations=spec["dilation"])
            return tf.nn.bias_add(y, bias)
    elif kind in ("depthwise", "separable"):
        mult = int(spec["multiplier"])
        dw = const(*spec["kernel"], c_in, mult)
        strides = [1, *spec["strides"], 1]
        pad = spec["padding"].upper()
        if kind == "depthwise":
            bias = const(c_in * mult)

            def body(x):
                y = tf.nn.depthwise_conv2d(x, dw, strides, pad, dilations=spec["dilation"])
                return tf.nn.bias_add(y, bias)
        else:
            pw = const(1, 1, c_in * mult, c_out)
            bias = const(c_out)

            def body(x):
                y = tf.nn.depthwise_conv2d(x, dw, strides, pad, dilations=spec["dilation"])
                return tf.nn.bias_add(tf.nn.conv2d(y, pw, 1, "VALID"), bias)
    elif kind == "dense":
        kernel = const(c_in, c_out)
        bias = const(c_out)

        def body(x):
            if len(shapes[0]) == 2:
                return tf.matmul(x, kernel) + bias
            return tf.tensordot(x, kernel, 1) + bias
    elif kind == "elementwise":
        op = spec["op"]

        def body(*xs):
            y = xs[0]
            for x in xs[1:]:
                if op in ("Add", "Average"):
                    y = y + x
                elif op == "Subtract":
                    y = y - x
                elif op == "Multiply":
                    y = y * x
                elif op == "Maximum":
                    y = tf.maximum(y, x)
                else:
                    y = tf.minimum(y, x)
            return y * (1.0 / len(xs)) if op == "Average" else y
    elif kind == "concat":

        def body(*xs):
            return tf.concat(xs, axis=-1)
    elif kind == "pool":
        rank = len(spec["spatial"])
        if spec["global"]:
            axes = list(range(1, rank + 1))

            def body(x):
                return tf.reduce_max(x, axes) if spec["mode"] == "max" else tf.reduce_mean(x, axes)
        else:
            fn = tf.nn.max_pool if spec["mode"] == "max" else tf.nn.avg_pool

            def body(x):
                return fn(x, spec["pool"], spec["strides"], spec["padding"].upper())
    elif kind == "unary":
        op = spec["op"]
        scale, shift = const(c_in), const(c_in)
        ops = {
            "batch_norm": lambda x: x * scale + shift,
            "relu": tf.nn.relu,
            "relu6": tf.nn.relu6,
            "sigmoid": tf.sigmoid,
            "tanh": tf.tanh,
            "swish": tf.nn.silu,
            "silu": tf.nn.silu,
            "hard_swish": lambda x: x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0),
            "hard_sigmoid": lambda x: tf.nn.relu6(x + 3.0) * (1.0 / 6.0),
            "elu": tf.nn.elu,
            "gelu": tf.nn.gelu,
            "softplus": tf.nn.softplus,
            "leaky_relu": tf.nn.leaky_relu,
        }
        body = ops[op]
    else:  # pragma: no cover - KINDS is closed
        raise ValueError(f"Unknown latency kind {kind!r}")
    function = tf.function(body, input_signature=specs, autograph=False)
    return function, specs


def grid_axis(high, fixed=False):
    """The grid widths of one axis: its own width when fixed, else the powers
    of 4 below ``high``, and ``high`` itself.

    Bilinear interpolation is exact for costs of the form ``a + b·x + c·y +
    d·x·y`` (a conv's MACs and its input/output traffic), so a coarse grid
    suffices; ``high`` (the largest width the plan may choose) is a point, so
    the dense width is measured, not interpolated.

    >>> grid_axis(3, fixed=True)
    [3]
    >>> grid_axis(96)
    [1, 4, 16, 64, 96]
    >>> grid_axis(64)
    [1, 4, 16, 64]
    """
    high = int(high)
    if fixed:
        return [high]
    points, p = [], 1
    while p < high:
        points.append(p)
        p *= 4
    return points + [high]
