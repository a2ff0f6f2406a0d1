"""Rules of the layers that compute: pass-through, element-wise, fixed, conv, dense, norms.

Each class is a :class:`~tf_precrop.graph.rule_base.LayerRule`; the registry
(:mod:`tf_precrop.graph.rules`) maps layer classes to instances of them.
"""

from fractions import Fraction

import numpy as np

from tf_precrop.errors import UnsupportedLayerError
from tf_precrop.graph.expr import Poly
from tf_precrop.graph.rule_base import (
    LayerRule,
    _check_channels_last,
    _grouped_in_rows,
    _prod,
    _reject_grouped,
    _single_input,
    _slice_grouped,
    _static,
    channel_rows,
    channelwise_slice,
    is_identity,
    weight_names,
)


class PassThroughRule(LayerRule):
    """Channels unchanged (BN, activations, pooling, dropout, padding, ...)."""

    name = "passthrough"

    def propagate(self, call, ctx):
        expr = _single_input(call)
        _check_channels_last(call)
        axis = call.config.get("axis")
        if call.class_name in _AXIS_CHECKED and axis is not None:
            rank = len(call.in_shapes[0]) + 1
            axes = axis if isinstance(axis, (list, tuple)) else [axis]
            if (rank - 1) not in [a % rank for a in axes]:
                raise UnsupportedLayerError(
                    f"Layer '{call.key}' ({call.class_name}) normalises over "
                    f"axis={axis}, not the channel axis. Expected axis=-1. "
                    f"Received: axis={axis}"
                )
        return [expr] * max(1, len(call.out_shapes))

    def map_channels(self, call, arrays, ctx):
        return [arrays[0]] * max(1, len(call.out_shapes))

    def slice_weights(self, call, weights, keep_in, keep_out):
        # Per-channel weights (BN, PReLU, LayerScale, LayerNorm...) keep the kept channels.
        return channelwise_slice(call, weights, keep_in[0])


_AXIS_CHECKED = {"BatchNormalization", "LayerNormalization", "GroupNormalization"}


class ActivationRule(PassThroughRule):
    """Activation layers (ReLU, PReLU, Softmax, ...): SynFlow's copy drops them."""

    name = "activation"
    linearization = "identity"
    latency_kind = "unary"


class BatchNormRule(PassThroughRule):
    """BatchNormalization: SynFlow folds it to a per-channel affine map."""

    name = "batch_norm"
    linearization = "batch_norm"
    latency_kind = "unary"


class CentredNormRule(PassThroughRule):
    """LayerNormalization (and subclasses): SynFlow keeps only its affine part."""

    name = "centred_norm"
    linearization = "affine"


class FixedRule(LayerRule):
    """Keeps the layer as it is: all its input and output widths are fixed."""

    name = "fixed"

    def propagate(self, call, ctx):
        for expr in call.inputs:
            ctx.fix(getattr(expr, "expr", expr), f"input of fixed layer '{call.key}'")
        return [
            ctx.new_fixed(shape[-1] if shape else 1, call.key, f"output of fixed layer '{call.key}'")
            for shape in call.out_shapes
        ]

    def params(self, call, ctx):
        return Poly.const(call.layer.count_params())

    def map_channels(self, call, arrays, ctx):
        for array in arrays:
            ctx.pin(call, array)
        return [ctx.fresh(call, i) for i in range(len(call.out_shapes))]

    def slice_weights(self, call, weights, keep_in, keep_out):
        sides = (("input", keep_in, call.in_shapes), ("output", keep_out, call.out_shapes))
        for side, keeps, shapes in sides:
            for keep, shape in zip(keeps, shapes, strict=False):
                width = shape[-1] if shape else 1
                if keep is not None and not is_identity(keep, width):
                    raise UnsupportedLayerError(
                        f"Layer '{call.key}' ({call.class_name}) is fixed, yet the chosen "
                        f"channels change its {side}. Expected all {width} channels kept "
                        f"in order. Received: keep={list(keep)[:8]}"
                    )
        return weights


class ElementwiseRule(LayerRule):
    """Add/Subtract/Multiply/...: all inputs tied to one width, output the same.

    An input whose channel axis is 1 while the others' is larger broadcasts: it
    is fixed at 1 instead of tied.
    """

    name = "elementwise"
    latency_kind = "elementwise"

    def __init__(self, homogeneous=True):
        self.homogeneous = homogeneous

    def propagate(self, call, ctx):
        exprs = [e for e in call.inputs]
        for e in exprs:
            _reject_grouped(call, e)
        widths = [ctx.original_width(e) for e in exprs]
        full = max(widths)
        tied = [e for e, w in zip(exprs, widths, strict=True) if w == full]
        for e, w in zip(exprs, widths, strict=True):
            if w != full:
                if w != 1:
                    raise UnsupportedLayerError(
                        f"Layer '{call.key}' ({call.class_name}) combines inputs "
                        f"of {widths} channels. Expected equal channel counts (or 1 "
                        f"to broadcast). Received: channels={widths}"
                    )
                ctx.fix(e, f"broadcast input of '{call.key}'")
        for e in tied[1:]:
            ctx.tie(tied[0], e, call.key)
        return [tied[0]] * max(1, len(call.out_shapes))

    def map_channels(self, call, arrays, ctx):
        widths = [s[-1] if s else 1 for s in call.in_shapes]
        tied = [a for a, w in zip(arrays, widths, strict=True) if w == max(widths)]
        ctx.union(call, tied)  # channel i of every full-width input is one channel
        return [tied[0]] * max(1, len(call.out_shapes))


class ConvRule(LayerRule):
    """Conv1D/2D/3D and their transposes: ``filters`` sets the output width.

    Args:
        transpose: a transposed convolution (MACs per input position).
        width_key: the config entry that sets the output width.
        pointwise_as_dense: SynFlow may run a 1x1, stride-1, ungrouped 2-D
            instance as a ``Dense`` on the channel axis (the same map, a
            cheaper gradient). Only for classes whose ``call`` is exactly
            ``Conv2D``'s: off by default for custom subclasses.
    """

    name = "conv"
    kernels = ("kernel",)
    latency_kind = "conv"

    def __init__(self, transpose=False, width_key="filters", pointwise_as_dense=False):
        self.transpose = transpose
        self.width_key = width_key
        self.pointwise_as_dense = pointwise_as_dense

    def propagate(self, call, ctx):
        expr = _single_input(call)
        _check_channels_last(call)
        groups = int(call.config.get("groups", 1) or 1)
        if groups > 1 and groups == ctx.original_width(expr):
            # A depthwise conv written as Conv2D(groups=channels): output follows input.
            call.meta["depthwise"] = Fraction(int(call.config[self.width_key]), groups)
            return [expr.scale(call.meta["depthwise"])]
        out = ctx.new_var(call.out_shapes[0][-1], call.key)
        if groups > 1:
            ctx.require_multiple(expr, groups, call.key)
            ctx.require_multiple(out, groups, call.key)
        return [out]

    def kernel(self, call, ctx):
        k = _prod(call.layer.kernel.shape[:-2])
        if "depthwise" in call.meta:
            return Poly.linear(call.outputs[0], k)
        groups = int(call.config.get("groups", 1) or 1)
        return Poly.product(call.inputs[0], call.outputs[0], Fraction(k, groups))

    def params(self, call, ctx):
        poly = self.kernel(call, ctx)
        if call.config.get("use_bias", True):
            poly = poly + Poly.linear(call.outputs[0])
        return poly

    def macs(self, call, ctx):
        shape = call.in_shapes[0] if self.transpose else call.out_shapes[0]
        spatial = _prod(_static(call, shape[:-1], "spatial"))
        return self.kernel(call, ctx).scaled(spatial)

    def rebuild(self, layer, config, call, width):
        config = {**config, self.width_key: width(call.outputs[0])}
        if "depthwise" in call.meta:
            config["groups"] = width(call.inputs[0])
        return config

    def _groups(self, call):
        return int(call.config.get("groups", 1) or 1)

    def map_channels(self, call, arrays, ctx):
        if "depthwise" in call.meta:
            return [ctx.repeat(call, arrays[0], call.meta["depthwise"])]
        out = ctx.fresh(call, 0)
        groups = self._groups(call)
        if groups > 1:  # each conv group keeps the same number of channels
            ctx.blocks(call, ("in", 0), arrays[0], groups)
            ctx.blocks(call, ("out", 0), out, groups)
        return [out]

    def channel_weights(self, call, weights):
        outs, ins = [], []
        in_axis, out_axis = (-1, -2) if self.transpose else (-2, -1)
        for name, w in zip(weight_names(call.layer), weights, strict=True):
            if name == "bias":
                outs.append(channel_rows(w, 0))
            elif name == "kernel":
                outs.append(channel_rows(w, out_axis))
                if "depthwise" in call.meta:
                    continue
                groups = self._groups(call)
                ins.append(channel_rows(w, in_axis) if groups == 1 else _grouped_in_rows(w, groups))
        return {("out", 0): outs, ("in", 0): ins}

    def slice_weights(self, call, weights, keep_in, keep_out):
        ki, ko = keep_in[0], keep_out[0]
        result = []
        for name, w in zip(weight_names(call.layer), weights, strict=True):
            if name == "bias":
                result.append(np.take(w, ko, axis=0))
            elif name != "kernel":
                raise UnsupportedLayerError(
                    f"Layer '{call.key}' ({call.class_name}) holds a weight {name!r} that "
                    f"the '{self.name}' rule cannot slice. Expected only `kernel` and "
                    "`bias` (register a rule with its own `slice_weights`). Received: "
                    f"weights={weight_names(call.layer)}"
                )
            elif "depthwise" in call.meta:
                result.append(np.take(w, ko, axis=-1))
            elif self.transpose:
                result.append(np.take(np.take(w, ko, axis=-2), ki, axis=-1))
            elif self._groups(call) == 1:
                result.append(np.take(np.take(w, ki, axis=-2), ko, axis=-1))
            else:
                result.append(_slice_grouped(call, w, ki, ko, self._groups(call)))
        return result


class DenseRule(ConvRule):
    """Dense: ``units`` sets the output width; leading axes multiply the MACs."""

    name = "dense"
    latency_kind = "dense"

    def __init__(self):
        super().__init__(width_key="units")

    def kernel(self, call, ctx):
        return Poly.product(call.inputs[0], call.outputs[0])

    def macs(self, call, ctx):
        lead = _prod(_static(call, call.in_shapes[0][:-1], "input"))
        return self.kernel(call, ctx).scaled(lead)


def _depthwise_kernel(layer):
    # Keras 3 names a DepthwiseConv kernel `kernel`; tf_keras `depthwise_kernel`.
    kernel = getattr(layer, "depthwise_kernel", None)
    return kernel if kernel is not None else layer.kernel


class DepthwiseRule(LayerRule):
    """DepthwiseConv: output width = input width × depth_multiplier."""

    name = "depthwise"
    kernels = ("depthwise_kernel",)
    latency_kind = "depthwise"

    def propagate(self, call, ctx):
        expr = _single_input(call)
        _check_channels_last(call)
        return [expr.scale(int(call.config.get("depth_multiplier", 1)))]

    def kernel(self, call, ctx):
        k = _prod(_depthwise_kernel(call.layer).shape[:-2])
        return Poly.linear(call.outputs[0], k)

    # Bias on the output channels, MACs per output position: as for a conv.
    transpose = False
    params = ConvRule.params
    macs = ConvRule.macs

    def map_channels(self, call, arrays, ctx):
        return [ctx.repeat(call, arrays[0], int(call.config.get("depth_multiplier", 1)))]

    def channel_weights(self, call, weights):
        outs = []
        for name, w in zip(weight_names(call.layer), weights, strict=True):
            if name == "bias":
                outs.append(channel_rows(w, 0))
            else:  # (*k, C, multiplier): output channel c·multiplier + j
                moved = np.moveaxis(np.asarray(w), (-2, -1), (0, 1))
                outs.append(moved.reshape(moved.shape[0] * moved.shape[1], -1))
        return {("out", 0): outs}

    def slice_weights(self, call, weights, keep_in, keep_out):
        return [
            np.take(w, keep_out[0], axis=0) if name == "bias" else np.take(w, keep_in[0], axis=-2)
            for name, w in zip(weight_names(call.layer), weights, strict=True)
        ]


class SeparableRule(ConvRule):
    """SeparableConv: depthwise (× depth_multiplier) then pointwise to ``filters``."""

    name = "separable"
    kernels = ("depthwise_kernel", "pointwise_kernel")
    latency_kind = "separable"

    def kernel(self, call, ctx):
        dm = int(call.config.get("depth_multiplier", 1))
        k = _prod(_depthwise_kernel(call.layer).shape[:-2])
        return Poly.linear(call.inputs[0], k * dm) + Poly.product(
            call.inputs[0], call.outputs[0], dm
        )

    def map_channels(self, call, arrays, ctx):
        return [ctx.fresh(call, 0)]

    def channel_weights(self, call, weights):
        dm = int(call.config.get("depth_multiplier", 1))
        outs, ins = [], []
        for name, w in zip(weight_names(call.layer), weights, strict=True):
            if name == "bias":
                outs.append(channel_rows(w, 0))
            elif name == "pointwise_kernel":
                outs.append(channel_rows(w, -1))
                rows = channel_rows(w, -2)  # one row per depthwise output c·dm + j
                ins.append(rows.reshape(rows.shape[0] // dm, -1))
            else:
                ins.append(channel_rows(w, -2))
        return {("out", 0): outs, ("in", 0): ins}

    def slice_weights(self, call, weights, keep_in, keep_out):
        dm = int(call.config.get("depth_multiplier", 1))
        ki, ko = np.asarray(keep_in[0]), keep_out[0]
        expanded = (ki[:, None] * dm + np.arange(dm)).reshape(-1)
        result = []
        for name, w in zip(weight_names(call.layer), weights, strict=True):
            if name == "bias":
                result.append(np.take(w, ko, axis=0))
            elif name == "pointwise_kernel":
                result.append(np.take(np.take(w, expanded, axis=-2), ko, axis=-1))
            else:
                result.append(np.take(w, ki, axis=-2))
        return result
