"""Plots benchmarks/results/cifar_accuracy.json: accuracy per method and budget.

    python benchmarks/plot_accuracy.py  # writes docs/img/cifar_accuracy.png
"""

import argparse
import collections
import json
import statistics
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="benchmarks/results/cifar_accuracy.json")
    parser.add_argument("--out", default="docs/img/cifar_accuracy.png")
    args = parser.parse_args(argv)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with open(args.results, encoding="utf-8") as f:
        runs = json.load(f)["runs"]
    groups = collections.defaultdict(list)
    for r in runs:
        groups[(r["variant"], r["budget"], r["compress"])].append(r["val_accuracy"])
    budgets = [b for b in ("params", "macs") if any(k[1] == b for k in groups)]
    variants = list(dict.fromkeys(r["variant"] for r in runs if r["variant"] != "dense"))
    dense = groups.get(("dense", "-", 1.0))
    fig = Figure(figsize=(4.5 * len(budgets) + 1, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(budgets), sharey=True, squeeze=False)[0]
    for ax, budget in zip(axes, budgets, strict=True):
        xs, means, lows, highs, labels = [], [], [], [], []
        for i, v in enumerate(variants):
            accs = [a for (vv, b, _), acc in groups.items() if vv == v and b == budget for a in acc]
            if not accs:
                continue
            xs.append(i)
            means.append(statistics.mean(accs))
            lows.append(min(accs))
            highs.append(max(accs))
            labels.append(f"{v}\n(n={len(accs)})")
        ax.bar(xs, means, color="#2f6db3", alpha=0.85)
        ax.vlines(xs, lows, highs, color="black", lw=1.5)
        if dense:
            ax.axhline(statistics.mean(dense), color="#d1495b", ls="--", label="dense")
            ax.legend(loc="lower right")
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
        ax.set_title(f"ResNet-20, 10x fewer {budget}")
        top = max(highs + ([statistics.mean(dense)] if dense else []))
        ax.set_ylim(min(lows + [1]) - 0.05, top + 0.03)
    axes[0].set_ylabel("validation accuracy\n(bar: mean; line: min-max over seeds)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
