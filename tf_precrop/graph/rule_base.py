"""The base of every layer rule, and the helpers rules share.

:class:`LayerRule` is one registry entry (see :mod:`tf_precrop.graph.rules`):
channel flow, cost, prunable kernels, SynFlow linearisation and rebuild of one
layer kind, in one place.
"""

import dataclasses
import math

import numpy as np

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


#: How SynFlow's linearised copy treats a layer kind (see :class:`LayerRule`).
LINEARIZATIONS = ("as_is", "identity", "batch_norm", "affine", "refuse")


class LayerRule:
    """Everything tf_precrop knows about one layer kind: one registry entry.

    Subclasses override what differs. A rule answers, for one layer call:

    * channel flow: :meth:`propagate` maps the channel expressions of the
      inputs to those of the outputs (and ties, fixes or constrains widths);
    * cost: :meth:`params`, :meth:`macs` and :meth:`kernel` (the scored part
      of ``params``) as polynomials of the group widths;
    * kernels: :attr:`kernels` names the weights that saliency scores, in the
      order they are concatenated (``()``: the layer is not prunable);
      :meth:`kernel_variables` finds them on a layer of either Keras line;
    * SynFlow: :attr:`linearization` says how the linearised copy treats the
      layer: ``"as_is"`` (weights made absolute, an ``activation`` argument
      made linear; the default), ``"identity"`` (replaced by the identity:
      activation and preprocessing layers), ``"batch_norm"`` (folded to one
      per-channel affine map in inference mode), ``"affine"`` (only
      ``gamma * x + beta`` of a centred normalisation) or ``"refuse"``
      (SynFlow stops with an error naming the layer: set another value on
      the rule to score it). :attr:`homogeneous` is ``False`` for layers whose
      output is not of degree one in their inputs (gates, divisions), which
      rules out SynFlow's exact power-of-two rescaling;
    * rebuild: :meth:`rebuild` returns the layer config at new widths;
    * pruning trained models (:func:`tf_precrop.prune`): :meth:`map_channels`
      says which input channel reaches which output channel,
      :meth:`channel_weights` gives the per-channel weight slices that
      importance scores and :meth:`slice_weights` keeps the chosen channels'
      weights. A rule without them makes ``prune`` stop with an error naming
      the layer and the method;
    * latency (``budget="latency"``): :attr:`latency_kind` names the
      micro-benchmark that times the layer on LiteRT — one of
      :data:`tf_precrop.latency.probes.KINDS` (``"conv"``, ``"depthwise"``,
      ``"separable"``, ``"dense"``, ``"elementwise"``, ``"concat"``,
      ``"pool"``, ``"unary"``) — or ``None`` (default): not timed, its cost
      is part of the per-model constant. A conv-like custom layer registered
      with :class:`ConvRule` is timed as a conv.

    Example:

    >>> import keras, tf_precrop
    >>> from tf_precrop.graph.rules import ConvRule
    >>> class MyConv(keras.layers.Conv2D):
    ...     pass
    >>> tf_precrop.register_rule(MyConv, ConvRule())   # cost, kernels, SynFlow, rebuild
    >>> ConvRule().kernels
    ('kernel',)
    >>> tf_precrop.unregister_rule(MyConv)
    """

    name = "rule"
    kernels = ()
    linearization = "as_is"
    homogeneous = True
    latency_kind = None

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

    # ------------------------------------------------- pruning trained models
    # tf_precrop.prune keeps chosen channels of a trained model. Three methods
    # of the rule tell it how (see tf_precrop/prune/):
    #
    # * map_channels(call, arrays, ctx): how the layer moves channels, on numpy
    #   arrays holding one id per channel (``ctx.fresh`` for channels the layer
    #   creates, ``ctx.union`` for channels it combines element-wise);
    # * channel_weights(call, weights): per input/output, the per-channel
    #   slices of the weights (rows of 2-D arrays) that importance scores;
    # * slice_weights(call, weights, keep_in, keep_out): the weights keeping
    #   only input channels ``keep_in[i]`` and output channels ``keep_out[j]``.
    def map_channels(self, call, arrays, ctx):
        """Channel ids of each output from those of each input (see tf_precrop.prune)."""
        raise UnsupportedLayerError(
            f"Layer '{call.key}' ({call.class_name}) cannot be pruned with its weights: "
            f"its rule '{self.name}' ({type(self).__name__}) does not implement "
            "`map_channels(call, arrays, ctx)`, so tf_precrop.prune cannot tell which "
            "input channels reach which output channels. Expected a rule that "
            "implements it (subclass PassThroughRule, ElementwiseRule, ConvRule...). "
            f"Received: rule={type(self).__name__}"
        )

    def channel_weights(self, call, weights):
        """``{("in"|"out", i): [2-D arrays, one row per channel]}`` for importance."""
        return {}

    def slice_weights(self, call, weights, keep_in, keep_out):
        """The layer's weights (``layer.weights`` order) keeping the given channels."""
        if not weights:
            return []
        raise UnsupportedLayerError(
            f"Layer '{call.key}' ({call.class_name}) holds weights but its rule "
            f"'{self.name}' ({type(self).__name__}) does not implement "
            "`slice_weights(call, weights, keep_in, keep_out)`, so tf_precrop.prune "
            "cannot keep its trained weights. Expected a rule that implements it. "
            f"Received: weights={[tuple(w.shape) for w in weights]}"
        )

    def is_homogeneous(self, operation):
        """Whether ``operation``'s output is of degree one in its inputs."""
        return self.homogeneous

    def kernel_variables(self, layer):
        """``[(name, variable)]`` for each name of :attr:`kernels`, in that order.

        ``name`` is the conceptual kernel name (``kernel``, ``depthwise_kernel``,
        ``pointwise_kernel``) whatever the variable is called in the Keras line
        (Keras 3 names a depthwise kernel ``kernel``).

        Raises:
            UnsupportedModelError: the layer is not built (or is quantized).
        """
        from tf_precrop.errors import UnsupportedModelError

        by_name = {_variable_name(v): v for v in layer.weights}
        result = []
        for name in self.kernels:
            variable = by_name.get(name)
            if variable is None and name == "depthwise_kernel" and "pointwise_kernel" not in self.kernels:
                variable = by_name.get("kernel")
            if variable is None:
                raise UnsupportedModelError(
                    f"Layer '{layer.name}' of class {type(layer).__name__} has no variable "
                    f"{name!r}: it is not built (or is quantized). Expected a built model "
                    f"with float kernels. Received: variables={sorted(by_name)}"
                )
            result.append((name, variable))
        return result


def _variable_name(variable):
    """The bare name of a variable (``kernel``) in both Keras lines."""
    name = getattr(variable, "path", None) or variable.name
    return name.split("/")[-1].split(":")[0]


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


def weight_names(layer):
    """Bare names of ``layer.weights`` (``kernel``, ``bias``, ``gamma``...), in order."""
    return [_variable_name(v) for v in layer.weights]


def channel_rows(array, axis):
    """``array`` as a 2-D array with one row per index of ``axis``."""
    moved = np.moveaxis(np.asarray(array), axis, 0)
    return moved.reshape(moved.shape[0], -1)


def channelwise_slice(call, weights, keep):
    """Per-channel weights (last axis = the input width) keep ``keep``; others stay."""
    channels = call.in_shapes[0][-1] if call.in_shapes else None
    return [
        np.take(w, keep, axis=-1) if np.ndim(w) and np.shape(w)[-1] == channels else w
        for w in weights
    ]


def is_identity(keep, width):
    return len(keep) == width and bool(np.all(np.asarray(keep) == np.arange(width)))


def _grouped_in_rows(kernel, groups):
    """Rows of a grouped kernel ``(*k, C_in/g, C_out)``, one per input channel."""
    w = np.asarray(kernel)
    w = w.reshape(w.shape[:-1] + (groups, w.shape[-1] // groups))
    w = np.moveaxis(w, [-2, -3], [0, 1])  # (g, C_in/g, *k, C_out/g)
    return w.reshape(w.shape[0] * w.shape[1], -1)


def _slice_grouped(call, kernel, keep_in, keep_out, groups):
    """Keeps channels of a grouped conv: each group keeps its own kept channels."""
    c_in, c_out = call.in_shapes[0][-1], call.out_shapes[0][-1]
    n_in, n_out = len(keep_in) // groups, len(keep_out) // groups
    parts = []
    for g in range(groups):
        ins = np.asarray(keep_in[g * n_in : (g + 1) * n_in])
        outs = np.asarray(keep_out[g * n_out : (g + 1) * n_out])
        lo_in, lo_out = g * (c_in // groups), g * (c_out // groups)
        if (
            len(keep_in) % groups
            or len(keep_out) % groups
            or np.any((ins < lo_in) | (ins >= lo_in + c_in // groups))
            or np.any((outs < lo_out) | (outs >= lo_out + c_out // groups))
        ):
            raise UnsupportedLayerError(
                f"Grouped conv '{call.key}' ({groups} groups) would mix channels across "
                "its groups: the kept channels of conv group "
                f"{g} do not all come from that group. Expected equal counts of kept "
                f"channels per group. Received: keep_in={list(ins)[:8]}, "
                f"keep_out={list(outs)[:8]}"
            )
        parts.append(np.take(np.take(kernel, ins - lo_in, axis=-2), outs, axis=-1))
    return np.concatenate(parts, axis=-1)


def _split(call, array, n):
    if len(array) % n:
        raise UnsupportedLayerError(
            f"Layer '{call.key}' ({call.class_name}) splits {len(array)} channels into "
            f"{n} parts. Expected a multiple of {n}. Received: channels={len(array)}"
        )
    return list(np.split(array, n))
