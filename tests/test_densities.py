"""Tests of tf_precrop.densities (pure NumPy, fast)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize

from tf_precrop.densities import (
    erk_densities,
    global_threshold_densities,
    global_topk_masks,
    synexp_densities,
    uniform_densities,
)
from tf_precrop.errors import BudgetError

# ------------------------------------------------------------ global threshold


def test_global_threshold_exact_counts():
    scores = {
        "a": np.array([[5.0, 1.0], [3.0, 0.0]]),
        "b": np.array([4.0, 2.0, 6.0, 0.5, 0.25, 7.0]),
    }
    # Sorted: 7 6 5 4 3 2 1 .5 .25 0  -> top 4 are 7, 6 (b) and 5, 4.
    masks = global_topk_masks(scores, 0.4)
    assert masks["a"].shape == (2, 2)
    assert masks["a"].tolist() == [[True, False], [False, False]]
    assert masks["b"].tolist() == [True, False, True, False, False, True]
    densities = global_threshold_densities(scores, 0.4)
    assert densities == {"a": 0.25, "b": 0.5}
    for density in np.linspace(0, 1, 11):
        masks = global_topk_masks(scores, density)
        assert sum(int(m.sum()) for m in masks.values()) == round(density * 10)


def test_global_threshold_ties_are_deterministic_by_position():
    scores = {"a": np.ones(3), "b": np.ones(3)}
    masks = global_topk_masks(scores, 0.5)
    assert masks["a"].tolist() == [True, True, True]
    assert masks["b"].tolist() == [False, False, False]
    masks = global_topk_masks(scores, 4 / 6)
    assert masks["b"].tolist() == [True, False, False]
    # A layer may lose everything.
    assert global_threshold_densities(scores, 0.5)["b"] == 0.0


def test_global_threshold_large_random_counts():
    rng = np.random.default_rng(0)
    scores = {f"l{i}": rng.random(rng.integers(1, 500)) for i in range(20)}
    total = sum(v.size for v in scores.values())
    for density in (0.013, 0.2, 0.5, 0.99):
        masks = global_topk_masks(scores, density)
        kept = np.concatenate([m for m in masks.values()])
        values = np.concatenate(list(scores.values()))
        assert kept.sum() == round(density * total)
        assert values[kept].min() >= values[~kept].max()


def _reference_topk_masks(scores, density):
    """Stable sort of all scores, highest first, earlier position first on ties."""
    values = np.concatenate([np.ravel(v) for v in scores.values()])
    k = int(round(density * values.size))
    order = np.argsort(-values, kind="stable")
    keep = np.zeros(values.size, dtype=bool)
    keep[order[:k]] = True
    masks, start = {}, 0
    for key, value in scores.items():
        masks[key] = keep[start : start + np.size(value)].reshape(np.shape(value))
        start += np.size(value)
    return masks


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    layers=st.lists(
        st.lists(st.sampled_from([-2.0, -0.5, 0.0, 0.0, 0.0, 0.25, 1.0, 1.0, 3.0]), max_size=12),
        min_size=1,
        max_size=5,
    ),
    density=st.floats(0.0, 1.0),
)
def test_global_threshold_matches_sorting_with_zeros_negatives_and_ties(layers, density):
    # The partial sort only partitions the positive (or negative) values when
    # the threshold must lie among them; the masks must equal a full stable sort.
    scores = {f"l{i}": np.array(values) for i, values in enumerate(layers)}
    masks = global_topk_masks(scores, density)
    expected = _reference_topk_masks(scores, density)
    for key in scores:
        assert masks[key].tolist() == expected[key].tolist()


def test_global_threshold_errors():
    with pytest.raises(ValueError, match="NaN"):
        global_threshold_densities({"a": np.array([1.0, np.nan])}, 0.5)
    with pytest.raises(BudgetError, match="density=1.5"):
        global_threshold_densities({"a": np.ones(2)}, 1.5)
    with pytest.raises(TypeError, match="dict"):
        global_threshold_densities([np.ones(2)], 0.5)


# --------------------------------------------------------------- uniform / ERK


def test_uniform_densities():
    assert uniform_densities({"a": 10, "b": (3, 3)}, 0.25) == {"a": 0.25, "b": 0.25}
    assert uniform_densities(["x"], 1.0) == {"x": 1.0}
    with pytest.raises(BudgetError):
        uniform_densities(["x"], -0.1)


@pytest.mark.parametrize("density", [0.05, 0.2, 0.5, 0.9])
def test_erk_sums_to_target(density):
    shapes = {
        "conv1": (3, 3, 3, 16),
        "conv2": (3, 3, 16, 32),
        "conv3": (3, 3, 32, 64),
        "pw": (1, 1, 64, 128),
        "sep": [(3, 3, 64, 1), (1, 1, 64, 64)],
        "fc": (128, 10),
    }
    sizes = {
        k: sum(math.prod(s) for s in (v if isinstance(v, list) else [v])) for k, v in shapes.items()
    }
    d = erk_densities(shapes, density)
    kept = sum(d[k] * sizes[k] for k in shapes)
    assert kept == pytest.approx(density * sum(sizes.values()), rel=1e-9)
    assert all(0 < value <= 1 for value in d.values())
    # Uncapped layers follow the ERK ratio (sum of dims)/(prod of dims).
    free = [k for k in shapes if d[k] < 1 and k != "sep"]
    ratios = [d[k] / (sum(shapes[k]) / math.prod(shapes[k])) for k in free]
    assert np.allclose(ratios, ratios[0])


def test_erk_caps_small_layers_at_one():
    d = erk_densities({"tiny": (3, 3, 3, 4), "big": (3, 3, 256, 256)}, 0.5)
    assert d["tiny"] == 1.0
    assert d["big"] * 3 * 3 * 256 * 256 + 108 == pytest.approx(0.5 * (589824 + 108))
    assert erk_densities({"a": (4, 4), "b": (2, 8)}, 1.0) == {"a": 1.0, "b": 1.0}
    with pytest.raises(BudgetError):
        erk_densities({"a": (4, 4)}, 0.0)


# -------------------------------------------------------------------- SynExp


def _slsqp(c, budget, lo, hi):
    """Generic solve of max sum(log p) s.t. c.p <= budget, lo <= p <= hi.

    Solved in q = log(p) (a convex problem: linear objective, convex
    constraint sum(c exp(q)) <= budget), with costs normalised by the budget.
    """
    c = c / budget
    lo_q = np.log(np.maximum(lo, 1e-12))
    hi_q = np.log(hi)
    q0 = np.clip(np.full(c.size, np.log(0.5 / c.sum())), lo_q, hi_q)
    res = optimize.minimize(
        lambda q: -np.sum(q),
        q0,
        jac=lambda q: -np.ones_like(q),
        bounds=list(zip(lo_q, hi_q, strict=True)),
        constraints=[
            {
                "type": "ineq",
                "fun": lambda q: 1.0 - c @ np.exp(q),
                "jac": lambda q: -(c * np.exp(q)),
            }
        ],
        method="SLSQP",
        options={"ftol": 1e-13, "maxiter": 5000},
    )
    assert res.success, res.message
    return np.exp(res.x)


def test_synexp_matches_generic_solver_on_random_problems():
    rng = np.random.default_rng(1234)
    for case in range(30):
        n = int(rng.integers(2, 12))
        c = np.exp(rng.normal(0, 1.5, n)) * 1000
        upper = float(rng.choice([1.0, 1.0, 1.5, 2.0]))
        lower = float(rng.choice([0.0, 0.0, 0.02, 0.1]))
        floor, ceil = c.sum() * lower, c.sum() * upper
        budget = float(floor + (ceil - floor) * rng.uniform(0.02, 0.95))
        if lower == 0.0:
            budget = max(budget, 1e-3 * ceil)
        costs = {f"l{i}": c[i] for i in range(n)}
        got = synexp_densities(costs, budget, upper=upper, lower=lower)
        p = np.array([got[f"l{i}"] for i in range(n)])
        ref = _slsqp(c, budget, np.full(n, lower), np.full(n, upper))
        # Same optimum (objective), same point, budget met exactly, bounds kept.
        assert np.sum(np.log(p)) >= np.sum(np.log(ref)) - 1e-7, case
        np.testing.assert_allclose(p, ref, rtol=2e-4, atol=1e-6, err_msg=f"case {case}")
        assert c @ p == pytest.approx(budget, rel=1e-12)
        assert np.all(p <= upper + 1e-12) and np.all(p >= lower - 1e-12)


def test_synexp_closed_form_small_case():
    # Equal-cost water level: every unconstrained layer spends the same cost.
    d = synexp_densities({"a": 100.0, "b": 300.0, "c": 600.0}, budget=300.0)
    assert d == pytest.approx({"a": 1.0, "b": 1 / 3, "c": 1 / 6})
    # Budget above everything at the upper bound: all at upper (may exceed 1).
    d = synexp_densities({"a": 1.0, "b": 2.0}, budget=100.0, upper=1.5)
    assert d == {"a": 1.5, "b": 1.5}
    # Exactly the floor: everything at the lower bound.
    d = synexp_densities({"a": 1.0, "b": 2.0}, budget=0.3, lower=0.1)
    assert d == pytest.approx({"a": 0.1, "b": 0.1})


def test_synexp_array_costs_and_per_layer_bounds():
    d = synexp_densities(
        {"a": np.full(10, 10.0), "b": np.array([[150.0, 150.0]])},
        budget=200.0,
        upper={"a": 0.5, "b": 1.0},
    )
    assert d["a"] == pytest.approx(0.5)
    assert d["b"] == pytest.approx(150 / 300)


def test_synexp_infeasible_budget_raises_with_numbers():
    with pytest.raises(BudgetError, match=r"budget=-1"):
        synexp_densities({"a": 1.0}, budget=-1.0)
    with pytest.raises(BudgetError, match="budget=0"):
        synexp_densities({"a": 1.0}, budget=0.0)
    with pytest.raises(BudgetError, match=r"sum\(cost \* lower\) = 30"):
        synexp_densities({"a": 100.0, "b": 200.0}, budget=20.0, lower=0.1)
    with pytest.raises(BudgetError, match="upper"):
        synexp_densities({"a": 1.0}, budget=1.0, upper=0.0)
    with pytest.raises(ValueError, match="non-negative"):
        synexp_densities({"a": -1.0}, budget=1.0)
    assert issubclass(BudgetError, ValueError)
