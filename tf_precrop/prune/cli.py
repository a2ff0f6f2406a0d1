"""The ``tf-precrop prune`` command: prune a trained model file, keeping its weights.

Examples::

    tf-precrop prune model.keras --target 0.5 --budget macs --importance l1
    tf-precrop prune model.keras --widths 0.75 --out small.keras
    tf-precrop prune model.keras --plan plan.json
    tf-precrop prune model.keras --target 0.3 --importance taylor --data batch.npz
    tf-precrop prune model.keras --budget latency --target 3.5ms \\
        --latency-table pixel7_t4.json --threads 4
    tf-precrop prune model.keras --target 0.5 --budget macs \\
        --recalibrate-data train_images.npy --quantize int8 --calibration-data val_images/

``--target`` is a budget, as for ``tf-precrop crop``: a fraction of the dense
cost (``--budget params``, the default, ``macs`` or ``latency``), or with
``--budget latency`` milliseconds of predicted LiteRT latency (``3.5ms``). The
latency options ``--threads``, ``--precision`` and ``--latency-table`` are
crop's (see :mod:`tf_precrop.cli`). ``--widths`` and ``--plan`` give the
widths directly, so the budget options are usage errors with them.

``--recalibrate-data PATH`` re-estimates the pruned model's BatchNormalization
moving statistics (:func:`tf_precrop.recalibrate_batchnorm`, batches of 128) on
up to ``--recalibrate-samples`` inputs read as ``--calibration-data`` is (a
``.npy``/``.npz`` array or a folder of images, in the model's input range)
before the model is saved and exported. A model without BatchNormalization is
an error.

``--tflite``, ``--quantize`` and ``--calibration-data`` export the pruned
model as crop does (``int8`` needs ``--calibration-data``); the ``.tflite`` is
written beside ``--out``. Every run writes ``<out stem>_report.json`` beside
it (see :func:`tf_precrop.prune.report.prune_report`). The input model file is only read.

Hook it into :mod:`tf_precrop.cli` with ``add_prune_command(sub)`` in the
parser and ``COMMANDS["prune"] = run_prune``.
"""

import json
import os


def add_prune_command(subparsers):
    """Adds the ``prune`` sub-command to an argparse ``subparsers`` object.

    Args:
        subparsers: what ``parser.add_subparsers()`` returned.

    Returns:
        The ``prune`` sub-parser.
    """
    from tf_precrop.cli import _positive_int, _target, latency_args
    from tf_precrop.prune.api import DEFAULT_WIDTHS_FROM, WIDTHS_FROM
    from tf_precrop.prune.batchnorm import DEFAULT_SAMPLES
    from tf_precrop.prune.importance import CRITERIA, DEFAULT_IMPORTANCE

    p = subparsers.add_parser(
        "prune", help="prune a trained model; keep the kept channels' weights; write .keras, report"
    )
    p.add_argument(
        "model", metavar="MODEL", help=".keras file (or a bundled/keras.applications name)"
    )
    p.add_argument("--input-shape", type=_shape, default=None, help="e.g. 224,224,3 (built models)")
    p.add_argument("--classes", type=int, default=None, help="number of classes (built models)")
    p.add_argument("--line", choices=("keras3", "tf_keras"), default="keras3")
    p.add_argument("--unsafe-load", action="store_true", help="allow code (Lambda) in .keras files")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--target",
        type=_target,
        help="budget: fraction of the dense cost (0 < t <= 1), or milliseconds (3.5ms) with "
        "--budget latency",
    )
    how.add_argument(
        "--widths", help="a width multiplier (0.5) or JSON {group: width} (text or file)"
    )
    how.add_argument("--plan", help="a plan saved with Plan.to_json")
    p.add_argument(
        "--budget",
        choices=("params", "macs", "latency"),
        default=None,
        help="what --target is a fraction of: params (default), macs or latency (predicted "
        "LiteRT ms)",
    )
    p.add_argument("--importance", choices=CRITERIA, default=DEFAULT_IMPORTANCE)
    p.add_argument("--widths-from", choices=WIDTHS_FROM, default=DEFAULT_WIDTHS_FROM)
    p.add_argument(
        "--data", default=None, help=".npz with arrays x and y (for --importance taylor)"
    )
    p.add_argument("--round-to", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out",
        default=None,
        help="output .keras file (default: MODEL_pruned.keras); the report and .tflite go beside it",
    )
    p.add_argument(
        "--recalibrate-data",
        metavar="PATH",
        default=None,
        help="re-estimate the BatchNormalization statistics of the pruned model on these inputs "
        "(.npy/.npz array or folder of images, as --calibration-data; in the model's input range)",
    )
    p.add_argument(
        "--recalibrate-samples",
        type=_positive_int,
        default=DEFAULT_SAMPLES,
        metavar="N",
        help=f"most samples of --recalibrate-data to use (default {DEFAULT_SAMPLES})",
    )
    p.add_argument(
        "--tflite",
        action="store_true",
        help="also export the pruned model to a LiteRT-verified .tflite beside --out",
    )
    p.add_argument(
        "--quantize",
        choices=("float16", "dynamic", "int8"),
        default=None,
        help="TFLite quantization (implies --tflite; int8 needs --calibration-data)",
    )
    p.add_argument(
        "--calibration-data",
        metavar="PATH",
        default=None,
        help="real inputs for int8 calibration and verification: a .npy array (N,H,W,C), an .npz "
        "(its only array, or the one named x or images) or a folder of jpg/png images (resized "
        "to the model input, float32 in [0,255]); fed to the model as-is, so in its input range",
    )
    p.add_argument(
        "--calibration-samples",
        type=_positive_int,
        default=256,
        metavar="N",
        help="most samples to calibrate on (default 256)",
    )
    p.add_argument(
        "--verify-samples",
        type=_positive_int,
        default=64,
        metavar="N",
        help="most held-back samples to verify on (default 64; at most a quarter of the data)",
    )
    latency_args(p)
    return p


def _shape(text):
    import argparse

    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"expected positive integers like 224,224,3; got {text!r}")
    return dims


def _widths(text):
    try:
        return float(text)
    except ValueError:
        pass
    if os.path.isfile(text):
        with open(text, encoding="utf-8") as f:
            text = f.read()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            "--widths must be a multiplier (e.g. 0.5) or a JSON object {group: width} "
            f"(text or file). Received: --widths={text[:60]!r}"
        ) from e
    if not isinstance(value, dict):
        raise ValueError(
            f"--widths JSON must be an object {{group: width}}. Received: {type(value).__name__}"
        )
    return value


def _check_paths(args, out):
    """Missing input files and a missing output folder, before any work."""
    for flag, path in (
        ("--calibration-data", getattr(args, "calibration_data", None)),
        ("--recalibrate-data", getattr(args, "recalibrate_data", None)),
    ):
        if path is not None and not os.path.exists(path):
            raise FileNotFoundError(
                f"{flag} {path} not found; expected a .npy/.npz file or a folder of images. "
                f"Received: {flag[2:].replace('-', '_')}={path!r}"
            )
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"--out {out}: the folder {folder} does not exist; expected a path in an existing "
            f"folder (create it first). Received: out={out!r}"
        )


def _recalibration_samples(args, model):
    """The ``--recalibrate-data`` inputs (float32, up to ``--recalibrate-samples``), or None."""
    path = getattr(args, "recalibrate_data", None)
    if path is None:
        return None
    from tf_precrop.calibration import CalibrationDataError, load_samples

    if len(model.inputs) != 1:
        raise ValueError(
            f"--recalibrate-data feeds one array, but model '{model.name}' has "
            f"{len(model.inputs)} inputs; expected a single-input model (use "
            "tf_precrop.recalibrate_batchnorm from Python with a list or dict of arrays). "
            f"Received: inputs={len(model.inputs)}"
        )
    shape = tuple(None if d is None else int(d) for d in model.inputs[0].shape[1:])
    try:
        return load_samples(path, shape, args.recalibrate_samples, seed=args.seed)
    except CalibrationDataError as e:
        raise CalibrationDataError(f"--recalibrate-data: {e}") from e


def _latency_cost(graph, options, verbose):
    """The :class:`~tf_precrop.latency.LatencyCost` the budget uses (times what the cache lacks)."""
    from tf_precrop.latency import latency_for

    return latency_for(
        graph,
        options.get("latency"),
        num_threads=options["num_threads"],
        precision=options["precision"],
        verbose=verbose,
    )


def run_prune(args):
    """Runs ``tf-precrop prune`` with parsed ``args``; returns the exit status (0).

    Steps (progress on stderr unless ``--quiet``): load the model (and the
    calibration and recalibration inputs), prune, re-estimate the
    BatchNormalization statistics, save the ``.keras`` file atomically, export
    and verify the ``.tflite``, write the JSON report; then print the summary.
    """
    import numpy as np

    import tf_precrop
    from tf_precrop._io import save_model, write_json
    from tf_precrop.cli.commands import (
        _calibration_data,
        _data_note,
        _export,
        _export_line,
        _latency_note,
        _latency_options,
        _say,
        load_model,
    )
    from tf_precrop.prune.report import print_summary, prune_report

    budget = args.budget or "params"
    out = args.out or f"{os.path.splitext(os.path.basename(args.model))[0]}_pruned.keras"
    _check_paths(args, out)
    latency_options = _latency_options(args) if args.target is not None else {}
    exporting = bool(args.tflite or args.quantize)
    steps = 2 + (args.recalibrate_data is not None) + exporting
    step = iter(range(1, steps + 1))
    _say(args, f"[{next(step)}/{steps}] loading {args.model}")
    model = load_model(args.model, args.input_shape, args.classes, args.line, args.unsafe_load)
    calibration, verification = _calibration_data(args, model)
    recalibration = _recalibration_samples(args, model)
    data = None
    if args.data:
        with np.load(args.data) as arrays:
            data = (arrays["x"], arrays["y"])
    options = dict(
        budget=budget,
        importance=args.importance,
        widths_from=args.widths_from,
        round_to=args.round_to,
        seed=args.seed,
        data=data,
        **latency_options,
    )
    widths = None
    if args.plan:
        target, what = tf_precrop.Plan.from_json(args.plan), f"to the widths of {args.plan}"
    elif args.widths is not None:
        target, widths = None, _widths(args.widths)
        what = f"to widths {args.widths}"
    else:
        target = args.target
        what = f"to {target} latency" if isinstance(target, str) else f"to {target} of {budget}"
    _say(
        args,
        f"[{next(step)}/{steps}] pruning {what} (importance {args.importance})"
        + _latency_note(latency_options),
    )
    graph = tf_precrop.channel_groups(model)
    cost = None
    if latency_options:
        cost = _latency_cost(graph, latency_options, 0 if getattr(args, "quiet", False) else 1)
    if widths is not None:
        pruned = tf_precrop.prune(model, widths=widths, **options)
    else:
        pruned = tf_precrop.prune(model, target, **options)
    if recalibration is not None:
        _say(
            args,
            f"[{next(step)}/{steps}] re-estimating BatchNormalization statistics on "
            f"{len(recalibration)} samples of {args.recalibrate_data}",
        )
        try:
            tf_precrop.recalibrate_batchnorm(pruned, recalibration, samples=len(recalibration))
        except ValueError as e:
            raise ValueError(f"--recalibrate-data {args.recalibrate_data}: {e}") from e
    save_model(pruned, out)  # atomic: a failed save leaves `out` as it was
    export = None
    if exporting:
        _say(
            args,
            f"[{next(step)}/{steps}] exporting to TFLite and verifying in LiteRT"
            + _data_note(args, calibration, verification),
        )
        tflite = os.path.splitext(out)[0] + ".tflite"
        export = _export(pruned, tflite, args.quantize, calibration, verification)
    report = prune_report(
        args,
        model,
        pruned,
        graph,
        widths=widths,
        recalibrated=recalibration,
        latency_options=latency_options,
        cost=cost,
        export=export,
    )
    report_path = os.path.splitext(out)[0] + "_report.json"
    write_json(report_path, report)
    print_summary(args, report, out)
    if export is not None:
        print(_export_line(args, export, calibration, verification))
    print(f"wrote {report_path}")
    return 0
