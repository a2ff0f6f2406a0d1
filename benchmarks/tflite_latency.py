"""LiteRT latency of dense, PreCropped, width-scaled and TFMOT-sparse CNNs.

For ResNet50 and MobileNetV2 (``keras.applications``, ``weights=None``,
logits output) the script exports, as float32 and full-integer int8 TFLite:

* ``dense``: the model as built;
* ``crop@T``: ``tf_precrop.crop(model, T, budget="macs", method="synexp")`` for
  T in 0.5 and 0.2 (skipped, with the reason, if ``tf_precrop.crop`` fails to
  import or run);
* ``uniform@T``: uniform width scaling at exactly the MACs of ``crop@T``
  (``tf_precrop.crop(model, T, budget="macs", method="uniform_width")``, every
  free channel group times one factor, rounded like the crop): the reference
  for the efficiency target at equal MACs;
* ``width×A``: uniform width scaling (MobileNetV2 ``alpha``; ResNet50
  ``tf_precrop.rebuild(model, A)`` if available) for A in 0.75 and 0.5;
* ``tfmot-unstructured``: the tf_keras twin of the model pruned element-wise
  by TFMOT so that its non-zero parameter count equals that of ``crop@0.5``
  (kernels are still stored and run dense by LiteRT).

Each file is timed with :func:`tf_precrop.export.benchmark_tflite` (XNNPACK,
2 threads by default, batch 1), in ``--rounds`` (3) round-robin passes over all
files; the reported latency is the median over rounds of each round's median.
The table shows MAC ratio (variant / dense), measured speedup over the dense
model at the same precision, and efficiency = speedup × MAC ratio (1.0:
latency falls exactly as MACs do). Effective MACs of the TFMOT row count
only non-zero kernel weights (what a sparse kernel could skip). Results go
to ``benchmarks/results/tflite_latency.json`` (``tflite_latency_quick.json``
with ``--quick``).

Usage::

    python benchmarks/tflite_latency.py            # 224x224, 50 runs
    python benchmarks/tflite_latency.py --quick    # 64x64, few runs, fast check
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tf_precrop import report  # noqa: E402
from tf_precrop.export import (  # noqa: E402
    benchmark_tflite,
    export_tflite,
    verify_tflite,
)

DEFAULT_OUTPUT = os.path.join(HERE, "results", "tflite_latency.json")
QUICK_OUTPUT = os.path.join(HERE, "results", "tflite_latency_quick.json")
CROP_TARGETS = (0.5, 0.2)
WIDTHS = (0.75, 0.5)


# ----------------------------------------------------------------------- MACs
def _shape(tensor):
    return tuple(int(d) if d is not None else 1 for d in tuple(tensor.shape))


def layer_macs(model):
    """``{layer name: MACs}`` of Conv2D / DepthwiseConv2D / Dense layers, batch 1.

    Used for the TFMOT effective MACs and as the fallback when
    ``tf_precrop.profile`` is not importable.
    """
    macs = {}
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in ("Conv2D", "DepthwiseConv2D", "Dense"):
            continue
        out = _shape(layer.output)
        if kind == "Dense":
            kernel = layer.kernel.shape
            positions = int(np.prod(out[1:-1])) if len(out) > 2 else 1
            macs[layer.name] = positions * int(kernel[0]) * int(kernel[1])
        elif kind == "DepthwiseConv2D":
            kh, kw, _, _ = (int(d) for d in layer.depthwise_kernel.shape)
            macs[layer.name] = int(np.prod(out[1:])) * kh * kw
        else:
            kh, kw, cin_per_group, _ = (int(d) for d in layer.kernel.shape)
            macs[layer.name] = int(np.prod(out[1:])) * kh * kw * cin_per_group
    return macs


def count_macs(model):
    try:
        from tf_precrop import profile
    except ImportError:
        return sum(layer_macs(model).values())
    return int(profile(model).macs)


def effective_macs(model):
    """MACs counting only non-zero kernel weights (for unstructured sparsity)."""
    total = 0.0
    per_layer = layer_macs(model)
    for layer in model.layers:
        if layer.name not in per_layer:
            continue
        kernel = layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") else layer.kernel
        density = float(np.mean(np.asarray(kernel.numpy()) != 0))
        total += per_layer[layer.name] * density
    dense_total = sum(per_layer.values())
    return int(round(count_macs(model) - dense_total + total))


def nonzero_params(model):
    """``count_params`` minus the zeros in Conv/Depthwise/Dense kernels (pruned weights)."""
    zeros = 0
    for layer in model.layers:
        for name in ("kernel", "depthwise_kernel"):
            if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D", "Dense") and hasattr(layer, name):
                zeros += int(np.size(getattr(layer, name).numpy())) - int(
                    np.count_nonzero(getattr(layer, name).numpy())
                )
    return int(model.count_params()) - zeros


# ------------------------------------------------------------------- variants
def build_dense(family, size, line="keras3"):
    if line == "keras3":
        import keras as k
    else:
        import tf_keras as k
    apps = k.applications
    kwargs = dict(weights=None, input_shape=(size, size, 3), classifier_activation=None)
    if family == "resnet50":
        return apps.ResNet50(**kwargs)
    return apps.MobileNetV2(**kwargs)


def build_uniform(family, size, dense, alpha):
    if family == "mobilenetv2":
        import keras

        return keras.applications.MobileNetV2(
            weights=None, input_shape=(size, size, 3), classifier_activation=None, alpha=alpha
        )
    import tf_precrop

    return tf_precrop.rebuild(dense, alpha)


def build_crop(dense, target, method="synexp"):
    import tf_precrop

    return tf_precrop.crop(dense, target, budget="macs", method=method)


def build_tfmot(family, size, target_nonzero):
    """TFMOT-pruned tf_keras twin with about ``target_nonzero`` non-zero params."""
    from tf_precrop.export import prune_unstructured_tfmot

    twin = build_dense(family, size, line="tf_keras")
    total = twin.count_params()
    prunable = sum(
        int(np.prod(layer.kernel.shape))
        for layer in twin.layers
        if type(layer).__name__ in ("Conv2D", "Dense")
    )
    sparsity = min(max((total - target_nonzero) / prunable, 0.0), 0.99)
    return prune_unstructured_tfmot(twin, sparsity), sparsity


# ----------------------------------------------------------------------- runs
def measure(name, model, variant, kind, args, folder, rng, extra=None):
    """Exports fp32 and int8, verifies, times; returns result rows."""
    size = args.size
    rep = rng.standard_normal((args.calibration_samples, size, size, 3)).astype("float32")
    macs = effective_macs(model) if kind == "tfmot" else count_macs(model)
    rows = []
    for quantize in (None, "int8"):
        precision = "fp32" if quantize is None else "int8"
        path = os.path.join(folder, f"{name}_{variant}_{precision}.tflite".replace("@", "_"))
        row = {
            "model": name,
            "variant": variant,
            "kind": kind,
            "precision": precision,
            "params": int(model.count_params()),
            "nonzero_params": nonzero_params(model),
            "macs": macs,
        }
        row.update(extra or {})
        try:
            t0 = time.perf_counter()
            export = export_tflite(
                model,
                path,
                quantize=quantize,
                representative_data=rep if quantize else None,
                verify=False,
            )
            row["export_s"] = round(time.perf_counter() - t0, 2)
            row["size_bytes"] = export.size_bytes
            # Non-strict so a random-init int8 model with near-tied logits is
            # reported, not fatal; `verified` says whether it was in tolerance.
            check = verify_tflite(
                path,
                model,
                rep[: args.verify_samples],
                quantize=quantize,
                num_samples=args.verify_samples,
                strict=False,
            )
            row.update(
                verified=check.passed,
                relative_error=check.relative_error,
                top1_agreement=check.top1_agreement,
            )
            latency = benchmark_tflite(
                path, num_threads=args.threads, runs=args.runs, warmup=args.warmup
            )
            row.update(
                median_ms=latency.median_ms,
                p90_ms=latency.p90_ms,
                mean_ms=latency.mean_ms,
                delegate=latency.delegate,
                num_threads=latency.num_threads,
                runs=latency.runs,
            )
        except Exception as e:  # keep the other rows
            row["error"] = f"{type(e).__name__}: {e}"[:500]
            if args.verbose:
                traceback.print_exc()
        if "median_ms" in row:
            row["_path"] = path  # timed again in later rounds (see retime_rounds)
        elif not args.keep_files and os.path.exists(path):
            os.remove(path)
        rows.append(row)
        print(
            f"  {name:<12} {variant:<20} {precision:<5} "
            + (
                f"{row['median_ms']:8.2f} ms"
                if "median_ms" in row
                else f"error: {row.get('error', '')[:80]}"
            ),
            flush=True,
        )
    return rows


def run_family(family, args, folder, rng, skipped):
    import keras

    keras.utils.set_random_seed(args.seed)
    dense = build_dense(family, args.size)
    rows = measure(family, dense, "dense", "dense", args, folder, rng)

    crop_params = {}
    for target in CROP_TARGETS:
        variant = f"crop@{target}"
        try:
            cropped = build_crop(dense, target)
        except Exception as e:  # crop not importable yet, or failed
            skipped.append({"model": family, "variant": variant, "reason": f"{type(e).__name__}: {e}"[:300]})
            print(f"  {family:<12} {variant:<20} skipped: {type(e).__name__}: {e}"[:160], flush=True)
            continue
        crop_params[target] = int(cropped.count_params())
        rows += measure(family, cropped, variant, "crop", args, folder, rng, {"target": target})

    for target in CROP_TARGETS:
        variant = f"uniform@{target}"
        try:
            scaled = build_crop(dense, target, method="uniform_width")
        except Exception as e:
            skipped.append({"model": family, "variant": variant, "reason": f"{type(e).__name__}: {e}"[:300]})
            print(f"  {family:<12} {variant:<20} skipped: {type(e).__name__}: {e}"[:160], flush=True)
            continue
        rows += measure(family, scaled, variant, "uniform", args, folder, rng, {"target": target})

    for alpha in WIDTHS:
        variant = f"width×{alpha}"
        try:
            scaled = build_uniform(family, args.size, dense, alpha)
        except Exception as e:
            skipped.append({"model": family, "variant": variant, "reason": f"{type(e).__name__}: {e}"[:300]})
            print(f"  {family:<12} {variant:<20} skipped: {type(e).__name__}: {e}"[:160], flush=True)
            continue
        rows += measure(family, scaled, variant, "uniform", args, folder, rng, {"alpha": alpha})

    if not args.no_tfmot:
        variant = "tfmot-unstructured"
        target_nonzero = crop_params.get(0.5, dense.count_params() // 2)
        try:
            sparse, sparsity = build_tfmot(family, args.size, target_nonzero)
        except Exception as e:
            skipped.append({"model": family, "variant": variant, "reason": f"{type(e).__name__}: {e}"[:300]})
            print(f"  {family:<12} {variant:<20} skipped: {type(e).__name__}: {e}"[:160], flush=True)
        else:
            rows += measure(
                family, sparse, variant, "tfmot", args, folder, rng,
                {"sparsity": round(sparsity, 4), "matched_nonzero_params": int(target_nonzero)},
            )
    return rows


def retime_rounds(rows, args):
    """Times every file again, round-robin, ``args.rounds - 1`` more times.

    A slow window of the machine (another tenant, a frequency drop) then hits
    one round of every variant instead of all runs of one variant; the
    reported ``median_ms``/``p90_ms`` are medians over the rounds, and
    ``round_medians_ms`` keeps each round's median.
    """
    timed = [r for r in rows if "_path" in r]
    for r in timed:
        r["round_medians_ms"] = [r["median_ms"]]
        r["round_p90s_ms"] = [r["p90_ms"]]
    for k in range(1, args.rounds):
        print(f"round {k + 1}/{args.rounds}", flush=True)
        for r in timed:
            latency = benchmark_tflite(r["_path"], num_threads=args.threads, runs=args.runs, warmup=args.warmup)
            r["round_medians_ms"].append(latency.median_ms)
            r["round_p90s_ms"].append(latency.p90_ms)
    for r in timed:
        r["median_ms"] = float(np.median(r["round_medians_ms"]))
        r["p90_ms"] = float(np.median(r["round_p90s_ms"]))
        path = r.pop("_path")
        if not args.keep_files and os.path.exists(path):
            os.remove(path)


def add_ratios(rows):
    """MAC ratio, speedup and efficiency against the dense row of each model/precision."""
    dense = {
        (r["model"], r["precision"]): r for r in rows if r["variant"] == "dense"
    }
    for r in rows:
        ref = dense.get((r["model"], r["precision"]))
        if ref is None:
            continue
        r["mac_ratio"] = r["macs"] / ref["macs"] if ref["macs"] else None
        if "median_ms" in r and "median_ms" in ref:
            r["speedup"] = ref["median_ms"] / r["median_ms"]
            if r["mac_ratio"]:
                r["efficiency"] = r["speedup"] * r["mac_ratio"]


def judge_targets(rows):
    """The issue's targets, per model and precision: crop@0.5 efficiency >= 0.9;
    crop@0.2 efficiency >= that of uniform@0.2 (uniform width at the same MACs)."""
    by = {(r["model"], r["precision"], r["variant"]): r for r in rows}
    verdicts = []
    for (model, precision, variant), r in by.items():
        if variant == "crop@0.5" and r.get("efficiency") is not None:
            verdicts.append(dict(
                model=model, precision=precision, target="crop@0.5 efficiency >= 0.9",
                value=r["efficiency"], reference=0.9, met=r["efficiency"] >= 0.9,
            ))
        if variant == "crop@0.2" and r.get("efficiency") is not None:
            ref = by.get((model, precision, "uniform@0.2"), {}).get("efficiency")
            if ref is not None:
                verdicts.append(dict(
                    model=model, precision=precision,
                    target="crop@0.2 efficiency >= uniform@0.2 efficiency",
                    value=r["efficiency"], reference=ref, met=r["efficiency"] >= ref,
                ))
    return verdicts


def print_table(rows, args):
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"LiteRT latency, {args.size}x{args.size}, batch 1, XNNPACK, {args.threads} threads"
    )
    for col, justify in (
        ("model", "left"), ("variant", "left"), ("prec", "left"), ("params", "right"),
        ("MACs", "right"), ("MAC ratio", "right"), ("median ms", "right"), ("p90 ms", "right"),
        ("speedup", "right"), ("speedup×MACratio", "right"), ("size MB", "right"),
        ("verified", "center"),
    ):
        table.add_column(col, justify=justify)

    def fmt(value, spec):
        return "—" if value is None else format(value, spec)

    for r in rows:
        verified = r.get("verified")
        table.add_row(
            r["model"], r["variant"], r["precision"],
            f"{r['nonzero_params'] / 1e6:.2f}M",
            f"{r['macs'] / 1e6:.0f}M",
            fmt(r.get("mac_ratio"), ".3f"),
            fmt(r.get("median_ms"), ".2f"),
            fmt(r.get("p90_ms"), ".2f"),
            fmt(r.get("speedup"), ".2f"),
            fmt(r.get("efficiency"), ".2f"),
            fmt(r.get("size_bytes", 0) / 1e6 if "size_bytes" in r else None, ".2f"),
            "error" if "error" in r else ("yes" if verified else "no"),
        )
    Console(width=max(Console().width, 170)).print(table)


def environment():
    return {**report.environment(), "processor": platform.processor()}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64x64 inputs, few runs")
    parser.add_argument("--models", nargs="+", default=["resnet50", "mobilenetv2"],
                        choices=["resnet50", "mobilenetv2"])
    parser.add_argument("--size", type=int, default=None, help="input size (default 224; 64 with --quick)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=None, help="timed runs (default 50; 10 with --quick)")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3,
                        help="time every file this many times, round-robin; report the median")
    parser.add_argument("--calibration-samples", type=int, default=None)
    parser.add_argument("--verify-samples", type=int, default=None)
    parser.add_argument("--no-tfmot", action="store_true", help="skip the TFMOT row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None,
                        help=f"JSON path (default {DEFAULT_OUTPUT}; *_quick.json with --quick)")
    parser.add_argument("--keep-files", action="store_true", help="keep the .tflite files")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    quick = args.quick
    args.output = args.output or (QUICK_OUTPUT if quick else DEFAULT_OUTPUT)
    args.size = args.size or (64 if quick else 224)
    args.runs = args.runs or (10 if quick else 50)
    args.warmup = args.warmup if args.warmup is not None else (2 if quick else 5)
    args.calibration_samples = args.calibration_samples or (8 if quick else 64)
    args.verify_samples = args.verify_samples or (4 if quick else 16)
    return args


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows, skipped = [], []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="tflite_latency_") as tmp:
        folder = os.path.join(HERE, "results", "tflite") if args.keep_files else tmp
        os.makedirs(folder, exist_ok=True)
        for family in args.models:
            print(f"[{family}]", flush=True)
            rows += run_family(family, args, folder, rng, skipped)
        retime_rounds(rows, args)
    add_ratios(rows)
    print_table(rows, args)
    targets = judge_targets(rows)
    for t in targets:
        print(f"  {t['model']:<12} {t['precision']:<5} {t['target']}: {t['value']:.2f} vs "
              f"{t['reference']:.2f} -> {'met' if t['met'] else 'NOT met'}")
    result = {
        "config": {
            k: getattr(args, k)
            for k in ("quick", "models", "size", "threads", "runs", "warmup", "rounds",
                      "calibration_samples", "verify_samples", "seed")
        },
        "environment": environment(),
        "elapsed_s": round(time.time() - started, 1),
        "results": rows,
        "targets": targets,
        "skipped": skipped,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(f"saved {args.output}")
    return result


if __name__ == "__main__":
    main()
