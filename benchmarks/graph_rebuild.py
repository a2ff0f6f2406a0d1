"""Benchmark: channel graph + rebuild at 0.5 width on ImageNet-size applications.

Times ``tf_precrop.channel_groups(model)`` and ``tf_precrop.rebuild(model, 0.5)``
(given the graph just computed) on ``keras.applications`` ResNet50 and
MobileNetV2 at 224x224 (``weights=None``): one warm-up run, then the median of
5 timed runs. Model construction is not timed. Keras 3 by default; the same
applications from ``tf_keras.applications`` with ``--line tf_keras`` or
``--line both``.

Target: graph + rebuild under 2 s per model on 2 CPU cores.

Usage::

    python benchmarks/graph_rebuild.py [--runs 5] [--line keras3|tf_keras|both]

Prints a table and writes ``benchmarks/results/graph_rebuild.json``.
"""

import argparse
import datetime
import json
import os
import pathlib
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

TARGET_S = 2.0
MODELS = ("ResNet50", "MobileNetV2")
SIZE = 224
RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "graph_rebuild.json"


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def bench_model(name, line, runs):
    """Warm-up plus ``runs`` timed runs of graph + rebuild(0.5) on one application."""
    import tf_precrop
    from tf_precrop.backend import get_line

    keras = get_line(line).keras
    model = getattr(keras.applications, name)(weights=None, input_shape=(SIZE, SIZE, 3))
    graph_s, rebuild_s, total_s = [], [], []
    for i in range(runs + 1):
        t_graph, graph = _timed(lambda: tf_precrop.channel_groups(model))
        t_rebuild, new = _timed(lambda graph=graph: tf_precrop.rebuild(model, 0.5, graph=graph))
        if i == 0:
            continue  # warm-up
        graph_s.append(t_graph)
        rebuild_s.append(t_rebuild)
        total_s.append(t_graph + t_rebuild)
    total = statistics.median(total_s)
    return {
        "model": name,
        "line": line,
        "input_size": SIZE,
        "params": model.count_params(),
        "params_at_0.5": new.count_params(),
        "groups": len(graph),
        "free_groups": len(graph.free_groups),
        "layers": len(graph.layers),
        "runs": runs,
        "graph_median_s": statistics.median(graph_s),
        "rebuild_median_s": statistics.median(rebuild_s),
        "total_median_s": total,
        "total_runs_s": total_s,
        "target_s": TARGET_S,
        "meets_target": total < TARGET_S,
    }


def render(results):
    from rich.table import Table

    table = Table(
        title=f"channel_groups + rebuild(0.5) at {SIZE}x{SIZE} "
        f"(median of {results[0]['runs']}; target < {TARGET_S:g} s)"
    )
    for column in ("model", "line", "params", "groups (free)", "graph s", "rebuild s", "total s"):
        table.add_column(column, justify="left" if column in ("model", "line") else "right")
    table.add_column("target")
    for r in results:
        table.add_row(
            r["model"],
            r["line"],
            f"{r['params']:,}",
            f"{r['groups']} ({r['free_groups']})",
            f"{r['graph_median_s']:.3f}",
            f"{r['rebuild_median_s']:.3f}",
            f"{r['total_median_s']:.3f}",
            "ok" if r["meets_target"] else "MISSED",
        )
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs after one warm-up")
    parser.add_argument("--line", default="keras3", choices=("keras3", "tf_keras", "both"))
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)

    from rich.console import Console

    from tf_precrop.report import environment

    lines = ("keras3", "tf_keras") if args.line == "both" else (args.line,)
    results = [bench_model(name, line, args.runs) for line in lines for name in MODELS]
    Console(width=110).print(render(results))
    report = {
        "benchmark": "graph_rebuild",
        "description": "tf_precrop.channel_groups + tf_precrop.rebuild(model, 0.5, graph=graph)",
        "target": f"< {TARGET_S:g} s per model on 2 CPU cores",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": environment(),
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"Wrote {args.output}")
    return 0 if all(r["meets_target"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
