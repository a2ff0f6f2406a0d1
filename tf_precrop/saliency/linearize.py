"""SynFlow's linearised copy of a model (see :mod:`tf_precrop.saliency.synflow`).

Every layer is copied as its registry entry says (``LayerRule.linearization``):
weights made absolute, activations made the identity, BatchNormalization folded
to one per-channel affine map, centred normalisations reduced to their affine
part; 1x1 stride-1 ``Conv2D`` layers run as ``Dense`` on the channel axis.
"""

import functools

import numpy as np

from tf_precrop.backend import get_line, line_of
from tf_precrop.errors import UnsupportedModelError
from tf_precrop.graph.rules import OPERATION_RULE, rule_of
from tf_precrop.saliency.base import clone_model, copy_weights, iter_layers


def linearised_clone(model, shape, full_shape, dtype):
    """The linearised copy at ``shape``, or at full resolution if that fails."""
    try:
        return _build_clone(model, shape, dtype), shape, None
    except (ValueError, UnsupportedModelError) as e:
        if tuple(shape) == tuple(full_shape) or any(d is None for d in full_shape):
            raise
        note = (
            f"could not run at {tuple(shape)} ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}); fell back to full resolution "
            f"{tuple(full_shape)}"
        )
        return _build_clone(model, full_shape, dtype), full_shape, note


def _is_pointwise_conv(layer, rule):
    """A Conv2D that is a per-pixel matrix product (1x1, stride 1, one group)."""
    return (
        getattr(rule, "pointwise_as_dense", False)
        and len(getattr(layer, "kernel_size", ())) == 2
        and tuple(layer.kernel_size) == (1, 1)
        and tuple(layer.strides) == (1, 1)
        and getattr(layer, "groups", 1) == 1
        and getattr(layer, "data_format", "channels_last") == "channels_last"
    )


def _build_clone(model, shape, dtype):
    """The linearised copy (see the module docstring) at input ``shape``.

    Besides linearising, 1x1 stride-1 ``Conv2D`` layers become ``Dense``
    layers on the channel axis (the same map; kernel ``(1, 1, n, m)`` becomes
    ``(n, m)`` with the same flat order, so scores line up): TensorFlow's
    kernel gradient for a matrix product is cheaper than for a convolution.
    """
    line = line_of(model)
    dropped, pointwise, batch_norms = set(), set(), set()

    def linearise(layer, config):
        # The layer's registry entry says how (LayerRule.linearization).
        rule = rule_of(layer)
        how = "as_is" if rule is None else rule.linearization
        if how == "refuse":
            raise UnsupportedModelError(
                f"Layer '{layer.name}' ({type(layer).__name__}) has a rule that refuses "
                "SynFlow's linearisation. Expected a rule whose `linearization` is one of "
                "'as_is', 'identity', 'batch_norm' or 'affine' (set it on the LayerRule "
                "registered with `tf_precrop.register_rule`), or use method='synexp'. "
                f"Received: linearization={how!r}"
            )
        if how == "batch_norm":  # inference mode: a per-channel affine map
            batch_norms.add(id(layer))
            axis = config["axis"]
            return _norm_affine(line.name)(
                axis=list(axis) if isinstance(axis, list | tuple) else [axis],
                center=True,
                scale=True,
                name=layer.name,
                dtype=dtype,
            )
        if how == "identity":
            dropped.add(id(layer))
            return line.layers.Activation("linear", name=layer.name, dtype=dtype)
        if how == "affine":
            axis = config.get("axis", -1)
            return _norm_affine(line.name)(
                axis=list(axis) if isinstance(axis, list | tuple) else [axis],
                center=config.get("center", True),
                scale=config.get("scale", True),
                name=layer.name,
                dtype=dtype,
            )
        if _is_pointwise_conv(layer, rule):
            pointwise.add(id(layer))
            return line.layers.Dense(
                layer.filters,
                use_bias=layer.use_bias,
                name=layer.name,
                dtype=dtype,
                kernel_initializer="zeros",
            )
        if "activation" in config:
            config["activation"] = "linear"
        for key in config:  # weights are copied over: skip random init
            if key.endswith("_initializer") and config[key] is not None:
                config[key] = "zeros"
        return None

    clone = clone_model(model, linearise, input_shape=shape, dtype=dtype)
    for output in clone.outputs:
        if any(d == 0 for d in tuple(output.shape)[1:]):
            raise ValueError(
                f"Model output has an empty axis at input shape {tuple(shape)}. "
                f"Received: output shape={tuple(output.shape)}"
            )
    skip = {key for key, layer in iter_layers(model) if id(layer) in dropped}

    def absolute(key, layer, weights):
        if id(layer) in batch_norms:
            return _batch_norm_affine(layer)
        result = []
        for w in weights:
            w = np.asarray(w)
            if np.issubdtype(w.dtype, np.floating):
                w = np.abs(w)
            if id(layer) in pointwise and w.ndim == 4:
                w = w.reshape(w.shape[2:])
            result.append(w)
        return result

    copy_weights(model, clone, transform=absolute, skip=skip)
    return clone


def _batch_norm_affine(layer):
    """``[scale, offset]`` of a linearised BatchNormalization in inference mode.

    With every parameter replaced by its absolute value, inference-mode
    BatchNormalization is ``|gamma| * (x - |mean|) / sqrt(|var| + eps) + |beta|``
    = ``scale * x + offset``; computed in float64, applied by ``NormAffine``.
    Read from the layer's attributes, so extra weights (tf_keras'
    ``renorm`` statistics, unused at inference) do not matter.
    """

    def value(variable):
        return np.abs(np.asarray(variable.numpy(), dtype=np.float64))

    mean, variance = value(layer.moving_mean), value(layer.moving_variance)
    gamma = value(layer.gamma) if layer.gamma is not None else 1.0
    beta = value(layer.beta) if layer.beta is not None else 0.0
    scale = np.broadcast_to(gamma / np.sqrt(variance + float(layer.epsilon)), mean.shape)
    return [scale, beta - mean * scale]


@functools.cache
def _norm_affine(line_name):
    """``NormAffine`` layer class for one Keras line (see the module docstring)."""
    line = get_line(line_name)

    class NormAffine(line.layers.Layer):
        """The affine part of a normalisation: ``gamma * x + beta``.

        Same weights (``gamma`` then ``beta``, each optional, over ``axis``)
        as LayerNormalization/GroupNormalization, so weights copy one to one;
        a BatchNormalization's are folded first (see ``_batch_norm_affine``).
        """

        def __init__(self, axis, center, scale, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True
            self.axis, self.center, self.scale = list(axis), bool(center), bool(scale)

        def build(self, input_shape):
            rank = len(input_shape)
            axes = sorted(a % rank for a in self.axis)
            shape = tuple(input_shape[a] for a in axes)
            self._broadcast = [input_shape[d] if d in axes else 1 for d in range(rank)]
            self.gamma = self.add_weight(name="gamma", shape=shape) if self.scale else None
            self.beta = self.add_weight(name="beta", shape=shape) if self.center else None
            super().build(input_shape)

        def call(self, inputs, mask=None):  # noqa: ARG002 - BatchNormalization takes a mask
            import tensorflow as tf

            if self.gamma is not None:
                inputs = inputs * tf.reshape(tf.cast(self.gamma, inputs.dtype), self._broadcast)
            if self.beta is not None:
                inputs = inputs + tf.reshape(tf.cast(self.beta, inputs.dtype), self._broadcast)
            return inputs

        def compute_output_shape(self, input_shape):
            return input_shape

    return NormAffine


def _non_homogeneous_ops(model):
    """Names of layers/ops that break R(s * x) == s * R(x) (gates, norms, ...).

    Each layer's rule says (``LayerRule.is_homogeneous``); Keras 3 operations
    are judged by the operation rule; a layer without a rule counts as
    non-homogeneous (the safe answer: it only turns the rescaling off).
    """
    line = line_of(model)
    affine = _norm_affine(line.name)  # the copy's own folded norms: degree one
    found = []

    def walk(container):
        ops = getattr(container, "operations", None) or container.layers
        for op in ops:
            if op is container or line.is_input_layer(op) or isinstance(op, affine):
                continue
            if line.is_model(op):
                walk(op)
                continue
            rule = rule_of(op) if line.is_layer(op) else OPERATION_RULE
            if rule is None or not rule.is_homogeneous(op):
                found.append(op.name)

    walk(model)
    return found
