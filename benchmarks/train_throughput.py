"""Training cost: images/s and peak memory of PreCrop vs masked vs uniform width.

Each variant trains in its own subprocess (so peak RSS is its own) for a fixed
number of steps on random CIFAR-sized data, batch 128, with the same SGD
recipe; images/s is measured after ``--warmup`` steps. Variants at 10× fewer
params: ``uniform_width``, ``precrop_synexp`` (params budget), the same at equal
MACs to the uniform model (``precrop_synexp_macs``), and ``synflow_masked``
(unstructured masks: dense compute); plus ``dense``.

Targets (issue "Reproduce"): PreCrop ≥ 0.9 × the uniform-width throughput at
equal MACs, and ≥ 2 × the masked model at 10× compression.

    python benchmarks/train_throughput.py --models resnet20 resnet56
"""

import argparse
import json
import os
import subprocess
import sys

VARIANTS = ("dense", "uniform_width", "precrop_synexp", "precrop_synexp_macs", "synflow_masked")

CHILD = r"""
import json, resource, sys, time
import numpy as np, keras, tensorflow as tf
import tf_precrop
name, variant, steps, warmup, batch, ratio = sys.argv[1:7]
steps, warmup, batch, ratio = int(steps), int(warmup), int(batch), float(ratio)
base = tf_precrop.models.get_model(name, normalize=True)
if variant == "dense":
    model = base
elif variant == "synflow_masked":
    from tf_precrop.baselines import masked_model
    model = masked_model(base, "synflow", 1 / ratio, seed=0, rounds=20, verbose=0)
else:
    method, budget = {"uniform_width": ("uniform_width", "params"),
                      "precrop_synexp": ("synexp", "params"),
                      "precrop_synexp_macs": ("synexp", "macs")}[variant]
    target = 1 / ratio
    if variant == "precrop_synexp_macs":
        uni = tf_precrop.plan(base, 1 / ratio, budget="params", method="uniform_width", verbose=0)
        target = uni.macs[1] / uni.macs[0]
    model = tf_precrop.crop(base, target, budget=budget, method=method, verbose=0, seed=0)
prof = tf_precrop.profile(model)
model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (batch * 4, 32, 32, 3)).astype("float32")
y = rng.integers(0, 10, batch * 4)
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat()
it = iter(ds)
for _ in range(warmup):
    model.train_on_batch(*next(it))
t0 = time.perf_counter()
for _ in range(steps):
    model.train_on_batch(*next(it))
dt = time.perf_counter() - t0
print(json.dumps(dict(model=name, variant=variant, images_per_sec=steps * batch / dt,
    params=prof.params, macs=prof.macs, peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet56"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--compress", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", default="benchmarks/results/train_throughput.json")
    args = parser.parse_args(argv)

    rows = []
    for name in args.models:
        for variant in args.variants:
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, name, variant, str(args.steps), str(args.warmup),
                 str(args.batch_size), str(args.compress)],
                capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            )
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode or not lines:
                print(proc.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"{name}/{variant} failed")
            row = json.loads(lines[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
    for name in args.models:
        ref = {r["variant"]: r for r in rows if r["model"] == name}
        for r in rows:
            if r["model"] == name:
                if "uniform_width" in ref:
                    r["vs_uniform"] = r["images_per_sec"] / ref["uniform_width"]["images_per_sec"]
                if "synflow_masked" in ref:
                    r["vs_masked"] = r["images_per_sec"] / ref["synflow_masked"]["images_per_sec"]
    from tf_precrop._table import render_table
    from tf_precrop.report import environment

    print(render_table(
        ["model", "variant", "img/s", "vs uniform", "vs masked", "params", "MACs", "peak RSS MB"],
        [(r["model"], r["variant"], f"{r['images_per_sec']:.0f}", f"{r.get('vs_uniform', float('nan')):.2f}",
          f"{r.get('vs_masked', float('nan')):.2f}", r["params"], r["macs"], f"{r['peak_rss_bytes'] / 2**20:.0f}")
         for r in rows],
        title=f"Training throughput, batch {args.batch_size}, {os.cpu_count()} CPU cores",
    ))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"meta": dict(command="python " + " ".join(sys.argv), **environment()), "rows": rows},
                  f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
