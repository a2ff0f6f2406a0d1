"""The ``tf-precrop prune`` command: prune a trained model file, keeping its weights.

Examples::

    tf-precrop prune model.keras --target 0.5 --budget macs --importance l1
    tf-precrop prune model.keras --widths 0.75 --out small.keras
    tf-precrop prune model.keras --plan plan.json
    tf-precrop prune model.keras --target 0.3 --importance taylor --data batch.npz

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
    from tf_precrop.prune.api import DEFAULT_WIDTHS_FROM, WIDTHS_FROM
    from tf_precrop.prune.importance import CRITERIA, DEFAULT_IMPORTANCE

    p = subparsers.add_parser(
        "prune", help="prune a trained model; keep the kept channels' weights"
    )
    p.add_argument(
        "model", metavar="MODEL", help=".keras file (or a bundled/keras.applications name)"
    )
    p.add_argument("--input-shape", type=_shape, default=None, help="e.g. 224,224,3 (built models)")
    p.add_argument("--classes", type=int, default=None, help="number of classes (built models)")
    p.add_argument("--line", choices=("keras3", "tf_keras"), default="keras3")
    p.add_argument("--unsafe-load", action="store_true", help="allow code (Lambda) in .keras files")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--target", type=float, help="budget: fraction of the dense cost (0 < t <= 1)")
    how.add_argument(
        "--widths", help="a width multiplier (0.5) or JSON {group: width} (text or file)"
    )
    how.add_argument("--plan", help="a plan saved with Plan.to_json")
    p.add_argument("--budget", choices=("params", "macs"), default="params")
    p.add_argument("--importance", choices=CRITERIA, default=DEFAULT_IMPORTANCE)
    p.add_argument("--widths-from", choices=WIDTHS_FROM, default=DEFAULT_WIDTHS_FROM)
    p.add_argument(
        "--data", default=None, help=".npz with arrays x and y (for --importance taylor)"
    )
    p.add_argument("--round-to", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output .keras file (default: MODEL_pruned.keras)")
    p.add_argument(
        "--tflite", action="store_true",
        help="also export the pruned model to a LiteRT-verified fp32 .tflite beside --out",
    )
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


def run_prune(args):
    """Runs ``tf-precrop prune`` with parsed ``args``; returns the exit status (0)."""
    import numpy as np

    import tf_precrop
    from tf_precrop.cli import load_model

    model = load_model(args.model, args.input_shape, args.classes, args.line, args.unsafe_load)
    data = None
    if args.data:
        with np.load(args.data) as arrays:
            data = (arrays["x"], arrays["y"])
    options = dict(
        budget=args.budget,
        importance=args.importance,
        widths_from=args.widths_from,
        round_to=args.round_to,
        seed=args.seed,
        data=data,
    )
    if args.plan:
        pruned = tf_precrop.prune(model, tf_precrop.Plan.from_json(args.plan), **options)
    elif args.widths is not None:
        pruned = tf_precrop.prune(model, widths=_widths(args.widths), **options)
    else:
        pruned = tf_precrop.prune(model, args.target, **options)
    from tf_precrop._io import atomic_path

    out = args.out or f"{os.path.splitext(os.path.basename(args.model))[0]}_pruned.keras"
    with atomic_path(out) as tmp:  # a failed save leaves `out` as it was
        pruned.save(tmp + ".keras")  # Keras insists on the suffix
        os.replace(tmp + ".keras", tmp)
    before, after = tf_precrop.profile(model), tf_precrop.profile(pruned)
    print(
        f"{model.name}: params {before.params:,} -> {after.params:,} "
        f"({after.params / before.params:.1%}), MACs {before.macs:,} -> {after.macs:,} "
        f"({after.macs / max(before.macs, 1):.1%}); wrote {out}"
    )
    if getattr(args, "tflite", False):
        path = os.path.splitext(out)[0] + ".tflite"
        result = tf_precrop.export_tflite(pruned, path)
        print(f"wrote {path} ({result.size_bytes / 1e6:.2f} MB, verified: max abs error "
              f"{result.max_abs_error:.2e})")
    return 0
