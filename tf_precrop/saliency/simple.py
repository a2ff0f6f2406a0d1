"""Data-free baselines: weight magnitude and random scores."""

import numpy as np

from tf_precrop.saliency.base import Scores, flat_values, model_and_view, prunable_kernels


def magnitude_scores(model, *, layers=None):
    """Magnitude scores ``|theta|`` of every prunable kernel weight.

    Args:
        model: a built Keras 3 or tf_keras model (read only).
        layers: optional restriction to some layer keys (or a predicate).

    Returns:
        A :class:`Scores` with method ``"magnitude"``.

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")])
    >>> magnitude_scores(m).per_layer["fc"].shape
    (6,)
    """
    _, view = model_and_view(model)
    per_layer = {
        key: np.abs(flat_values(variables)) for key, variables in prunable_kernels(view, layers)
    }
    return Scores("magnitude", per_layer, {})


def random_scores(model, *, seed=None, layers=None):
    """Uniform random scores in [0, 1), one per prunable kernel weight.

    Layers are drawn in model order from one ``numpy.random.default_rng(seed)``
    stream, so a given seed always gives the same scores (and therefore the
    same masks).

    Args:
        model: a built Keras 3 or tf_keras model (read only).
        seed: integer seed; ``None`` draws fresh entropy.
        layers: optional restriction to some layer keys (or a predicate).

    Returns:
        A :class:`Scores` with method ``"random"`` and ``info["seed"]``.
    """
    rng = np.random.default_rng(seed)
    per_layer = {}
    _, view = model_and_view(model)
    for key, variables in prunable_kernels(view, layers):
        size = int(sum(int(np.prod(v.shape)) for v in variables))
        per_layer[key] = rng.random(size, dtype=np.float64)
    return Scores("random", per_layer, {"seed": seed})
