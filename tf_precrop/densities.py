"""Per-layer densities: how much of each layer to keep.

A *density* is the fraction of a layer's (prunable) weights that is kept, so
``1.0`` is the whole layer and ``0.0`` nothing. This module turns saliency
scores, layer shapes or layer costs into one density per layer. It is pure
NumPy (the closed forms need no solver) and knows nothing about Keras: layers
are plain dictionary keys, usually the layer keys of
:func:`tf_precrop.saliency.prunable_kernels`.

Four rules are provided:

* :func:`global_threshold_densities` - keep the top-scoring weights of the
  whole network with one threshold (what pruning-at-init methods do);
  :func:`global_topk_masks` returns the masks themselves.
* :func:`uniform_densities` - the same density everywhere.
* :func:`erk_densities` - Erdos-Renyi-Kernel (Evci et al., 2020).
* :func:`synexp_densities` - the data-free optimum of ``sum(log p)`` under a
  linear cost budget (the SynExp rule of later versions of PreCropping).

Example:

>>> import numpy as np
>>> scores = {"a": np.array([3.0, 1.0]), "b": np.array([2.0, 0.5, 0.1, 4.0])}
>>> global_threshold_densities(scores, 0.5)
{'a': 0.5, 'b': 0.5}
"""

import math
import numbers

import numpy as np

from tf_precrop.errors import BudgetError

__all__ = [
    "erk_densities",
    "global_threshold_densities",
    "global_topk_masks",
    "synexp_densities",
    "uniform_densities",
]


# --------------------------------------------------------------------- checks
def _check_density(density, name="density"):
    if (
        isinstance(density, bool)
        or not isinstance(density, numbers.Real)
        or not math.isfinite(float(density))
        or not 0.0 <= float(density) <= 1.0
    ):
        raise BudgetError(
            f"`{name}` must be a fraction of weights to keep, a number in "
            f"[0, 1]. Received: {name}={density!r}"
        )
    return float(density)


def _check_mapping(value, name):
    if not hasattr(value, "items"):
        raise TypeError(
            f"`{name}` must be a dict mapping layer keys to values. "
            f"Received: {name} of type {type(value).__name__}"
        )
    if not value:
        raise ValueError(f"`{name}` must not be empty. Received: {name}={value!r}")
    return value


def _flat_scores(scores):
    _check_mapping(scores, "scores")
    flat = {}
    for key, value in scores.items():
        array = np.asarray(value, dtype=np.float64).reshape(-1)
        if np.isnan(array).any():
            raise ValueError(
                f"Scores of layer '{key}' contain NaN; a global threshold needs "
                f"comparable numbers. Received: {int(np.isnan(array).sum())} NaN "
                f"values out of {array.size}"
            )
        flat[key] = array
    return flat


# ------------------------------------------------------------ global threshold
def global_topk_masks(scores, density):
    """Keep the top ``density`` fraction of all scores with one threshold.

    Exactly ``k = round(density * N)`` weights are kept, ``N`` being the total
    number of scores. Every score strictly above the k-th largest value is
    kept; ties *at* the threshold are broken deterministically in favour of
    the earlier position (layers in the order of ``scores``, then flat index
    inside a layer). A layer may end up with no weight kept.

    Args:
        scores: dict mapping a layer key to an array of scores (any shape;
            higher means more important).
        density: fraction of all weights to keep, in [0, 1].

    Returns:
        dict mapping each key to a boolean array of the same shape as its
        scores, ``True`` where the weight is kept.

    Example:

    >>> import numpy as np
    >>> masks = global_topk_masks({"a": np.array([1.0, 1.0, 2.0])}, 2 / 3)
    >>> masks["a"].tolist()
    [True, False, True]
    """
    density = _check_density(density)
    flat = _flat_scores(scores)
    total = int(sum(array.size for array in flat.values()))
    k = int(round(density * total))
    if k >= total:
        keep = {key: np.ones(array.size, dtype=bool) for key, array in flat.items()}
    elif k <= 0:
        keep = {key: np.zeros(array.size, dtype=bool) for key, array in flat.items()}
    else:
        threshold = kth_largest(list(flat.values()), k)
        keep = {key: array > threshold for key, array in flat.items()}
        missing = k - sum(int(np.count_nonzero(mask)) for mask in keep.values())
        for key, array in flat.items():  # ties at the threshold: earliest first
            if missing <= 0:
                break
            ties = np.flatnonzero(array == threshold)[:missing]
            keep[key][ties] = True
            missing -= ties.size
    return {key: keep[key].reshape(np.shape(value)) for key, value in scores.items()}


def kth_largest(arrays, k):
    """The ``k``-th largest value of flat ``arrays`` together (1 <= k <= size).

    A partial sort (``np.partition``) of only the values that can hold the
    answer: scores are often mostly exact zeros (SynFlow's pruned weights,
    zero kernels), which make a partition of everything slow. With ``P``
    positive and ``Z`` zero values the answer is the ``k``-th largest positive
    value if ``k <= P``, zero if ``k <= P + Z``, else the ``(k - P - Z)``-th
    largest negative value.
    """
    positives = sum(int(np.count_nonzero(array > 0)) for array in arrays)
    if k <= positives:
        pool = np.concatenate([array[array > 0] for array in arrays])
    else:
        nonnegative = sum(int(np.count_nonzero(array >= 0)) for array in arrays)
        if k <= nonnegative:
            return 0.0
        pool = np.concatenate([array[array < 0] for array in arrays])
        k -= nonnegative
    return np.partition(pool, pool.size - k)[pool.size - k]


def global_threshold_densities(scores, density):
    """Per-layer densities from one global threshold on the scores.

    Keeps the ``round(density * N)`` highest scores of the whole network (see
    :func:`global_topk_masks` for the tie rule) and reports, for each layer,
    the fraction of its weights that survive.

    Args:
        scores: dict mapping a layer key to an array of scores (higher means
            keep), e.g. ``Scores.per_layer``.
        density: overall fraction of weights to keep, in [0, 1].

    Returns:
        dict mapping each key to the fraction of that layer that is kept
        (a float in [0, 1]; ``0.0`` for a layer that loses everything).

    Example:

    >>> import numpy as np
    >>> global_threshold_densities({"a": np.arange(4.0), "b": np.full(4, 2.5)}, 0.5)
    {'a': 0.25, 'b': 0.75}
    """
    masks = global_topk_masks(scores, density)
    return {key: (float(mask.mean()) if mask.size else 0.0) for key, mask in masks.items()}


# ------------------------------------------------------------------- uniform
def _size_of(value):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    shapes = _shape_list(value)
    return int(sum(math.prod(shape) for shape in shapes))


def _shape_list(value):
    """A kernel shape, or a list of kernel shapes, as a list of int tuples."""
    if isinstance(value, numbers.Integral):
        return [(int(value),)]
    items = list(value)
    if items and all(isinstance(item, numbers.Integral) for item in items):
        return [tuple(int(item) for item in items)]
    return [tuple(int(dim) for dim in item) for item in items]


def uniform_densities(sizes, density):
    """The same density for every layer.

    Args:
        sizes: dict mapping a layer key to its size (an int) or kernel shape,
            or simply an iterable of layer keys.
        density: the density of every layer, in [0, 1].

    Returns:
        dict mapping each key to ``density``.

    Example:

    >>> uniform_densities({"conv1": 864, "fc": 1000}, 0.3)
    {'conv1': 0.3, 'fc': 0.3}
    """
    density = _check_density(density)
    keys = list(sizes.keys()) if hasattr(sizes, "keys") else list(sizes)
    if not keys:
        raise ValueError(f"`sizes` must name at least one layer. Received: sizes={sizes!r}")
    return {key: density for key in keys}


# ----------------------------------------------------------------------- ERK
def erk_densities(layer_shapes, density):
    """Erdos-Renyi-Kernel densities (Evci et al., 2020, "Rigging the Lottery").

    A layer with kernel shape ``(d_1, ..., d_n)`` gets a density proportional
    to ``(d_1 + ... + d_n) / (d_1 * ... * d_n)``: small layers, and layers with
    few inputs and outputs per weight, stay denser. The common factor is set
    so that the kept weights add up to ``density`` times all weights; a layer
    whose density would exceed 1 is kept dense and the factor is recomputed
    for the others (repeated until no layer exceeds 1).

    Args:
        layer_shapes: dict mapping a layer key to its kernel shape, e.g.
            ``(3, 3, 64, 128)`` or ``(512, 10)``; a layer with several kernels
            (separable convolutions) may give a list of shapes, whose kept
            counts are pooled.
        density: overall fraction of weights to keep, in (0, 1].

    Returns:
        dict mapping each key to its density in (0, 1]; the kept counts
        ``sum(density_l * size_l)`` equal ``density * sum(size_l)``.

    Raises:
        BudgetError: ``density`` is not in (0, 1].

    Example:

    >>> d = erk_densities({"conv": (3, 3, 16, 32), "fc": (32, 10)}, 0.5)
    >>> round(d["conv"] * 4608 + d["fc"] * 320)
    2464
    """
    density = _check_density(density)
    if density == 0.0:
        raise BudgetError(
            "ERK densities are proportional to a positive factor, so the "
            "overall density must be positive. Received: density=0.0"
        )
    _check_mapping(layer_shapes, "layer_shapes")
    sizes, raw = {}, {}
    for key, value in layer_shapes.items():
        shapes = _shape_list(value)
        size = sum(math.prod(shape) for shape in shapes)
        if size <= 0 or any(dim <= 0 for shape in shapes for dim in shape):
            raise ValueError(
                f"Kernel shapes must have positive dimensions. Received: "
                f"layer_shapes[{key!r}]={value!r}"
            )
        sizes[key] = float(size)
        # Kept count of layer l is eps * sum(dims), i.e. density eps*sum/prod.
        raw[key] = float(sum(sum(shape) for shape in shapes))
    total = sum(sizes.values())
    dense = set()
    while True:
        budget = density * total - sum(sizes[key] for key in dense)
        free = [key for key in sizes if key not in dense]
        if not free:
            break
        eps = budget / sum(raw[key] for key in free)
        over = [key for key in free if eps * raw[key] / sizes[key] > 1.0]
        if not over:
            break
        dense.update(over)
    result = {}
    for key in sizes:
        if key in dense:
            result[key] = 1.0
        else:
            result[key] = float(min(1.0, eps * raw[key] / sizes[key]))
    return result


# -------------------------------------------------------------------- SynExp
def _per_layer(value, keys, name):
    if hasattr(value, "items"):
        missing = [key for key in keys if key not in value]
        if missing:
            raise ValueError(
                f"`{name}` must give a value for every layer of `costs`. "
                f"Received: {name} without keys {missing[:5]}"
            )
        return np.array([float(value[key]) for key in keys], dtype=np.float64)
    return np.full(len(keys), float(value), dtype=np.float64)


def synexp_densities(costs, budget, upper=1.0, lower=0.0):
    """Densities maximising ``sum(log p_l)`` under a linear cost budget.

    Solves::

        maximise    sum_l log(p_l)
        subject to  sum_l c_l * p_l <= budget,   lower_l <= p_l <= upper_l

    where ``c_l`` is the cost of layer ``l`` at full density (its parameter
    count, FLOPs, ...), so that ``c_l * p_l`` is its cost at density ``p_l``.
    The log objective is the data-free "keep every layer alive" prior of
    PreCropping's later SynExp rule: the product of densities, i.e. the
    geometric mean, is as large as possible.

    Derivation (KKT). The objective is strictly concave and increasing in
    every ``p_l``, so the budget constraint is active unless every layer can
    sit at its upper bound. With a multiplier ``lam > 0`` for the budget and
    box multipliers, stationarity reads ``1 / p_l = lam * c_l + mu_l - nu_l``
    with ``mu_l`` (``nu_l``) non-zero only at the upper (lower) bound. Hence
    ``p_l = clip(1 / (lam * c_l), lower_l, upper_l)``: every layer gets the
    same *cost* ``t = 1 / lam`` ("water level"), unless a bound stops it.
    Writing ``a_l = lower_l * c_l`` and ``b_l = upper_l * c_l``, the spent
    budget ``f(t) = sum_l clip(t, a_l, b_l)`` is continuous, piecewise linear
    and non-decreasing in ``t``, so the ``t`` with ``f(t) = budget`` is found
    exactly by walking the sorted breakpoints ``{a_l, b_l}`` (water-filling);
    no iterative solver is involved. Concavity makes this KKT point the
    global optimum. A layer of zero cost is free and sits at ``upper_l``.

    Args:
        costs: dict mapping a layer key to its cost at density 1: a positive
            number, or an array whose sum is the cost (e.g. per-weight FLOPs).
        budget: the total cost allowed, in the units of ``costs``.
        upper: upper bound on every density (a number or a dict per key);
            may exceed 1 when layers may be widened (PreConfig).
        lower: lower bound on every density (a number or a dict per key),
            0 by default. The log keeps every density strictly positive.

    Returns:
        dict mapping each key to its density ``p_l``. When
        ``budget >= sum(c_l * upper_l)`` every layer is at ``upper_l``;
        otherwise ``sum(c_l * p_l) == budget`` up to rounding.

    Raises:
        BudgetError: the problem is infeasible: ``budget <= 0``, or
            ``budget < sum(c_l * lower_l)``, or a bound is invalid.

    Example:

    >>> d = synexp_densities({"a": 100.0, "b": 300.0}, budget=200.0)
    >>> {key: round(value, 4) for key, value in d.items()}
    {'a': 1.0, 'b': 0.3333}
    """
    _check_mapping(costs, "costs")
    keys = list(costs)
    c = np.array([float(np.sum(np.asarray(costs[key], dtype=np.float64))) for key in keys])
    bad = [keys[i] for i in range(len(keys)) if not math.isfinite(c[i]) or c[i] < 0]
    if bad:
        raise ValueError(
            "Layer costs must be finite and non-negative. Received: costs["
            f"{bad[0]!r}]={costs[bad[0]]!r}"
        )
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real):
        raise TypeError(f"`budget` must be a number. Received: budget={budget!r}")
    budget = float(budget)
    hi = _per_layer(upper, keys, "upper")
    lo = _per_layer(lower, keys, "lower")
    if not (np.all(np.isfinite(hi)) and np.all(hi > 0)):
        raise BudgetError(f"`upper` must be positive and finite. Received: upper={upper!r}")
    if not (np.all(np.isfinite(lo)) and np.all(lo >= 0) and np.all(lo <= hi)):
        raise BudgetError(
            "`lower` must be finite, non-negative and not above `upper`. "
            f"Received: lower={lower!r}, upper={upper!r}"
        )
    floor = float(np.sum(c * lo))
    if not (math.isfinite(budget) and budget > 0 and budget >= floor * (1 - 1e-12)):
        raise BudgetError(
            "The cost budget cannot be met: every layer must keep a positive "
            f"density of at least `lower`, which costs {floor:.6g} (and the "
            "budget must be positive). Expected budget > 0 and budget >= "
            f"sum(cost * lower) = {floor:.6g}. Received: budget={budget:.6g} "
            f"(total cost at density 1 is {float(np.sum(c)):.6g})"
        )
    budget = max(budget, floor)  # within rounding of the floor
    a, b = c * lo, c * hi
    if budget >= float(np.sum(b)):
        p = hi.copy()
    else:
        level = _water_level(a, b, budget)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(c > 0, np.clip(level, a, b) / np.where(c > 0, c, 1.0), hi)
    if np.any(p <= 0):
        zero = keys[int(np.argmin(p))]
        raise BudgetError(
            "The cost budget leaves a layer with density 0, which the log "
            f"objective forbids. Received: budget={budget:.6g}, layer {zero!r}"
        )
    return {key: float(value) for key, value in zip(keys, p, strict=True)}


def _water_level(a, b, budget):
    """The t with sum(clip(t, a_l, b_l)) == budget (a <= b, sum(a) <= budget < sum(b))."""
    points = np.unique(np.concatenate([a, b]))
    if points.size * a.size <= 10_000_000:
        values = np.clip(points[:, None], a[None, :], b[None, :]).sum(axis=1)
    else:  # pragma: no cover - tens of thousands of layers
        values = np.array([np.clip(t, a, b).sum() for t in points])
    index = int(np.searchsorted(values, budget, side="left"))
    if index == 0:
        return float(points[0])
    t0, t1 = float(points[index - 1]), float(points[index])
    f0, f1 = float(values[index - 1]), float(values[index])
    if f1 == f0:
        return t1
    # Slope on (t0, t1) = number of layers with a_l <= t0 and b_l >= t1.
    return t0 + (budget - f0) * (t1 - t0) / (f1 - f0)
