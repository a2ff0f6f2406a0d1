"""End-to-end ``crop()`` time: ResNet50 and MobileNetV2 at 224×224.

Times ``tf_precrop.crop(model, 0.5, budget="macs", method=...)`` — graph walk,
scores, densities, width solve and rebuild — for SynFlow (100 rounds) and
SynExp, the median of ``--repeats`` runs after one warm-up, and saves JSON.
The warm-up's own time is reported too (``first_call_s``: the first crop in
the process, which also pays TensorFlow's and Keras' start-up).

Targets (2 CPU cores): ResNet50 SynFlow×100 ≤ 10 s; SynExp ≤ 2 s.

The floor: every repeat also times ``keras.models.clone_model(small)`` on the
model it just cropped (``keras_clone_*``), interleaved with the crops. That is
Keras building the same architecture with fresh weights (layer construction,
variable creation and initialisation) and nothing of tf_precrop, so
``crop - clone`` (``overhead_*``, per repeat) is what tf_precrop itself adds:
graph walk, scores, width solve and its config edits.

    python benchmarks/crop_time.py --repeats 3
"""

import argparse
import json
import os
import statistics
import sys
import time

TARGETS = {"synflow": 10.0, "synexp": 2.0}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["ResNet50", "MobileNetV2"])
    parser.add_argument("--methods", nargs="+", default=["synflow", "synexp"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--out", default="benchmarks/results/crop_time.json")
    args = parser.parse_args(argv)

    import keras

    import tf_precrop
    from tf_precrop._table import render_table
    from tf_precrop.report import environment

    rows = []
    for name in args.models:
        keras.utils.set_random_seed(0)  # same initial weights, hence same plan, every run
        model = getattr(keras.applications, name)(weights=None, input_shape=(args.size, args.size, 3))
        for method in args.methods:
            kwargs = dict(budget="macs", method=method, verbose=0, seed=0)
            if method == "synflow":
                kwargs["rounds"] = args.rounds
            t0 = time.perf_counter()
            tf_precrop.crop(model, 0.5, **kwargs)  # warm-up (TensorFlow/Keras start-up, imports)
            first = time.perf_counter() - t0
            times, plan_times, clone_times = [], [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                plan = tf_precrop.plan(model, 0.5, **kwargs)
                t1 = time.perf_counter()
                small = plan.apply()
                t2 = time.perf_counter()
                times.append(t2 - t0)
                plan_times.append(t1 - t0)
                t3 = time.perf_counter()
                keras.models.clone_model(small)
                clone_times.append(time.perf_counter() - t3)
            overheads = [t - c for t, c in zip(times, clone_times, strict=True)]
            row = dict(
                model=name, method=method, rounds=args.rounds if method == "synflow" else None,
                median_s=statistics.median(times), plan_median_s=statistics.median(plan_times),
                runs=[round(t, 3) for t in times], min_s=min(times), first_call_s=round(first, 3),
                keras_clone_median_s=statistics.median(clone_times), keras_clone_min_s=min(clone_times),
                keras_clone_runs=[round(t, 3) for t in clone_times],
                overhead_median_s=statistics.median(overheads),
                target_s=TARGETS.get(method),
                achieved_macs=plan.achieved,
            )
            row["meets_target"] = row["target_s"] is None or row["median_s"] <= row["target_s"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(render_table(
        ["model", "method", "median s", "min s", "plan s", "Keras clone s", "crop - clone s",
         "first call s", "target s", "ok"],
        [(r["model"], r["method"], f"{r['median_s']:.2f}", f"{r['min_s']:.2f}", f"{r['plan_median_s']:.2f}",
          f"{r['keras_clone_median_s']:.2f}", f"{r['overhead_median_s']:.2f}",
          f"{r['first_call_s']:.2f}", r["target_s"], r["meets_target"]) for r in rows],
        title=f"crop() time at {args.size}x{args.size}, {os.cpu_count()} CPU cores",
    ))
    # Rows of other (model, method) pairs already in --out are kept: a run of one
    # method does not erase the other's numbers.
    from tf_precrop._io import write_json

    command = "python " + " ".join(sys.argv)
    for r in rows:
        r["command"] = command
    kept = []
    if os.path.exists(args.out):
        with open(args.out, encoding="utf-8") as f:
            done = {(r["model"], r["method"]) for r in rows}
            kept = [r for r in json.load(f).get("rows", []) if (r["model"], r["method"]) not in done]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_json(args.out, {"meta": dict(command=command, **environment()), "rows": kept + rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
