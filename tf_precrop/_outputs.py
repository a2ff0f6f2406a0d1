"""Whether a model outputs probabilities (a softmax) or logits.

One helper, :func:`outputs_probabilities`, for every place that picks
``from_logits`` for a cross-entropy (training, gradient saliency, the TFMOT
fine-tune). It follows the layer that produced the model's (first) output
into nested models, recursively, until a layer that is not a model, and asks
whether that layer applies a softmax. ``outputs[0]._keras_history[0]`` alone
stops at a nested model (which has no ``activation``), so a softmax inside a
nested model would be taken for logits.
"""

from tf_precrop.backend import line_of

# tf_keras wraps ``tf.nn.softmax(x)`` / ``tf.math.softmax(x)`` on a symbolic
# tensor in a TFOpLambda layer whose ``symbol`` names the op.
_TF_OP_SOFTMAX_SYMBOLS = ("nn.softmax", "math.softmax")


def outputs_probabilities(model):
    """True when ``model``'s (first) output is a softmax, so probabilities, not logits.

    The output's producing layer is followed into nested models (a model
    used as a layer, Functional or Sequential), recursively, until a layer
    that is not a model. That layer counts as a softmax when it is

    - a layer with ``activation="softmax"`` (``Dense``, ``Conv2D``, ...,
      and ``Activation("softmax")``),
    - a ``Softmax`` layer,
    - ``keras.ops.softmax`` / ``keras.activations.softmax`` called on a
      symbolic tensor (Keras 3), or ``tf.nn.softmax`` on one (tf_keras).

    Both Keras lines (Keras 3 and tf_keras) are supported. A model whose
    outputs have no layer history (a subclassed model) falls back to its
    last layer.

    Args:
        model: A Keras 3 or tf_keras model.

    Returns:
        ``True`` for probabilities (a softmax output), ``False`` otherwise
        (logits, or no output layer to inspect).

    Raises:
        UnsupportedModelError: ``model`` is not a Keras 3 or tf_keras object.

    Example:

    >>> import keras
    >>> inputs = keras.Input((8,))
    >>> inner = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    >>> outer = keras.Model(inputs, inner(inputs))
    >>> outputs_probabilities(outer)
    True
    """
    line = line_of(model)
    layer = _output_layer(model, line)
    return layer is not None and _is_softmax(layer, line)


def _output_layer(model, line):
    """The non-model layer (or operation) producing ``model``'s first output, or None."""
    seen = set()
    layer, index = model, 0
    while layer is not None and line.is_model(layer) and id(layer) not in seen:
        seen.add(id(layer))
        layer, index = _producer(layer, index)
    return layer


def _producer(model, index):
    """``(layer, output index in that layer)`` producing ``model.outputs[index]``."""
    try:
        history = model.outputs[index]._keras_history
        return history[0], history[2]
    except (AttributeError, IndexError, TypeError, ValueError):
        layers = getattr(model, "layers", None)
        return (layers[-1] if layers else None), 0


def _is_softmax(layer, line):
    if isinstance(layer, line.layers.Softmax):
        return True
    if not line.is_layer(layer) and type(layer).__name__ == "Softmax":
        return True  # Keras 3: the operation of keras.ops.softmax on a symbolic tensor
    if getattr(layer, "symbol", None) in _TF_OP_SOFTMAX_SYMBOLS:
        return True  # tf_keras: tf.nn.softmax on a symbolic tensor
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) == "softmax"
