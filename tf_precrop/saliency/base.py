"""Shared pieces of the saliency methods: layers, kernels, results, cloning.

Layer keys are name paths: a top-level layer ``conv1`` is ``"conv1"``; a layer
``block_1_expand`` inside a nested model ``mobilenetv2_1.00_224`` (a model used
as a layer) is ``"mobilenetv2_1.00_224/block_1_expand"``; deeper nesting adds
more ``/`` parts. The outermost model's own name is never part of a key.
"""

import collections.abc
import dataclasses

import numpy as np

from tf_precrop.backend import line_of
from tf_precrop.errors import UnsupportedModelError
from tf_precrop.graph.rules import prunable_classes, rule_of


class _PrunableKernels(collections.abc.Mapping):
    """``{class name: kernel names}`` read live from the layer registry.

    Not a table of its own: each lookup asks :mod:`tf_precrop.graph.rules`, so
    a class registered with :func:`tf_precrop.register_rule` shows up here.
    """

    def __getitem__(self, name):
        return prunable_classes()[name]

    def __iter__(self):
        return iter(prunable_classes())

    def __len__(self):
        return len(prunable_classes())

    def __repr__(self):
        return f"PRUNABLE_KERNELS({dict(prunable_classes())})"


#: Prunable layer classes and the names of their kernel variables, in the
#: order they are concatenated: a live view of the layer registry.
PRUNABLE_KERNELS = _PrunableKernels()

#: Constraint argument of each kernel variable name (used by baselines).
CONSTRAINT_ARGUMENTS = {
    "kernel": "kernel_constraint",
    "depthwise_kernel": "depthwise_constraint",
    "pointwise_kernel": "pointwise_constraint",
}


@dataclasses.dataclass(frozen=True)
class Scores:
    """Saliency scores of every prunable layer; higher always means *keep*.

    Attributes:
        method: the method that produced them (``"synflow"``, ``"snip"``,
            ``"grasp"``, ``"magnitude"`` or ``"random"``).
        per_layer: dict mapping a layer key to a 1-D ``float64`` array, the
            concatenation of the flattened kernels of that layer (for
            separable convolutions: depthwise then pointwise), in the order
            of :func:`prunable_kernels`.
        info: method-specific details (rounds, resolution used, loss, ...).

    Example:

    >>> import numpy as np
    >>> s = Scores("magnitude", {"fc": np.array([0.1, 0.9])}, {})
    >>> s.layer_densities(0.5)
    {'fc': 0.5}
    """

    method: str
    per_layer: dict
    info: dict = dataclasses.field(default_factory=dict)

    def layer_densities(self, density):
        """Per-layer densities from one global threshold at ``density``.

        Args:
            density: overall fraction of scored weights to keep, in [0, 1].

        Returns:
            dict mapping each layer key to the fraction of it that is kept.
        """
        from tf_precrop.densities import global_threshold_densities

        return global_threshold_densities(self.per_layer, density)

    @property
    def sizes(self):
        """dict mapping each layer key to its number of scored weights."""
        return {key: int(value.size) for key, value in self.per_layer.items()}


# ----------------------------------------------------------------- walking
def iter_layers(model, prefix=""):
    """Yield ``(key, layer)`` for every non-model layer, nested models included.

    Nested models are entered (their layers get ``"<model name>/"`` keys) and
    not yielded themselves; input layers are skipped; a layer object used at
    several places is yielded once.

    Args:
        model: a Keras 3 or tf_keras model.
        prefix: key prefix (used for the recursion).

    Returns:
        A generator of ``(key, layer)`` pairs in ``model.layers`` order.
    """
    line = line_of(model)
    seen = set()

    def walk(container, prefix):
        for layer in container.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if line.is_input_layer(layer):
                continue
            if line.is_model(layer):
                yield from walk(layer, f"{prefix}{layer.name}/")
                continue
            yield f"{prefix}{layer.name}", layer

    yield from walk(model, prefix)


def named_kernels(layer):
    """``[(name, variable)]`` of a prunable layer's kernels, or ``None``.

    The layer's rule in the registry (:mod:`tf_precrop.graph.rules`) says
    which weights are kernels; ``name`` is the conceptual kernel name
    (``kernel``, ``depthwise_kernel``, ``pointwise_kernel``), whatever the
    variable is called in the Keras line (Keras 3 names a depthwise kernel
    ``kernel``).

    Args:
        layer: a Keras layer.

    Returns:
        A list of pairs in the rule's :attr:`~LayerRule.kernels` order, or
        ``None`` when the class has no rule or its rule has no kernels. A
        prunable layer that is not built raises ``UnsupportedModelError``.
    """
    rule = rule_of(layer)
    if rule is None or not rule.kernels:
        return None
    return rule.kernel_variables(layer)


def layer_kernels(layer):
    """The kernel variables of a prunable layer, or ``None`` if not prunable.

    Args:
        layer: a Keras layer.

    Returns:
        A list of variables in :data:`PRUNABLE_KERNELS` order (see
        :func:`named_kernels`), or ``None``.
    """
    pairs = named_kernels(layer)
    return None if pairs is None else [variable for _, variable in pairs]


def _layer_filter(layers):
    if layers is None:
        return lambda key, layer: True
    if callable(layers):
        return lambda key, layer: bool(layers(key))
    if isinstance(layers, str):
        wanted = {layers}
    else:
        wanted = set(layers)
    return lambda key, layer: key in wanted


def prunable_kernels(model, layers=None):
    """The prunable layers of ``model`` and their kernel variables.

    Prunable layers are those whose rule in the layer registry names kernels
    (convolutions, transposed and depthwise/separable convolutions, ``Dense``,
    and any class registered with such a rule), in Keras 3 and tf_keras alike.
    Biases and normalization parameters are never included.

    Args:
        model: a built Keras 3 or tf_keras model, or its
            :class:`~tf_precrop.graph.ChannelGraph` (then the graph's layers
            are used and the model is not walked again).
        layers: optional restriction: an iterable of layer keys, or a
            predicate ``fn(key) -> bool``. Unknown keys raise ``ValueError``.

    Returns:
        A list of ``(key, [kernel variables])`` in model order.

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc")])
    >>> [(key, [tuple(v.shape) for v in vs]) for key, vs in prunable_kernels(m)]
    [('fc', [(4, 2)])]
    """
    keep = _layer_filter(layers)
    found, result = set(), []
    if hasattr(model, "kernel_layers"):  # a ChannelGraph
        pairs = model.kernel_layers()
    else:
        pairs = (
            (key, layer, named_kernels(layer))
            for key, layer in iter_layers(model)
        )
    for key, layer, named in pairs:
        if named is None:
            continue
        found.add(key)
        if keep(key, layer):
            result.append((key, [variable for _, variable in named]))
    if layers is not None and not callable(layers):
        wanted = {layers} if isinstance(layers, str) else set(layers)
        unknown = sorted(wanted - found)
        if unknown:
            raise ValueError(
                "`layers` names layers that are not prunable layers of the "
                f"model. Expected keys among {sorted(found)[:8]}"
                f"{' ...' if len(found) > 8 else ''}. A layer is prunable when "
                "its class has a rule with kernels (`tf_precrop.register_rule(cls, "
                "ConvRule())` for a custom conv). Received: unknown keys "
                f"{unknown}"
            )
    return result


def model_and_view(model):
    """``(model, view)``: the Keras model, and what :func:`prunable_kernels` should read.

    A :class:`~tf_precrop.graph.ChannelGraph` is both: its model, and itself as
    the view (its layers are not walked again). A model is its own view.
    """
    if hasattr(model, "kernel_layers") and hasattr(model, "model"):
        return model.model, model
    return model, model


def kernel_sizes(kernels):
    """Total number of weights of each ``(key, [variables])`` entry."""
    return {key: int(sum(int(np.prod(v.shape)) for v in vs)) for key, vs in kernels}


def flat_values(variables):
    """Concatenate variables' values into one flat float64 array."""
    return np.concatenate(
        [
            np.asarray(v.numpy() if hasattr(v, "numpy") else v, dtype=np.float64).reshape(-1)
            for v in variables
        ]
    )


def raw_variable(variable):
    """The underlying ``tf.Variable`` of a Keras 3 or tf_keras variable."""
    value = getattr(variable, "value", None)
    if value is not None and hasattr(value, "assign") and not callable(value):
        return value
    return variable


# ---------------------------------------------------------------- cloning
def spatial_axes(model):
    """Indices (in the per-sample input shape) of the spatial axes, or ``()``."""
    channels_first = any(
        getattr(layer, "data_format", None) == "channels_first" for _, layer in iter_layers(model)
    )
    shape = tuple(model.inputs[0].shape)[1:]
    if len(shape) < 2:
        return ()
    return tuple(range(1, len(shape))) if channels_first else tuple(range(len(shape) - 1))


def clone_model(model, layer_fn=None, input_shape=None, dtype=None):
    """Clone a Functional/Sequential model (nested models too), same Keras line.

    The clone has new variables (not initialised from ``model``: copy them
    with :func:`copy_weights`) and the same layer names, so keys match.

    Args:
        model: a Keras 3 or tf_keras Functional or Sequential model.
        layer_fn: optional ``fn(layer, config) -> layer or None``; returning a
            layer replaces the default ``type(layer).from_config(config)``.
            ``config`` already carries ``dtype`` when that is given.
        input_shape: optional new per-sample input shape (single-input
            models). Nested models are then rebuilt with unknown spatial
            sizes so that they accept the new resolution.
        dtype: optional compute/variable dtype for every layer.

    Returns:
        The cloned model.

    Raises:
        UnsupportedModelError: ``model`` is subclassed or cannot be cloned.
    """
    line = line_of(model)
    keras = line.keras
    if not line.is_model(model):
        raise UnsupportedModelError(
            f"Expected a Keras model. Received: model of type {type(model).__name__}"
        )
    check_graph_model(model)

    def clone_layer(layer):
        if line.is_model(layer):
            nested_shape = None
            if input_shape is not None:
                shape = list(tuple(layer.inputs[0].shape)[1:])
                for axis in spatial_axes(layer):
                    shape[axis] = None
                nested_shape = tuple(shape)
            return clone_model(layer, layer_fn, nested_shape, dtype)
        config = layer.get_config()
        if dtype is not None and line.is_layer(layer):  # Keras 3 ops take no dtype
            config["dtype"] = dtype
        if layer_fn is not None:
            replacement = layer_fn(layer, config)
            if replacement is not None:
                return replacement
        return type(layer).from_config(config)

    # Explicit inputs keep the input layers' names (Keras 3 would not).
    if len(model.inputs) != 1 and input_shape is not None:
        raise UnsupportedModelError(
            f"A new input shape needs a single-input model. Received: {len(model.inputs)} inputs"
        )
    inputs = []
    for i, tensor in enumerate(model.inputs):
        shape = tuple(tensor.shape)[1:] if input_shape is None else tuple(input_shape)
        in_dtype = _dtype_name(tensor.dtype)
        if dtype is not None and in_dtype.startswith(("float", "bfloat")):
            in_dtype = dtype
        name = _input_name(tensor, line) or f"input_{i}"
        inputs.append(keras.Input(shape=shape, dtype=in_dtype, name=name))
    if line.is_sequential(model):
        inputs = inputs[0]
    else:
        inputs = line.pack_inputs(line.model_input_structure(model), inputs)
    try:
        return keras.models.clone_model(model, input_tensors=inputs, clone_function=clone_layer)
    except UnsupportedModelError:
        raise
    except Exception as e:  # Keras raises many types here
        raise UnsupportedModelError(
            f"Model '{model.name}' could not be cloned ({type(e).__name__}: {e}). "
            "Expected a Functional or Sequential model whose layers implement "
            "get_config()/from_config(). Received: "
            f"type(model)={type(model).__name__}"
        ) from e


def check_graph_model(model):
    """Raise ``UnsupportedModelError`` unless ``model`` is Functional/Sequential."""
    line = line_of(model)
    if line.is_sequential(model):
        if not model.built or not model.inputs:
            raise UnsupportedModelError(
                f"Sequential model '{model.name}' has no known input shape. "
                "Expected a built model: start it with `keras.Input(shape=...)`. "
                f"Received: model.built={model.built}"
            )
        return
    if not getattr(model, "_is_graph_network", True) or not hasattr(model, "_nodes_by_depth"):
        raise UnsupportedModelError(
            f"Model '{model.name}' of class {type(model).__name__} is a "
            "subclassed model and cannot be cloned. Expected a Functional or "
            "Sequential model. Received: type(model)="
            f"{type(model).__module__}.{type(model).__name__}"
        )


def _dtype_name(dtype):
    return getattr(dtype, "name", None) or str(dtype)


def _input_name(tensor, line):
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    layer = history[0]
    return getattr(layer, "name", None)


def copy_weights(source, target, transform=None, skip=()):
    """Copy weights layer by layer (matched by key) from ``source`` to ``target``.

    Args:
        source: the original model.
        target: a clone with the same layer keys.
        transform: optional ``fn(key, layer, [arrays]) -> [arrays]``.
        skip: keys of target layers not to touch (e.g. replaced layers).

    Raises:
        ValueError: a layer's weights do not fit (shape mismatch); the
            message names the layer.
    """
    targets = dict(iter_layers(target))
    for key, layer in iter_layers(source):
        if key in skip or key not in targets:
            continue
        weights = layer.get_weights()
        if not weights:
            continue
        if transform is not None:
            weights = transform(key, layer, weights)
        clone = targets[key]
        expected = [tuple(w.shape) for w in clone.get_weights()]
        got = [tuple(np.shape(w)) for w in weights]
        if expected != got:
            raise ValueError(
                f"Weights of layer '{key}' do not fit its clone. Expected "
                f"shapes {expected}. Received: shapes={got}"
            )
        dtypes = [_dtype_name(w.dtype) for w in clone.weights]
        clone.set_weights([np.asarray(w, dtype=d) for w, d in zip(weights, dtypes, strict=True)])
