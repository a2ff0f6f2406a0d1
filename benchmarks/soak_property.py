"""Soak test: the plan → apply property of tests/test_property.py on thousands of random CNNs.

Draws random valid Keras 3 functional CNNs (``tests/strategies.py``: conv,
depthwise, separable, grouped conv, BN, activations, residual adds, SE
multiplies, concat branches, ChannelSplit/ChannelShuffle, pooling, nested
sub-models, dense heads, 1–2 inputs and outputs, 1-D and 2-D) with a random
target in [0.2, 0.9], budget (params/macs) and method (synexp, uniform_width,
magnitude, random), and checks :func:`strategies.check_crop_property` on each,
in-process. Every ``--export-every``-th example is also exported to fp32
TFLite and verified in LiteRT.

Where a plan reports ``within_tolerance=False`` (no width assignment it found
costs within ±1% of the budget), the example is classified by brute force
over every width assignment at channel granularity, when there are at most
``--feasibility-limit`` of them: no assignment within ±1% exists (the closest
reachable was reported, as it should), or one exists (the solver missed it).

Failures do not stop the run: each is recorded with its repro — the spec
(``strategies.build_model(spec)`` rebuilds the model), target, budget and
method — and the error.

Usage::

    python benchmarks/soak_property.py --examples 1000 [--seed 0] [--export-every 25]
        [--time-limit 1200] [--feasibility-limit 20000]

Prints the counts and the failures' repros; writes
``benchmarks/results/soak_property.json``. Exit status 1 if anything failed.
"""

import argparse
import collections
import datetime
import json
import os
import pathlib
import sys
import tempfile
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "soak_property.json"


def _repro(spec, target, budget, method, export):
    """A one-line Python repro, run from the repository root."""
    extra = ", export_dir='.'" if export else ""
    return (
        "import sys; sys.path.insert(0, 'tests'); import strategies; "
        f"strategies.check_crop_property({spec!r}, {target!r}, {budget!r}, {method!r}{extra})"
    )


_SOLVER_MISSED = "tolerance miss: an assignment within 1% exists"


def _classify_miss(strategies, spec, budget, result, limit):
    """Why a plan missed the ±1% band: brute-force feasibility of the budget."""
    import tf_precrop
    from tf_precrop.widths import WidthProblem

    problem = WidthProblem(tf_precrop.channel_groups(strategies.build_model(spec)), budget=budget)
    feasible = strategies.feasible_widths(problem, result["target"] * problem.dense_cost, limit=limit)
    return {
        None: "tolerance miss: too many assignments to check",
        False: "tolerance miss: no assignment within 1% exists",
        True: _SOLVER_MISSED,
    }[feasible]


def run(examples, seed, export_every, time_limit, progress_every=50, feasibility_limit=20000):
    sys.path.insert(0, str(ROOT / "tests"))
    import keras
    import strategies
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    counts = collections.Counter()
    failures = []
    missed = []  # tolerance misses where brute force found an assignment within 1%
    durations = []
    start = time.perf_counter()
    index = [0]

    @hypothesis_seed(seed)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        spec=strategies.model_specs(),
        target=strategies.targets,
        budget=strategies.budgets,
        method=strategies.methods,
    )
    def soak(spec, target, budget, method):
        if time_limit and time.perf_counter() - start > time_limit:
            counts["not run (time limit)"] += 1
            return
        index[0] += 1
        i = index[0]
        export = bool(export_every) and i % export_every == 0
        t0 = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="soak_") as folder:
                result = strategies.check_crop_property(
                    spec, target, budget, method, export_dir=folder if export else None
                )
            counts["passed"] += 1
            counts[f"method={method}"] += 1
            counts[f"budget={budget}"] += 1
            counts[f"dims={spec['dims']}"] += 1
            if not result["within_tolerance"]:
                counts["passed, plan.within_tolerance=False"] += 1
                if feasibility_limit:
                    why = _classify_miss(strategies, spec, budget, result, feasibility_limit)
                    counts[why] += 1
                    if why == _SOLVER_MISSED and len(missed) < 50:
                        missed.append(
                            {
                                "example": i,
                                "spec": spec,
                                "target": result["target"],
                                "achieved": result["achieved"],
                                "budget": budget,
                                "method": method,
                                "repro": _repro(spec, target, budget, method, False),
                            }
                        )
            if result["target"] != target:
                counts["passed, target raised to the graph's minimum"] += 1
            if result["exported"]:
                counts["passed with TFLite export"] += 1
        except Exception as e:  # noqa: BLE001 - recorded, the soak goes on
            counts["failed"] += 1
            failures.append(
                {
                    "example": i,
                    "spec": spec,
                    "target": target,
                    "budget": budget,
                    "method": method,
                    "export": export,
                    "error": f"{type(e).__name__}: {e}"[:2000],
                    "traceback": traceback.format_exc()[-4000:],
                    "repro": _repro(spec, target, budget, method, export),
                }
            )
            print(f"FAILED example {i}: {type(e).__name__}: {str(e)[:300]}", flush=True)
        durations.append(time.perf_counter() - t0)
        if i % 20 == 0:
            keras.backend.clear_session()
        if i % progress_every == 0:
            elapsed = time.perf_counter() - start
            print(
                f"{i:5d} examples, {counts['passed']} passed, {counts['failed']} failed, "
                f"{elapsed:.0f} s",
                flush=True,
            )

    soak()
    return counts, failures, missed, durations, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="examples to draw (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed")
    parser.add_argument(
        "--export-every", type=int, default=25, help="TFLite-export every k-th example (0: never)"
    )
    parser.add_argument(
        "--time-limit", type=float, default=0, help="stop checking after this many seconds (0: none)"
    )
    parser.add_argument(
        "--feasibility-limit", type=int, default=20000,
        help="brute-force a tolerance miss when it has at most this many width assignments (0: never)",
    )
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)


    from tf_precrop.report import environment

    counts, failures, missed, durations, wall = run(
        args.examples, args.seed, args.export_every, args.time_limit,
        feasibility_limit=args.feasibility_limit,
    )
    checked = counts["passed"] + counts["failed"]
    print()
    for key, value in sorted(counts.items()):
        print(f"{key:50s} {value:6d}")
    print(f"checked {checked} examples in {wall:.0f} s: {counts['passed']} passed, {counts['failed']} failed")
    for f in failures:
        print(f"\n--- example {f['example']}: {f['error'][:500]}\n{f['repro']}")
    ordered = sorted(durations)
    report = {
        "benchmark": "soak_property",
        "command": "python benchmarks/soak_property.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "examples_requested": args.examples,
        "seed": args.seed,
        "export_every": args.export_every,
        "time_limit_s": args.time_limit,
        "feasibility_limit": args.feasibility_limit,
        "checked": checked,
        "passed": counts["passed"],
        "failed": counts["failed"],
        "counts": dict(sorted(counts.items())),
        "wall_s": round(wall, 1),
        "example_s": {
            "median": round(ordered[len(ordered) // 2], 3) if ordered else None,
            "p90": round(ordered[int(len(ordered) * 0.9)], 3) if ordered else None,
            "max": round(ordered[-1], 3) if ordered else None,
        },
        "machine": environment(),
        "failures": failures,
        "solver_missed": missed,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=repr) + "\n", encoding="utf-8")
    print(f"Wrote {args.output}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
