"""Compatibility sweep: every keras.applications CNN classifier, Keras 3 and tf_keras.

For each model (``weights=None``, ``classes=10``, at the smallest square input
its builder accepts) and each Keras line where it exists:

* ``plan(model, 0.5, method="synexp")`` and ``plan(model, 0.5,
  method="synflow", rounds=3)`` (params budget, seed 0), then ``apply()``;
* the cropped model keeps the input and output shapes, holds exactly the
  planned parameters (``count_params() == plan.params[1]``), and its cost is
  within ±1% of the budget — or the plan says ``within_tolerance=False``
  (recorded as ``tolerance-miss``);
* the cropped model exports to fp32 TFLite and verifies in LiteRT;
* the original model is bitwise untouched (weights and config).

A model tf_precrop cannot support must raise a ``tf_precrop.errors`` error;
that is recorded as ``refused`` with the message. Anything else (another
exception type, a wrong shape, a budget miss not reported) is ``FAIL``.

Usage::

    python benchmarks/compat_sweep.py                       # everything, both lines
    python benchmarks/compat_sweep.py --models ResNet50 MobileNetV2 --lines keras3
    python benchmarks/compat_sweep.py --no-export           # skip TFLite

Prints a rich table (model × line → status, params before → after, time) and
writes ``benchmarks/results/compat_sweep.json``. ``tests/test_sweep.py`` runs
:func:`check_model` on a subset.
"""

import argparse
import datetime
import json
import os
import pathlib
import tempfile
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "compat_sweep.json"
TARGET = 0.5
TOLERANCE = 0.01

#: Application name → (family, smallest square input size it accepts).
MODELS = {
    "ResNet50": ("ResNet", 32),
    "ResNet101": ("ResNet", 32),
    "ResNet152": ("ResNet", 32),
    "ResNet50V2": ("ResNetV2", 32),
    "ResNet101V2": ("ResNetV2", 32),
    "ResNet152V2": ("ResNetV2", 32),
    "MobileNet": ("MobileNet", 32),
    "MobileNetV2": ("MobileNetV2", 32),
    "MobileNetV3Small": ("MobileNetV3", 32),
    "MobileNetV3Large": ("MobileNetV3", 32),
    "EfficientNetB0": ("EfficientNet", 32),
    "EfficientNetB1": ("EfficientNet", 32),
    "EfficientNetB2": ("EfficientNet", 32),
    "EfficientNetV2B0": ("EfficientNetV2", 32),
    "EfficientNetV2B1": ("EfficientNetV2", 32),
    "DenseNet121": ("DenseNet", 32),
    "DenseNet169": ("DenseNet", 32),
    "Xception": ("Xception", 71),
    "InceptionV3": ("Inception", 75),
    "InceptionResNetV2": ("Inception", 75),
    "NASNetMobile": ("NASNet", 32),
    "ConvNeXtTiny": ("ConvNeXt", 32),
    "RegNetX002": ("RegNet", 32),
    "RegNetY002": ("RegNet", 32),
    "VGG16": ("VGG", 32),
}

LINES = ("keras3", "tf_keras")

#: (label, plan keyword arguments) of the two crops per model.
METHODS = (
    ("synexp", {"method": "synexp"}),
    ("synflow", {"method": "synflow", "rounds": 3}),
)


def exists(name, line):
    """Whether ``line``'s ``applications`` module has ``name``."""
    from tf_precrop.backend import get_line

    return hasattr(get_line(line).keras.applications, name)


def build(name, line, **kwargs):
    """``name`` from ``line``'s applications, weights=None, 10 classes, smallest input.

    ``kwargs`` go to the builder as well (e.g. ``classifier_activation=None``).
    """
    from tf_precrop.backend import get_line

    size = MODELS[name][1]
    keras = get_line(line).keras
    keras.utils.set_random_seed(0)  # the initial weights matter to SynFlow
    fn = getattr(keras.applications, name)
    return fn(weights=None, classes=10, input_shape=(size, size, 3), **kwargs)


def _snapshot(model):
    return (
        json.dumps(model.get_config(), sort_keys=True, default=repr),
        [w.tobytes() for w in model.get_weights()],
    )


def _shapes(tensors):
    return [tuple(t.shape) for t in tensors]


def _crop_one(model, label, kwargs, export, tmp):
    """One crop: plan, apply, checks, optional export. Returns a result dict."""
    import tf_precrop

    row = {"method": label}
    t0 = time.perf_counter()
    plan = tf_precrop.plan(model, TARGET, budget="params", seed=0, verbose=0, **kwargs)
    row["plan_s"] = round(time.perf_counter() - t0, 2)
    t1 = time.perf_counter()
    small = plan.apply()
    row["apply_s"] = round(time.perf_counter() - t1, 2)
    before, after = plan.params
    row.update(params_before=before, params_after=after, achieved=after / before)
    row["within_tolerance"] = plan.within_tolerance
    problems = []
    if _shapes(small.inputs) != _shapes(model.inputs):
        problems.append(f"input shapes {_shapes(small.inputs)} != {_shapes(model.inputs)}")
    if _shapes(small.outputs) != _shapes(model.outputs):
        problems.append(f"output shapes {_shapes(small.outputs)} != {_shapes(model.outputs)}")
    if small.count_params() != after:
        problems.append(f"count_params {small.count_params()} != plan {after}")
    hit = abs(after - plan.budget_value) <= TOLERANCE * plan.budget_value
    if hit != plan.within_tolerance:
        problems.append(
            f"within_tolerance={plan.within_tolerance} but cost {after} vs budget "
            f"{plan.budget_value:.0f} ({after / plan.budget_value - 1:+.2%})"
        )
    if export and not problems:
        t2 = time.perf_counter()
        result = tf_precrop.export_tflite(small, os.path.join(tmp, f"{model.name}_{label}.tflite"))
        row["export_s"] = round(time.perf_counter() - t2, 2)
        row["tflite_bytes"] = result.size_bytes
        row["tflite_max_abs_error"] = result.max_abs_error
    row["problems"] = problems
    if problems:
        row["status"] = "FAIL"
    elif not plan.within_tolerance:
        row["status"] = "tolerance-miss"
    else:
        row["status"] = "ok"
    return row


def check_model(name, line, export=True, methods=METHODS):
    """Runs the whole check on one application in one line; returns a record dict.

    ``export``: ``True`` exports every crop, ``False`` none, or a collection of
    method labels (e.g. ``("synexp",)``) to export only those crops.

    ``record["status"]`` is ``"ok"``, ``"tolerance-miss"`` (the plan reports
    ``within_tolerance=False``), ``"refused"`` (a ``tf_precrop.errors`` error,
    message in ``record["error"]``), ``"absent"`` (not in this line) or
    ``"FAIL"`` (anything else; details in ``record["problems"]``/``"error"``).
    """
    from tf_precrop.errors import PrecropError

    family, size = MODELS[name]
    record = {"model": name, "family": family, "line": line, "input_size": size, "crops": []}
    if not exists(name, line):
        record["status"] = "absent"
        return record
    start = time.perf_counter()
    try:
        model = build(name, line)
    except Exception as e:  # noqa: BLE001 - the builder itself refused the size
        record.update(status="FAIL", error=f"build: {type(e).__name__}: {e}"[:500])
        return record
    record["build_s"] = round(time.perf_counter() - start, 2)
    record["params"] = model.count_params()
    before = _snapshot(model)
    with tempfile.TemporaryDirectory(prefix="compat_sweep_") as tmp:
        for label, kwargs in methods:
            wanted = export if isinstance(export, bool) else label in export
            try:
                record["crops"].append(_crop_one(model, label, kwargs, wanted, tmp))
            except PrecropError as e:
                record["crops"].append(
                    {"method": label, "status": "refused", "error": f"{type(e).__name__}: {e}"}
                )
            except Exception as e:  # noqa: BLE001 - recorded as a failure
                record["crops"].append(
                    {
                        "method": label,
                        "status": "FAIL",
                        "error": f"{type(e).__name__}: {e}"[:2000],
                        "traceback": traceback.format_exc()[-3000:],
                    }
                )
    untouched = _snapshot(model) == before
    record["original_untouched"] = untouched
    record["total_s"] = round(time.perf_counter() - start, 2)
    statuses = [c["status"] for c in record["crops"]]
    if not untouched:
        record["status"] = "FAIL"
        record.setdefault("error", "the original model changed")
    elif "FAIL" in statuses:
        record["status"] = "FAIL"
    elif all(s == "refused" for s in statuses):
        record["status"] = "refused"
    elif "refused" in statuses:
        record["status"] = "partly refused"
    elif "tolerance-miss" in statuses:
        record["status"] = "tolerance-miss"
    else:
        record["status"] = "ok"
    for crop in record["crops"]:
        if crop.get("error") and "error" not in record:
            record["error"] = f"{crop['method']}: {crop['error']}"
    return record


def _cell(record):
    status = record["status"]
    if status == "absent":
        return "—"
    crops = {c["method"]: c for c in record["crops"]}
    parts = []
    for label, _ in METHODS:
        c = crops.get(label)
        if c is None:
            continue
        if "achieved" in c:
            parts.append(f"{label} {c['achieved']:.1%}" + ("" if c["status"] == "ok" else f" {c['status']}"))
        else:
            parts.append(f"{label} {c['status']}")
    return f"{status}: " + ", ".join(parts)


def render(records):
    """A rich Table: one row per model, one status column per line."""
    from rich.table import Table

    table = Table(title=f"crop(target={TARGET}, params) → rebuild → fp32 TFLite verify")
    table.add_column("model")
    table.add_column("input", justify="right")
    for line in LINES:
        table.add_column(line)
    table.add_column("params before → after (keras3, synexp)", justify="right")
    table.add_column("time s (k3 / tfk)", justify="right")
    by_model = {}
    for r in records:
        by_model.setdefault(r["model"], {})[r["line"]] = r
    for name, per_line in by_model.items():
        first = next(iter(per_line.values()))
        params = ""
        for line in LINES:
            r = per_line.get(line)
            crops = {c["method"]: c for c in (r or {}).get("crops", [])}
            if "synexp" in crops and "params_after" in crops["synexp"]:
                c = crops["synexp"]
                params = f"{c['params_before']:,} → {c['params_after']:,}"
                break
        times = " / ".join(
            f"{per_line[line].get('total_s', 0):.0f}" if line in per_line and "total_s" in per_line[line] else "—"
            for line in LINES
        )
        table.add_row(
            name,
            str(first["input_size"]),
            *[_cell(per_line[line]) if line in per_line else "not run" for line in LINES],
            params,
            times,
        )
    return table


def markdown(records):
    """The same table as Markdown (for docs/compatibility.md)."""
    by_model = {}
    for r in records:
        by_model.setdefault(r["model"], {})[r["line"]] = r
    rows = [
        "| model | input | " + " | ".join(LINES) + " | params before → after (synexp) | time s (k3 / tfk) |",
        "|---|---:|" + "---|" * len(LINES) + "---:|---:|",
    ]
    for name, per_line in by_model.items():
        first = next(iter(per_line.values()))
        params = ""
        for line in LINES:
            crops = {c["method"]: c for c in per_line.get(line, {}).get("crops", [])}
            if "synexp" in crops and "params_after" in crops["synexp"]:
                c = crops["synexp"]
                params = f"{c['params_before']:,} → {c['params_after']:,}"
                break
        times = " / ".join(
            f"{per_line[line]['total_s']:.0f}" if "total_s" in per_line.get(line, {}) else "—"
            for line in LINES
        )
        cells = [_cell(per_line[line]) if line in per_line else "not run" for line in LINES]
        rows.append(f"| {name} | {first['input_size']} | " + " | ".join(cells) + f" | {params} | {times} |")
    return "\n".join(rows)


def refusals(records):
    """Markdown bullet list: every refused or failed crop and its error."""
    lines = []
    for r in records:
        for c in r.get("crops", []):
            if c["status"] in ("refused", "FAIL") or c.get("problems"):
                reason = c.get("error") or "; ".join(c.get("problems", []))
                lines.append(f"* {r['model']} ({r['line']}), {c['method']}: {c['status']} — {reason}")
        if r["status"] == "FAIL" and not r.get("crops"):
            lines.append(f"* {r['model']} ({r['line']}): FAIL — {r.get('error')}")
    return "\n".join(lines) or "* none"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--lines", nargs="*", default=list(LINES), choices=list(LINES))
    parser.add_argument("--no-export", action="store_true", help="skip the TFLite export")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--markdown", action="store_true", help="also print the Markdown table")
    parser.add_argument(
        "--render", action="store_true", help="only print the tables of an existing --output JSON"
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="re-run only --models/--lines and replace their records in an existing --output JSON",
    )
    args = parser.parse_args(argv)
    if args.render:
        from rich.console import Console

        records = json.loads(args.output.read_text(encoding="utf-8"))["records"]
        Console(width=160).print(render(records))
        print(markdown(records))
        print(refusals(records))
        return 0

    import keras
    import tf_keras
    from rich.console import Console

    from tf_precrop.report import environment

    console = Console(width=160)
    records = []
    if args.update and args.output.exists():
        rerun = {(m, line) for m in args.models for line in args.lines}
        old = json.loads(args.output.read_text(encoding="utf-8"))["records"]
        records = [r for r in old if (r["model"], r["line"]) not in rerun]
    start = time.perf_counter()
    for name in args.models:
        for line in args.lines:
            record = check_model(name, line, export=not args.no_export)
            records.append(record)
            records.sort(key=lambda r: (list(MODELS).index(r["model"]), LINES.index(r["line"])))
            keras.backend.clear_session()
            tf_keras.backend.clear_session()
            console.print(
                f"{name:18s} {line:8s} {record['status']:15s} {record.get('total_s', 0):6.1f} s  "
                + (record.get("error", "")[:160])
            )
            report = {
                "benchmark": "compat_sweep",
                "command": "python benchmarks/compat_sweep.py " + " ".join(argv or []),
                "target": TARGET,
                "budget": "params",
                "methods": [dict(label=label, **kw) for label, kw in METHODS],
                "export": not args.no_export,
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "wall_s": round(time.perf_counter() - start, 1),
                "machine": environment(),
                "records": records,
            }
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    console.print(render(records))
    if args.markdown:
        print(markdown(records))
        print(refusals(records))
    print(f"Wrote {args.output}")
    return 1 if any(r["status"] == "FAIL" for r in records) else 0


if __name__ == "__main__":
    raise SystemExit(main())
