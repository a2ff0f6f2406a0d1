"""``tf-precrop`` command line: crop, profile, bench and train from a shell.

Examples::

    tf-precrop crop MobileNetV2 --target 0.3 --budget macs --tflite --out out/
    tf-precrop profile resnet20
    tf-precrop bench out/MobileNetV2_precrop.tflite
    tf-precrop crop model.keras --target 0.5 --method synflow --quantize int8

MODEL is a keras.applications name (built with ``weights=None``), a bundled
architecture (``resnet20``, ``shufflenet_v2``, ...) or a ``.keras`` file
(loaded in Keras safe mode unless ``--unsafe-load`` is given). Errors print one
line and exit with status 2 (``--debug`` shows the traceback).
"""

import argparse
import os
import sys
import time

EXIT_ERROR = 2


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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_args(p):
        p.add_argument("model", metavar="MODEL", help="keras.applications name, bundled name, or .keras file")
        p.add_argument("--input-shape", type=_parse_shape, default=None, help="e.g. 224,224,3")
        p.add_argument("--classes", type=int, default=None, help="number of classes (built models)")
        p.add_argument("--line", choices=("keras3", "tf_keras"), default="keras3", help="Keras line for built models")
        p.add_argument("--unsafe-load", action="store_true", help="allow code (Lambda) in .keras files")

    crop = sub.add_parser("crop", help="plan and build a cropped model; write .keras, report, .tflite")
    model_args(crop)
    crop.add_argument("--target", type=float, required=True, help="fraction of the dense cost (0 < t <= 1)")
    crop.add_argument("--budget", choices=("params", "macs"), default="params")
    crop.add_argument("--method", default="synexp", help="synexp (default), synflow, snip, grasp, magnitude, random, uniform, erk, uniform_width")
    crop.add_argument("--rounds", type=int, default=100, help="SynFlow rounds")
    crop.add_argument("--round-to", type=int, default=8, help="channel multiple for groups of >= 32 channels")
    crop.add_argument("--preconfig", action="store_true", help="allow widening (PreConfig)")
    crop.add_argument("--seed", type=int, default=0)
    crop.add_argument("--out", default="precrop_out", help="output folder")
    crop.add_argument("--tflite", action="store_true", help="also export and verify a .tflite file")
    crop.add_argument("--quantize", choices=("float16", "dynamic", "int8"), default=None, help="TFLite quantization (implies --tflite)")
    crop.add_argument("--bench", action="store_true", help="measure LiteRT latency of the .tflite file")

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
    train.add_argument("--target", type=float, default=None, help="crop to this fraction first")
    train.add_argument("--budget", choices=("params", "macs"), default="params")
    train.add_argument("--method", default="synexp")
    train.add_argument("--epochs", type=int, default=160)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--limit", type=int, default=None, help="use a class-balanced subset of N images")
    train.add_argument("--data", default="auto", help="'auto', 'keras', or the CIFAR-10 zip/folder")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default="precrop_train", help="log and checkpoint folder")
    return parser


def _check_model_file(name):
    """A clear error for a file that is not a Keras archive at all (Keras' own
    message for those is "File not found", although the file exists)."""
    import zipfile

    with open(name, "rb") as f:
        head = f.read(8)
    if name.endswith(".h5"):
        if head != b"\x89HDF\r\n\x1a\n":
            raise ValueError(
                f"could not load {name}: it is not an HDF5 file (it does not start with the HDF5 "
                "signature); expected a legacy Keras model saved with model.save('model.h5')"
            )
        return
    if not zipfile.is_zipfile(name):
        raise ValueError(
            f"could not load {name}: it is not a .keras archive (not a zip file); expected a "
            "model saved with model.save('model.keras')"
        )
    with zipfile.ZipFile(name) as z:
        if "config.json" not in z.namelist():
            raise ValueError(
                f"could not load {name}: the archive has no config.json, so it is not a "
                "complete .keras model; expected a model saved with model.save('model.keras')"
            )


def load_model(name, input_shape=None, classes=None, line="keras3", unsafe_load=False):
    """The model behind a CLI MODEL argument (see module docstring)."""
    from tf_precrop import models as bundled
    from tf_precrop.backend import get_line

    if name.endswith((".keras", ".h5")):
        if not os.path.isfile(name):
            raise FileNotFoundError(f"model file not found: {name}")
        _check_model_file(name)
        import tf_precrop.layers  # noqa: F401 - registers our layers for loading

        try:
            return get_line(line).load_model(name, safe_mode=not unsafe_load)
        except Exception as e:
            first = str(e).splitlines()[0] if str(e) else ""
            hint = ""
            if "safe_mode" in str(e) or "unsafe" in str(e).lower():
                hint = "; it holds code (e.g. a Lambda): if you trust the file, pass --unsafe-load"
            raise ValueError(f"could not load {name}: {type(e).__name__}: {first}{hint}") from e
    kwargs = {}
    if input_shape is not None:
        kwargs["input_shape"] = input_shape
    if classes is not None:
        kwargs["classes"] = classes
    if name.lower() in bundled.ARCHITECTURES:
        return bundled.get_model(name.lower(), line=line, **kwargs)
    apps = get_line(line).keras.applications
    lookup = {n.lower(): n for n in dir(apps) if n[:1].isupper()}
    if name.lower() not in lookup:
        known = sorted(bundled.ARCHITECTURES) + ["MobileNetV2", "ResNet50", "..."]
        raise ValueError(f"unknown model {name!r}; expected a .keras file, a bundled name or a keras.applications name such as {', '.join(known)}")
    kwargs.setdefault("input_shape", (224, 224, 3))
    return getattr(apps, lookup[name.lower()])(weights=None, **kwargs)


def _say(args, message):
    if not args.quiet:
        print(message, file=sys.stderr, flush=True)


def _writable_dir(path):
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK):
        raise PermissionError(f"output folder is not writable: {path}")
    return path


def _cmd_crop(args):
    import tf_precrop
    from tf_precrop.report import write_report

    out = _writable_dir(args.out)
    _say(args, f"[1/4] loading {args.model}")
    model = load_model(args.model, args.input_shape, args.classes, args.line, args.unsafe_load)
    _say(args, f"[2/4] planning {args.method} to {args.target} of {args.budget}")
    t0 = time.perf_counter()
    plan = tf_precrop.plan(
        model, args.target, budget=args.budget, method=args.method, round_to=args.round_to,
        preconfig=args.preconfig, seed=args.seed, rounds=args.rounds, verbose=0 if args.quiet else 1,
    )
    _say(args, f"      planned in {time.perf_counter() - t0:.1f} s")
    _say(args, "[3/4] building the cropped model")
    small = plan.apply()
    stem = f"{model.name}_precrop"
    keras_path = os.path.join(out, stem + ".keras")
    small.save(keras_path)
    plan.to_json(os.path.join(out, stem + "_plan.json"))
    export = latency = None
    if args.tflite or args.quantize:
        _say(args, "[4/4] exporting to TFLite and verifying in LiteRT")
        rep = None
        if args.quantize == "int8":
            import numpy as np

            shape = tuple(int(d) for d in small.input_shape[1:])
            rep = np.random.default_rng(args.seed).uniform(0, 1, (32, *shape)).astype("float32")
        export = tf_precrop.export_tflite(small, os.path.join(out, stem + ".tflite"), quantize=args.quantize, representative_data=rep)
        if args.bench:
            latency = tf_precrop.benchmark_tflite(export.path)
    paths = write_report(plan, out, stem=stem + "_report", export=export, latency=latency)
    print(plan.summary(max_rows=None if args.quiet else 40))
    print(f"wrote {keras_path}")
    if export is not None:
        print(f"wrote {export.path} ({export.size_bytes / 1e6:.2f} MB, verified: max abs error {export.max_abs_error:.2e})")
    if latency is not None:
        print(f"LiteRT latency: median {latency.median_ms:.2f} ms, p90 {latency.p90_ms:.2f} ms")
    print("wrote " + ", ".join(paths))
    return 0


def _cmd_profile(args):
    import tf_precrop

    model = load_model(args.model, args.input_shape, args.classes, args.line, args.unsafe_load)
    prof = tf_precrop.profile(model)
    print(prof.summary())
    if args.json:
        prof.to_json(args.json)
    return 0


def _cmd_bench(args):
    import tf_precrop

    if not os.path.isfile(args.file):
        raise FileNotFoundError(f"no such file: {args.file}")
    result = tf_precrop.benchmark_tflite(args.file, num_threads=args.threads, runs=args.runs, warmup=args.warmup, use_xnnpack=not args.no_xnnpack)
    print(f"{args.file}: median {result.median_ms:.3f} ms, p90 {result.p90_ms:.3f} ms ({result.runs} runs, {result.num_threads} threads, {result.delegate})")
    return 0


def _cmd_train(args):
    import tf_precrop
    from tf_precrop import data, training

    _say(args, f"loading CIFAR-10 ({args.data})")
    (x, y), _ = data.load_cifar10(args.data, limit=args.limit)
    (x_tr, y_tr), (x_val, y_val) = data.train_val_split(x, y, val_size=min(5000, len(x) // 10), seed=0)
    model = load_model(args.model, (32, 32, 3), 10)
    if args.target is not None:
        model = tf_precrop.crop(model, args.target, budget=args.budget, method=args.method, seed=args.seed, verbose=0)
    config = training.TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    result = training.train(model, (x_tr, y_tr), (x_val, y_val), config=config, log_dir=_writable_dir(args.out), verbose=0 if args.quiet else 2)
    print(result)
    return 0


COMMANDS = {"crop": _cmd_crop, "profile": _cmd_profile, "bench": _cmd_bench, "train": _cmd_train}


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = _parser().parse_args(argv)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
