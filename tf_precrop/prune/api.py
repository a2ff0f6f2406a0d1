"""``tf_precrop.prune``: a trained model with fewer channels, keeping the kept channels' weights."""

import numpy as np

from tf_precrop.errors import WidthError
from tf_precrop.graph.channel_graph import channel_groups
from tf_precrop.prune.budget import budget_widths
from tf_precrop.prune.channels import Replay, Trace
from tf_precrop.prune.importance import CRITERIA, DEFAULT_IMPORTANCE, channel_scores
from tf_precrop.prune.selection import choose_keeps, producer_classes
from tf_precrop.prune.slicing import copy_kept_weights

WIDTHS_FROM = ("synexp", "importance")
#: Default chosen by measurement (``benchmarks/prune_trained.py``, trained
#: ResNet-20 on CIFAR-10, seed 0, 5 fine-tune epochs): synexp widths beat
#: importance widths by 7 points at 50% of the MACs (83.7% vs 76.8%, l1) and
#: by 14 at 20% (79.4% vs 65.3%). A global ranking of channel scores empties
#: the wide late layers first (17.6% of the params kept at 50% of the MACs),
#: while PAI densities are data-free, never collapse a layer and hit the budget
#: within 1%; the importance then only chooses *which* channels each group keeps.
DEFAULT_WIDTHS_FROM = "synexp"


def prune(
    model,
    target=None,
    *,
    widths=None,
    budget="params",
    importance=DEFAULT_IMPORTANCE,
    data=None,
    widths_from=DEFAULT_WIDTHS_FROM,
    round_to=8,
    seed=0,
    verbose=0,
    latency=None,
    num_threads=2,
    precision="fp32",
):
    """Prunes a trained model: same architecture, fewer channels, kept weights copied.

    The channels each group keeps are chosen by ``importance`` and are the same
    for every layer that produces or reads them (through residual adds, SE
    gates, concatenations, splits, shuffles, depthwise and grouped convs and
    nested models). Every weight of a kept channel is copied: conv/dense
    kernels and biases, depthwise/separable kernels, BatchNormalization
    γ/β/moving statistics, per-channel layers (PReLU, LayerScale,
    LayerNormalization...), sliced by each layer's rule
    (:meth:`~tf_precrop.graph.rule_base.LayerRule.slice_weights`). If a kept set
    of channels cannot be mapped exactly through some layer, an error names
    that layer; a wrong model is never returned.

    Args:
        model: a built Functional or Sequential model (Keras 3 or tf_keras). It
            is never modified.
        target: what to prune to. A number is a **budget**, as in
            :func:`tf_precrop.plan`: a fraction of the dense cost (float in
            (0, 1]) or an absolute count (int > 1) of ``budget`` units. A dict
            ``{group key: width}`` gives widths directly (groups of
            :func:`tf_precrop.channel_groups`; the rest keep their width). A
            :class:`~tf_precrop.Plan` uses its widths.
        widths: instead of ``target``: ``{group: width}`` or a width
            **multiplier** (``0.5`` halves every free group), as
            :func:`tf_precrop.rebuild` takes.
        budget: ``"params"``, ``"macs"`` or ``"latency"`` (for a budget
            ``target``; a latency target is a fraction or ``"3.5ms"``).
        importance: ``"l1"`` (default), ``"l2"``, ``"bn_scale"``, ``"taylor"``
            (needs ``data``) or ``"random"``; see :mod:`tf_precrop.prune.importance`.
        data: ``(x, y)`` arrays or a ``tf.data.Dataset`` (for ``"taylor"``).
        widths_from: for a budget ``target``: ``"synexp"`` (default,
            chosen by measurement: PAI densities of ``plan(..., method="synexp")``) or
            ``"importance"`` (one global ranking of the channel scores).
        round_to: channel multiple for groups of ≥ 32 channels (budget targets).
        seed: seed of ``importance="random"``.
        verbose: 1 prints the widths that change.
        latency, num_threads, precision: the latency table and its settings
            for ``budget="latency"``, as :func:`tf_precrop.plan` takes them
            (:mod:`tf_precrop.latency`).

    Returns:
        A new Keras model of the same line, layer names and classes, with the
        chosen widths and the kept channels' trained weights.

    Raises:
        ValueError / TypeError: bad arguments (unknown criterion, both or
            neither of ``target`` and ``widths``...).
        WidthError, BudgetError: invalid widths or budget.
        UnsupportedLayerError: a layer whose channels cannot be followed or
            sliced (named in the message).

    Example:

    >>> import tf_precrop
    >>> model = tf_precrop.models.resnet20()
    >>> small = tf_precrop.prune(model, widths=0.5)
    >>> small.count_params() < model.count_params()
    True
    """
    if importance not in CRITERIA:
        raise ValueError(
            f"Unknown importance criterion. Expected one of {CRITERIA}. Received: "
            f"importance={importance!r}"
        )
    if widths_from not in WIDTHS_FROM:
        raise ValueError(
            f"Unknown `widths_from`. Expected one of {WIDTHS_FROM}. Received: "
            f"widths_from={widths_from!r}"
        )
    if isinstance(round_to, bool) or not isinstance(round_to, (int, np.integer)) or round_to < 1:
        raise ValueError(
            f"Invalid `round_to`. Expected a positive integer. Received: round_to={round_to!r}"
        )
    if (target is None) == (widths is None):
        raise TypeError(
            "prune() needs exactly one of `target` (a budget, a {group: width} dict or "
            "a Plan) and `widths` (a dict or a multiplier). Received: "
            f"target={target!r}, widths={widths!r}"
        )
    graph = channel_groups(model)
    trace = Trace(graph).run()
    classes = producer_classes(trace)
    scores, scored = channel_scores(trace, importance, model=model, data=data, seed=seed)

    def attempt(widths):
        new_widths = graph.resolve_widths(widths)

        def width_of(producer):
            if producer.call is None:
                return int(producer.ids.size)
            expr = producer.call.outputs[producer.index]
            value = expr.evaluate(new_widths)
            if value.denominator != 1:
                raise WidthError(
                    f"Widths give '{producer.key}' a fractional channel count {value}. "
                    "Expected widths that respect the groups' multiple_of. Received: "
                    f"widths={ {k: new_widths[k] for k in expr.vars} }"
                )
            return int(value)

        keeps = choose_keeps(trace, classes, scores, scored, width_of, importance)
        return new_widths, Replay(trace, keeps).run()

    explicit = _explicit_widths(model, graph, target, widths)
    if explicit is not None:
        new_widths, replay = attempt(explicit)
    else:
        _, (new_widths, replay) = budget_widths(
            model, graph, trace, classes, scores, target, budget, widths_from, round_to, attempt,
            latency_options=dict(latency=latency, num_threads=num_threads, precision=precision),
        )
    if verbose:
        current = graph.widths()
        for key, w in new_widths.items():
            if w != current[key]:
                print(f"prune: {key}: {current[key]} -> {w}")
    from tf_precrop.rebuild import _Rebuilder

    new_model = _Rebuilder(graph, new_widths).build(model, top=True)
    copy_kept_weights(trace, replay, new_model)
    return new_model


def _explicit_widths(model, graph, target, widths):
    """The widths a call gives directly, or None for a budget target."""
    from tf_precrop.plan import Plan

    if widths is not None:
        return widths
    if isinstance(target, dict):
        return target
    if isinstance(target, Plan):
        if target.original_widths != graph.widths():
            raise ValueError(
                f"The plan was made for model '{target.model_name}' and does not fit "
                f"model '{model.name}': its channel groups differ. Expected the same "
                f"architecture. Received: plan for {target.model_name!r}"
            )
        return {k: v for k, v in target.widths.items() if v != graph[k].width}
    if isinstance(target, str):
        return None  # a latency target in milliseconds ("3.5ms"), checked by the budget
    if isinstance(target, bool) or not isinstance(target, (int, float, np.integer, np.floating)):
        raise TypeError(
            "Expected `target` to be a budget (a number), a {group: width} dict or a "
            f"Plan. Received: target of type {type(target).__name__}"
        )
    return None
