"""Rebuilt model stage: the same architecture with new channel widths.

:func:`rebuild` returns a *new* model in which every layer keeps its class,
name and config except the entries that set a width (``filters``, ``units``,
reshape targets, ...). Weights are freshly initialised, as pruning at
initialisation trains from scratch. The input model is never modified.
"""

import copy

from tf_precrop.errors import UnsupportedLayerError
from tf_precrop.graph.channel_graph import ChannelGraph, channel_groups


def rebuild(model, widths, graph=None):
    """Returns a new model with the given width per channel group.

    Args:
        model: a Functional or Sequential model (Keras 3 or tf_keras).
        widths: ``{group key: width}`` for any subset of the free groups of
            :func:`tf_precrop.channel_groups` (the rest keep their width), or a
            positive multiplier applied to every free group (rounded to the
            group's ``multiple_of``, at least one multiple). Widths may be larger
            than today's (PreConfig widens).
        graph: the model's :class:`ChannelGraph`, if already computed.

    Returns:
        A new, built model of the same Keras line with fresh weights; same layer
        names, types and configs apart from widths; same input/output shapes.

    Example:

    >>> import tf_precrop
    >>> model = tf_precrop.models.resnet20()
    >>> half = tf_precrop.rebuild(model, 0.5)
    >>> half.count_params() < model.count_params()
    True
    """
    graph = graph if graph is not None else channel_groups(model)
    if not isinstance(graph, ChannelGraph):
        raise TypeError(
            f"Expected `graph` to be a ChannelGraph. Received: {type(graph).__name__}"
        )
    new_widths = graph.resolve_widths(widths)
    return _Rebuilder(graph, new_widths).build(model, top=True)


class _Rebuilder:
    def __init__(self, graph, widths):
        self.graph = graph
        self.line = graph.line
        self.widths = widths
        self.configs = {}
        for call in graph._calls:
            if call.first and self.line.is_layer(call.layer):
                config = call.rule.rebuild(call.layer, dict(call.config), call, self.width)
                self.configs[id(call.layer)] = config

    def width(self, expr):
        expr = getattr(expr, "expr", expr)
        value = expr.evaluate(self.widths)
        if value.denominator != 1:
            raise UnsupportedLayerError(
                f"Widths give a fractional channel count {value} for {expr}. Expected "
                "widths that respect the groups' multiple_of. Received: widths="
                f"{ {v: self.widths[v] for v in expr.vars} }"
            )
        return int(value)

    def build(self, model, top=False):
        line = self.line
        inputs = self.graph._builder.submodel_inputs[id(model)]
        view = line.functional_view(model)
        new_inputs = {}
        for tensor in line.graph_inputs(view):
            shape = list(tensor.shape[1:])
            if not top:
                shape[-1] = self.width(self._expr_by_key(inputs[line.tensor_key(tensor)]))
            name = tensor._keras_history[0].name
            new_inputs[line.tensor_key(tensor)] = line.input(shape, tensor.dtype, name)
        if line.is_sequential(model):
            layers = [self.clone(layer) for layer in model.layers]
            return line.sequential([*new_inputs.values(), *layers], name=model.name)
        # Same structure as model.input (tensor, list or dict), matched by tensor.
        structure = _map_structure(lambda t: new_inputs[line.tensor_key(t)], model.input)
        return line.clone_functional(model, structure, self.clone)

    def _expr_by_key(self, expr):
        # Expressions of sub-model inputs still hold builder variables.
        return expr.map_vars(self.graph._to_key)

    def clone(self, layer):
        line = self.line
        if line.is_model(layer):
            return self.build(layer)
        if not line.is_layer(layer):
            # A stateless Keras 3 operation (e.g. `x + 3`): a fresh copy.
            new = copy.copy(layer)
            new._inbound_nodes = []
            new._outbound_nodes = []
            return new
        if type(layer).__name__ == "Lambda":
            return _copy_lambda(line, layer)
        config = self.configs.get(id(layer), layer.get_config())
        return type(layer).from_config(config)


def _map_structure(fn, structure):
    if isinstance(structure, dict):
        return {k: _map_structure(fn, v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return type(structure)(_map_structure(fn, v) for v in structure)
    return fn(structure)


def _copy_lambda(line, layer):
    kwargs = dict(
        function=layer.function,
        arguments=getattr(layer, "arguments", None),
        name=layer.name,
    )
    output_shape = getattr(layer, "_output_shape", None)
    if output_shape is not None and not callable(output_shape):
        # A static output shape would pin the old width; let Keras infer it.
        output_shape = None
    if output_shape is not None:
        kwargs["output_shape"] = output_shape
    return line.layers.Lambda(**kwargs)
