"""Unstructured pruning-at-init baselines: masked copies of a model.

:func:`masked_model` returns a copy of a model (same architecture, same
weights) whose prunable kernels are multiplied by fixed 0/1 masks: the
unstructured masks of a saliency method at one global threshold. This is what
PreCropping is compared against: the same method, applied weight by weight.

The masks stay applied through training: each masked kernel gets a
:class:`FixedMask` constraint (``kernel_constraint``, or
``depthwise_constraint``/``pointwise_constraint`` for depthwise and separable
convolutions), which optimizers apply after every update step, and the
initial kernels are already masked. ``FixedMask`` is a registered,
serializable Keras object (package ``"tf_precrop"``), so a masked model saved
as ``.keras`` loads back with its masks; importing ``tf_precrop.baselines``
registers the Keras 3 class. For tf_keras models call
``fixed_mask_class("tf_keras")`` before loading.

Example:

>>> import keras
>>> from tf_precrop.baselines import masked_model, mask_density
>>> model = keras.Sequential([
...     keras.Input((8, 8, 3)),
...     keras.layers.Conv2D(8, 3, name="conv"),
...     keras.layers.GlobalAveragePooling2D(),
...     keras.layers.Dense(4, name="fc"),
... ])
>>> sparse = masked_model(model, "magnitude", 0.3)
>>> round(mask_density(sparse), 2)
0.3
"""

import base64
import functools

import numpy as np

from tf_precrop.backend import KERAS3, get_line, line_of
from tf_precrop.densities import global_topk_masks
from tf_precrop.saliency import compute_scores, prunable_kernels
from tf_precrop.saliency.base import (
    CONSTRAINT_ARGUMENTS,
    PRUNABLE_KERNELS,
    Scores,
    clone_model,
    copy_weights,
    iter_layers,
    named_kernels,
)

__all__ = ["FixedMask", "fixed_mask_class", "mask_density", "masked_model"]


def _encode(mask):
    mask = np.asarray(mask, dtype=bool)
    return {
        "shape": [int(d) for d in mask.shape],
        "bits": base64.b64encode(np.packbits(mask.reshape(-1)).tobytes()).decode("ascii"),
    }


def _decode(shape, bits):
    size = int(np.prod(shape)) if len(shape) else 1
    packed = np.frombuffer(base64.b64decode(bits), dtype=np.uint8)
    return np.unpackbits(packed, count=size).astype(bool).reshape(shape)


def fixed_mask_class(line_name=KERAS3):
    """The ``FixedMask`` constraint class of one Keras line.

    Args:
        line_name: ``"keras3"`` or ``"tf_keras"``.

    Returns:
        The registered class (``tf_precrop>FixedMask`` in that line's
        registry); one class per line, however it is asked for.
    """
    return _fixed_mask_class(line_name)


@functools.cache  # keyed by the positional name only: one class per line
def _fixed_mask_class(line_name):
    import tensorflow as tf

    line = get_line(line_name)
    keras = line.keras
    register = line.register_serializable(package="tf_precrop")

    @register
    class FixedMask(keras.constraints.Constraint):
        """Multiply a weight by a fixed 0/1 mask (after an optional constraint).

        Args:
            mask: boolean array of the weight's shape; ``True`` keeps.
            constraint: optional constraint applied before masking (the
                layer's original constraint, kept when masks are added).

        Example:

        >>> import numpy as np
        >>> c = FixedMask(np.array([True, False]))
        >>> np.asarray(c(np.ones(2, "float32"))).tolist()
        [1.0, 0.0]
        """

        def __init__(self, mask, constraint=None):
            self.mask = np.asarray(mask, dtype=bool)
            self.constraint = keras.constraints.get(constraint)
            self._tensors = {}

        def _mask_tensor(self, dtype):
            dtype = tf.as_dtype(dtype)
            if dtype not in self._tensors:
                with tf.init_scope():  # an eager constant, captured by graphs
                    self._tensors[dtype] = tf.constant(self.mask, dtype=dtype)
            return self._tensors[dtype]

        def __call__(self, w):
            if self.constraint is not None:
                w = self.constraint(w)
            w = tf.convert_to_tensor(w)
            if tuple(w.shape) != self.mask.shape:
                raise ValueError(
                    "FixedMask got a weight of another shape than its mask. "
                    f"Expected shape {self.mask.shape}. Received: "
                    f"w.shape={tuple(w.shape)}"
                )
            return w * self._mask_tensor(w.dtype)

        @property
        def density(self):
            """Fraction of entries kept by the mask."""
            return float(self.mask.mean()) if self.mask.size else 1.0

        def get_config(self):
            config = _encode(self.mask)
            config["constraint"] = (
                None if self.constraint is None else keras.constraints.serialize(self.constraint)
            )
            return config

        @classmethod
        def from_config(cls, config):
            config = dict(config)
            mask = _decode(config.pop("shape"), config.pop("bits"))
            return cls(mask, constraint=config.pop("constraint", None))

    FixedMask.__qualname__ = "FixedMask"
    return FixedMask


#: The Keras 3 ``FixedMask`` constraint (registered as ``tf_precrop>FixedMask``).
FixedMask = fixed_mask_class(KERAS3)


def masked_model(model, method, density, *, data=None, seed=None, scores=None, **score_kwargs):
    """A masked copy of ``model``: its method's unstructured masks at ``density``.

    The copy has the same architecture, layer names and weights; every
    prunable kernel is multiplied by a fixed 0/1 mask keeping the top
    ``round(density * N)`` scores of all ``N`` scored weights (one global
    threshold, ties broken by position), and a :class:`FixedMask` constraint
    keeps pruned weights at exactly zero through training. ``model`` itself
    is not modified. The copy is not compiled.

    Args:
        model: a built Functional or Sequential model (Keras 3 or tf_keras).
        method: a saliency method of ``tf_precrop.saliency.METHODS``.
        density: overall fraction of scored kernel weights kept, in (0, 1].
        data: labelled data for ``"snip"``/``"grasp"``.
        seed: seed of ``"random"`` (and of SynFlow's threshold sample).
        scores: optional precomputed :class:`Scores` to use instead of
            computing them (``method`` must then match ``scores.method``).
        **score_kwargs: more arguments of
            :func:`tf_precrop.saliency.compute_scores` (``loss``, ``rounds``,
            ``layers``, ``verbose``, ``input_shape``). SynFlow's
            ``target_density`` defaults to ``density``.

    Returns:
        The masked copy, in the model's own Keras line.

    Raises:
        ValueError: ``scores`` do not match the model or the method.
        UnsupportedModelError: the model cannot be copied (subclassed).
    """
    line = line_of(model)
    if scores is None:
        if method == "synflow":
            score_kwargs.setdefault("target_density", density)
        scores = compute_scores(model, method, data=data, seed=seed, **score_kwargs)
    elif not isinstance(scores, Scores) or scores.method != method:
        raise ValueError(
            "`scores` must be the Scores of the requested method. Expected "
            f"Scores(method={method!r}). Received: scores={type(scores).__name__}"
            f"(method={getattr(scores, 'method', None)!r})"
        )
    masks = global_topk_masks(scores.per_layer, density)
    layer_of = dict(iter_layers(model))
    prunable_kernels(model, list(masks))  # checks that every key is prunable
    per_variable = {}  # (layer key, kernel name) -> mask of the kernel's shape
    for key, flat in masks.items():
        pairs = named_kernels(layer_of[key])
        expected = int(sum(int(np.prod(v.shape)) for _, v in pairs))
        if flat.size != expected:
            raise ValueError(
                f"Scores of layer '{key}' do not fit its kernels. Expected "
                f"{expected} scores. Received: {flat.size}"
            )
        start = 0
        for name, variable in pairs:
            size = int(np.prod(variable.shape))
            shape = tuple(variable.shape)
            per_variable[key, name] = flat[start : start + size].reshape(shape)
            start += size

    cls = fixed_mask_class(line.name)
    keys_of = {id(layer): key for key, layer in iter_layers(model)}

    def add_constraints(layer, config):
        key = keys_of.get(id(layer))
        for name in PRUNABLE_KERNELS.get(type(layer).__name__, ()):
            if (key, name) in per_variable:
                argument = CONSTRAINT_ARGUMENTS[name]
                previous = getattr(layer, argument, None)
                config[argument] = cls(per_variable[key, name], constraint=previous)
        return None

    clone = clone_model(model, add_constraints)

    def apply_masks(key, layer, weights):
        names = {id(v): name for name, v in named_kernels(layer) or ()}
        result = []
        for w, variable in zip(weights, layer.weights, strict=True):
            mask = per_variable.get((key, names.get(id(variable))))
            result.append(w if mask is None else w * mask.astype(w.dtype))
        return result

    copy_weights(model, clone, transform=apply_masks)
    return clone


def mask_density(model, layers=None):
    """Fraction of prunable kernel weights that are non-zero (kept).

    Args:
        model: a Keras 3 or tf_keras model.
        layers: optional restriction to some layer keys (or a predicate).

    Returns:
        ``(number of non-zero kernel weights) / (number of kernel weights)``
        over the prunable layers; 1.0 for an unpruned model (with no
        exactly-zero weights).
    """
    kept = total = 0
    for _, variables in prunable_kernels(model, layers):
        for variable in variables:
            value = np.asarray(variable.numpy())
            kept += int(np.count_nonzero(value))
            total += value.size
    if total == 0:
        raise ValueError(
            f"Model '{model.name}' has no prunable kernel weights. Expected "
            "Conv*/Dense/DepthwiseConv*/SeparableConv* layers. Received: "
            f"layers={layers!r}"
        )
    return kept / total
