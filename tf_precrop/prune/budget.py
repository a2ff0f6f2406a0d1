"""Widths for a budget target of :func:`tf_precrop.prune`, that the kept channels can follow.

The width solver (:class:`~tf_precrop.widths.WidthProblem`) gets two extra
rules on top of the channel graph's:

* the groups of producers combined element-wise out of order (a whole class
  of :func:`~tf_precrop.prune.selection.producer_classes`) keep their width;
* a group whose channels are read in nested equal parts (a ShuffleNet stage:
  each split halves what the previous shuffle interleaved) gets the multiple
  those parts need (:func:`~tf_precrop.prune.selection.share_multiples`); a
  group whose needed multiple does not divide its width is kept whole;
* if the chosen widths still cannot be followed exactly (the index replay
  refuses a layer), the groups whose channels reach that layer are kept whole
  and the budget is solved again over the others.
"""

import math

import numpy as np

from tf_precrop.errors import UnsupportedLayerError, WidthError
from tf_precrop.prune.selection import (
    groups_of,
    importance_targets,
    share_multiples,
    whole_groups,
)


def budget_widths(
    model, graph, trace, classes, scores, target, budget, widths_from, round_to, attempt,
    latency_options=None,
):
    """Solves widths for a budget and returns ``attempt(widths)``'s result.

    Args:
        latency_options: for ``budget="latency"``: ``latency``, ``num_threads``
            and ``precision`` as :func:`tf_precrop.plan` takes them.
        attempt: ``fn(widths) -> result``; raises ``UnsupportedLayerError`` or
            ``WidthError`` (with ``channel_ids``) when the kept channels cannot
            be followed.

    Returns:
        ``(widths, result)``.
    """
    from tf_precrop.budget import warn_miss
    from tf_precrop.targets import target_densities
    from tf_precrop.widths import WidthProblem, resolve_budget

    multiples = share_multiples(trace, classes)
    whole = {k for k, m in multiples.items() if graph[k].width % m}
    whole |= whole_groups(trace, classes)  # producers combined out of order keep all channels
    cost, tolerance = None, 0.01
    if budget == "latency":
        from tf_precrop.latency import latency_for

        opts = dict(latency_options or {})
        cost = latency_for(graph, opts.pop("latency", None), verbose=0, **opts)
        tolerance = 0.02
    while True:
        problem = WidthProblem(graph, budget=budget, latency=cost)
        _restrict(problem, multiples, whole)
        value = resolve_budget(
            target, problem.dense_cost, problem.min_cost(), problem.max_cost(), False, budget
        )
        if widths_from == "synexp":
            fraction = value / problem.dense_cost
            targets = target_densities(
                model, graph, problem, "synexp", fraction, None, None, {}, {}
            )
        else:
            targets = importance_targets(problem, graph, classes, scores, value)
        solution = problem.solve(targets, value, round_to=int(round_to), tolerance=tolerance)
        try:
            result = attempt(solution.widths)
        except (UnsupportedLayerError, WidthError) as e:
            ids = getattr(e, "channel_ids", ())
            changed = {k for k, w in solution.widths.items() if w != graph[k].width}
            more = (groups_of(trace, classes, ids) & changed) - whole
            if not more:
                raise
            whole |= more
            continue
        if not solution.within_tolerance:
            warn_miss(model, budget, solution, tolerance)
        return solution.widths, result


def _restrict(problem, multiples, whole):
    """Adds the share multiples and keeps the ``whole`` groups at today's width."""
    from tf_precrop.poly_cost import CompiledPolys

    for key, m in multiples.items():
        i = problem.index[key]
        problem.multiple[i] = math.lcm(int(problem.multiple[i]), int(m))
    for key in whole:
        i = problem.index[key]
        problem.free[i] = False
    floor = np.minimum(problem.multiple, problem.w0)
    problem.lower = np.where(problem.free, np.maximum(problem.lower, floor / problem.w0), 1.0)
    problem.upper = np.where(problem.free, problem.upper, 1.0)
    problem.min_width = np.ceil(problem.w0 * problem.lower - 1e-9).astype(np.int64)
    problem.max_width = np.floor(problem.w0 * problem.upper + 1e-9).astype(np.int64)
    free_vars = {k for k, f in zip(problem.keys, problem.free, strict=True) if f}
    problem.prunable = [n for n in problem.prunable if free_vars & set(n.kernel.vars)]
    problem.kernel_polys = CompiledPolys([n.kernel for n in problem.prunable], problem.index)
    problem.k0 = problem.kernel_polys.values(problem.w0)
    if len(problem.pairs):
        keep = problem.free[problem.pairs[:, 0]] & problem.free[problem.pairs[:, 1]]
        problem.pairs = problem.pairs[keep]
