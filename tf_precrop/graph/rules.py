"""Per-layer channel rules: how each layer class moves, ties and costs channels.

A rule answers four questions for one layer call:

* ``propagate`` — given the channel expressions of its inputs, what are the
  expressions of its outputs (and which widths must be tied or fixed)?
* ``params`` / ``macs`` — its parameter count and multiply-accumulates as
  polynomials of the widths (MACs per example; batch dimension excluded;
  bias additions, normalisation and element-wise work count zero);
* ``kernel`` — the part of ``params`` that pruning scores (conv/dense kernels);
* ``rebuild`` — the layer config for new widths.

Rules are looked up by the layer's class name in a table that fails closed: a
layer class without a rule stops the graph with an error that names it. Users
add rules for their own layers with :func:`register_rule`.

Example:

>>> import tf_precrop
>>> tf_precrop.register_rule("MyGate", "elementwise")   # ties all inputs
>>> tf_precrop.register_rule("MyNoise", "passthrough")  # channels unchanged
>>> tf_precrop.register_rule("MyHead", "fixed")         # never resized
"""

import dataclasses
import math
from fractions import Fraction

from tf_precrop.errors import UnsupportedLayerError
from tf_precrop.graph.expr import ZERO, LinearExpr, Poly


def _prod(values):
    return math.prod(int(v) for v in values)


def _static(call, shape, what):
    if any(d is None for d in shape):
        raise UnsupportedLayerError(
            f"Layer '{call.key}' ({call.class_name}) needs a static {what} shape "
            f"to count its cost. Expected a model built with a fixed input size, "
            f"e.g. `keras.Input(shape=(224, 224, 3))`. Received: shape={shape}"
        )
    return shape


class GroupedView:
    """A channel axis split in two by ``Reshape`` (the shuffle pattern).

    ``order`` is ``"gc"`` for ``(..., groups, C/groups)`` and ``"cg"`` after the
    ``Permute`` that swaps them.
    """

    def __init__(self, expr, groups, order):
        self.expr, self.groups, self.order = expr, groups, order

    def __repr__(self):
        return f"({self.expr}) split into {self.groups} groups ({self.order})"


class LayerRule:
    """Base rule: subclasses override what differs. See the module docstring."""

    name = "rule"

    def propagate(self, call, ctx):
        raise NotImplementedError

    def params(self, call, ctx):
        return _channelwise_weights(call, ctx)

    def macs(self, call, ctx):
        return ZERO

    def kernel(self, call, ctx):
        return None

    def rebuild(self, layer, config, call, width):
        return config


def _channelwise_weights(call, ctx):
    """Params of a layer whose weights are per-channel (BN, PReLU, LayerScale...).

    Each weight whose last dimension equals the input channel count scales with
    it; other weights are constant.
    """
    layer = call.layer
    weights = getattr(layer, "weights", [])
    if not weights:
        return ZERO
    expr = call.inputs[0] if call.inputs else None
    channels = ctx.original_width(expr) if isinstance(expr, LinearExpr) else None
    poly = ZERO
    for w in weights:
        shape = tuple(int(d) for d in w.shape)
        if shape and channels is not None and shape[-1] == channels:
            poly = poly + Poly.linear(expr, _prod(shape[:-1]))
        else:
            poly = poly + Poly.const(_prod(shape))
    return poly


def _check_channels_last(call):
    config = call.config
    fmt = config.get("data_format")
    if fmt not in (None, "channels_last"):
        raise UnsupportedLayerError(
            f"Layer '{call.key}' ({call.class_name}) uses data_format={fmt!r}. "
            "Expected channels_last (the TensorFlow/TFLite default). Rebuild the "
            "model with data_format='channels_last'. Received: "
            f"data_format={fmt!r}"
        )


def _single_input(call):
    if len(call.inputs) != 1:
        raise UnsupportedLayerError(
            f"Layer '{call.key}' ({call.class_name}) was called on "
            f"{len(call.inputs)} tensors. Expected one input. Register a rule "
            "for it with `tf_precrop.register_rule`. Received: "
            f"num_inputs={len(call.inputs)}"
        )
    expr = call.inputs[0]
    if isinstance(expr, GroupedView):
        raise UnsupportedLayerError(
            f"Layer '{call.key}' ({call.class_name}) receives a tensor whose "
            "channel axis was split by a Reshape. Expected only the channel-"
            "shuffle pattern Reshape → Permute → Reshape there. Received: "
            f"input shape={call.in_shapes[0]}"
        )
    return expr


def _reject_grouped(call, expr):
    """Raises unless ``expr`` is a plain channel expression (see _single_input)."""
    if isinstance(expr, GroupedView):
        _single_input(dataclasses.replace(call, inputs=[expr]))


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


_AXIS_CHECKED = {"BatchNormalization", "LayerNormalization", "GroupNormalization"}


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


class ElementwiseRule(LayerRule):
    """Add/Subtract/Multiply/...: all inputs tied to one width, output the same.

    An input whose channel axis is 1 while the others' is larger broadcasts: it
    is fixed at 1 instead of tied.
    """

    name = "elementwise"

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


class ConvRule(LayerRule):
    """Conv1D/2D/3D and their transposes: ``filters`` sets the output width."""

    name = "conv"

    def __init__(self, transpose=False, width_key="filters"):
        self.transpose = transpose
        self.width_key = width_key

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


class DenseRule(ConvRule):
    """Dense: ``units`` sets the output width; leading axes multiply the MACs."""

    name = "dense"

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


class SeparableRule(ConvRule):
    """SeparableConv: depthwise (× depth_multiplier) then pointwise to ``filters``."""

    name = "separable"

    def kernel(self, call, ctx):
        dm = int(call.config.get("depth_multiplier", 1))
        k = _prod(_depthwise_kernel(call.layer).shape[:-2])
        return Poly.linear(call.inputs[0], k * dm) + Poly.product(
            call.inputs[0], call.outputs[0], dm
        )


class ConcatenateRule(LayerRule):
    """Concatenate: on the channel axis the output width is the sum of the parts."""

    name = "concatenate"

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


class FlattenRule(LayerRule):
    """Flatten: the output width is ``spatial size × channels``."""

    name = "flatten"

    def propagate(self, call, ctx):
        expr = _single_input(call)
        return [expr.scale(_prod(_static(call, call.in_shapes[0][:-1], "input")))]


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


class ChannelShuffleRule(PassThroughRule):
    """tf_precrop ChannelShuffle: width unchanged, divisible by ``groups``."""

    name = "channel_shuffle"

    def propagate(self, call, ctx):
        (out,) = super().propagate(call, ctx)[:1]
        ctx.require_multiple(out, int(call.config["groups"]), call.key)
        return [out]


class LayerScaleRule(PassThroughRule):
    """ConvNeXt LayerScale: per-channel scale whose config names the width."""

    name = "layer_scale"

    def rebuild(self, layer, config, call, width):
        return {**config, "projection_dim": width(call.outputs[0])}


class NormalizationRule(PassThroughRule):
    """Normalization: fixed when mean/variance are given in the config."""

    name = "normalization"

    def propagate(self, call, ctx):
        outs = super().propagate(call, ctx)
        if call.config.get("mean") is not None:
            ctx.fix(outs[0], f"'{call.key}' stores a per-channel mean")
        return outs


class GroupNormalizationRule(PassThroughRule):
    name = "group_normalization"

    def propagate(self, call, ctx):
        outs = super().propagate(call, ctx)
        ctx.require_multiple(outs[0], int(call.config.get("groups", 32)), call.key)
        return outs


class OperationRule(LayerRule):
    """Keras 3 ops and tf_keras TFOpLambda: element-wise when shapes say so."""

    name = "operation"

    def propagate(self, call, ctx):
        if any(getattr(c, "ndim", 0) >= 1 and getattr(c, "size", 1) > 1 for c in call.constants):
            # A per-channel constant (e.g. `x * np.arange(C)`) pins the width.
            return FixedRule().propagate(call, ctx)
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


class LambdaRule(LayerRule):
    """Lambda: probed by calling its function at two channel widths.

    A Lambda whose output width equals its (tied) input width at both probes is
    element-wise/pass-through; one whose output width stays constant is fixed;
    anything else is refused, since the graph cannot know how it maps widths.
    """

    name = "lambda"

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


# --------------------------------------------------------------------- registry
_PASSTHROUGH = """
Activation ReLU LeakyReLU PReLU ELU Softmax ThresholdedReLU
BatchNormalization LayerNormalization UnitNormalization SyncBatchNormalization
Dropout SpatialDropout1D SpatialDropout2D SpatialDropout3D GaussianNoise
GaussianDropout AlphaDropout ActivityRegularization Masking Identity
MaxPooling1D MaxPooling2D MaxPooling3D AveragePooling1D AveragePooling2D
AveragePooling3D MaxPool1D MaxPool2D MaxPool3D AvgPool1D AvgPool2D AvgPool3D
GlobalAveragePooling1D GlobalAveragePooling2D GlobalAveragePooling3D
GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D GlobalAvgPool1D
GlobalAvgPool2D GlobalAvgPool3D GlobalMaxPool1D GlobalMaxPool2D GlobalMaxPool3D
ZeroPadding1D ZeroPadding2D ZeroPadding3D UpSampling1D UpSampling2D
UpSampling3D Cropping1D Cropping2D Cropping3D Rescaling Resizing CenterCrop
RandomFlip RandomCrop RandomRotation RandomZoom RandomTranslation
RandomContrast RandomBrightness StochasticDepth
""".split()

_ELEMENTWISE = "Add Subtract Multiply Average Maximum Minimum CustomScaleLayer".split()

_RULES = {}
_BUILTIN_KINDS = {
    "passthrough": PassThroughRule,
    "elementwise": ElementwiseRule,
    "fixed": FixedRule,
}


def _install_builtin_rules():
    for name in _PASSTHROUGH:
        _RULES[name] = PassThroughRule()
    for name in _ELEMENTWISE:
        _RULES[name] = ElementwiseRule()
    for name in ("Conv1D", "Conv2D", "Conv3D", "Convolution1D", "Convolution2D", "Convolution3D"):
        _RULES[name] = ConvRule()
    for name in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"):
        _RULES[name] = ConvRule(transpose=True)
    for name in ("SeparableConv1D", "SeparableConv2D"):
        _RULES[name] = SeparableRule()
    for name in ("DepthwiseConv1D", "DepthwiseConv2D"):
        _RULES[name] = DepthwiseRule()
    _RULES["Dense"] = DenseRule()
    _RULES["Concatenate"] = ConcatenateRule()
    _RULES["Flatten"] = FlattenRule()
    _RULES["Reshape"] = ReshapeRule()
    _RULES["Permute"] = PermuteRule()
    _RULES["ChannelSplit"] = ChannelSplitRule()
    _RULES["ChannelShuffle"] = ChannelShuffleRule()
    _RULES["LayerScale"] = LayerScaleRule()
    _RULES["Normalization"] = NormalizationRule()
    _RULES["GroupNormalization"] = GroupNormalizationRule()
    _RULES["Lambda"] = LambdaRule()
    _RULES["TFOpLambda"] = OperationRule()
    _RULES["SlicingOpLambda"] = OperationRule()


_install_builtin_rules()
_BUILTIN_RULES = dict(_RULES)
OPERATION_RULE = OperationRule()


def register_rule(layer_class, rule):
    """Registers how a (custom) layer class moves channels.

    Args:
        layer_class: the layer class, or its class name.
        rule: ``"passthrough"`` (one input, same channels out; per-channel
            weights are counted), ``"elementwise"`` (all inputs tied to one
            width), ``"fixed"`` (never resized: all its inputs and outputs keep
            their width), or a :class:`LayerRule` instance for full control.

    Example:

    >>> import tf_precrop
    >>> tf_precrop.register_rule("MyGate", "elementwise")
    """
    name = layer_class if isinstance(layer_class, str) else layer_class.__name__
    if isinstance(rule, str):
        if rule not in _BUILTIN_KINDS:
            raise ValueError(
                f"Unknown rule kind. Expected one of {sorted(_BUILTIN_KINDS)} or a "
                f"LayerRule instance. Received: rule={rule!r}"
            )
        rule = _BUILTIN_KINDS[rule]()
    if not isinstance(rule, LayerRule):
        raise TypeError(
            "Expected `rule` to be a rule name or a tf_precrop LayerRule instance. "
            f"Received: rule={rule!r} of type {type(rule).__name__}"
        )
    _RULES[name] = rule


def unregister_rule(layer_class):
    """Removes a rule registered with :func:`register_rule` (no-op if absent)."""
    name = layer_class if isinstance(layer_class, str) else layer_class.__name__
    _RULES.pop(name, None)
    if name in _BUILTIN_RULES:
        _RULES[name] = _BUILTIN_RULES[name]


def rule_for(operation, key, is_layer):
    """The rule for one layer/operation; raises for classes without a rule."""
    name = type(operation).__name__
    if not is_layer:
        # Keras 3 operations (``x + 3``, ``x * w``) share class names with layers
        # (Add, Multiply) but not their semantics: judged by shapes and constants.
        return OPERATION_RULE
    if name in _RULES:
        return _RULES[name]
    raise UnsupportedLayerError(
        f"Layer '{key}' of class {type(operation).__module__}.{name} has no channel "
        "rule, so tf_precrop cannot tell how it maps channel counts. Expected a "
        "built-in Keras layer or a registered one. Register it, e.g. "
        f"`tf_precrop.register_rule({name!r}, 'passthrough')` (or 'elementwise', "
        f"'fixed', or a LayerRule). Received: class={name}"
    )
