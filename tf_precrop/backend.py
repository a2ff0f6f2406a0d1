"""The one seam between tf_precrop and the two Keras lines.

tf_precrop accepts models built with Keras 3 (``import keras``) and with the
Keras 2 line (``import tf_keras``; TFMOT needs it). Everything that differs
between the two lines lives here, behind :class:`KerasLine`: one subclass per
line (``_Keras3Line``, ``_TFKerasLine``) implements what differs, and no other
module asks which line it holds.

``tf_keras`` is imported lazily, only when a tf_keras model (or
``line="tf_keras"``) is actually used, so Keras 3 users never load it. The
ambiguous ``tf.keras`` is never used.
"""

import functools
import importlib

from tf_precrop.errors import UnsupportedModelError

KERAS3 = "keras3"
TF_KERAS = "tf_keras"
LINES = (KERAS3, TF_KERAS)


class KerasLine:
    """Uniform access to one Keras line (module, graph nodes, cloning, saving).

    Get one with :func:`get_line` or :func:`line_of`; the two subclasses hold
    what differs between the lines.

    Args:
        name: ``"keras3"`` or ``"tf_keras"``.
    """

    #: Whether TFMOT accepts this line's models (only tf_keras).
    supports_tfmot = False
    #: Whether a variable's ``regularizer`` attribute is added to the loss
    #: (Keras 3); tf_keras attaches penalties with ``model.add_loss`` instead.
    variables_take_regularizer = False
    #: Whether ``model.save_weights`` also saves the compiled optimizer's state
    #: (Keras 3; tf_keras' ``.h5`` weights leave it out), which resuming needs.
    weights_keep_optimizer_state = False

    def __new__(cls, name=KERAS3):
        if cls is KerasLine:
            if name not in LINES:
                raise ValueError(
                    f"Unknown Keras line. Expected one of {LINES}. Received: line={name!r}"
                )
            cls = _Keras3Line if name == KERAS3 else _TFKerasLine
        return super().__new__(cls)

    def __init__(self, name=KERAS3):
        self.name = name

    def __repr__(self):
        return f"KerasLine({self.name!r})"

    @functools.cached_property
    def keras(self):
        """The Keras module of this line (``keras`` or ``tf_keras``)."""
        raise NotImplementedError

    @property
    def layers(self):
        return self.keras.layers

    # ----------------------------------------------------------------- models
    def is_model(self, obj):
        return isinstance(obj, self.keras.Model)

    def is_sequential(self, model):
        return isinstance(model, self.keras.Sequential)

    def is_layer(self, obj):
        return isinstance(obj, self.keras.layers.Layer)

    def is_input_layer(self, obj):
        return isinstance(obj, self.keras.layers.InputLayer)

    def functional_view(self, model):
        """The functional graph behind ``model`` (Sequential models included).

        Raises UnsupportedModelError for subclassed or unbuilt models.
        """
        if self.is_sequential(model):
            graph = self._sequential_graph(model)
            if graph is None or not getattr(graph, "_nodes_by_depth", None):
                raise UnsupportedModelError(
                    f"Sequential model '{model.name}' has no known input shape, so "
                    "its channel graph cannot be traced. Expected a built model: "
                    "start it with `keras.Input(shape=...)` or call "
                    "`model.build(input_shape)`. Received: model.built="
                    f"{model.built}"
                )
            return graph
        if not getattr(model, "_is_graph_network", True) or not hasattr(
            model, "_nodes_by_depth"
        ):
            raise UnsupportedModelError(
                f"Model '{model.name}' of class {type(model).__name__} is a "
                "subclassed model; its call() is Python code whose channel flow "
                "cannot be traced. Expected a Functional or Sequential model. "
                "Rewrite it with the functional API (keras.Input + layer calls). "
                f"Received: type(model)={type(model).__module__}."
                f"{type(model).__name__}"
            )
        return model

    def nodes_in_order(self, graph):
        """Nodes of a functional graph, inputs first (topological order)."""
        by_depth = graph._nodes_by_depth
        for depth in sorted(by_depth, reverse=True):
            yield from by_depth[depth]

    def node_constants(self, node):
        """Array-like, non-tensor call arguments of a node (e.g. ``x * array``)."""
        import numpy as np

        found = []
        for value in self._node_arguments(node):
            if hasattr(value, "_keras_history") or isinstance(value, (str, bytes)):
                continue
            if hasattr(value, "shape") and hasattr(value, "dtype"):
                found.append(np.asarray(value))
        return found

    def tensor_key(self, tensor):
        """A hashable identity of a symbolic tensor within its graph."""
        layer, node_index, tensor_index = tensor._keras_history[:3]
        return (id(layer), node_index, tensor_index)

    def graph_inputs(self, graph):
        return list(graph.inputs)

    def graph_outputs(self, graph):
        return list(graph.outputs)

    def layer_config(self, layer):
        return layer.get_config()

    # ---------------------------------------------------------------- rebuild
    def input(self, shape, dtype, name):
        """A new symbolic input of ``shape`` (without the batch dimension)."""
        return self.keras.Input(shape=tuple(shape), dtype=dtype, name=name)

    def clone_functional(self, model, input_tensors, clone_function):
        return self.keras.models.clone_model(
            model, input_tensors=input_tensors, clone_function=clone_function
        )

    def sequential(self, layers, name):
        return self.keras.Sequential(layers, name=name)

    # ----------------------------------------------------------------- saving
    @property
    def save_suffix(self):
        """File suffix of this line's native whole-model format."""
        return ".keras"

    def load_model(self, path, safe_mode=True, custom_objects=None):
        return self.keras.models.load_model(
            path, safe_mode=safe_mode, custom_objects=custom_objects
        )

    def pack_inputs(self, structure, flat):
        """``flat`` tensors in the nested structure of ``structure`` (a model's inputs)."""
        return _tf_nest().pack_sequence_as(structure, flat)

    def raw_variable(self, variable):
        """The ``tf.Variable`` behind a Keras variable."""
        return variable


class _Keras3Line(KerasLine):
    """Keras 3 (``import keras``), TensorFlow backend."""

    variables_take_regularizer = True
    weights_keep_optimizer_state = True

    @functools.cached_property
    def keras(self):
        return importlib.import_module("keras")

    @property
    def ops(self):
        """``keras.ops``."""
        return self.keras.ops

    def register_serializable(self, package):
        """A class decorator that registers a Keras object under ``package``."""
        return self.keras.saving.register_keras_serializable(package=package)

    def _sequential_graph(self, model):
        return getattr(model, "_functional", None)

    def node_operation(self, node):
        return node.operation

    def node_inputs(self, node):
        return list(node.input_tensors)

    def node_outputs(self, node):
        return list(self.keras.tree.flatten(node.outputs))

    def _node_arguments(self, node):
        args = node.arguments
        values = list(args.args) + list(args.kwargs.values()) if args is not None else []
        return self.keras.tree.flatten(values)

    def model_input_structure(self, model):
        structure = getattr(model, "_inputs_struct", None)
        return model.input if structure is None else structure

    def pack_inputs(self, structure, flat):
        return self.keras.tree.pack_sequence_as(structure, flat)

    def raw_variable(self, variable):
        return getattr(variable, "value", variable)

    def export_input_signature(self, model):
        """The input signature ``model.export`` writes (Keras 3's own helper), or None."""
        try:
            from keras.src.export.export_utils import get_input_signature
        except ImportError:  # pragma: no cover - depends on the Keras version
            return None
        return get_input_signature(model)

    def write_export_archive(self, archive, directory):
        """Writes a ``keras.export.ExportArchive`` to ``directory``, silently."""
        archive.write_out(directory, verbose=False)


class _TFKerasLine(KerasLine):
    """The Keras 2 line (``import tf_keras``); TFMOT needs it."""

    supports_tfmot = True

    @functools.cached_property
    def keras(self):
        try:
            return importlib.import_module("tf_keras")
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError(
                "tf_keras is needed for Keras 2 models. Install it with "
                '`pip install "tf_precrop[tfmot]"`.'
            ) from e

    @property
    def ops(self):
        """The few tensor ops tf_precrop's layers need, from TensorFlow."""
        import types

        import tensorflow as tf

        return types.SimpleNamespace(
            split=lambda x, n, axis: tf.split(x, n, axis=axis),
            reshape=tf.reshape,
            transpose=lambda x, axes: tf.transpose(x, axes),
            shape=tf.shape,
            stack=tf.stack,
        )

    def register_serializable(self, package):
        return self.keras.utils.register_keras_serializable(package=package)

    def _sequential_graph(self, model):
        return model

    def node_operation(self, node):
        return node.layer

    def node_inputs(self, node):
        return list(node.keras_inputs)

    def node_outputs(self, node):
        return list(_tf_nest().flatten(node.outputs))

    def _node_arguments(self, node):
        return _tf_nest().flatten([list(node.call_args), dict(node.call_kwargs)])

    def model_input_structure(self, model):
        structure = getattr(model, "_nested_inputs", None)
        return model.input if structure is None else structure

    def export_input_signature(self, model):
        return None  # tf_keras' export_model names specs after the inputs (the fallback)

    def write_export_archive(self, archive, directory):
        import contextlib
        import io

        # tf_keras' write_out has no verbose flag; it prints the endpoint summary.
        with contextlib.redirect_stdout(io.StringIO()):
            archive.write_out(directory)


def _tf_nest():
    import tensorflow as tf

    return tf.nest


@functools.cache
def get_line(name=KERAS3):
    """The :class:`KerasLine` called ``name`` (``"keras3"`` or ``"tf_keras"``)."""
    return KerasLine(name)


def line_of(model):
    """The :class:`KerasLine` a model (or layer) belongs to.

    Raises:
        UnsupportedModelError: ``model`` is not a Keras 3 or tf_keras object.
    """
    module = type(model).__module__ or ""
    for cls in type(model).__mro__:
        module = cls.__module__ or ""
        if module.startswith("tf_keras"):
            return get_line(TF_KERAS)
        if module.startswith("keras"):
            return get_line(KERAS3)
    raise UnsupportedModelError(
        "Expected a Keras 3 (`keras.Model`) or tf_keras (`tf_keras.Model`) "
        f"model. Received: model of type {type(model).__module__}."
        f"{type(model).__name__}"
    )
