"""The latency budget, measured: prediction accuracy, budget hits, equal-latency rows, cost.

For each model (MobileNetV2@224 and ResNet50@224 from ``keras.applications``,
``weights=None``, logits; the bundled ResNet-20 at 32×32) the script

1. builds this machine's latency table for it in a fresh cache folder and
   times that (``table_seconds``: the cost of the first latency plan), then
   times a cached ``budget="latency"`` plan against a ``budget="macs"`` plan
   (median of 3 each);
2. plans the variants below, builds them, converts each (and the dense model)
   to TFLite and times all files round-robin (``--rounds`` passes of
   ``--runs`` invokes each, XNNPACK, batch 1; the latency is the smallest
   round median, as the model's calibration takes the smallest of its block
   medians), so slow windows of the machine hit every variant alike and are
   then discarded;
3. compares each variant's *predicted* ms (the plan's latency model; for
   MACs plans the same model evaluated at their widths) with its *measured*
   ms.

Variants: ``precrop-latency@0.5`` and ``@0.25`` (``crop(model, T,
budget="latency")``), ``uniform-latency@0.5`` and ``@0.2`` (every free group
scaled by one factor to T of the dense latency), and, at each uniform model's
*measured* latency m and MACs M, ``precrop-latency@m`` (``target="{m}ms"``) and
``precrop-macs@M`` (the MACs budget of today's PreCrop at the uniform model's
MACs). The equal-latency table compares the last three on MACs, params, the
SynExp objective (Σ log achieved density over the prunable layers; higher
keeps more of the kernels) and measured ms.

Results: ``benchmarks/results/latency_budget.json`` and this machine's table
``benchmarks/results/latency_table.json``.

Usage::

    python benchmarks/latency_budget.py                       # all three models, fp32, 2 threads
    python benchmarks/latency_budget.py --models resnet20 --rounds 2
    python benchmarks/latency_budget.py --models resnet20 mobilenetv2 --precision int8
"""

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import tf_precrop  # noqa: E402
from tf_precrop import report  # noqa: E402
from tf_precrop._io import write_json  # noqa: E402
from tf_precrop.latency import LatencyTable, latency_for  # noqa: E402

DEFAULT_OUTPUT = os.path.join(HERE, "results", "latency_budget.json")
DEFAULT_TABLE = os.path.join(HERE, "results", "latency_table.json")  # fp32; int8: latency_table_int8.json


def default_table(precision):
    """The machine table kept with the results: one file per precision."""
    if precision == "fp32":
        return DEFAULT_TABLE
    return os.path.join(HERE, "results", f"latency_table_{precision}.json")
#: Latency targets per model (PreCrop; uniform width). ResNet-20 at 32x32 runs in under
#: a millisecond, where fixed costs leave less room: half its latency is out of reach.
TARGETS = {"resnet20": (0.8, 0.6)}
UNIFORM_TARGETS = {"resnet20": (0.8, 0.6)}


def build(name, size):
    import keras

    if name == "resnet20":
        return tf_precrop.models.resnet20()
    kwargs = dict(weights=None, input_shape=(size, size, 3), classifier_activation=None)
    if name == "resnet50":
        return keras.applications.ResNet50(**kwargs)
    return keras.applications.MobileNetV2(**kwargs)


def objective(plan):
    """SynExp's objective at the plan's widths: Σ log achieved density."""
    return float(sum(math.log(max(lp.achieved_density, 1e-300)) for lp in plan.layers))


def flatbuffer(model, precision):
    from tf_precrop.latency.measure import model_flatbuffer

    return model_flatbuffer(model, precision)


def round_robin(files, threads, rounds, runs):
    """``{name: smallest round median ms}`` and every round's medians.

    ``tf_precrop.latency.measure.time_flatbuffers`` with exactly ``runs``
    calls per round and 5 warm-up calls before each. The smallest round
    median, as the calibration of the latency model takes the smallest block
    median: on a shared machine a slow window spoils a round, and the minimum
    is what repeats.
    """
    from tf_precrop.latency.measure import time_flatbuffers

    medians = time_flatbuffers(files, threads, min_runs=runs, min_seconds=0, warmup=5, blocks=rounds,
                               max_runs=runs, verbose=1)
    return {name: float(np.min(v)) for name, v in medians.items()}, medians


def timed(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return result, statistics.median(times)


def run_model(name, args, table_path):
    size = 32 if name == "resnet20" else args.size
    model = build(name, size)
    opts = dict(num_threads=args.threads, precision=args.precision, verbose=0)
    print(f"== {name}@{size}: building the latency table in a fresh cache", flush=True)
    fresh = tempfile.mkdtemp(prefix="tf_precrop_latency_")
    try:
        graph = tf_precrop.channel_groups(model)
        t = time.perf_counter()
        cost = latency_for(graph, None, args.threads, args.precision, verbose=1,
                           cache=os.path.join(fresh, "table.json"))
        table_seconds = time.perf_counter() - t
        fresh_table = LatencyTable.load(os.path.join(fresh, "table.json"))
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    # Merge into the machine table kept with the results, and plan from it.
    merged = LatencyTable.load(table_path) if os.path.exists(table_path) else LatencyTable(args.threads, args.precision)
    if (merged.num_threads, merged.precision) != (args.threads, args.precision):
        raise SystemExit(
            f"{table_path} holds a {merged.precision} table at {merged.num_threads} threads; this run "
            f"times {args.precision} at {args.threads} threads. Pass --table for another file."
        )
    for sig, points in fresh_table.entries.items():
        merged.entries.setdefault(sig, {}).update(points)
    merged.models.update(fresh_table.models)
    merged.overhead_ms = fresh_table.overhead_ms
    merged.save(table_path)
    _, latency_plan_s = timed(lambda: tf_precrop.plan(model, 0.5 if name != "resnet20" else 0.8,
                                                      budget="latency", latency=merged, **opts))
    _, macs_plan_s = timed(lambda: tf_precrop.plan(model, 0.5, budget="macs", verbose=0))
    print(f"  table {table_seconds:.1f} s; plan latency {latency_plan_s:.2f} s vs macs {macs_plan_s:.2f} s", flush=True)

    def predicted(plan):
        w = np.array([plan.widths[k] for k in [g.key for g in graph.groups]], dtype=np.float64)
        return float(cost.total(w))

    from tf_precrop.widths import WidthProblem

    # The smallest reachable latency (every free group at one channel), as a
    # fraction of dense: a target below ~1.1x of it is moved up (and said so).
    floor = WidthProblem(graph, budget="latency", latency=cost).min_cost() / cost.dense_ms

    def reachable(t):
        if t >= 1.1 * floor:
            return t
        moved = math.ceil(1.1 * floor * 20) / 20
        print(f"  target {t} is below 1.1x the smallest reachable latency ({floor:.3f} of dense): using {moved}")
        return moved

    big, small = (reachable(t) for t in TARGETS.get(name, (0.5, 0.25)))
    ubig, usmall = (reachable(t) for t in UNIFORM_TARGETS.get(name, (0.5, 0.2)))
    plans = {
        f"precrop-latency@{big}": tf_precrop.plan(model, big, budget="latency", latency=merged, **opts),
        f"precrop-latency@{small}": tf_precrop.plan(model, small, budget="latency", latency=merged, **opts),
        f"uniform-latency@{ubig}": tf_precrop.plan(model, ubig, budget="latency", method="uniform_width", latency=merged, **opts),
        f"uniform-latency@{usmall}": tf_precrop.plan(model, usmall, budget="latency", method="uniform_width", latency=merged, **opts),
    }
    files = {"dense": flatbuffer(model, args.precision)}
    for variant, plan in plans.items():
        files[variant] = flatbuffer(plan.apply(), args.precision)
    print(f"  timing {len(files)} files round-robin", flush=True)
    measured, _ = round_robin(files, args.threads, args.rounds, args.runs)
    # Equal-latency comparison at each uniform model's measured latency and MACs.
    for t in (ubig, usmall):
        uni = plans[f"uniform-latency@{t}"]
        # The uniform model's measured ms, kept inside what the widths can reach.
        lo = WidthProblem(graph, budget="latency", latency=cost).min_cost() * 1.01
        at_ms = float(np.clip(measured[f"uniform-latency@{t}"], lo, cost.dense_ms * 0.999))
        plans[f"precrop-latency@uniform{t}"] = tf_precrop.plan(
            model, f"{at_ms:.4f}ms", budget="latency", latency=merged, **opts
        )
        plans[f"precrop-macs@uniform{t}"] = tf_precrop.plan(model, int(uni.macs[1]), budget="macs", verbose=0)
    extra = {v: flatbuffer(p.apply(), args.precision) for v, p in plans.items() if v not in files}
    extra.update({k: files[k] for k in ("dense", f"uniform-latency@{ubig}", f"uniform-latency@{usmall}")})
    print(f"  timing {len(extra)} files round-robin (equal-latency set, with dense and uniform again)", flush=True)
    measured2, _ = round_robin(extra, args.threads, args.rounds, args.runs)
    rows = []
    dense_ms = {"first": measured["dense"], "second": measured2["dense"]}
    for variant, plan in plans.items():
        which = measured if variant in measured else measured2
        dense = dense_ms["first" if which is measured else "second"]
        rows.append(dict(
            model=name, size=size, variant=variant, budget=plan.budget, method=plan.method,
            target=plan.target, params=int(plan.params[1]), macs=int(plan.macs[1]),
            macs_ratio=plan.macs[1] / plan.macs[0], params_ratio=plan.params[1] / plan.params[0],
            objective=objective(plan), predicted_ms=predicted(plan), measured_ms=which[variant],
            dense_measured_ms=dense, measured_ratio=which[variant] / dense,
            predicted_ratio=predicted(plan) / cost.dense_ms,
            error=predicted(plan) / which[variant] - 1, within_tolerance=plan.within_tolerance,
            run="first" if which is measured else "second",
        ))
    return dict(
        model=name, size=size, dense_predicted_ms=cost.dense_ms, constant_ms=cost.constant,
        scale=cost.scale, overhead_ms=fresh_table.overhead_ms, floor_fraction=floor,
        targets=[big, small], uniform_targets=[ubig, usmall],
        dense_measured_ms=dense_ms, table_seconds=table_seconds, latency_plan_seconds=latency_plan_s,
        macs_plan_seconds=macs_plan_s, table_points=len(fresh_table), signatures=len(fresh_table.entries),
    ), rows


def print_tables(summaries, rows, args):
    print(f"\n### Prediction accuracy ({args.precision}, {args.threads} threads, XNNPACK, batch 1)\n")
    print("| model | variant | MACs ratio | predicted ms | measured ms | error |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']}@{r['size']} | {r['variant']} | {r['macs_ratio']:.3f} | {r['predicted_ms']:.3f} "
              f"| {r['measured_ms']:.3f} | {r['error']:+.1%} |")
    errors = [abs(r["error"]) for r in rows]
    print(f"\nmedian |error| over {len(errors)} variants: {np.median(errors):.1%} (max {max(errors):.1%})")
    print("\n### Budget hit: crop(model, T, budget='latency'), measured / measured dense\n")
    print("| model | T | measured ratio | within ±10% of T |")
    print("|---|---|---|---|")
    for r in rows:
        if r["variant"].startswith("precrop-latency@") and "uniform" not in r["variant"]:
            t = float(r["variant"].split("@")[1])
            ok = abs(r["measured_ratio"] / t - 1) <= 0.10
            print(f"| {r['model']}@{r['size']} | {t} | {r['measured_ratio']:.3f} | {'yes' if ok else 'no'} |")
    print("\n### Equal latency: at the measured ms and MACs of the uniform-width models\n")
    print("| model | at | variant | params | MACs | SynExp objective | measured ms |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        for t in sorted({x["variant"].split("@")[1] for x in rows if x["variant"].startswith("uniform-latency@")}):
            if r["variant"] in (f"uniform-latency@{t}", f"precrop-latency@uniform{t}", f"precrop-macs@uniform{t}"):
                print(f"| {r['model']}@{r['size']} | uniform@{t} | {r['variant'].split('@')[0]} | {r['params']:,} "
                      f"| {r['macs']:,} | {r['objective']:.1f} | {r['measured_ms']:.3f} |")
    print("\n### Cost of the feature\n")
    print("| model | table points | signatures | table build s | latency plan s (cached) | MACs plan s |")
    print("|---|---|---|---|---|---|")
    for s in summaries:
        print(f"| {s['model']}@{s['size']} | {s['table_points']} | {s['signatures']} | {s['table_seconds']:.1f} "
              f"| {s['latency_plan_seconds']:.2f} | {s['macs_plan_seconds']:.2f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["mobilenetv2", "resnet50", "resnet20"],
                        choices=["mobilenetv2", "resnet50", "resnet20"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument("--table", default=None,
                        help="machine table to merge into (default: results/latency_table.json "
                        "for fp32, latency_table_<precision>.json otherwise)")
    args = parser.parse_args(argv)
    if args.table is None:
        args.table = default_table(args.precision)
    summaries, rows = [], []
    existing = {}
    if os.path.exists(args.output):
        with open(args.output, encoding="utf-8") as f:
            existing = json.load(f)
    for name in args.models:
        summary, model_rows = run_model(name, args, args.table)
        summaries.append(summary)
        rows.extend(model_rows)
        keep = [s for s in existing.get("models", []) if (s["model"], s.get("precision")) != (name, args.precision)]
        keep_rows = [r for r in existing.get("rows", []) if (r["model"], r.get("precision")) != (name, args.precision)]
        summary["precision"] = args.precision
        for r in model_rows:
            r["precision"], r["threads"] = args.precision, args.threads
        existing = dict(
            meta=dict(command="python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
                      environment=report.environment(), threads=args.threads),
            models=keep + [summary],
            rows=keep_rows + model_rows,
        )
        write_json(args.output, existing)
    print_tables(summaries, rows, args)


if __name__ == "__main__":
    main()
