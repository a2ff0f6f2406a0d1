"""Report stage: the plan as a table, JSON and a figure.

``plan.summary()`` prints one row per prunable layer — output group, width
before → after, density target → achieved, params and MACs before → after —
and the totals. :func:`plot_plan` draws widths and densities per layer in
graph order and saves a PNG.
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


def plan_summary(plan, max_rows=None):
    """Text table of a :class:`~tf_precrop.plan.Plan` (see module docstring)."""
    rows = []
    layers = plan.layers if max_rows is None else plan.layers[:max_rows]
    for lp in layers:
        rows.append(
            (
                lp.key,
                lp.group,
                f"{lp.width_before} → {lp.width_after}",
                f"{lp.target_density:.3f} → {lp.achieved_density:.3f}",
                f"{lp.params_before:,} → {lp.params_after:,}",
                f"{lp.macs_before:,} → {lp.macs_after:,}",
            )
        )
    if max_rows is not None and len(plan.layers) > max_rows:
        rows.append((f"... {len(plan.layers) - max_rows} more layers", "", "", "", "", ""))
    (p0, p1), (m0, m1) = plan.params, plan.macs
    rows.append(
        (
            "total",
            "",
            "",
            "",
            f"{p0:,} → {p1:,} ({p1 / p0:.1%})",
            f"{m0:,} → {m1:,} ({m1 / max(m0, 1):.1%})",
        )
    )
    miss = {"proven": ", outside the band: closest reachable (proven)",
            "searched": ", outside the band: closest found"}.get(getattr(plan, "miss", ""), "")
    if not plan.within_tolerance and not miss:
        miss = ", closest reachable"
    title = (
        f"{plan.model_name}: {plan.method}, {plan.budget} target {plan.target} "
        f"(achieved {plan.achieved:.2%}{miss})"
    )
    table = render_table(
        ["layer", "group", "width", "density target → achieved", "params", "MACs"],
        rows,
        title=title,
        width=150,
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

    ``export`` / ``latency``: optional TFLite export and latency results (objects
    with ``to_dict()``) added to the text and JSON.

    Returns the three paths.
    """
    import os

    os.makedirs(out_dir, exist_ok=True)
    data = {"plan": plan.to_dict()}
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
    """Saves a two-panel PNG: width before/after and density per layer."""
    # A bare Figure with the Agg canvas: no pyplot state, no backend switch,
    # so inline plotting in notebooks keeps working.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    layers = plan.layers
    n = len(layers)
    x = list(range(n))
    fig_w = min(max(8.0, 0.18 * n + 3), 28.0)
    fig = Figure(figsize=(fig_w, 7.5))
    FigureCanvasAgg(fig)
    ax_w, ax_d = fig.subplots(2, 1, sharex=True)
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
    step = max(1, n // 60)
    ax_d.set_xticks(x[::step])
    ax_d.set_xticklabels([lp.key[-28:] for lp in layers][::step], rotation=90, fontsize=7)
    ax_d.set_xlabel("prunable layers in graph order")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
