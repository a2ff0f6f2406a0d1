"""Saliency scores of prunable weights at initialization.

:func:`compute_scores` scores every kernel weight of a model's prunable layers
(convolutions, transposed/depthwise/separable convolutions, ``Dense``) with
a pruning-at-initialization method. Whatever the method, a *higher score
means keep*: a global threshold that keeps the top scores gives that method's
mask (see :func:`tf_precrop.densities.global_threshold_densities`).

Methods (:data:`METHODS`):

* ``"synflow"`` - iterative SynFlow (Tanaka et al., 2020), data-free.
* ``"snip"`` - SNIP (Lee et al., 2019), needs ``data``.
* ``"grasp"`` - GraSP (Wang et al., 2020), needs ``data``.
* ``"magnitude"`` - ``|theta|``.
* ``"random"`` - seeded uniform scores.

Example:

>>> import keras
>>> model = keras.Sequential([
...     keras.Input((8, 8, 3)),
...     keras.layers.Conv2D(4, 3, name="conv"),
...     keras.layers.GlobalAveragePooling2D(),
...     keras.layers.Dense(2, name="fc"),
... ])
>>> scores = compute_scores(model, "synflow", target_density=0.5, rounds=3, verbose=0)
>>> sorted(scores.per_layer), scores.per_layer["conv"].shape
(['conv', 'fc'], (108,))
"""

import numbers

from tf_precrop.errors import BudgetError
from tf_precrop.saliency.base import PRUNABLE_KERNELS, Scores, iter_layers, prunable_kernels
from tf_precrop.saliency.gradient import grasp_scores, snip_scores
from tf_precrop.saliency.simple import magnitude_scores, random_scores
from tf_precrop.saliency.synflow import synflow_scores

__all__ = [
    "METHODS",
    "PRUNABLE_KERNELS",
    "Scores",
    "compute_scores",
    "iter_layers",
    "prunable_kernels",
]

#: Names accepted by :func:`compute_scores`.
METHODS = ("synflow", "snip", "grasp", "magnitude", "random")


def compute_scores(
    model,
    method,
    *,
    data=None,
    loss=None,
    target_density=None,
    rounds=100,
    seed=None,
    verbose=1,
    layers=None,
    input_shape=None,
):
    """Score the prunable kernel weights of ``model`` (higher = keep).

    The model is never modified (weights are bitwise identical afterwards).

    Args:
        model: a built Keras 3 or tf_keras model, or its
            :class:`~tf_precrop.graph.ChannelGraph` (the plan passes the graph
            it already built, so the model is not walked again). SynFlow
            needs a Functional or Sequential model (it runs on a linearised
            copy); the other methods also accept subclassed models.
        method: one of :data:`METHODS`.
        data: labelled data for ``"snip"`` and ``"grasp"``: ``(x, y)`` arrays
            or a ``tf.data.Dataset`` of ``(x, y)`` batches (at most
            ``tf_precrop.saliency.gradient.MAX_BATCHES`` batches are used).
            Ignored by the other methods.
        loss: loss callable ``loss(y_true, y_pred)`` or Keras loss name for
            ``"snip"``/``"grasp"``; defaults to the compiled loss, else to
            sparse categorical cross-entropy (``from_logits`` inferred).
        target_density: SynFlow's final fraction of kept weights in (0, 1];
            the iterative schedule prunes towards it. ``None`` means
            single-shot SynFlow. Ignored by the other methods.
        rounds: SynFlow iterations (100 as in the paper).
        seed: seed of ``"random"`` (and of SynFlow's threshold sample).
        verbose: 0 silent, 1 progress bar (SynFlow).
        layers: optional iterable of layer keys, or predicate ``fn(key)``,
            restricting the scored layers.
        input_shape: SynFlow's per-sample input shape; ``None`` caps each
            spatial side at ``tf_precrop.saliency.synflow.MAX_SIDE`` (96).

    Returns:
        A :class:`Scores`: ``per_layer`` maps each layer key (name path, e.g.
        ``"mobilenetv2_1.00_224/block_1_expand"``) to a flat ``float64``
        array over that layer's kernels, in :func:`prunable_kernels` order.

    Raises:
        ValueError: unknown method, bad arguments, or data that does not fit
            the model (shape, dtype, labels out of range).
        ScoreError: scores are NaN/inf or all zero, or SNIP/GraSP got no data.
        UnsupportedModelError: the model cannot be walked or copied.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc")])
    >>> s = compute_scores(model, "random", seed=0)
    >>> s.method, s.per_layer["fc"].shape
    ('random', (12,))
    """
    if method not in METHODS:
        raise ValueError(
            f"Unknown saliency method. Expected one of {METHODS}. Received: method={method!r}"
        )
    if target_density is not None and (
        isinstance(target_density, bool)
        or not isinstance(target_density, numbers.Real)
        or not 0.0 < float(target_density) <= 1.0
    ):
        raise BudgetError(
            "`target_density` must be the fraction of weights to keep, in "
            f"(0, 1]. Received: target_density={target_density!r}"
        )
    if method == "synflow":
        return synflow_scores(
            model,
            target_density=None if target_density is None else float(target_density),
            rounds=rounds,
            seed=seed,
            verbose=verbose,
            layers=layers,
            input_shape=input_shape,
        )
    if method == "snip":
        return snip_scores(model, data=data, loss=loss, layers=layers)
    if method == "grasp":
        return grasp_scores(model, data=data, loss=loss, layers=layers)
    if method == "magnitude":
        return magnitude_scores(model, layers=layers)
    return random_scores(model, seed=seed, layers=layers)
