"""Plan stage: the one-call API — ``plan()`` → :class:`Plan` → ``apply()``.

A plan is data: per-group widths, per-layer target and achieved densities and
the cost before and after, computed without building anything. It prints as a
table, saves as plain JSON, and rebuilds the model with :meth:`Plan.apply`.
"""

import dataclasses
import json
import math
import os

import numpy as np

from tf_precrop._io import write_text
from tf_precrop.budget import warn_miss
from tf_precrop.errors import BudgetError
from tf_precrop.graph.channel_graph import channel_groups
from tf_precrop.rebuild import rebuild
from tf_precrop.targets import target_densities
from tf_precrop.widths import BUDGET_KINDS, DEFAULT_BALANCE, WidthProblem, resolve_budget

SCORE_METHODS = ("synflow", "snip", "grasp", "magnitude", "random")
DENSITY_METHODS = ("uniform", "erk", "synexp")
METHODS = SCORE_METHODS + DENSITY_METHODS + ("uniform_width",)
DEFAULT_METHOD = "synexp"
PLAN_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    key: str
    class_name: str
    group: str
    width_before: int
    width_after: int
    target_density: float
    achieved_density: float
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    #: Predicted LiteRT ms of the layer (latency plans only; None otherwise).
    latency_ms_before: float = None
    latency_ms_after: float = None


@dataclasses.dataclass(frozen=True)
class Plan:
    """Widths for one model under one budget, and how they were reached.

    Attributes:
        model_name: name of the planned model.
        method, budget, target: the settings that produced the plan.
        widths: ``{group key: new width}`` for every channel group.
        original_widths: ``{group key: width today}``.
        layers: tuple of :class:`LayerPlan` (prunable layers).
        params, macs: ``(before, after)`` totals.
        budget_value: the absolute budget in ``budget`` units.
        within_tolerance: whether the cost is within ±1% of the budget (if
            not, the plan holds the closest the rounding could reach, and
            :func:`plan` warned with a :class:`~tf_precrop.errors.BudgetWarning`).
        settings: the remaining arguments (round_to, preconfig, seed, ...).
        clamped: ``{layer key: density from the scores}`` for every layer whose
            target density was raised to its smallest fit-able value (one
            weight: ``1 / kernel size``) because the threshold removed it
            entirely. Empty for density methods that never clamp.
        miss: ``""`` within tolerance; else ``"proven"`` (every width
            assignment was tried: no cost is closer to the band) or
            ``"searched"`` (the closest cost the repair found; the problem was
            too large to try every assignment).
        latency_ms: ``(before, after)`` predicted LiteRT milliseconds of a
            ``budget="latency"`` plan (None for other budgets); the settings
            hold ``num_threads``, ``precision`` and the per-model constant.
    """

    model_name: str
    method: str
    budget: str
    target: float
    widths: dict
    original_widths: dict
    layers: tuple
    params: tuple
    macs: tuple
    budget_value: float
    within_tolerance: bool
    settings: dict
    clamped: dict = dataclasses.field(default_factory=dict)
    miss: str = ""
    latency_ms: tuple = None
    _model: object = dataclasses.field(default=None, repr=False, compare=False)
    _graph: object = dataclasses.field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------- results
    @property
    def achieved(self):
        """Achieved cost as a fraction of the dense model, in budget units."""
        before, after = {"params": self.params, "macs": self.macs, "latency": self.latency_ms}[self.budget]
        return after / before

    def apply(self, model=None, keep_weights=False, **prune_options):
        """Builds the cropped model. ``model`` defaults to the planned one.

        With ``keep_weights=False`` (default) the weights are fresh (pruning at
        initialisation). With ``keep_weights=True`` the (trained) model is pruned
        to the plan's widths by :func:`tf_precrop.prune`, which keeps the chosen
        channels' weights; ``prune_options`` are its ``importance``, ``data``
        and ``seed``. A plan loaded from JSON prunes a trained model this way:
        ``Plan.from_json(path).apply(model, keep_weights=True)``.
        """
        model = model if model is not None else self._model
        if model is None:
            raise ValueError(
                "This plan holds no model (it was loaded from JSON). Expected "
                "`plan.apply(model)` with the model it was made for. Received: model=None"
            )
        # The planned model's graph is reused: apply() does not walk it again.
        graph = self._graph if model is self._model and self._graph is not None else None
        graph = graph if graph is not None else channel_groups(model)
        current = graph.widths()
        if current != self.original_widths:
            diff = sorted(set(current.items()) ^ set(self.original_widths.items()))[:4]
            raise ValueError(
                f"This plan was made for model '{self.model_name}' and does not fit "
                f"model '{model.name}': its channel groups differ. Expected the same "
                f"architecture. Received: differing groups {diff}"
            )
        changed = {k: v for k, v in self.widths.items() if v != current[k]}
        if keep_weights:
            from tf_precrop.prune import prune

            return prune(model, widths=changed, **prune_options)
        if prune_options:
            raise TypeError(
                "Options of tf_precrop.prune need keep_weights=True. Received: "
                f"{sorted(prune_options)} with keep_weights=False"
            )
        return rebuild(model, changed, graph=graph)

    # ------------------------------------------------------------- reports
    def to_dict(self):
        data = dataclasses.asdict(
            dataclasses.replace(self, _model=None, _graph=None)
        )
        data.pop("_model")
        data.pop("_graph")
        data["format"] = PLAN_FORMAT
        data["layers"] = [dataclasses.asdict(layer) for layer in self.layers]
        return data

    def to_json(self, path=None):
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            write_text(path, text)
        return text

    @classmethod
    def from_json(cls, text_or_path):
        """Loads a plan saved with :meth:`to_json` (a JSON string or a file path)."""
        text = text_or_path
        if not str(text_or_path).lstrip().startswith("{"):
            with open(text_or_path, encoding="utf-8") as f:
                text = f.read()
        data = json.loads(text)
        if data.pop("format", None) != PLAN_FORMAT:
            raise ValueError(
                f"Unknown plan format. Expected format={PLAN_FORMAT}. Received: "
                f"format={data.get('format')!r}"
            )
        data["layers"] = tuple(LayerPlan(**layer) for layer in data["layers"])
        data["params"] = tuple(data["params"])
        data["macs"] = tuple(data["macs"])
        if data.get("latency_ms") is not None:
            data["latency_ms"] = tuple(data["latency_ms"])
        return cls(**data)

    def summary(self, max_rows=None):
        """A readable table: per layer widths, densities, params and MACs."""
        from tf_precrop.report import plan_summary

        return plan_summary(self, max_rows=max_rows)

    def __str__(self):
        (p0, p1), (m0, m1) = self.params, self.macs
        latency = ""
        if self.latency_ms is not None:
            l0, l1 = self.latency_ms
            latency = f", predicted {l0:.3f}→{l1:.3f} ms ({l1 / l0:.1%})"
        return (
            f"Plan({self.model_name}, {self.method}, {self.budget} target {self.target}: "
            f"params {p0:,}→{p1:,} ({p1 / p0:.1%}), MACs {m0:,}→{m1:,} ({m1 / max(m0, 1):.1%})"
            f"{latency})"
        )


def plan(
    model,
    target,
    *,
    budget="params",
    method=DEFAULT_METHOD,
    data=None,
    round_to=8,
    preconfig=False,
    seed=None,
    **options,
):
    """Plans per-group channel widths for ``model`` under a params, MACs or latency budget.

    Args:
        model: a Functional or Sequential model (Keras 3 or tf_keras). It is
            never modified.
        target: the budget: a fraction of the dense model's cost (float,
            ``0 < target ≤ 1``; up to the PreConfig bound with
            ``preconfig=True``) or an absolute count (int > 1); for
            ``budget="latency"`` a fraction or milliseconds as a string
            (``"3.5ms"``).
        budget: ``"params"`` (all parameters, as ``count_params``),
            ``"macs"`` (see :mod:`tf_precrop.profile` for the convention) or
            ``"latency"`` (predicted LiteRT ms; see :mod:`tf_precrop.latency`:
            the first plan on a machine times single-layer models, about a
            minute for MobileNetV2, then reads its cache).
        method: where the layer densities come from. ``"synexp"`` (default,
            data-free: maximise Σ log p_l under the budget — PreCrop-Params /
            PreCrop-FLOPs), ``"synflow"`` (iterative, data-free), ``"snip"`` and
            ``"grasp"`` (need ``data``), ``"magnitude"``, ``"random"``,
            ``"uniform"``, ``"erk"``; or ``"uniform_width"`` (every free group
            scaled by one factor — the baseline to beat).
        data: ``(x, y)`` arrays or a ``tf.data.Dataset`` for SNIP/GraSP.
        round_to: channel multiple for groups of ≥ 32 channels (1 below).
        preconfig: allow widening (PreConfig): widths up to ``upper`` (option,
            default 2.0) times today's.
        seed: seed for random scores and initialisation-dependent methods.
        **options: ``balance`` (width-balance weight of the fit, default 2.0,
            chosen by measured CIFAR-10 accuracy — see docs/results.md),
            ``min_channels`` (default 1), ``upper``, ``tolerance`` (0.01; 0.02
            for latency), ``rounds`` (SynFlow rounds, 100), ``verbose`` (1),
            ``loss``, ``score_density`` (density at which scores are
            thresholded; default: the target fraction, or 0.5 for PreConfig);
            for ``budget="latency"``: ``latency`` (None: this machine's
            cache, measured as needed; or a JSON table path or
            :class:`~tf_precrop.latency.LatencyTable` measured elsewhere),
            ``num_threads`` (2) and ``precision`` (``"fp32"`` or ``"int8"``).

    Returns:
        A :class:`Plan`; ``plan.apply()`` builds the cropped model.

    Raises:
        BudgetError: unknown budget kind, target ≤ 0, NaN, above 1 without
            PreConfig, or below the smallest model the graph allows.
        ValueError: unknown method; SNIP/GraSP without data.

    Example:

    >>> import tf_precrop
    >>> model = tf_precrop.models.resnet20()
    >>> p = tf_precrop.plan(model, 0.3, budget="params")
    >>> small = p.apply()
    >>> abs(small.count_params() / model.count_params() - 0.3) < 0.01
    True
    """
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise TypeError(
            f"plan() got unknown options {sorted(unknown)}. Expected some of "
            f"{', '.join(_OPTIONS)}. Received: {sorted(unknown)}"
        )
    latency_only = sorted(set(options) & set(_LATENCY_OPTIONS))
    if latency_only and budget != "latency":
        raise TypeError(
            f"The options {latency_only} are for budget='latency'. Received: budget={budget!r}"
        )
    if method not in METHODS:
        raise ValueError(f"Unknown method. Expected one of {METHODS}. Received: method={method!r}")
    _check_options(round_to, seed, options)
    if budget not in BUDGET_KINDS:
        raise BudgetError(
            f"Unknown budget kind. Expected one of {BUDGET_KINDS}. Received: budget={budget!r}"
        )
    upper = float(options.get("upper", 2.0 if preconfig else 1.0))
    if upper < 1 or (upper > 1 and not preconfig):
        raise BudgetError(
            "`upper` (the largest width ratio) must be 1 without PreConfig and ≥ 1 "
            f"with it. Received: upper={upper}, preconfig={preconfig}"
        )
    graph = channel_groups(model)
    latency = None
    if budget == "latency":
        from tf_precrop.latency import DEFAULT_THREADS, latency_for

        latency = latency_for(
            graph,
            options.get("latency"),
            num_threads=options.get("num_threads", DEFAULT_THREADS),
            precision=options.get("precision", "fp32"),
            upper=upper,
            verbose=options.get("verbose", 1),
        )
    problem = WidthProblem(
        graph,
        budget=budget,
        upper=upper,
        min_channels=options.get("min_channels", 1),
        balance=options.get("balance", DEFAULT_BALANCE),
        latency=latency,
    )
    budget_value = resolve_budget(
        target, problem.dense_cost, problem.min_cost(), problem.max_cost(), preconfig, budget
    )
    fraction = budget_value / problem.dense_cost
    clamped = {}
    targets = target_densities(
        model, graph, problem, method, fraction, data, seed, options, clamped
    )
    tolerance = float(options.get("tolerance", 0.02 if budget == "latency" else 0.01))
    solution = problem.solve(targets, budget_value, round_to=int(round_to), tolerance=tolerance)
    if not solution.within_tolerance:
        warn_miss(model, budget, solution, tolerance)
    settings = dict(
        round_to=int(round_to),
        preconfig=bool(preconfig),
        seed=seed,
        balance=problem.balance,
        upper=upper,
        min_channels=options.get("min_channels", 1),
        rounds=options.get("rounds", 100) if method == "synflow" else None,
    )
    if latency is not None:
        table = options.get("latency")
        settings.update(
            num_threads=options.get("num_threads", DEFAULT_THREADS),
            precision=options.get("precision", "fp32"),
            latency_constant_ms=latency.constant,
            latency_scale=latency.scale,
            latency_table=_table_name(table),
        )
    return _make_plan(model, graph, problem, solution, targets, clamped, method, budget, target, settings)


def _table_name(table):
    """The settings' record of where a latency table came from (None: this machine's cache)."""
    if table is None:
        return None
    path = getattr(table, "path", table)
    return "(in memory)" if path is None else os.fspath(path)


_LATENCY_OPTIONS = ("latency", "num_threads", "precision")
_OPTIONS = (
    "balance", "min_channels", "upper", "tolerance", "rounds", "verbose", "loss", "score_density",
) + _LATENCY_OPTIONS


def _check_options(round_to, seed, options):
    def bad(name, value, expected):
        raise ValueError(f"Invalid `{name}`. Expected {expected}. Received: {name}={value!r}")

    if isinstance(round_to, bool) or not isinstance(round_to, (int, np.integer)) or round_to < 1:
        bad("round_to", round_to, "a positive integer")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        bad("seed", seed, "an integer or None")
    checks = {
        "tolerance": (lambda v: 0 < v < 1, "a number in (0, 1)"),
        "balance": (lambda v: v >= 0, "a finite number ≥ 0"),
        "min_channels": (lambda v: v >= 1, "a number ≥ 1"),
        "upper": (lambda v: v >= 1, "a number ≥ 1"),
    }
    for name, (ok, expected) in checks.items():
        if name in options:
            value = options[name]
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                bad(name, value, expected)
            if not math.isfinite(value) or not ok(value):
                bad(name, value, expected)
    rounds = options.get("rounds", 1)
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
        bad("rounds", rounds, "a positive integer")


def crop(model, target, **kwargs):
    """Plans and builds in one call: ``plan(model, target, **kwargs).apply()``.

    Returns a new, smaller (or, with ``preconfig=True``, re-balanced) Keras model
    with fresh weights. See :func:`plan` for the arguments.

    Example:

    >>> import tf_precrop
    >>> small = tf_precrop.crop(tf_precrop.models.resnet20(), 0.5, budget="macs")
    """
    return plan(model, target, **kwargs).apply()


def _make_plan(model, graph, problem, solution, targets, clamped, method, budget, target, settings):
    w0, w1 = graph.widths(), solution.widths
    layers = []
    target_map = targets or {}
    ms_before = ms_after = {}
    latency_ms = None
    if problem.kind == "latency":
        w1_vec = np.array([w1[k] for k in problem.keys], dtype=np.float64)
        ms_before = problem.cost_model.per_layer(problem.w0)
        ms_after = problem.cost_model.per_layer(w1_vec)
        latency_ms = (float(problem.dense_cost), float(problem.cost(w1_vec)))
    for n in problem.prunable:
        layers.append(
            LayerPlan(
                key=n.key,
                class_name=n.class_name,
                group=repr(n.out_expr),
                width_before=n.width(w0),
                width_after=n.width(w1),
                target_density=float(target_map.get(n.key, solution.densities[n.key])),
                achieved_density=float(solution.densities[n.key]),
                params_before=int(n.params.evaluate(w0)),
                params_after=int(n.params.evaluate(w1)),
                macs_before=int(n.macs.evaluate(w0)),
                macs_after=int(n.macs.evaluate(w1)),
                latency_ms_before=ms_before.get(n.key),
                latency_ms_after=ms_after.get(n.key),
            )
        )
    params = (graph.cost(w0, "params"), graph.cost(w1, "params"))
    macs = (graph.cost(w0, "macs"), graph.cost(w1, "macs"))
    if isinstance(target, (np.integer, np.floating)):
        target = target.item()
    if isinstance(target, float) and not math.isfinite(target):  # pragma: no cover
        raise BudgetError(f"Received: target={target}")
    return Plan(
        model_name=model.name,
        method=method,
        budget=budget,
        target=target,
        widths=dict(w1),
        original_widths=dict(w0),
        layers=tuple(layers),
        params=params,
        macs=macs,
        budget_value=float(solution.budget),
        within_tolerance=bool(solution.within_tolerance),
        settings=settings,
        clamped=dict(clamped),
        miss=solution.miss,
        latency_ms=latency_ms,
        _model=model,
        _graph=graph,
    )
