"""Report stage: the plan as a table, JSON and a figure.

``plan.summary()`` prints one row per prunable layer — output group, width
before → after, density target → achieved, params and MACs before → after —
and the totals. :func:`plot_plan` draws widths and densities per layer in
graph order and saves a PNG. A ``budget="latency"`` plan (``plan.latency_ms``
set) also shows the predicted LiteRT milliseconds before → after, per layer
and in total, in the table, a third panel of the figure and the report JSON.
"""

import json
import os
import platform
from importlib import metadata

from tf_precrop._table import render_table

#: Distributions whose versions :func:`environment` reports (alternatives in a tuple).
_DISTRIBUTIONS = {
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "keras": ("keras",),
    "tf_keras": ("tf-keras",),
    "tensorflow_model_optimization": ("tensorflow-model-optimization",),
    "ai_edge_litert": ("ai-edge-litert",),
    "numpy": ("numpy",),
}


def environment():
    """The software and machine a measurement was taken on, as a JSON-able dict.

    For benchmark and bug reports: Python, platform, CPU count and the
    installed versions of tf_precrop and its dependencies (``None`` where not
    installed). Versions come from the installed distributions, so nothing is
    imported.

    Example:

    >>> from tf_precrop.report import environment
    >>> sorted(environment())[:3]
    ['ai_edge_litert', 'cpus', 'keras']
    """
    from tf_precrop import __version__

    info = {
        "tf_precrop": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    for key, names in _DISTRIBUTIONS.items():
        info[key] = None
        for name in names:
            try:
                info[key] = metadata.version(name)
                break
            except metadata.PackageNotFoundError:
                continue
    return info


def _latency(plan):
    """``plan.latency_ms`` (None for non-latency plans and objects without it)."""
    return getattr(plan, "latency_ms", None)


def _ms(before, after):
    """``"0.123 → 0.045"`` (``"–"`` for a layer the latency model does not time)."""
    if before is None or after is None:
        return "–"
    return f"{before:.3f} → {after:.3f}"


def latency_summary(plan):
    """``{"before", "after", "fraction", ...}`` of a latency plan's prediction, or None.

    ``constant_ms`` is the part of the total no layer row holds (untimed
    layers, per-invoke overhead; see :mod:`tf_precrop.latency.cost`).
    """
    latency = _latency(plan)
    if latency is None:
        return None
    before, after = (float(v) for v in latency)
    settings = getattr(plan, "settings", None) or {}
    return {
        "before": before,
        "after": after,
        "fraction": after / before if before else None,
        "num_threads": settings.get("num_threads"),
        "precision": settings.get("precision"),
        "constant_ms": settings.get("latency_constant_ms"),
        "table": settings.get("latency_table"),
    }


def plan_summary(plan, max_rows=None):
    """Text table of a :class:`~tf_precrop.plan.Plan` (see module docstring)."""
    latency = _latency(plan)
    rows = []
    layers = plan.layers if max_rows is None else plan.layers[:max_rows]
    for lp in layers:
        row = (
            lp.key,
            lp.group,
            f"{lp.width_before} → {lp.width_after}",
            f"{lp.target_density:.3f} → {lp.achieved_density:.3f}",
            f"{lp.params_before:,} → {lp.params_after:,}",
            f"{lp.macs_before:,} → {lp.macs_after:,}",
        )
        if latency is not None:
            row += (_ms(getattr(lp, "latency_ms_before", None), getattr(lp, "latency_ms_after", None)),)
        rows.append(row)
    blank = ("",) * (5 if latency is None else 6)
    if max_rows is not None and len(plan.layers) > max_rows:
        rows.append((f"... {len(plan.layers) - max_rows} more layers", *blank))
    (p0, p1), (m0, m1) = plan.params, plan.macs
    total = (
        "total",
        "",
        "",
        "",
        f"{p0:,} → {p1:,} ({p1 / p0:.1%})",
        f"{m0:,} → {m1:,} ({m1 / max(m0, 1):.1%})",
    )
    if latency is not None:
        l0, l1 = latency
        total += (f"{_ms(l0, l1)} ({l1 / l0:.1%})",)
    rows.append(total)
    miss = {"proven": ", outside the band: closest reachable (proven)",
            "searched": ", outside the band: closest found"}.get(getattr(plan, "miss", ""), "")
    if not plan.within_tolerance and not miss:
        miss = ", closest reachable"
    achieved = f"{plan.achieved:.2%}"
    if latency is not None:
        achieved = f"{latency[1]:.3f} ms, {plan.achieved:.2%} of dense"
    title = (
        f"{plan.model_name}: {plan.method}, {plan.budget} target {plan.target} "
        f"(achieved {achieved}{miss})"
    )
    columns = ["layer", "group", "width", "density target → achieved", "params", "MACs"]
    table = render_table(
        columns + (["predicted ms"] if latency is not None else []),
        rows,
        title=title,
        width=150 if latency is None else 175,
    )
    if latency is not None:
        info = latency_summary(plan)
        how = ", ".join(
            part for part in (
                info["precision"],
                None if info["num_threads"] is None else f"{info['num_threads']} threads",
            ) if part
        )
        constant = "" if info["constant_ms"] is None else (
            f" and a per-model constant of {info['constant_ms']:.3f} ms (untimed layers, "
            "per-invoke overhead)"
        )
        scale = plan.settings.get("latency_scale")
        if scale is not None and scale != 1.0:
            constant += f"; layer times scaled by {scale:.3f} (calibrated on two whole-model measurements)"
        table += (
            f"\npredicted ms: LiteRT{' (' + how + ')' if how else ''}; the total also counts the "
            f"timed layers without a row (element-wise, pooling, ...){constant}"
        )
    clamped = getattr(plan, "clamped", {})
    if clamped:
        names = ", ".join(sorted(clamped)[:6]) + (" ..." if len(clamped) > 6 else "")
        table += (
            f"\n{len(clamped)} layer(s) scored to density 0 were kept at one weight's "
            f"density (Plan.clamped): {names}"
        )
    return table


def write_report(plan, out_dir, stem="report", export=None, latency=None):
    """Writes ``{stem}.txt``, ``{stem}.json`` and ``{stem}.png`` to ``out_dir``.

    ``export`` / ``latency``: optional TFLite export and (measured) latency
    results (objects with ``to_dict()``) added to the text and JSON. A latency
    plan's *predicted* milliseconds are in the JSON as ``latency_ms``
    (:func:`latency_summary`) and in the text's table.

    Returns the three paths.
    """
    import os

    os.makedirs(out_dir, exist_ok=True)
    data = {"plan": plan.to_dict()}
    predicted = latency_summary(plan)
    if predicted is not None:
        data["latency_ms"] = predicted
    text = plan_summary(plan)
    for name, result in (("tflite", export), ("latency", latency)):
        if result is not None:
            data[name] = result.to_dict()
            text += f"\n{name}: " + ", ".join(f"{k}={v}" for k, v in result.to_dict().items())
    paths = [os.path.join(out_dir, f"{stem}.{ext}") for ext in ("txt", "json", "png")]
    with open(paths[0], "w", encoding="utf-8") as f:
        f.write(text + "\n")
    with open(paths[1], "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    plot_plan(plan, paths[2])
    return paths


def plot_plan(plan, path):
    """Saves a PNG: width before/after and density per layer (two panels), and
    for a latency plan a third panel of predicted ms per layer before/after."""
    # A bare Figure with the Agg canvas: no pyplot state, no backend switch,
    # so inline plotting in notebooks keeps working.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    layers = plan.layers
    n = len(layers)
    x = list(range(n))
    fig_w = min(max(8.0, 0.18 * n + 3), 28.0)
    latency = _latency(plan)
    fig = Figure(figsize=(fig_w, 7.5 if latency is None else 10.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2 if latency is None else 3, 1, sharex=True)
    ax_w, ax_d = axes[:2]
    before = [lp.width_before or 0 for lp in layers]
    after = [lp.width_after or 0 for lp in layers]
    ax_w.bar(x, before, color="#c9d6e8", label="before", width=0.85)
    ax_w.bar(x, after, color="#2f6db3", label="after", width=0.55)
    ax_w.set_ylabel("output channels")
    ax_w.set_yscale("log")
    ax_w.legend(loc="upper left")
    ax_w.set_title(
        f"{plan.model_name} — {plan.method}, {plan.budget} {plan.achieved:.1%} of dense"
    )
    ax_d.plot(x, [lp.target_density for lp in layers], "o-", ms=3, color="#999999", label="target")
    ax_d.plot(x, [lp.achieved_density for lp in layers], "s-", ms=3, color="#d1495b", label="achieved")
    ax_d.set_ylabel("layer density (kept fraction)")
    ax_d.set_yscale("log")
    ax_d.legend(loc="lower left")
    if latency is not None:
        ax_l = axes[2]
        ms_before = [getattr(lp, "latency_ms_before", None) or 0.0 for lp in layers]
        ms_after = [getattr(lp, "latency_ms_after", None) or 0.0 for lp in layers]
        ax_l.bar(x, ms_before, color="#f2d0a4", label="before", width=0.85)
        ax_l.bar(x, ms_after, color="#c2620a", label="after", width=0.55)
        ax_l.set_ylabel("predicted LiteRT ms")
        ax_l.legend(loc="upper left")
        l0, l1 = latency
        ax_l.set_title(f"predicted latency {l0:.3f} → {l1:.3f} ms ({l1 / l0:.1%}, total incl. untimed)", fontsize=9)
    ax_x = axes[-1]
    step = max(1, n // 60)
    ax_x.set_xticks(x[::step])
    ax_x.set_xticklabels([lp.key[-28:] for lp in layers][::step], rotation=90, fontsize=7)
    ax_x.set_xlabel("prunable layers in graph order")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
