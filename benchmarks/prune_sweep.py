"""Prune sweep: ``prune(model, 0.5, budget="macs")`` on every keras.applications CNN.

Issue #13's budget call, over the models of ``compat_sweep.py`` (``weights=None``,
``classes=10``, the smallest square input each builder accepts, logits out:
``classifier_activation=None``, so that the TFLite check compares logits and
not a near-flat softmax). Untrained applications shrink their activations
layer by layer (MobileNetV2's logits come out near 1e-18), which would make
any comparison vacuous, so the BatchNormalization statistics are first
estimated on 64 seeded random images in [0, 255]
(:func:`tf_precrop.recalibrate_batchnorm`): the logits are then of order one
and the channels' statistics differ, as a trained model's do. The same images
verify the TFLite file. For each model and Keras line:

* ``tf_precrop.prune(model, 0.5, budget="macs")`` with the defaults
  (``importance="l1"``, ``widths_from="synexp"``);
* the pruned model keeps the input and output shapes, its MACs are within ±1%
  of half the dense MACs (:func:`tf_precrop.profile`), and ``count_params()``
  equals the profile's count; a miss must come with the library's
  ``BudgetWarning`` (recorded as ``tolerance-miss``), a silent one is ``FAIL``;
* **kept weights are copied**: every output filter of the first convolution
  (which reads the image, so its input channels are all kept) is, bit for
  bit, one of the input model's filters, in index order;
* the pruned model exports to fp32 TFLite and verifies in LiteRT
  (:func:`tf_precrop.export_tflite` on those 64 images);
* the input model is bitwise untouched (weights and config).

A ``tf_precrop.errors`` error is recorded as ``refused`` with its message;
anything else is ``FAIL``.

Usage::

    python benchmarks/prune_sweep.py                    # every model, Keras 3 (+ tf_keras-only ones)
    python benchmarks/prune_sweep.py --models ResNet50 MobileNetV2 --lines keras3 tf_keras
    python benchmarks/prune_sweep.py --render           # the tables again, from the JSON

Prints a table and writes ``benchmarks/results/prune_sweep.json`` after each
model (a killed sweep keeps what finished). ``tests/test_sweep.py`` runs
:func:`check_model` on a subset.
"""

import argparse
import datetime
import json
import os
import pathlib
import sys
import tempfile
import time
import traceback
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import compat_sweep  # noqa: E402 - the model list, builder and snapshot are shared

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "prune_sweep.json"
TARGET = 0.5
BUDGET = "macs"
TOLERANCE = 0.01


def first_conv_copied(model, pruned):
    """Whether each filter of the first Conv2D of ``pruned`` is one of ``model``'s, in order.

    The first convolution reads the image, whose channels are never pruned, so
    a kept filter must equal an original filter exactly. Returns ``(ok, detail)``.
    """
    import numpy as np

    from tf_precrop.saliency.base import iter_layers

    def first(m):
        for _, layer in iter_layers(m):
            if type(layer).__name__ == "Conv2D":
                return layer
        return None

    a, b = first(model), first(pruned)
    if a is None or b is None:
        return True, "no Conv2D"
    if a.name != b.name:
        return False, f"first Conv2D differs: '{a.name}' vs '{b.name}'"
    old = a.get_weights()[0].reshape(-1, a.get_weights()[0].shape[-1])
    new = b.get_weights()[0].reshape(-1, b.get_weights()[0].shape[-1])
    if old.shape[0] != new.shape[0]:
        return False, f"'{a.name}' kernel {old.shape} vs {new.shape}: input channels changed"
    found = []
    for j in range(new.shape[1]):
        hits = np.flatnonzero(np.all(old == new[:, [j]], axis=0))
        if hits.size == 0:
            return False, f"'{a.name}' filter {j} of the pruned model is none of the original filters"
        found.append(int(hits[0]))
    if found != sorted(found):
        return False, f"'{a.name}' kept filters out of index order: {found[:8]}..."
    return True, f"'{a.name}' {new.shape[1]}/{old.shape[1]} filters copied"


def random_images(size, n=64, seed=0):
    """``n`` seeded random ``size``×``size`` RGB images, float32 in [0, 255]."""
    import numpy as np

    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def check_model(name, line, export=True, models=None):
    """Prunes one application in one line; returns a record dict.

    ``models``: a dict that, when given, receives the ``"input"`` and
    ``"pruned"`` Keras models, for checks of its own (the tests count MACs by hand).

    ``record["status"]``: ``"ok"``, ``"tolerance-miss"`` (off by more than 1%,
    with a ``BudgetWarning``), ``"refused"`` (a ``tf_precrop.errors`` error),
    ``"absent"`` (not in this line) or ``"FAIL"`` (details in
    ``record["problems"]`` / ``record["error"]``).
    """
    import tf_precrop
    from tf_precrop.errors import BudgetWarning, PrecropError

    family, size = compat_sweep.MODELS[name]
    record = {"model": name, "family": family, "line": line, "input_size": size}
    if not compat_sweep.exists(name, line):
        record["status"] = "absent"
        return record
    start = time.perf_counter()
    try:
        model = compat_sweep.build(name, line, classifier_activation=None)
    except Exception as e:  # noqa: BLE001 - the builder itself refused
        record.update(status="FAIL", error=f"build: {type(e).__name__}: {e}"[:500])
        return record
    images = random_images(size)
    try:
        tf_precrop.recalibrate_batchnorm(model, images, batch_size=32)
        record["batchnorm"] = "re-estimated on 64 random images"
    except ValueError:  # no BatchNormalization layer (VGG16)
        record["batchnorm"] = "none"
    before = compat_sweep._snapshot(model)
    dense = tf_precrop.profile(model)
    record.update(params_before=dense.params, macs_before=dense.macs)
    problems = []
    try:
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", BudgetWarning)
            pruned = tf_precrop.prune(model, TARGET, budget=BUDGET)
        record["prune_s"] = round(time.perf_counter() - t0, 2)
        if models is not None:
            models.update(input=model, pruned=pruned)
        warned = [str(w.message) for w in caught if issubclass(w.category, BudgetWarning)]
        small = tf_precrop.profile(pruned)
        achieved = small.macs / dense.macs
        record.update(params_after=small.params, macs_after=small.macs, achieved=achieved)
        hit = abs(achieved - TARGET) <= TOLERANCE * TARGET
        if not hit and not warned:
            problems.append(f"MACs {achieved:.2%} of dense, outside ±1% of {TARGET:.0%}, no BudgetWarning")
        if warned:
            record["budget_warning"] = warned[0][:300]
        if pruned.count_params() != small.params:
            problems.append(f"count_params {pruned.count_params()} != profile {small.params}")
        for kind in ("inputs", "outputs"):
            got, want = compat_sweep._shapes(getattr(pruned, kind)), compat_sweep._shapes(getattr(model, kind))
            if got != want:
                problems.append(f"{kind} shapes {got} != {want}")
        copied, detail = first_conv_copied(model, pruned)
        record["weights_copied"] = detail
        if not copied:
            problems.append(detail)
        if export and not problems:
            with tempfile.TemporaryDirectory(prefix="prune_sweep_") as tmp:
                t1 = time.perf_counter()
                result = tf_precrop.export_tflite(
                    pruned, os.path.join(tmp, f"{name}.tflite"), verification_data=images
                )
                record["export_s"] = round(time.perf_counter() - t1, 2)
            record.update(
                tflite_bytes=result.size_bytes,
                tflite_max_abs_error=result.max_abs_error,
                tflite_relative_error=result.relative_error,
                tflite_top1_agreement=result.top1_agreement,
            )
        status = "FAIL" if problems else ("ok" if hit else "tolerance-miss")
    except PrecropError as e:
        status = "refused"
        record["error"] = f"{type(e).__name__}: {e}"[:2000]
    except Exception as e:  # noqa: BLE001 - recorded as a failure
        status = "FAIL"
        record["error"] = f"{type(e).__name__}: {e}"[:2000]
        record["traceback"] = traceback.format_exc()[-3000:]
    record["original_untouched"] = compat_sweep._snapshot(model) == before
    if not record["original_untouched"]:
        problems.append("the original model changed")
        status = "FAIL"
    record.update(problems=problems, status=status, total_s=round(time.perf_counter() - start, 2))
    return record


def default_cases():
    """Every model in Keras 3, and in tf_keras the models Keras 3 lacks (RegNet)."""
    return [(n, "keras3" if compat_sweep.exists(n, "keras3") else "tf_keras") for n in compat_sweep.MODELS]


def markdown(records):
    """The results as a Markdown table (for docs/compatibility.md)."""
    rows = [
        "| model | line | input | status | MACs kept | params kept | first conv copied | "
        "TFLite max abs error (logits) | time s |",
        "|---|---|---:|---|---:|---:|---|---:|---:|",
    ]
    for r in records:
        if r["status"] == "absent":
            continue
        macs = f"{r['achieved']:.2%}" if "achieved" in r else "—"
        params = f"{r['params_after'] / r['params_before']:.1%}" if "params_after" in r else "—"
        copied = r.get("weights_copied", "—").split(" ")[-3] if "weights_copied" in r else "—"
        err = f"{r['tflite_max_abs_error']:.1e}" if r.get("tflite_max_abs_error") is not None else "—"
        rows.append(
            f"| {r['model']} | {r['line']} | {r['input_size']} | {r['status']} | {macs} | {params} | "
            f"{copied} | {err} | {r.get('total_s', 0):.0f} |"
        )
    return "\n".join(rows)


def problems(records):
    """Markdown bullets: every non-ok record and why."""
    lines = [
        f"* {r['model']} ({r['line']}): {r['status']} — "
        + (r.get("error") or "; ".join(r.get("problems", [])) or r.get("budget_warning", ""))
        for r in records
        if r["status"] not in ("ok", "absent")
    ]
    return "\n".join(lines) or "* none"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", choices=list(compat_sweep.MODELS))
    parser.add_argument("--lines", nargs="*", choices=list(compat_sweep.LINES),
                        help="default: Keras 3, and tf_keras for the models Keras 3 lacks")
    parser.add_argument("--no-export", action="store_true", help="skip the TFLite export")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--render", action="store_true", help="only print the tables of --output")
    args = parser.parse_args(argv)
    if args.render:
        records = json.loads(args.output.read_text(encoding="utf-8"))["records"]
        print(markdown(records))
        print(problems(records))
        return 0

    import keras
    import tf_keras

    from tf_precrop._io import write_json
    from tf_precrop.report import environment

    if args.models is None and args.lines is None:
        cases = default_cases()
    else:
        cases = [(n, line) for n in (args.models or list(compat_sweep.MODELS))
                 for line in (args.lines or ["keras3"])]
    records = []
    start = time.perf_counter()
    for name, line in cases:
        record = check_model(name, line, export=not args.no_export)
        records.append(record)
        keras.backend.clear_session()
        tf_keras.backend.clear_session()
        achieved = f"{record['achieved']:.2%}" if "achieved" in record else ""
        print(f"{name:18s} {line:8s} {record['status']:15s} {achieved:>7s} "
              f"{record.get('total_s', 0):6.1f} s  {record.get('error', '')[:160]}", flush=True)
        write_json(args.output, {
            "benchmark": "prune_sweep",
            "command": "python benchmarks/prune_sweep.py " + " ".join(argv or sys.argv[1:]),
            "target": TARGET,
            "budget": BUDGET,
            "tolerance": TOLERANCE,
            "export": not args.no_export,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "wall_s": round(time.perf_counter() - start, 1),
            "machine": environment(),
            "records": records,
        }, default=str)
    print(markdown(records))
    print(problems(records))
    print(f"Wrote {args.output}")
    return 1 if any(r["status"] == "FAIL" for r in records) else 0


if __name__ == "__main__":
    raise SystemExit(main())
