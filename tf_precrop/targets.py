"""Layer densities stage, per method: the target density of every prunable layer.

:func:`target_densities` turns a plan's ``method`` into the per-layer target
densities the width solver fits (:mod:`tf_precrop.widths`): closed forms for
``"uniform"``, ``"erk"`` and ``"synexp"`` (:mod:`tf_precrop.densities`), or
saliency scores (:mod:`tf_precrop.saliency`) thresholded globally for the
score methods. Both :func:`tf_precrop.plan` and :func:`tf_precrop.prune` (for
``widths_from="synexp"``) call it on the one channel graph of the model.
"""

import numpy as np

from tf_precrop.errors import BudgetError


def target_densities(model, graph, problem, method, fraction, data, seed, options, clamped):
    """Per prunable layer target density (None for uniform width scaling).

    Args:
        model: the Keras model ``graph`` was built from.
        graph: its :class:`~tf_precrop.graph.channel_graph.ChannelGraph`.
        problem: the :class:`~tf_precrop.widths.WidthProblem` the densities
            are for (its prunable layers, budget kind and upper bound).
        method: one of :data:`tf_precrop.plan.METHODS`.
        fraction: the budget as a fraction of the dense cost.
        data, seed: for the score methods (SNIP/GraSP data, random seeds).
        options: :func:`tf_precrop.plan`'s options (``score_density``,
            ``rounds``, ``loss``, ``verbose``).
        clamped: a dict that receives the layers a score threshold removed
            entirely, with their density before they were raised to one
            kernel element (``Plan.clamped``).

    Returns:
        ``{layer key: density}`` for every prunable layer, or None for
        ``"uniform_width"`` (no per-layer targets: one scale for all groups).

    Example:

    >>> import tf_precrop
    >>> from tf_precrop.widths import WidthProblem
    >>> model = tf_precrop.models.resnet20()
    >>> graph = tf_precrop.channel_groups(model)
    >>> problem = WidthProblem(graph, budget="params")
    >>> sorted(set(target_densities(model, graph, problem, "uniform", 0.3, None, None, {}, {}).values()))
    [0.3]
    >>> synexp = target_densities(model, graph, problem, "synexp", 0.3, None, None, {}, {})
    >>> len(synexp) == len(problem.prunable) and all(0 < d <= 1 for d in synexp.values())
    True
    """
    nodes = problem.prunable
    if method == "uniform_width":
        return None
    if method == "uniform":
        return {n.key: min(fraction, 1.0) for n in nodes}
    from tf_precrop import densities as dens

    w0 = graph.widths()
    kernel_sizes = {n.key: float(n.kernel.evaluate(w0)) for n in nodes}
    if method == "synexp":
        costs = _layer_costs(graph, problem, nodes, kernel_sizes)
        total = sum(costs.values())
        upper = float(problem.upper.max())
        kernel_budget = min(fraction, upper) * total
        return dens.synexp_densities(costs, kernel_budget, upper=upper)
    if method == "erk":
        shapes = _kernel_shapes(model, graph, nodes)
        return dens.erk_densities(shapes, min(fraction, 1.0))
    from tf_precrop.saliency import compute_scores

    score_density = options.get("score_density")
    if score_density is None:
        score_density = fraction if fraction < 1 else 0.5
    if not 0 < score_density <= 1:
        raise BudgetError(f"`score_density` must be in (0, 1]. Received: score_density={score_density}")
    scores = compute_scores(
        graph,  # the one model view: saliency reads the graph's layers and kernels
        method,
        data=data,
        loss=options.get("loss"),
        target_density=score_density,
        rounds=options.get("rounds", 100),
        seed=seed,
        verbose=options.get("verbose", 1),
        layers=[n.key for n in nodes],
    )
    per_layer = {k: v for k, v in scores.per_layer.items() if k in kernel_sizes}
    _check_scores(per_layer, method)
    result = dens.global_threshold_densities(per_layer, score_density)
    # A layer the threshold removed entirely keeps the smallest fit-able density;
    # the plan records which (Plan.clamped).
    floor = {k: 1.0 / kernel_sizes[k] for k in result}
    clamped.update({k: float(v) for k, v in result.items() if float(v) < floor[k]})
    return {k: max(float(v), floor[k]) for k, v in result.items()}


def _layer_costs(graph, problem, nodes, kernel_sizes):
    """SynExp's per-layer cost weights at the dense widths, in budget units.

    A layer of zero cost weighs its kernel size (params/MACs); for latency, a
    layer the latency model does not time weighs its MACs at the model's
    average ms per MAC.
    """
    w0 = graph.widths()
    if problem.kind == "latency":
        per_layer = problem.cost_model.per_layer(problem.w0)
        macs = {n.key: float(n.macs.evaluate(w0)) or kernel_sizes[n.key] for n in nodes}
        rate = sum(per_layer.values()) / max(sum(macs.values()), 1.0)
        return {n.key: per_layer.get(n.key) or macs[n.key] * rate for n in nodes}
    costs = {}
    for n in nodes:
        cost = float(getattr(n, problem.kind).evaluate(w0))
        costs[n.key] = cost if cost > 0 else kernel_sizes[n.key]
    return costs


def _kernel_shapes(model, graph, nodes):
    from tf_precrop.saliency import prunable_kernels

    found = dict(prunable_kernels(graph, layers=[n.key for n in nodes]))
    shapes = {}
    for n in nodes:
        kernels = found.get(n.key, [])
        if len(kernels) == 1:
            shapes[n.key] = tuple(int(d) for d in kernels[0].shape)
        else:  # separable: depthwise + pointwise, use the pointwise shape
            shapes[n.key] = tuple(int(d) for d in kernels[-1].shape)
    return shapes


def _check_scores(per_layer, method):
    """Scores must be finite and not all zero: a plan is never made from them."""
    from tf_precrop.errors import ScoreError

    for key, values in per_layer.items():
        values = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise ScoreError(
                f"{method} scores of layer '{key}' are not finite (NaN or inf). Expected "
                "finite scores; check the model's weights and the data. Received: "
                f"{int(np.sum(~np.isfinite(values)))} non-finite of {values.size}"
            )
    if not any(np.any(np.asarray(v) != 0) for v in per_layer.values()):
        raise ScoreError(
            f"All {method} scores are zero, so they rank nothing. Expected some non-zero "
            "scores (an all-zero model has none: initialise it first). Received: "
            f"{len(per_layer)} layers of zero scores"
        )
