"""Plots benchmarks/results/cifar_accuracy.json: accuracy vs compression per method.

One panel per (model, budget): x is the compression ratio (10x, 20x, ...), one
line per method (mean over seeds, bars from min to max), the dense model as a
dashed line.

    python benchmarks/plot_accuracy.py  # writes docs/img/cifar_accuracy.png
"""

import argparse
import collections
import json
import statistics

LABELS = {
    "uniform_width": "uniform width",
    "precrop_synexp": "PreCrop-SynExp",
    "precrop_synexp_b0": "PreCrop-SynExp, balance 0",
    "precrop_synexp_b0.5": "PreCrop-SynExp, balance 0.5",
    "precrop_synexp_b2": "PreCrop-SynExp, balance 2 (default)",
    "precrop_synflow": "PreCrop fitted to SynFlow",
    "synflow_masked": "SynFlow unstructured (masked)",
}


def group_runs(runs):
    """``{(model, budget): {variant: {compress: [acc, ...]}}}`` and dense accuracies per model.

    The default-balance variant appears under both its names (``precrop_synexp``
    and ``precrop_synexp_b2`` are the same model); they are merged into the latter.
    """
    panels = collections.defaultdict(lambda: collections.defaultdict(lambda: collections.defaultdict(list)))
    dense = collections.defaultdict(list)
    for r in runs:
        model = r.get("model", "resnet20")
        if r["variant"] == "dense":
            dense[model].append(r["val_accuracy"])
            continue
        variant = "precrop_synexp_b2" if r["variant"] == "precrop_synexp" else r["variant"]
        panels[(model, r["budget"])][variant][r["compress"]].append(r["val_accuracy"])
    return panels, dense


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="benchmarks/results/cifar_accuracy.json")
    parser.add_argument("--out", default="docs/img/cifar_accuracy.png")
    args = parser.parse_args(argv)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with open(args.results, encoding="utf-8") as f:
        runs = json.load(f)["runs"]
    panels, dense = group_runs(runs)
    keys = sorted(panels, key=lambda k: (k[0], ("params", "macs").index(k[1])))
    fig = Figure(figsize=(5.2 * len(keys), 4.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    colors = dict(zip(LABELS, ("#7f7f7f", "#2f6db3", "#9ecae1", "#6baed6", "#08519c", "#e6550d", "#31a354"), strict=True))
    for ax, key in zip(axes, keys, strict=True):
        model, budget = key
        for variant in LABELS:
            points = panels[key].get(variant)
            if not points:
                continue
            xs = sorted(points)
            means = [statistics.mean(points[x]) for x in xs]
            lo = [m - min(points[x]) for x, m in zip(xs, means, strict=True)]
            hi = [max(points[x]) - m for x, m in zip(xs, means, strict=True)]
            n = max(len(points[x]) for x in xs)
            ax.errorbar(xs, means, yerr=[lo, hi], marker="o", capsize=3, color=colors[variant],
                        label=f"{LABELS[variant]} (n≤{n})")
        if dense.get(model):
            ax.axhline(statistics.mean(dense[model]), color="#d1495b", ls="--", label="dense")
        ax.set_xscale("log")
        ticks = sorted({x for pts in panels[key].values() for x in pts})
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:g}x" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel(f"compression ({budget})")
        ax.set_title(f"{model}: fewer {budget}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("CIFAR-10 validation accuracy\n(mean over seeds; bars: min-max)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
