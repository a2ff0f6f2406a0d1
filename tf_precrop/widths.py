"""Channel widths stage: from target layer densities to integer channel counts.

One keep ratio ``r_g = new width / old width`` per free channel group. A layer's
achieved density is its kernel size at the new widths over its kernel size
today — ``r_in·r_out`` for a conv or dense layer between two groups, ``r_g``
for a depthwise one, a ratio of sums after a concatenation.
:meth:`WidthProblem.solve`

1. fits the ratios to the target densities in log space, up to one common
   offset (the densities give the *profile*; the budget gives the level):
   minimise ``Σ_l (log d_l(r) − log p_l − α)² + β Σ_(a,b) (log r_a − log r_b)²``
   where the second sum runs over the (input, output) group pairs of every
   conv/dense layer. ``β`` (``balance``) keeps a layer's output width in
   proportion to its input width: without it, pairs of layers whose densities
   only fix the product ``r_a·r_b`` (a residual block's two convs) have a
   free direction that the solver resolves by squeezing the block's inner
   width to a few channels, which trains poorly;
2. subject to the exact budget ``cost(r) = B`` (params, MACs or predicted
   latency, the whole model: :class:`PolyCost` or
   :class:`~tf_precrop.latency.LatencyCost`), bounds ``lower_g ≤ r_g ≤ upper`` (``upper`` = 1 for PreCrop, > 1
   for PreConfig) and fixed input/output groups — solved with scipy's SLSQP
   from the uniform-scaling point;
3. rounds each width to a multiple of ``round_to`` (default 8 when the width
   is ≥ 32 channels, else 1; always a multiple of the group's ``multiple_of``)
   and repairs the rounding greedily — one quantum at a time, on the group
   whose step changes the fit least per unit of cost — until the cost is within
   ``tolerance`` (1%) of the budget;
4. if one-way steps cannot reach that band (every step overshoots it), for
   the quadratic params/MACs costs an exchange search moves one or two groups at a time, one down and one up, on
   the
   ``round_to`` grid and then in steps of ``multiple_of``
   (:meth:`WidthProblem._exchange`);
5. if that fails too and the free groups have at most
   :data:`EXHAUSTIVE_LIMIT` width assignments in all (small models, a few
   narrow groups), every assignment is tried (:meth:`WidthProblem._exhaustive`):
   the one within tolerance with the fewest widths off the ``round_to`` grid
   and the smallest move from the continuous fit, or else the *closest
   reachable* cost, which is then proven closest. Larger problems report the
   closest cost the repair found (``within_tolerance=False``).
"""

import dataclasses
import math

import numpy as np

from tf_precrop.budget import BUDGET_KINDS, resolve_budget  # noqa: F401 - re-exported
from tf_precrop.errors import BudgetError
from tf_precrop.poly_cost import CompiledPolys, PolyCost  # noqa: F401 - re-exported

#: Default weight of the width-balance term, chosen by CIFAR-10 accuracy
#: (benchmarks/cifar_accuracy.py; docs/results.md): 2.0 beat 0, 0.5 and
#: uniform width scaling at 10x fewer params and at 10x fewer MACs.
DEFAULT_BALANCE = 2.0
#: Most width assignments the last repair stage enumerates (all of them).
EXHAUSTIVE_LIMIT = 50_000


@dataclasses.dataclass(frozen=True)
class WidthSolution:
    """Integer widths and how well they meet the budget and the densities."""

    widths: dict
    continuous: dict
    cost: int
    budget: float
    dense_cost: int
    within_tolerance: bool
    densities: dict  # achieved per prunable layer
    #: Why the cost is outside the band ("" when within): the closest cost is
    #: ``"proven"`` (every assignment tried) or ``"searched"`` (the repair's best).
    miss: str = ""


class WidthProblem:
    """The fitting problem of one graph, budget kind and set of target densities.

    ``latency`` (a :class:`~tf_precrop.latency.LatencyCost`) is the cost of
    ``budget="latency"``; params and MACs come from the graph's polynomials.
    """

    def __init__(self, graph, budget="params", upper=1.0, min_channels=1, balance=DEFAULT_BALANCE,
                 latency=None):
        if budget not in BUDGET_KINDS:
            raise BudgetError(
                f"Unknown budget kind. Expected one of {BUDGET_KINDS}. Received: budget={budget!r}"
            )
        if (budget == "latency") != (latency is not None):
            raise BudgetError(
                "budget='latency' needs a latency cost (and only it takes one). Received: "
                f"budget={budget!r}, latency={type(latency).__name__}"
            )
        self.graph = graph
        self.kind = budget
        self.balance = float(balance)
        self.keys = [g.key for g in graph.groups]
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.w0 = np.array([g.width for g in graph.groups], dtype=np.float64)
        self.free = np.array([not g.fixed for g in graph.groups])
        self.multiple = np.array([g.multiple_of for g in graph.groups], dtype=np.int64)
        floor = np.maximum(self.multiple, math.ceil(min_channels))
        self.lower = np.where(self.free, np.minimum(floor, self.w0) / self.w0, 1.0)
        self.upper = np.where(self.free, float(upper), 1.0)
        # Integer width bounds of each group (the ratio bounds times today's width).
        self.max_width = np.floor(self.w0 * self.upper + 1e-9).astype(np.int64)
        self.min_width = np.ceil(self.w0 * self.lower - 1e-9).astype(np.int64)
        if latency is not None:
            self.cost_model = latency
        else:
            self.cost_model = PolyCost([getattr(n, budget) for n in graph.layers], self.index)
        self.prunable = [n for n in graph.layers if n.kernel is not None and _has_free(n, graph)]
        self.kernel_polys = CompiledPolys([n.kernel for n in self.prunable], self.index)
        self.k0 = self.kernel_polys.values(self.w0)
        self.dense_cost = self.cost(self.w0)
        pairs = set()
        for node in self.prunable:
            # Pairs of free groups that meet in a kernel (a layer's input and output).
            for mono in node.kernel.terms:
                if len(mono) == 2 and mono[0] != mono[1]:
                    a, b = self.index[mono[0]], self.index[mono[1]]
                    if self.free[a] and self.free[b]:
                        pairs.add((min(a, b), max(a, b)))
        self.pairs = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)

    # ------------------------------------------------------------------ costs
    def cost(self, w):
        return self.cost_model.total(w)

    def min_cost(self):
        return self.cost(self.w0 * self.lower)

    def max_cost(self):
        return self.cost(self.w0 * self.upper)

    def uniform_scale(self, budget):
        """The multiplier s with cost(w0·clip(s)) = budget (bisection in log s)."""
        lo, hi = np.log(self.lower.min()), np.log(self.upper.max())

        def cost_at(log_s):
            r = np.clip(np.exp(log_s), self.lower, self.upper)
            return self.cost(self.w0 * np.where(self.free, r, 1.0))

        for _ in range(80):
            mid = 0.5 * (lo + hi)
            if cost_at(mid) > budget:
                hi = mid
            else:
                lo = mid
        return float(np.exp(0.5 * (lo + hi)))

    # -------------------------------------------------------------- objective
    def densities(self, w):
        return self.kernel_polys.values(w) / self.k0

    def objective(self, w, log_targets):
        """Fit error (offset profiled out) plus balance penalty; lower is better."""
        resid = np.log(np.maximum(self.densities(w), 1e-300)) - log_targets
        resid = resid - resid.mean() if len(resid) else resid
        x = np.log(w / self.w0)
        pen = 0.0
        if len(self.pairs):
            pen = self.balance * float(np.sum((x[self.pairs[:, 0]] - x[self.pairs[:, 1]]) ** 2))
        return float(np.sum(resid**2)) + pen

    def solve(self, targets, budget, round_to=8, tolerance=0.01):
        """Continuous fit, then rounding and repair. See the module docstring.

        ``targets=None`` means uniform width scaling: every free group scaled by
        one multiplier, then rounded and repaired towards that profile.
        """
        free_idx = np.flatnonzero(self.free)
        if targets is None:
            s = self.uniform_scale(budget)
            continuous = self.w0 * np.where(self.free, np.clip(s, self.lower, self.upper), 1.0)
            log_targets = np.log(np.maximum(self.densities(continuous), 1e-300))
        else:
            log_targets = self._log_targets(targets)
            continuous = self._fit(log_targets, budget, free_idx)
        widths = self._round(continuous, round_to)
        widths, ok = self._repair(widths, continuous, log_targets, budget, round_to, tolerance)
        if not ok and self.cost_model.quadratic:
            widths, ok = self._exchange(widths, continuous, budget, round_to, tolerance)
        miss = ""
        if not ok:
            found = self._exhaustive(continuous, budget, round_to, tolerance)
            miss = "searched"
            if found is not None:
                widths, ok = found
                miss = "proven"
        achieved = self.densities(widths.astype(np.float64))
        return WidthSolution(
            widths={k: int(v) for k, v in zip(self.keys, widths, strict=True)},
            continuous={k: float(v) for k, v in zip(self.keys, continuous, strict=True)},
            cost=self._report(self.cost(widths.astype(np.float64))),
            budget=float(budget),
            dense_cost=self._report(self.dense_cost),
            within_tolerance=ok,
            densities={n.key: float(d) for n, d in zip(self.prunable, achieved, strict=True)},
            miss="" if ok else miss,
        )

    def _report(self, cost):
        # Params and MACs are counts; a latency is milliseconds.
        return float(cost) if self.kind == "latency" else int(round(cost))

    def _log_targets(self, targets):
        missing = [n.key for n in self.prunable if n.key not in targets]
        if missing:
            raise BudgetError(
                f"Target densities are missing for {len(missing)} prunable layers. "
                f"Expected a density for every prunable layer. Received: missing={missing[:5]}"
            )
        p = np.array([float(targets[n.key]) for n in self.prunable])
        return np.log(np.clip(p, 1e-4, None))

    def _fit(self, log_targets, budget, free_idx):
        from scipy.optimize import minimize

        s = self.uniform_scale(budget)
        x0 = np.log(np.clip(s, self.lower, self.upper))[free_idx]
        if len(free_idx) == 0:
            return self.w0.copy()
        log_b = math.log(budget)

        def full_w(xf):
            x = np.zeros_like(self.w0)
            x[free_idx] = xf
            return self.w0 * np.exp(x)

        def fun(xf):
            w = full_w(xf)
            d = self.densities(w)
            resid = np.log(np.maximum(d, 1e-300)) - log_targets
            resid = resid - resid.mean() if len(resid) else resid
            jac = self.kernel_polys.jacobian(w) * w / np.maximum(self.kernel_polys.values(w), 1e-300)[:, None]
            grad = 2.0 * (resid @ jac)
            val = float(np.sum(resid**2))
            x = np.log(w / self.w0)
            if len(self.pairs):
                diff = x[self.pairs[:, 0]] - x[self.pairs[:, 1]]
                val += self.balance * float(np.sum(diff**2))
                np.add.at(grad, self.pairs[:, 0], 2 * self.balance * diff)
                np.add.at(grad, self.pairs[:, 1], -2 * self.balance * diff)
            return val, grad[free_idx]

        def con(xf):
            return math.log(self.cost(full_w(xf))) - log_b

        def con_jac(xf):
            w = full_w(xf)
            jac = self.cost_model.gradient(w) * w / self.cost(w)
            return jac[free_idx]

        bounds = list(zip(np.log(self.lower[free_idx]), np.log(self.upper[free_idx]), strict=True))
        result = minimize(
            fun,
            x0,
            jac=True,
            method="SLSQP",
            bounds=bounds,
            constraints=[{"type": "eq", "fun": con, "jac": con_jac}],
            options={"maxiter": 300, "ftol": 1e-10},
        )
        xf = result.x if np.all(np.isfinite(result.x)) else x0
        if abs(con(xf)) > 1e-3:  # SLSQP gave up: fall back to uniform scaling
            xf = x0
        return full_w(xf)

    def _quantum(self, continuous, round_to):
        q = np.where(continuous >= 32, round_to, 1).astype(np.int64)
        return np.array([math.lcm(int(a), int(b)) for a, b in zip(q, self.multiple, strict=True)])

    def _round(self, continuous, round_to):
        q = self._quantum(continuous, round_to)
        widths = np.maximum(np.round(continuous / q) * q, q).astype(np.int64)
        cap = self.max_width
        over = widths > cap
        widths[over] = np.where(cap[over] % self.multiple[over] == 0, cap[over], widths[over] - q[over])
        widths = np.where(self.free, widths, self.w0.astype(np.int64))
        return np.maximum(widths, self.min_width)

    def _steps(self, widths, q, direction):
        """Candidate widths one quantum up or down per free group (or None)."""
        cap, lo = self.max_width, self.min_width
        new = widths + direction * q
        if direction < 0:
            # Snap an off-grid width (the original one) down to the grid first.
            off = widths % q != 0
            new[off] = (widths[off] // q[off]) * q[off]
            ok = (new >= lo) & (new >= 1)
        else:
            off = widths % q != 0
            new[off] = (widths[off] // q[off] + 1) * q[off]
            keep_orig = (new > cap) & (cap % self.multiple == 0) & (widths < cap)
            new[keep_orig] = cap[keep_orig]
            ok = new <= cap
        return np.where(self.free & ok, new, -1)

    def _repair(self, widths, continuous, log_targets, budget, round_to, tolerance):
        q = self._quantum(continuous, round_to)
        hi, lo_b = budget * (1 + tolerance), budget * (1 - tolerance)
        for _ in range(10000):
            cost = self.cost(widths.astype(np.float64))
            if cost > hi:
                direction = -1
            elif cost < lo_b:
                direction = 1
            else:
                return widths, True
            cand = self._steps(widths, q, direction)
            best, best_score = None, None
            base = self.objective(widths.astype(np.float64), log_targets)
            for g in np.flatnonzero(cand > 0):
                trial = widths.copy()
                trial[g] = cand[g]
                new_cost = self.cost(trial.astype(np.float64))
                delta_cost = abs(new_cost - cost)
                if delta_cost <= 0 or (direction > 0 and new_cost > hi):
                    continue
                harm = self.objective(trial.astype(np.float64), log_targets) - base
                score = harm / delta_cost
                if best_score is None or score < best_score:
                    best, best_score = trial, score
            if best is None:
                return widths, False
            widths = best
        return widths, False  # pragma: no cover


    def _moves(self, widths, q, reach=3):
        """Single-group moves of 1..``reach`` steps of ``q`` up or down, as
        (group, new width) arrays."""
        groups, new = [], []
        for direction in (-1, 1):
            current, valid = widths, np.ones(len(widths), dtype=bool)
            for _ in range(reach):
                cand = self._steps(current, q, direction)
                valid &= cand > 0
                idx = np.flatnonzero(valid)
                groups.append(idx)
                new.append(cand[idx])
                current = np.where(valid, cand, current)
        return np.concatenate(groups), np.concatenate(new)

    def _exchange(self, widths, continuous, budget, round_to, tolerance):
        """Second repair stage, for when one-way greedy steps cannot reach the band.

        Greedy repair moves the cost one way, one group at a time; when every
        step overshoots the band (coarse widths: one channel before a Flatten
        feeds hundreds of weights), an assignment within tolerance may still
        exist that moves one group down and another up. Each round here tries
        every *first move* (none, or one to three steps up or down on one group)
        followed by the best *second move* on any other group, whose new width
        is solved for in closed form (the cost is a quadratic in the widths)
        and rounded both ways onto its grid. It takes the candidate closest to
        the band, ties broken by the smallest move away from the continuous
        fit (``Σ (log w − log w_cont)²`` over the moved groups), and stops
        when within tolerance or when nothing gets closer. Moves on the
        ``round_to`` grid come first; steps of one ``multiple_of`` are allowed
        only if the grid cannot reach the band, so off-grid widths appear only
        where the budget needs them.
        """
        lo_b, hi = budget * (1 - tolerance), budget * (1 + tolerance)
        m = self.cost_model.matrix()
        n = len(widths)
        cap = self.max_width
        log_c = np.log(np.maximum(continuous, 1e-9))
        grids = [self._quantum(continuous, round_to)]
        if np.any(grids[0] != self.multiple):
            grids.append(self.multiple.copy())
        for q in grids:
            lo = np.maximum(self.min_width, q)
            lo = np.ceil(lo / q) * q
            top = np.floor(cap / q) * q
            for _ in range(100):
                w = widths.astype(np.float64)
                e = np.append(w, 1.0)
                me = m @ e
                cost = float(e @ me)
                gap = max(lo_b - cost, cost - hi, 0.0)
                if gap == 0.0:
                    return widths, True
                # First moves: index 0 is "no move"; then (group a, new width).
                ga, na = self._moves(widths, q)
                ga = np.concatenate([[-1], ga]).astype(np.int64)
                da = np.concatenate([[0.0], (na - widths[ga[1:]]).astype(np.float64)])
                a_ = np.maximum(ga, 0)
                cost_a = cost + 2 * me[a_] * da + m[a_, a_] * da**2
                # Second move on each group b: solve cost(b = w_b + t) = budget for t.
                gb = 2 * (me[None, :n] + m[a_][:, :n] * da[:, None])  # d cost / d w_b
                qb = np.broadcast_to(np.diag(m)[:n], gb.shape)
                rest = cost_a[:, None] - budget
                with np.errstate(divide="ignore", invalid="ignore"):
                    disc = np.sqrt(np.maximum(gb**2 - 4 * qb * rest, 0.0))
                    t_quad = np.where(gb >= 0, (-gb + disc), (-gb - disc)) / (2 * qb)
                    t = np.where(np.abs(qb) > 1e-12, t_quad, -rest / gb)
                harm_a = np.where(  # move away from the continuous fit, first move
                    ga >= 0,
                    (np.log(np.maximum(w[a_] + da, 1e-9)) - log_c[a_]) ** 2
                    - (np.log(w[a_]) - log_c[a_]) ** 2,
                    0.0,
                )
                target = np.nan_to_num(w[None, :] + t, nan=-1.0, posinf=-1.0, neginf=-1.0)
                best = None
                for rounding in (np.floor, np.ceil):
                    x = np.clip(rounding(target / q) * q, lo, top)
                    tb = x - w[None, :]
                    new_cost = cost_a[:, None] + gb * tb + qb * tb**2
                    new_gap = np.maximum(np.maximum(lo_b - new_cost, new_cost - hi), 0.0)
                    move_b = (tb != 0) & self.free[None, :] & (np.arange(n)[None, :] != ga[:, None])
                    # A pair without a second move is the first move alone.
                    new_gap = np.where(move_b | (tb == 0), new_gap, np.inf)
                    new_gap[ga[:, None] == np.arange(n)[None, :]] = np.inf
                    harm = (np.log(np.maximum(x, 1e-9)) - log_c) ** 2 - (np.log(w) - log_c) ** 2
                    harm = np.where(tb != 0, harm, 0.0)
                    total = harm + harm_a[:, None]
                    k = np.lexsort((total.ravel(), new_gap.ravel()))[0]
                    score = (new_gap.ravel()[k], total.ravel()[k])
                    if best is None or score < best[0]:
                        best = (score, divmod(int(k), n), x)
                (best_gap, _), (i, b), x = best
                if not best_gap < gap:
                    break
                widths = widths.copy()
                if ga[i] >= 0:
                    widths[ga[i]] = int(round(w[ga[i]] + da[i]))
                widths[b] = int(x[i, b])
        cost = self.cost(widths.astype(np.float64))
        return widths, bool(lo_b <= cost <= hi)

    def _exhaustive(self, continuous, budget, round_to, tolerance, limit=EXHAUSTIVE_LIMIT):
        """Last repair stage: try every assignment of the free widths.

        Each free group ranges over the multiples of its ``multiple_of``
        between its bounds. Returns ``(widths, within_tolerance)`` for the
        assignment with the smallest distance to the tolerance band, ties
        broken by the fewest widths off the ``round_to`` grid, then by the
        smallest move from the continuous fit (``Σ (log w − log w_cont)²``);
        or None when there are more than ``limit`` assignments.
        """
        free = np.flatnonzero(self.free)
        low = np.maximum(self.min_width, self.multiple)
        ranges = [
            np.arange(-(-low[i] // self.multiple[i]) * self.multiple[i], self.max_width[i] + 1, self.multiple[i])
            for i in free
        ]
        count = math.prod(len(r) for r in ranges)
        if count == 0 or count > limit:
            return None
        grid = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(count, len(free))
        widths = np.tile(self.w0.astype(np.int64), (count, 1))
        widths[:, free] = grid
        cost = np.concatenate([self.cost_model.batch(widths[i : i + 4096]) for i in range(0, count, 4096)])
        gap = np.maximum(np.maximum(budget * (1 - tolerance) - cost, cost - budget * (1 + tolerance)), 0.0)
        q = self._quantum(continuous, round_to)[free]
        off_grid = np.count_nonzero(grid % q, axis=1)
        log_c = np.log(np.maximum(continuous[free], 1e-9))
        move = np.sum((np.log(grid) - log_c) ** 2, axis=1)
        best = np.lexsort((move, off_grid, gap))[0]
        return widths[best], bool(gap[best] == 0.0)


def _has_free(node, graph):
    return any(not graph[v].fixed for v in node.kernel.vars)
