"""``tf-precrop`` command line: crop, prune, profile, bench and train from a shell.

Examples::

    tf-precrop crop MobileNetV2 --target 0.3 --budget macs --tflite --out out/
    tf-precrop prune trained.keras --target 0.5 --budget macs --importance l1
    tf-precrop prune trained.keras --budget latency --target 3.5ms \
        --latency-table pixel7_t4.json --recalibrate-data train.npy --tflite
    tf-precrop profile resnet20
    tf-precrop bench out/MobileNetV2_precrop.tflite
    tf-precrop crop model.keras --target 0.5 --method synflow --quantize int8 \
        --calibration-data val_images/
    tf-precrop crop resnet20 --budget latency --target 0.5
    tf-precrop latency model.keras --out pixel7_t4.json --threads 4   # on the device
    tf-precrop crop model.keras --budget latency --target 3.5ms \
        --latency-table pixel7_t4.json --threads 4

MODEL is a keras.applications name (built with ``weights=None``), a bundled
architecture (``resnet20``, ``shufflenet_v2``, ...) or a ``.keras`` file
(loaded in Keras safe mode unless ``--unsafe-load`` is given). Errors print one
line and exit with status 2 (``--debug`` shows the traceback).

``--budget latency`` crops to a predicted LiteRT latency (see
:mod:`tf_precrop.latency`): ``--target`` is a fraction of the dense model's
latency (``0.5``) or milliseconds (``3.5ms``; only with ``--budget latency``).
The per-layer times come from this machine's cache (``$TF_PRECROP_CACHE`` or
``~/.cache/tf_precrop``, timed on first use) or, with ``--latency-table
FILE``, from a table measured elsewhere, which must hold the model's layer
signatures and match ``--threads`` (default 2) and ``--precision`` (default
``int8`` with ``--quantize int8``, else ``fp32``). ``tf-precrop latency MODEL
--out TABLE.json`` measures such a table (run it on the phone or board;
``--table EXISTING.json`` extends one, keeping its settings unless given) and
writes it atomically; ``python -m tf_precrop latency ...`` works too. These
options without ``--budget latency`` are usage errors (``crop --bench`` also
takes ``--threads``).

``prune`` takes the same ``--target``/``--budget``, latency options and TFLite
export options on a trained model, keeps the kept channels' weights, can
re-estimate BatchNormalization statistics (``--recalibrate-data``) and writes
``<out stem>_report.json``; see :mod:`tf_precrop.prune.cli`.

``--quantize int8`` needs ``--calibration-data PATH``: a ``.npy`` array, an
``.npz`` (its only array, or the one named ``x`` or ``images``) or a folder of
images (resized to the model's input size, float32 in ``[0, 255]``); see
:mod:`tf_precrop.calibration`. The samples are fed to the model as they are, so
they must be in the model's own input range. They are split into calibration
samples and disjoint held-back verification samples (at most
``--verify-samples``, at most a quarter): the file is calibrated on the first
and verified on the second. With ``--tflite``/``float16``/``dynamic`` the data,
if given, only replaces the random verification inputs.

Quiet by default: TensorFlow's C++ log lines (oneDNN, CUDA, MLIR, SavedModel,
LiteRT delegate) are silenced by setting ``TF_CPP_MIN_LOG_LEVEL=3``, raising
the ``tensorflow``/``absl`` Python loggers to ERROR and, while a command runs,
pointing the process's C-level stderr (file descriptor 2) at ``/dev/null``;
Python's own ``sys.stderr`` (progress, warnings, errors) still reaches the
terminal. ``--verbose`` keeps all of them (use it when the process dies
without a message). ``--help`` never imports TensorFlow: every heavy import
is inside the command functions, and ``import tf_precrop`` is TensorFlow-free.
"""

import argparse
import math
import sys

from tf_precrop.cli._quiet import native_stderr_silenced, quiet_tensorflow
from tf_precrop.cli.commands import (
    _cmd_bench,
    _cmd_crop,
    _cmd_latency,
    _cmd_profile,
    _cmd_train,
    load_model,  # noqa: F401 - public: the model behind a MODEL argument
)
from tf_precrop.prune.cli import add_prune_command, run_prune

EXIT_ERROR = 2
#: ``tf_precrop.latency.PRECISIONS`` and ``DEFAULT_THREADS``, spelled out so that
#: ``--help`` imports nothing (tests/test_cli.py checks they agree).
PRECISIONS = ("fp32", "int8")
DEFAULT_THREADS = 2


def _parse_shape(text):
    parts = text.split(",")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(
            f"expected positive integers separated by commas, e.g. 224,224,3; got {text!r}"
        )
    return dims


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def _target(text):
    """``--target``: a number (fraction or count), or milliseconds such as ``3.5ms``."""
    stripped = text.strip().lower()
    if stripped.endswith("ms"):
        try:
            value = float(stripped[:-2])
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(
                f"expected a positive number of milliseconds such as 3.5ms; got {text!r}"
            )
        return f"{stripped[:-2].strip()}ms"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected a fraction of the dense cost such as 0.5 (or, with --budget latency, "
            f"milliseconds such as 3.5ms); got {text!r}"
        ) from None


def latency_args(p, bench=False):
    """Adds ``--threads``, ``--precision`` and ``--latency-table`` (the latency budget's) to ``p``."""
    also = " and --bench" if bench else ""
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N", help=f"LiteRT threads of the latency budget{also} (default {DEFAULT_THREADS})")
    p.add_argument("--precision", choices=PRECISIONS, default=None, help="precision the latency budget is timed in (default int8 with --quantize int8, else fp32)")
    p.add_argument("--latency-table", metavar="FILE", default=None, help="a latency table measured elsewhere (tf-precrop latency); default: this machine's cache, timed as needed")


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line and exit 2, like ours."""

    def error(self, message):
        print(f"tf-precrop: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)


def _parser():
    parser = _Parser(
        prog="tf-precrop",
        description="Structured pruning at initialization (PreCropping) for Keras CNNs.",
    )
    parser.add_argument("--quiet", action="store_true", help="print only results and errors")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines (hidden by default)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_args(p):
        p.add_argument("model", metavar="MODEL", help="keras.applications name, bundled name, or .keras file")
        p.add_argument("--input-shape", type=_parse_shape, default=None, help="e.g. 224,224,3")
        p.add_argument("--classes", type=int, default=None, help="number of classes (built models)")
        p.add_argument("--line", choices=("keras3", "tf_keras"), default="keras3", help="Keras line for built models")
        p.add_argument("--unsafe-load", action="store_true", help="allow code (Lambda) in .keras files")

    crop = sub.add_parser("crop", help="plan and build a cropped model; write .keras, report, .tflite")
    model_args(crop)
    crop.add_argument("--target", type=_target, required=True, help="fraction of the dense cost (0 < t <= 1), or milliseconds (3.5ms) with --budget latency")
    crop.add_argument("--budget", choices=("params", "macs", "latency"), default="params", help="params (default), macs or latency (predicted LiteRT ms)")
    crop.add_argument("--method", default="synexp", help="synexp (default), synflow, snip, grasp, magnitude, random, uniform, erk, uniform_width")
    crop.add_argument("--rounds", type=int, default=100, help="SynFlow rounds")
    crop.add_argument("--round-to", type=int, default=8, help="channel multiple for groups of >= 32 channels")
    crop.add_argument("--preconfig", action="store_true", help="allow widening (PreConfig)")
    crop.add_argument("--seed", type=int, default=0)
    crop.add_argument("--out", default="precrop_out", help="output folder")
    crop.add_argument("--tflite", action="store_true", help="also export and verify a .tflite file")
    crop.add_argument("--quantize", choices=("float16", "dynamic", "int8"), default=None, help="TFLite quantization (implies --tflite; int8 needs --calibration-data)")
    crop.add_argument(
        "--calibration-data", metavar="PATH", default=None,
        help="real inputs for int8 calibration and verification: a .npy array (N,H,W,C), an .npz "
        "(its only array, or the one named x or images) or a folder of jpg/png images (resized to "
        "the model input, float32 in [0,255]); fed to the model as-is, so in its input range",
    )
    crop.add_argument("--calibration-samples", type=_positive_int, default=256, metavar="N", help="most samples to calibrate on (default 256)")
    crop.add_argument("--verify-samples", type=_positive_int, default=64, metavar="N", help="most held-back samples to verify on (default 64; at most a quarter of the data)")
    crop.add_argument("--bench", action="store_true", help="measure LiteRT latency of the .tflite file")
    latency_args(crop, bench=True)

    prof = sub.add_parser("profile", help="print per-layer params and MACs")
    model_args(prof)
    prof.add_argument("--json", default=None, help="also write the profile as JSON")

    bench = sub.add_parser("bench", help="LiteRT latency of a .tflite file")
    bench.add_argument("file", metavar="FILE.tflite")
    bench.add_argument("--threads", type=int, default=2)
    bench.add_argument("--runs", type=int, default=50)
    bench.add_argument("--warmup", type=int, default=5)
    bench.add_argument("--no-xnnpack", action="store_true", help="run without delegates")

    train = sub.add_parser("train", help="train a bundled model on CIFAR-10 (optionally cropped)")
    train.add_argument("model", metavar="MODEL", help="bundled architecture, e.g. resnet20")
    train.add_argument("--target", type=_target, default=None, help="crop to this fraction (or, with --budget latency, milliseconds such as 3.5ms) first")
    train.add_argument("--budget", choices=("params", "macs", "latency"), default="params")
    train.add_argument("--method", default="synexp")
    train.add_argument("--epochs", type=int, default=160)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--limit", type=int, default=None, help="use a class-balanced subset of N images")
    train.add_argument("--data", default="auto", help="'auto', 'keras', or the CIFAR-10 zip/folder")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default="precrop_train", help="log and checkpoint folder; its backup/ holds every finished epoch, so rerunning the same command after an interruption carries on there")
    latency_args(train)

    lat = sub.add_parser("latency", help="measure a latency table for --budget latency (run it on the target device)")
    model_args(lat)
    lat.add_argument("--out", required=True, metavar="TABLE.json", help="where to write the table (atomically)")
    lat.add_argument("--threads", type=_positive_int, default=None, metavar="N", help=f"LiteRT threads (default {DEFAULT_THREADS}, or --table's)")
    lat.add_argument("--precision", choices=PRECISIONS, default=None, help="fp32 or int8 (default fp32, or --table's)")
    lat.add_argument("--table", metavar="EXISTING.json", default=None, help="extend this table: time only the points it lacks")
    lat.add_argument("--preconfig", action="store_true", help="also time widths up to twice today's (for crop --preconfig)")
    prune = add_prune_command(sub)
    parser.commands = {"crop": crop, "profile": prof, "bench": bench, "train": train, "latency": lat, "prune": prune}
    return parser


def _check_latency_args(command, args):
    """``--target 3ms`` and the latency options need ``--budget latency``."""
    if args.budget == "latency":
        return
    if isinstance(args.target, str):
        command.error(
            f"--target {args.target} is a latency in milliseconds: add --budget latency, or give "
            f"a fraction of the dense cost. Received: target={args.target!r}, budget={args.budget!r}"
        )
    given = [
        flag for flag, value in (
            ("--threads", None if getattr(args, "bench", False) else args.threads),
            ("--precision", args.precision),
            ("--latency-table", args.latency_table),
        ) if value is not None
    ]
    if given:
        command.error(
            f"{', '.join(given)} only set the latency budget: add --budget latency"
            + (" (or --bench for --threads)" if args.command == "crop" else "")
            + f". Received: budget={args.budget!r}"
        )


def _check_prune_args(command, args):
    """``prune``: the budget options only apply to ``--target`` (``--widths``/``--plan`` give widths)."""
    if args.target is not None:
        if args.budget is None:
            args.budget = "params"
        return
    given = [
        flag for flag, value in (
            ("--budget", args.budget), ("--threads", args.threads), ("--precision", args.precision),
            ("--latency-table", args.latency_table),
        ) if value is not None
    ]
    if given:
        how, value = ("--widths", args.widths) if args.widths is not None else ("--plan", args.plan)
        command.error(
            f"{', '.join(given)} only {'set' if len(given) > 1 else 'sets'} the budget of "
            f"--target, but {how} gives the widths "
            f"directly: drop {' and '.join(given)}, or prune to a budget with --target. "
            f"Received: {how}={value!r}"
        )


def _check_args(parser, args):
    """Usage errors found before any work (exit 2 through ``parser.error``)."""
    if args.command == "prune":
        _check_prune_args(parser.commands["prune"], args)
    if args.command in ("crop", "train", "prune"):
        _check_latency_args(parser.commands[args.command], args)
    if args.command not in ("crop", "prune"):
        return
    command = parser.commands[args.command]
    if args.quantize == "int8" and args.calibration_data is None:
        command.error(
            "--quantize int8 calibrates the activation ranges on real inputs: pass "
            "--calibration-data PATH (a .npy/.npz array or a folder of images, in the model's "
            "input range). Received: calibration_data=None"
        )
    if args.calibration_data is not None and not (args.tflite or args.quantize):
        command.error(
            "--calibration-data is only used by the TFLite export: add --tflite or --quantize. "
            f"Received: calibration_data={args.calibration_data!r}, tflite=False, quantize=None"
        )


COMMANDS = {
    "crop": _cmd_crop, "profile": _cmd_profile, "bench": _cmd_bench, "train": _cmd_train,
    "latency": _cmd_latency, "prune": run_prune,
}


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    if not args.verbose:
        quiet_tensorflow()
    with native_stderr_silenced(not args.verbose):
        try:
            return COMMANDS[args.command](args)
        except KeyboardInterrupt:
            print("tf-precrop: interrupted", file=sys.stderr)
            return 130
        except Exception as e:  # noqa: BLE001 - one line for the user, traceback on --debug
            if args.debug:
                raise
            message = " ".join(str(e).split()) or type(e).__name__
            print(f"tf-precrop: error: {message}", file=sys.stderr)
            return EXIT_ERROR
