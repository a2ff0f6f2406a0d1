"""The accuracy-vs-cost frontier of the CIFAR-10 evidence runs: params, MACs and measured ms.

What it measures: every trained model of ``benchmarks/results/cifar_accuracy.json``
of one schedule (``--recipe cpu --epochs 20``, the 45,000-image training set;
``--model resnet20``) is loaded from its saved ``.keras`` file, converted to an
fp32 TFLite flatbuffer (``tf_precrop.latency.measure.model_flatbuffer``) and
timed in the LiteRT interpreter (XNNPACK, batch 1, ``--threads`` threads). All
files are timed round-robin in one run (``tf_precrop.latency.measure.time_flatbuffers``:
``--rounds`` (20) passes of ``--runs`` (500) invokes each;
a file's latency is its smallest round median), so a slow window of the machine
hits every model alike. Identical flatbuffers are timed once.

How to read it: three panels share the y axis, the validation accuracy (5,000
held-out training images), against params, MACs (both log x) and measured ms.
Small semi-transparent markers are single seeds; each line joins one method's
means per (variant, budget, compression), sorted by x; the dashed line is the
dense model's mean accuracy. Up and to the left is better: a method whose line
lies above another's at the same x wins at that cost. SynFlow masks (weight
level) are drawn hollow: those models keep their dense shape with zeros in the
kernels, so they store and compute dense. Their x is the stored params and the
dense MACs and ms. Their non-zero kernel fraction is in the table and the JSON
(``kept_kernel_density``).

Timing wants an otherwise idle machine: pause training for the run (the
project stops it with ``kill -STOP <pid>`` and resumes it with ``kill -CONT``).

Outputs: ``benchmarks/results/frontier.json`` (meta and one row per model) and
``docs/img/cifar_frontier_cpu20.png``. For another ``--model``, ``--recipe`` or
``--epochs`` the default names get them (``frontier_<model>_<recipe><epochs>.json``
and ``cifar_frontier_<model>_<recipe><epochs>.png``; the model is left out for
resnet20).

Usage::

    python benchmarks/frontier.py                      # time, write the JSON and the plot, print the table
    python benchmarks/frontier.py --markdown           # re-print the table from the JSON; times nothing
    python benchmarks/frontier.py --rounds 1 --runs 3 --out /tmp/frontier.json --plot /tmp/frontier.png
    python benchmarks/frontier.py --model shufflenet_v2_x0_5
"""

import argparse
import collections
import datetime
import hashlib
import json
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DEFAULT_RESULTS = os.path.join(HERE, "results", "cifar_accuracy.json")

#: Method key -> legend label, in plotting and table order (the dense model first).
LABELS = {
    "dense": "dense",
    "uniform_width": "uniform width",
    "precrop_synexp_macs": "PreCrop (SynExp, MACs budget)",
    "precrop_synexp_params": "PreCrop (SynExp, params budget)",
    "precrop_latency": "PreCrop (latency budget)",
    "precrop_synflow": "PreCrop (SynFlow densities, params budget)",
    "synflow_masked": "SynFlow masks (weight level)",
}
COLORS = {
    "dense": "#d1495b",
    "uniform_width": "#7f7f7f",
    "precrop_synexp_macs": "#08519c",
    "precrop_synexp_params": "#6baed6",
    "precrop_latency": "#e6550d",
    "precrop_synflow": "#74c476",
    "synflow_masked": "#31a354",
}
MARKERS = {
    "dense": "*",
    "uniform_width": "s",
    "precrop_synexp_macs": "o",
    "precrop_synexp_params": "D",
    "precrop_latency": "^",
    "precrop_synflow": "v",
    "synflow_masked": "o",
}
#: The x of each panel: (row key, axis label, log scale).
PANELS = (
    ("params", "parameters (stored)", True),
    ("macs", "MACs per image", True),
    ("measured_ms", "measured ms per image (fp32 LiteRT, batch 1)", False),
)
#: The fields kept per model in the JSON, in this order.
ROW_FIELDS = (
    "model",
    "variant",
    "budget",
    "compress",
    "seed",
    "val_accuracy",
    "params",
    "macs",
    "kept_kernel_density",
    "measured_ms",
    "tflite_bytes",
    "saved_model",
)


def default_paths(model, recipe, epochs):
    """``(json, png)``: the default output paths of a (model, recipe, epochs) frontier."""
    prefix = "" if model == "resnet20" else f"{model}_"
    suffix = f"{recipe}{epochs}"
    json_name = (
        "frontier.json"
        if (model, suffix) == ("resnet20", "cpu20")
        else f"frontier_{prefix}{suffix}.json"
    )
    return (
        os.path.join(HERE, "results", json_name),
        os.path.join(ROOT, "docs", "img", f"cifar_frontier_{prefix}{suffix}.png"),
    )


def method_of(row):
    """The method key of a row (a line of the plot): PreCrop-SynExp splits by budget."""
    variant = row["variant"]
    if variant in ("precrop_synexp", "precrop_synexp_b2"):  # b2: the default balance's older name
        return f"precrop_synexp_{row['budget']}"
    return variant


def label_of(method):
    return LABELS.get(method, method.replace("_", " "))


def _method_order(method):
    keys = list(LABELS)
    return (keys.index(method), "") if method in LABELS else (len(keys), method)


def select_rows(runs, model="resnet20", recipe="cpu", epochs=20, train_size=45000, root=ROOT):
    """``(rows, missing)``: the runs of one model and schedule, and those without a saved model.

    A run is selected when its ``model``, ``recipe`` (``"short"`` when absent, as
    ``benchmarks/plot_accuracy.py`` reads it), ``epochs`` and ``train_size`` match.
    Selected runs whose ``saved_model`` (relative to ``root``) is unset or not a
    file go to ``missing`` instead of ``rows``. Both keep the input order.
    """
    rows, missing = [], []
    for r in runs:
        if (
            r.get("model", "resnet20"),
            r.get("recipe", "short"),
            r.get("epochs"),
            r.get("train_size"),
        ) != (
            model,
            recipe,
            epochs,
            train_size,
        ):
            continue
        path = r.get("saved_model")
        if path and os.path.isfile(os.path.join(root, path)):
            rows.append(r)
        else:
            missing.append(r)
    return rows, missing


def method_means(rows, x):
    """``{method: [point, ...]}``: the mean of each (variant, budget, compress), sorted by x.

    A point is a dict of ``x`` (mean of ``row[x]``), ``val_accuracy`` (mean),
    ``n`` (seeds) and its ``variant``, ``budget`` and ``compress``. Rows whose
    ``x`` is ``None`` (not timed) are left out; the dense model is not a method
    here (see :func:`dense_accuracy`). Methods come in :data:`LABELS` order.
    """
    groups = collections.defaultdict(list)
    for r in rows:
        if r["variant"] == "dense" or r.get(x) is None:
            continue
        groups[(r["variant"], r["budget"], r["compress"])].append(r)
    lines = collections.defaultdict(list)
    for (variant, budget, compress), rs in groups.items():
        lines[method_of(rs[0])].append(
            dict(
                x=statistics.mean(r[x] for r in rs),
                val_accuracy=statistics.mean(r["val_accuracy"] for r in rs),
                n=len(rs),
                variant=variant,
                budget=budget,
                compress=compress,
            )
        )
    return {
        m: sorted(lines[m], key=lambda p: (p["x"], p["compress"]))
        for m in sorted(lines, key=_method_order)
    }


def dense_accuracy(rows):
    """The dense model's mean validation accuracy over its seeds, or ``None`` without one."""
    accs = [r["val_accuracy"] for r in rows if r["variant"] == "dense"]
    return statistics.mean(accs) if accs else None


def _row_order(r):
    return (_method_order(method_of(r)), r["compress"], str(r["budget"]), r["seed"])


def _budget_cell(r):
    if r["variant"] == "dense":
        return "–"
    if r["variant"] == "precrop_latency":  # the measured ms of uniform width at this budget
        return f"latency of uniform width ({r['budget']})"
    return r["budget"]


def markdown_table(rows):
    """The table of the frontier rows: one line per model (method order, compression, seed)."""
    lines = [
        "| model | variant | budget | compression | seed | val acc | params | MACs | measured ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=_row_order):
        dense = r["variant"] == "dense"
        params = f"{r['params']:,}"
        if r.get("kept_kernel_density") is not None:
            params += f" ({100 * r['kept_kernel_density']:.1f}% non-zero kernels)"
        ms = "–" if r.get("measured_ms") is None else f"{r['measured_ms']:.3f}"
        lines.append(
            f"| {r['model']} | {label_of(method_of(r))} | {_budget_cell(r)} "
            f"| {'–' if dense else format(r['compress'], 'g') + '×'} | {r['seed']} "
            f"| {100 * r['val_accuracy']:.2f}% | {params} | {r['macs']:,} | {ms} |"
        )
    return "\n".join(lines)


def markdown_from_json(path):
    """:func:`markdown_table` of a frontier JSON written by this script."""
    with open(path, encoding="utf-8") as f:
        return markdown_table(json.load(f)["rows"])


def plot_frontier(rows, path, title=None):
    """Writes the three-panel frontier (accuracy vs params, MACs, measured ms) to ``path``.

    Returns the matplotlib ``Figure`` (drawn on an Agg canvas; pyplot is not
    used). Rows without ``measured_ms`` are left off the latency panel only.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig = Figure(figsize=(16, 5.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(PANELS), sharey=True)
    dense_acc = dense_accuracy(rows)
    methods = sorted({method_of(r) for r in rows}, key=_method_order)
    for ax, (key, xlabel, log) in zip(axes, PANELS, strict=True):
        for method in methods:
            color, marker = COLORS.get(method, "#756bb1"), MARKERS.get(method, "o")
            hollow = method == "synflow_masked"
            face = "none" if hollow else color
            seeds = [r for r in rows if method_of(r) == method and r.get(key) is not None]
            ax.scatter(
                [r[key] for r in seeds],
                [100 * r["val_accuracy"] for r in seeds],
                s=70 if method == "dense" else 22,
                marker=marker,
                facecolors=face,
                edgecolors=color,
                alpha=0.45,
                linewidths=1,
                zorder=3,
            )
        for method, points in method_means(rows, key).items():
            color, marker = COLORS.get(method, "#756bb1"), MARKERS.get(method, "o")
            ax.plot(
                [p["x"] for p in points],
                [100 * p["val_accuracy"] for p in points],
                color=color,
                marker=marker,
                markersize=7,
                lw=1.8,
                zorder=4,
                markerfacecolor="none" if method == "synflow_masked" else color,
            )
        if dense_acc is not None:
            ax.axhline(100 * dense_acc, color=COLORS["dense"], ls="--", lw=1.2, zorder=2)
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(_short))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.06, y=0.08)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_title(
        "accuracy vs params\n(hollow: SynFlow masks, stored and computed dense)", fontsize=10
    )
    axes[1].set_title("accuracy vs MACs", fontsize=10)
    axes[2].set_title("accuracy vs measured latency", fontsize=10)
    axes[0].set_ylabel("CIFAR-10 validation accuracy (%)")
    handles = []
    for method in methods:
        color = COLORS.get(method, "#756bb1")
        face = "none" if method == "synflow_masked" else color
        handles.append(
            Line2D(
                [],
                [],
                color=color,
                marker=MARKERS.get(method, "o"),
                markerfacecolor=face,
                ls="--" if method == "dense" else "-",
                label=label_of(method),
            )
        )
    handles.append(
        Line2D(
            [],
            [],
            color="#555555",
            marker="o",
            ls="none",
            alpha=0.45,
            markersize=5,
            label="one seed (lines: means)",
        )
    )
    ncol = min(len(handles), 4)
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=ncol,
        fontsize=9,
        frameon=False,
        bbox_to_anchor=(0.5, 0.0),
    )
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.045 * -(-len(handles) // ncol), 1, 1))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def _short(value, _pos=None):
    """A tick label: 30k, 4M, 1.5M (log axes of params and MACs)."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{unit}"
    return f"{value:g}"


def measure(rows, threads, rounds, runs, root=ROOT):
    """Frontier rows (:data:`ROW_FIELDS`) of ``rows``, each saved model converted and timed.

    Every file is converted to fp32 TFLite; identical flatbuffers (the same
    bytes) are timed once, all of them round-robin in one run.
    """
    import keras

    import tf_precrop  # noqa: F401  (registers the layers and constraints the files use)
    from tf_precrop.latency.measure import model_flatbuffer, time_flatbuffers

    by_path, files, digest_of = {}, {}, []
    for r in rows:
        path = r["saved_model"]
        if path not in by_path:
            print(f"  converting {path}", flush=True)
            model = keras.saving.load_model(os.path.join(root, path))
            data = model_flatbuffer(model, "fp32")
            del model
            keras.backend.clear_session()  # many models in one process: free each one's graph
            digest = hashlib.sha256(data).hexdigest()
            by_path[path] = (digest, len(data))
            files.setdefault(digest, data)
        digest_of.append(by_path[path])
    print(
        f"timing {len(files)} distinct flatbuffers of {len(rows)} models round-robin "
        f"({threads} threads, {rounds} rounds of {runs} runs)",
        flush=True,
    )
    # Exactly `runs` calls per round, 5 warm-up calls before each; the smallest round median.
    rounds_ms = time_flatbuffers(files, threads, min_runs=runs, min_seconds=0, warmup=5, blocks=rounds,
                                 max_runs=runs, verbose=1)
    measured = {digest: min(v) for digest, v in rounds_ms.items()}
    out = []
    for r, (digest, size) in zip(rows, digest_of, strict=True):
        row = {k: r.get(k) for k in ROW_FIELDS if k not in ("measured_ms", "tflite_bytes")}
        row["model"] = r.get("model", "resnet20")
        row.update(measured_ms=measured[digest], tflite_bytes=size)
        out.append({k: row[k] for k in ROW_FIELDS})
    return out


def _shown(path):
    """``path`` relative to the repository root when inside it, else absolute."""
    path = os.path.abspath(path)
    inside = os.path.commonpath([path, ROOT]) == ROOT
    return os.path.relpath(path, ROOT) if inside else path


def _title(meta):
    return (
        f"{meta['model']} on CIFAR-10 ({meta['recipe']} recipe, {meta['epochs']} epochs, "
        f"{meta['train_size']:,} training images): accuracy vs cost; latency: fp32 LiteRT, "
        f"XNNPACK, {meta['threads']} threads, batch 1"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--results", default=DEFAULT_RESULTS, help="the CIFAR-10 runs (cifar_accuracy.json)"
    )
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--recipe", default="cpu", choices=["short", "cpu", "paper"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--train-size", type=int, default=45000)
    parser.add_argument("--threads", type=int, default=2)
    # 20 x 500: with 5 x 20, three identical sub-millisecond ResNet-20 files measured
    # 0.125-0.158 ms in one run; with 20 x 500 they agree within 0.001 ms (docs/results.md).
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument(
        "--out", default=None, help="the JSON (default: benchmarks/results/frontier.json)"
    )
    parser.add_argument(
        "--plot", default=None, help="the PNG (default: docs/img/cifar_frontier_cpu20.png)"
    )
    parser.add_argument(
        "--markdown", action="store_true", help="only re-print the table from --out; times nothing"
    )
    args = parser.parse_args(argv)
    default_json, default_png = default_paths(args.model, args.recipe, args.epochs)
    out = args.out or default_json
    plot = args.plot or default_png
    if args.markdown:
        if not os.path.exists(out):
            raise SystemExit(
                f"{out} does not exist; run without --markdown first to time the models"
            )
        print(markdown_from_json(out))
        return 0

    with open(args.results, encoding="utf-8") as f:
        runs = json.load(f)["runs"]
    rows, missing = select_rows(runs, args.model, args.recipe, args.epochs, args.train_size)
    for r in missing:
        print(
            f"skipped {r['variant']} {r['budget']} {r['compress']:g}x seed {r['seed']}: "
            f"saved model {r.get('saved_model')!r} is missing"
        )
    if not rows:
        raise SystemExit(
            f"no {args.model} runs of recipe {args.recipe!r}, {args.epochs} epochs, "
            f"{args.train_size} training images with a saved model in {args.results}"
        )
    from tf_precrop import report
    from tf_precrop._io import write_json

    frontier = measure(rows, args.threads, args.rounds, args.runs)
    meta = dict(
        command="python "
        + " ".join(
            [os.path.relpath(__file__, ROOT)] + list(sys.argv[1:] if argv is None else argv)
        ),
        environment=report.environment(),
        threads=args.threads,
        rounds=args.rounds,
        runs=args.runs,
        precision="fp32",
        delegate="XNNPACK",
        batch=1,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        model=args.model,
        recipe=args.recipe,
        epochs=args.epochs,
        train_size=args.train_size,
        results=_shown(args.results),
        skipped=[r.get("saved_model") for r in missing],
    )
    write_json(out, dict(meta=meta, rows=frontier))
    print(f"wrote {out}")
    plot_frontier(frontier, plot, _title(meta))
    print(f"wrote {plot}\n")
    print(markdown_table(frontier))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
