"""Rules of the layers that move channels around: concat, split, shuffle, reshape, ops, Lambda.

Each class is a :class:`~tf_precrop.graph.rule_base.LayerRule`; the registry
(:mod:`tf_precrop.graph.rules`) maps layer classes to instances of them.
"""

import dataclasses
from fractions import Fraction

from tf_precrop.errors import UnsupportedLayerError
from tf_precrop.graph.compute_rules import ElementwiseRule, FixedRule, PassThroughRule
from tf_precrop.graph.expr import ZERO, LinearExpr
from tf_precrop.graph.rule_base import (
    GroupedView,
    LayerRule,
    _prod,
    _reject_grouped,
    _single_input,
    _split,
    _static,
)


class ConcatenateRule(LayerRule):
    """Concatenate: on the channel axis the output width is the sum of the parts."""

    name = "concatenate"
    latency_kind = "concat"

    def propagate(self, call, ctx):
        rank = len(call.out_shapes[0]) + 1
        axis = int(call.config.get("axis", -1)) % rank
        if axis == rank - 1:
            total = LinearExpr()
            for e in call.inputs:
                _reject_grouped(call, e)
                total = total + e
            return [total]
        return ElementwiseRule().propagate(call, ctx)

    def map_channels(self, call, arrays, ctx):
        rank = len(call.out_shapes[0]) + 1
        if int(call.config.get("axis", -1)) % rank == rank - 1:
            return [ctx.concat(call, arrays)]
        return ElementwiseRule().map_channels(call, arrays, ctx)


class FlattenRule(LayerRule):
    """Flatten: the output width is ``spatial size × channels``."""

    name = "flatten"

    def propagate(self, call, ctx):
        expr = _single_input(call)
        return [expr.scale(_prod(_static(call, call.in_shapes[0][:-1], "input")))]

    def map_channels(self, call, arrays, ctx):
        # Flattened index s·C + c is channel c at position s.
        return [ctx.tile(call, arrays[0], _prod(call.in_shapes[0][:-1]))]


class ReshapeRule(LayerRule):
    """Reshape that keeps the channel axis last, flattens it, or starts a shuffle."""

    name = "reshape"

    def propagate(self, call, ctx):
        (expr,) = call.inputs
        s_in = _static(call, call.in_shapes[0], "input")
        s_out = _static(call, call.out_shapes[0], "output")
        if isinstance(expr, GroupedView):
            if (
                len(s_out) == len(s_in) - 1
                and s_out[:-1] == s_in[:-2]
                and s_out[-1] == s_in[-1] * s_in[-2]
            ):
                call.meta["case"] = "merge"
                ctx.require_multiple(expr.expr, expr.groups, call.key)
                return [expr.expr]
        elif s_out[-1] == s_in[-1] and _prod(s_out[:-1]) == _prod(s_in[:-1]):
            call.meta["case"] = "channels"
            return [expr]
        elif len(s_out) == 1:
            call.meta["case"] = "flatten"
            return [expr.scale(_prod(s_in[:-1]))]
        elif (
            len(s_out) == len(s_in) + 1
            and s_out[:-2] == s_in[:-1]
            and s_out[-1] * s_out[-2] == s_in[-1]
        ):
            # The constant axis is the smaller one (the shuffle's group count).
            groups = min(s_out[-2], s_out[-1])
            order = "gc" if s_out[-2] == groups else "cg"
            call.meta.update(case="split", groups=groups, order=order)
            return [GroupedView(expr, groups, order)]
        raise UnsupportedLayerError(
            f"Layer '{call.key}' (Reshape) reshapes {s_in} to {s_out}, which moves "
            "channels across axes. Expected a reshape that keeps the channel axis "
            "last, flattens, or splits channels for a channel shuffle. Register a "
            f"rule for it or use a supported layer. Received: target_shape={s_out}"
        )

    def rebuild(self, layer, config, call, width):
        case = call.meta["case"]
        target = list(call.out_shapes[0])
        if case == "channels":
            target[-1] = width(call.outputs[0])
        elif case == "flatten":
            target = [width(call.outputs[0])]
        elif case == "merge":
            target[-1] = width(call.outputs[0])
        elif case == "split":
            channels = width(call.inputs[0])
            groups = call.meta["groups"]
            inner = channels // groups
            target[-2:] = [groups, inner] if call.meta["order"] == "gc" else [inner, groups]
        return {**config, "target_shape": tuple(int(t) for t in target)}

    def map_channels(self, call, arrays, ctx):
        (array,) = arrays
        case = call.meta["case"]
        if case == "flatten":
            return [ctx.tile(call, array, _prod(call.in_shapes[0][:-1]))]
        if case == "split":  # a 2-D array of ids: (groups, C/groups) or its swap
            groups = call.meta["groups"]
            gc = call.meta["order"] == "gc"
            return [array.reshape(groups, -1) if gc else array.reshape(-1, groups)]
        if case == "merge":
            return [array.reshape(-1)]
        return [array]


class PermuteRule(LayerRule):
    """Permute that keeps the channel axis last, or swaps a shuffle's two axes."""

    name = "permute"

    def propagate(self, call, ctx):
        (expr,) = call.inputs
        dims = list(call.config["dims"])
        n = len(dims)
        if isinstance(expr, GroupedView) and dims[:-2] == list(range(1, n - 1)) and dims[-2:] == [
            n,
            n - 1,
        ]:
            return [GroupedView(expr.expr, expr.groups, "cg" if expr.order == "gc" else "gc")]
        if not isinstance(expr, GroupedView) and dims[-1] == n:
            return [expr]
        raise UnsupportedLayerError(
            f"Layer '{call.key}' (Permute) moves the channel axis: dims={tuple(dims)}. "
            "Expected the last axis to stay last (or the channel-shuffle pattern "
            f"Reshape → Permute → Reshape). Received: dims={tuple(dims)}"
        )


    def map_channels(self, call, arrays, ctx):
        (array,) = arrays
        return [array.T if array.ndim == 2 else array]


class ChannelSplitRule(LayerRule):
    """tf_precrop ChannelSplit: each part is 1/num_splits of the input width."""

    name = "channel_split"

    def propagate(self, call, ctx):
        expr = _single_input(call)
        n = int(call.config["num_splits"])
        single = expr.single()
        widths = {ctx.original_width(LinearExpr.var(v, c)) for v, c in expr.terms.items()}
        if single is None and len(expr.terms) == n and len(widths) == 1:
            # A concatenation of n parts split back into n parts: tie the parts.
            (first, c0), *rest = expr.terms.items()
            for var, coeff in rest:
                ctx.tie(LinearExpr.var(first, c0), LinearExpr.var(var, coeff), call.key)
            part = LinearExpr.var(first, c0)
            ctx.require_multiple(expr, n, call.key)
            return [part] * n
        ctx.require_multiple(expr, n, call.key)
        return [expr.scale(Fraction(1, n))] * n

    def map_channels(self, call, arrays, ctx):
        n = int(call.config["num_splits"])
        ctx.blocks(call, ("in", 0), arrays[0], n)  # every part keeps its share
        return _split(call, arrays[0], n)


class ChannelShuffleRule(PassThroughRule):
    """tf_precrop ChannelShuffle: width unchanged, divisible by ``groups``."""

    name = "channel_shuffle"

    def propagate(self, call, ctx):
        (out,) = super().propagate(call, ctx)[:1]
        ctx.require_multiple(out, int(call.config["groups"]), call.key)
        return [out]

    def map_channels(self, call, arrays, ctx):
        # (..., g, C/g) transposed to (..., C/g, g): a permutation of the ids.
        return [arrays[0].reshape(int(call.config["groups"]), -1).T.reshape(-1)]


class LayerScaleRule(PassThroughRule):
    """ConvNeXt LayerScale: per-channel scale whose config names the width."""

    name = "layer_scale"

    def rebuild(self, layer, config, call, width):
        return {**config, "projection_dim": width(call.outputs[0])}


class NormalizationRule(PassThroughRule):
    """Normalization: fixed when mean/variance are given in the config."""

    name = "normalization"
    linearization = "identity"  # preprocessing: SynFlow's copy drops it

    def propagate(self, call, ctx):
        outs = super().propagate(call, ctx)
        if call.config.get("mean") is not None:
            ctx.fix(outs[0], f"'{call.key}' stores a per-channel mean")
        return outs


class GroupNormalizationRule(PassThroughRule):
    """GroupNormalization: widths divisible by ``groups``; SynFlow keeps its affine part."""

    name = "group_normalization"
    linearization = "affine"

    def propagate(self, call, ctx):
        outs = super().propagate(call, ctx)
        ctx.require_multiple(outs[0], int(call.config.get("groups", 32)), call.key)
        return outs

    def map_channels(self, call, arrays, ctx):
        ctx.blocks(call, ("in", 0), arrays[0], int(call.config.get("groups", 32)))
        return super().map_channels(call, arrays, ctx)


class OperationRule(LayerRule):
    """Keras 3 ops and tf_keras TFOpLambda: element-wise when shapes say so."""

    name = "operation"
    #: Operation classes whose output is not of degree one in their inputs.
    NON_HOMOGENEOUS = frozenset(
        "Multiply Dot Divide TrueDivide Matmul Einsum Power Exp Log Sqrt Square "
        "Reciprocal Sigmoid Tanh".split()
    )

    def is_homogeneous(self, operation):
        # tf_keras wraps every op in one TFOpLambda class: unknown, so not homogeneous.
        name = type(operation).__name__
        return name not in self.NON_HOMOGENEOUS and name not in ("TFOpLambda", "SlicingOpLambda")

    def propagate(self, call, ctx):
        if any(getattr(c, "ndim", 0) >= 1 and getattr(c, "size", 1) > 1 for c in call.constants):
            # A per-channel constant (e.g. `x * np.arange(C)`) pins the width.
            return FixedRule().propagate(call, ctx)
        twin = self._layer_twin(call, ctx)
        if twin is not None:
            return twin
        out_channels = [s[-1] if s else None for s in call.out_shapes]
        in_channels = [ctx.original_width(e) if isinstance(e, LinearExpr) else None for e in call.inputs]
        in_shapes = call.in_shapes
        same_rank = all(len(s) == len(call.out_shapes[0]) for s in in_shapes)
        if (
            call.inputs
            and len(call.out_shapes) == 1
            and same_rank
            and all(c is not None for c in in_channels)
            and out_channels[0] == max(in_channels)
        ):
            return ElementwiseRule().propagate(call, ctx)
        raise UnsupportedLayerError(
            f"Operation '{call.key}' ({call.class_name}) changes the channel axis "
            f"(inputs {list(in_shapes)} → outputs {list(call.out_shapes)}). Expected an "
            "element-wise operation. Wrap it in a layer and register a rule with "
            f"`tf_precrop.register_rule`. Received: class={call.class_name}"
        )

    def params(self, call, ctx):
        return ZERO

    def map_channels(self, call, arrays, ctx):
        # The same cases as `propagate`, on channel ids.
        if any(getattr(c, "ndim", 0) >= 1 and getattr(c, "size", 1) > 1 for c in call.constants):
            return FixedRule().map_channels(call, arrays, ctx)
        op, name = call.layer, call.class_name
        axis = getattr(op, "axis", None)
        rank = len(call.in_shapes[0]) + 1 if call.in_shapes else 0
        on_channels = axis is not None and not isinstance(axis, (list, tuple)) and (
            int(axis) % rank == rank - 1
        )
        if name == "Concatenate" and axis is not None:
            if on_channels:
                return [ctx.concat(call, arrays)]
            return ElementwiseRule().map_channels(call, arrays, ctx)
        if name == "Split" and on_channels:
            sections = getattr(op, "indices_or_sections", None)
            if isinstance(sections, int):
                return _split(call, arrays[0], sections)
            return FixedRule().map_channels(call, arrays, ctx)
        if name in self.REDUCTIONS and axis is not None:
            axes = axis if isinstance(axis, (list, tuple)) else [axis]
            if (rank - 1) not in [int(a) % rank for a in axes]:
                return [arrays[0]] * max(1, len(call.out_shapes))
        return ElementwiseRule().map_channels(call, arrays, ctx)

    #: Reductions that keep the channel axis when they run over other axes.
    REDUCTIONS = frozenset({"Mean", "Max", "Min", "Sum"})

    def _layer_twin(self, call, ctx):
        """Keras 3 ops with a layer twin get the twin's rule: concatenate and split
        on the channel axis, and mean/max/min/sum over the spatial axes."""
        op, name = call.layer, call.class_name
        if not call.in_shapes or not call.inputs:
            return None
        rank = len(call.in_shapes[0]) + 1  # with the batch axis
        axis = getattr(op, "axis", None)
        if name == "Concatenate" and axis is not None:
            on_channels = int(axis) % rank == rank - 1
            rule = ConcatenateRule() if on_channels else ElementwiseRule()
            return rule.propagate(dataclasses.replace(call, config={"axis": int(axis)}), ctx)
        if name == "Split" and axis is not None and int(axis) % rank == rank - 1:
            sections = getattr(op, "indices_or_sections", None)
            if isinstance(sections, int):
                split = dataclasses.replace(call, config={"num_splits": sections})
                return ChannelSplitRule().propagate(split, ctx)
            return FixedRule().propagate(call, ctx)  # split at fixed indices: widths pinned
        if name in self.REDUCTIONS and axis is not None:
            axes = axis if isinstance(axis, (list, tuple)) else [axis]
            if (rank - 1) not in [int(a) % rank for a in axes]:
                expr = _single_input(call)
                return [expr] * max(1, len(call.out_shapes))
        return None


class LambdaRule(LayerRule):
    """Lambda: probed by calling its function at two channel widths.

    A Lambda whose output width equals its (tied) input width at both probes is
    element-wise/pass-through; one whose output width stays constant is fixed;
    anything else is refused, since the graph cannot know how it maps widths.
    """

    name = "lambda"
    homogeneous = False  # an arbitrary function

    def propagate(self, call, ctx):
        probes = [_probe_lambda(call, factor) for factor in (1, 2)]
        in_w = [ctx.original_width(e) for e in call.inputs]
        if probes[0] == [s[-1] for s in call.out_shapes] and all(
            p == [2 * c for c in probes[0]] for p in probes[1:]
        ) and all(c == max(in_w) for c in probes[0]):
            return ElementwiseRule().propagate(call, ctx)
        if probes[0] == probes[1]:
            return FixedRule().propagate(call, ctx)
        raise UnsupportedLayerError(
            f"Lambda layer '{call.key}' maps {in_w} input channels to {probes[0]} and "
            f"2x that input to {probes[1]}, a channel dependence the graph cannot "
            "follow. Expected a Lambda that keeps its channel count. Replace it "
            "with a layer and register a rule (`tf_precrop.register_rule`). "
            f"Received: output channels={probes[0]}"
        )

    def params(self, call, ctx):
        return ZERO

    def map_channels(self, call, arrays, ctx):
        if call.outputs and call.outputs[0] in call.inputs:  # probed element-wise
            return ElementwiseRule().map_channels(call, arrays, ctx)
        return FixedRule().map_channels(call, arrays, ctx)


def _probe_lambda(call, factor):
    import numpy as np

    layer = call.layer
    arrays = [
        np.zeros((1,) + tuple(s[:-1]) + (s[-1] * factor,), dtype="float32")
        for s in (tuple(1 if d is None else d for d in shape) for shape in call.in_shapes)
    ]
    import tensorflow as tf

    tensors = [tf.constant(a) for a in arrays]
    try:
        # Call the function itself, not the layer: the user's layer stays untouched.
        out = layer.function(
            tensors[0] if len(tensors) == 1 else tensors, **(getattr(layer, "arguments", None) or {})
        )
    except Exception as e:  # noqa: BLE001 - any failure means "cannot probe"
        raise UnsupportedLayerError(
            f"Lambda layer '{call.key}' could not be probed at {factor}x its input "
            "channels, so its channel behaviour is unknown. Replace it with a "
            "layer and register a rule. Received: "
            f"error={type(e).__name__}: {e}"
        ) from e
    outs = out if isinstance(out, (list, tuple)) else [out]
    return [int(o.shape[-1]) for o in outs]
