"""Does SynFlow need the full input resolution? Per-layer densities, 224 vs 96.

SynFlow feeds an all-ones input through the linearised network. Away from
borders every activation is spatially constant, so resolution enters the
scores only through zero-padding border effects and a global factor (which
does not change a ranking). ``tf_precrop`` therefore runs SynFlow at most at
``MAX_SIDE`` (96) pixels per side by default. This benchmark measures what
that costs: for
each model (Keras applications, ``weights=None``) and target density it runs
iterative SynFlow (100 rounds) at the full 224x224 resolution and at the
reduced one(s), turns both into per-layer densities (fraction of each layer's
kernel kept by the global threshold at the target) and reports the largest
and mean absolute per-layer difference and the wall time of both runs.

Results go to ``benchmarks/results/synflow_resolution.json``.

Usage::

    python benchmarks/synflow_resolution.py                 # full run (~15 min)
    python benchmarks/synflow_resolution.py --sides 96 64   # also show 64 px
    python benchmarks/synflow_resolution.py --rounds 20 --models ResNet50

``--timing`` only times ``compute_scores(ResNet50, "synflow",
target_density=0.1)`` with the defaults (224x224 model, 100 rounds, run at
96 px) a few times, with wall and CPU time and the machine's load average
(other processes slow it down), and stores that under ``"timing"`` in the
same JSON file::

    python benchmarks/synflow_resolution.py --timing
"""

import argparse
import json
import os
import resource
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tf_precrop.report import environment  # noqa: E402
from tf_precrop.saliency import compute_scores  # noqa: E402
from tf_precrop.saliency.synflow import MAX_SIDE, RESOLUTION_TOLERANCE  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def run(model, density, side, rounds):
    start = time.perf_counter()
    scores = compute_scores(
        model,
        "synflow",
        target_density=density,
        rounds=rounds,
        verbose=0,
        input_shape=(side, side, 3),
    )
    seconds = time.perf_counter() - start
    return scores.layer_densities(density), seconds, scores.info


def timing(repeats, rounds):
    """End-to-end SynFlow time on ResNet50 (224x224 model, default settings)."""
    model = keras.applications.ResNet50(weights=None)
    rows = []
    for _ in range(repeats):
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        scores = compute_scores(model, "synflow", target_density=0.1, rounds=rounds, verbose=0)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        rows.append(
            {
                "wall_seconds": wall,
                "cpu_seconds": cpu,
                "load_average_1min_before": load,
                "input_shape": scores.info["input_shape"],
                "scaling": scores.info["scaling"],
                "rounds": rounds,
            }
        )
        print(
            f"ResNet50 SynFlow {rounds} rounds: {wall:.2f} s wall, {cpu:.2f} s CPU "
            f"(load average {load:.2f})",
            flush=True,
        )
    return {
        "command": 'compute_scores(keras.applications.ResNet50(weights=None), "synflow", '
        "target_density=0.1, verbose=0)",
        "cpus": os.cpu_count(),
        "runs": rows,
        "best_wall_seconds": min(row["wall_seconds"] for row in rows),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ResNet50", "MobileNetV2"])
    parser.add_argument("--densities", nargs="+", type=float, default=[0.5, 0.2, 0.1])
    parser.add_argument(
        "--sides",
        nargs="+",
        type=int,
        default=[MAX_SIDE],
        help="reduced resolutions to compare with the full one",
    )
    parser.add_argument("--full", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument(
        "--output", default=os.path.join(HERE, "results", "synflow_resolution.json")
    )
    parser.add_argument(
        "--timing",
        action="store_true",
        help="only time ResNet50 at the defaults and merge into --output",
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    if args.timing:
        summary = {}
        if os.path.exists(args.output):
            with open(args.output) as f:
                summary = json.load(f)
        summary["timing"] = timing(args.repeats, args.rounds)
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(summary, f, indent=1)
        return

    results = []
    for name in args.models:
        model = getattr(keras.applications, name)(
            weights=None, input_shape=(args.full, args.full, 3)
        )
        for density in args.densities:
            full, full_seconds, full_info = run(model, density, args.full, args.rounds)
            for side in args.sides:
                reduced, seconds, info = run(model, density, side, args.rounds)
                diff = {key: abs(full[key] - reduced[key]) for key in full}
                worst = max(diff, key=diff.get)
                row = {
                    "model": name,
                    "target_density": density,
                    "rounds": args.rounds,
                    "full_side": args.full,
                    "reduced_side": side,
                    "layers": len(full),
                    "max_abs_density_diff": diff[worst],
                    "mean_abs_density_diff": float(np.mean(list(diff.values()))),
                    "worst_layer": worst,
                    "worst_layer_densities": {"full": full[worst], "reduced": reduced[worst]},
                    "load_average_1min": os.getloadavg()[0],
                    "seconds_full": full_seconds,
                    "seconds_reduced": seconds,
                    "scaling_full": full_info["scaling"],
                    "scaling_reduced": info["scaling"],
                    "densities_full": full,
                    "densities_reduced": reduced,
                }
                results.append(row)
                print(
                    f"{name:12s} d={density:<4} {args.full}->{side}: max |diff| "
                    f"{diff[worst]:.4f} ({worst}), mean {row['mean_abs_density_diff']:.4f}; "
                    f"time {full_seconds:.1f}s -> {seconds:.1f}s",
                    flush=True,
                )
    worst = (
        max(row["max_abs_density_diff"] for row in results if row["reduced_side"] == MAX_SIDE)
        if any(row["reduced_side"] == MAX_SIDE for row in results)
        else None
    )
    previous = {}
    if os.path.exists(args.output):
        with open(args.output) as f:
            previous = json.load(f)
    summary = {
        "benchmark": "synflow_resolution",
        "tolerance": RESOLUTION_TOLERANCE,
        "max_abs_density_diff_at_default_side": worst,
        "within_tolerance": None if worst is None else worst <= RESOLUTION_TOLERANCE,
        "machine": environment(),
        "results": results,
    }
    if "timing" in previous:
        summary["timing"] = previous["timing"]
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(summary, f, indent=1)
    print(
        f"max |density diff| at {MAX_SIDE}px: {worst} (tolerance "
        f"{RESOLUTION_TOLERANCE}) -> {args.output}"
    )


if __name__ == "__main__":
    main()
