"""Budgets: the cost kinds a plan can target, and the absolute budget of a target.

A target is a fraction of the dense model's cost (``0 < target <= 1``; above 1
only with PreConfig) or an absolute count (an int > 1), in the units of the
budget kind: ``"params"`` (all parameters, as ``count_params``) or ``"macs"``
(multiply-accumulates per example; see :mod:`tf_precrop.profile`).

Example:

>>> resolve_budget(0.5, dense_cost=1000, min_cost=10, max_cost=1000, preconfig=False, kind="params")
500.0
"""

import math

import numpy as np

from tf_precrop.errors import BudgetError

#: The cost kinds a plan can target.
BUDGET_KINDS = ("params", "macs")


def resolve_budget(target, dense_cost, min_cost, max_cost, preconfig, kind):
    """Absolute budget from a target; validates it. See :func:`tf_precrop.plan`."""
    if isinstance(target, bool) or not isinstance(target, (int, float, np.integer, np.floating)):
        raise BudgetError(
            "Expected `target` to be a number: a fraction of the dense cost or an "
            f"absolute {kind} count. Received: target={target!r}"
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
                f"for an absolute {kind} count pass an int. Received: target={target!r}"
            )
        budget = float(target) * dense_cost
    if budget < min_cost * (1 - 1e-9):
        raise BudgetError(
            f"The target of {budget:,.0f} {kind} is below the smallest model the graph "
            f"allows ({min_cost:,.0f} {kind}, every free group at its minimum width). "
            f"Expected a target ≥ {min_cost / dense_cost:.4f} of the dense model. "
            f"Received: target={target!r}"
        )
    if budget > max_cost * (1 + 1e-9):
        raise BudgetError(
            f"The target of {budget:,.0f} {kind} is above the largest model the bounds "
            f"allow ({max_cost:,.0f} {kind}). Expected a smaller target or a larger "
            f"PreConfig upper bound. Received: target={target!r}"
        )
    return budget
