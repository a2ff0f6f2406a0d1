"""Budgets: the cost kinds a plan can target, the absolute budget of a target.

:func:`warn_miss` is the warning of a plan whose widths miss their budget.

A target is a fraction of the dense model's cost (``0 < target <= 1``; above 1
only with PreConfig) or an absolute count (an int > 1), in the units of the
budget kind: ``"params"`` (all parameters, as ``count_params``), ``"macs"``
(multiply-accumulates per example; see :mod:`tf_precrop.profile`) or
``"latency"`` (predicted LiteRT milliseconds, :mod:`tf_precrop.latency`). A
latency target is a fraction or a string of milliseconds (``"3.5ms"``), never a
bare absolute number: 0.8 ms is as plausible a target as 0.8 of dense.

Example:

>>> resolve_budget(0.5, dense_cost=1000, min_cost=10, max_cost=1000, preconfig=False, kind="params")
500.0
"""

import math

import numpy as np

from tf_precrop.errors import BudgetError

#: The cost kinds a plan can target.
BUDGET_KINDS = ("params", "macs", "latency")


def resolve_budget(target, dense_cost, min_cost, max_cost, preconfig, kind):
    """Absolute budget from a target; validates it. See :func:`tf_precrop.plan`."""
    unit = "ms" if kind == "latency" else kind
    if kind == "latency":
        from tf_precrop.latency import parse_target

        form, value = parse_target(target)
        if form == "ms":
            return _check_range(value, target, dense_cost, min_cost, max_cost, unit)
        if isinstance(target, (int, np.integer)) and not isinstance(target, bool) and target > 1:
            raise BudgetError(
                "A latency target is a fraction of the dense latency or a string of "
                f"milliseconds like '{target}ms'. Received: target={target!r}"
            )
    elif isinstance(target, str):
        raise BudgetError(
            f"A {kind} target must be a number. Strings ('3.5ms') are for budget='latency'. "
            f"Received: target={target!r}"
        )
    absolute = (
        "a string of milliseconds like '3.5ms'" if kind == "latency" else f"an absolute {kind} count"
    )
    if isinstance(target, bool) or not isinstance(target, (int, float, np.integer, np.floating)):
        raise BudgetError(
            "Expected `target` to be a number: a fraction of the dense cost or "
            f"{absolute}. Received: target={target!r}"
        )
    if not math.isfinite(target) or target <= 0:
        raise BudgetError(
            f"`target` must be a positive, finite number. Received: target={target!r}"
        )
    if isinstance(target, (int, np.integer)) and target > 1:
        budget = float(target)
    else:
        if target > 1 and not preconfig:
            raise BudgetError(
                "A target above 1 (larger than the dense model) needs preconfig=True; "
                + (
                    f"for an absolute latency pass milliseconds as a string ('{target}ms'). "
                    if kind == "latency"
                    else f"for an absolute {kind} count pass an int. "
                )
                + f"Received: target={target!r}"
            )
        budget = float(target) * dense_cost
    return _check_range(budget, target, dense_cost, min_cost, max_cost, unit)


def _fmt(value, unit):
    return f"{value:.3f} ms" if unit == "ms" else f"{value:,.0f} {unit}"


def _check_range(budget, target, dense_cost, min_cost, max_cost, unit):
    if budget < min_cost * (1 - 1e-9):
        raise BudgetError(
            f"The target of {_fmt(budget, unit)} is below the smallest model the graph "
            f"allows ({_fmt(min_cost, unit)}, every free group at its minimum width). "
            f"Expected a target ≥ {min_cost / dense_cost:.4f} of the dense model. "
            f"Received: target={target!r}"
        )
    if budget > max_cost * (1 + 1e-9):
        raise BudgetError(
            f"The target of {_fmt(budget, unit)} is above the largest model the bounds "
            f"allow ({_fmt(max_cost, unit)}). Expected a smaller target or a larger "
            f"PreConfig upper bound. Received: target={target!r}"
        )
    return float(budget)


def warn_miss(model, budget, solution, tolerance):
    import warnings

    from tf_precrop.errors import BudgetWarning

    why = {
        "proven": "no width assignment is closer (every one was tried)",
        "searched": "it is the closest the repair found (too many assignments to try all)",
    }[solution.miss]
    warnings.warn(
        f"The plan for model '{model.name}' misses its {budget} budget: it costs "
        f"{_amount(solution.cost, budget)} against {_amount(solution.budget, budget)} ± {tolerance:.0%} "
        f"({solution.cost / solution.budget - 1:+.2%}); {why}. The widths' multiples "
        "(round_to, the groups' multiple_of) limit which costs exist: try round_to=1, "
        "a larger tolerance or another target.",
        BudgetWarning,
        stacklevel=3,
    )


def _amount(value, budget):
    return f"{value:.3f} ms" if budget == "latency" else f"{value:,.0f}"
