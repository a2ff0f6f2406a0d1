"""The ``tf-precrop`` commands: one function per subcommand, given parsed arguments.

Everything that needs TensorFlow is imported inside the functions, so that
importing this module (and ``tf-precrop --help``) stays TensorFlow-free.
"""

import os
import sys
import time


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
    """A progress line on stderr, unless ``--quiet`` (parsers without it always say)."""
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr, flush=True)


def _writable_dir(path):
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK):
        raise PermissionError(f"output folder is not writable: {path}")
    return path


def _calibration_data(args, model):
    """``(calibration, verification)`` arrays from ``--calibration-data``, or ``(None, None)``.

    int8: up to ``--calibration-samples`` + ``--verify-samples`` samples, split
    into disjoint calibration and held-back verification sets. Other modes
    calibrate nothing, so every sample read verifies.
    """
    if args.calibration_data is None:
        return None, None
    from tf_precrop.calibration import load_samples, split_samples

    if len(model.inputs) != 1:
        raise ValueError(
            f"--calibration-data feeds one array, but model '{model.name}' has {len(model.inputs)} "
            "inputs; expected a single-input model (use tf_precrop.export_tflite from Python "
            f"with a list or dict of arrays). Received: inputs={len(model.inputs)}"
        )
    shape = tuple(None if d is None else int(d) for d in model.inputs[0].shape[1:])
    if args.quantize != "int8":
        return None, load_samples(args.calibration_data, shape, args.verify_samples, seed=args.seed)
    samples = load_samples(args.calibration_data, shape, args.calibration_samples + args.verify_samples, seed=args.seed)
    return split_samples(samples, args.verify_samples)


def _data_note(args, calibration, verification):
    if verification is None:
        return " (on random inputs)"
    if calibration is None:
        return f" (on {len(verification)} samples of {args.calibration_data})"
    return f" (calibrating on {len(calibration)} samples of {args.calibration_data}, verifying on {len(verification)} held-back ones)"


def _export(model, path, quantize, calibration, verification):
    """``export_tflite``: calibrated on ``calibration``, verified on the held-back ``verification``.

    Without ``verification``, export verifies on seeded random inputs; without
    ``calibration`` (fp32/float16/dynamic), the samples only verify.
    """
    from tf_precrop.export import export_tflite

    if verification is None:
        return export_tflite(model, path, quantize=quantize)
    if calibration is None:
        return export_tflite(
            model, path, quantize=quantize, verification_data=verification,
            num_verify_samples=len(verification),
        )
    return export_tflite(
        model, path, quantize=quantize, representative_data=calibration,
        num_calibration_samples=len(calibration), verification_data=verification,
        num_verify_samples=len(verification),
    )


def _export_line(args, export, calibration, verification):
    """The ``wrote X.tflite (... MB, verified on N ...: max abs error ...)`` line of an export."""
    inputs = "random inputs" if verification is None else ("held-back samples" if calibration is not None else "samples") + f" of {args.calibration_data}"
    top1 = "" if export.top1_agreement is None else f", top-1 agreement {export.top1_agreement:.3f}"
    return (
        f"wrote {export.path} ({export.size_bytes / 1e6:.2f} MB, verified on {export.num_samples} {inputs}: "
        f"max abs error {export.max_abs_error:.2e}, relative error {export.relative_error:.2e}{top1})"
    )


def _precision(args):
    """``(precision, where it came from)`` of ``--budget latency``."""
    if args.precision is not None:
        return args.precision, "from --precision"
    if getattr(args, "quantize", None) == "int8":
        return "int8", "from --quantize int8"
    return "fp32", "the default"


def _latency_options(args):
    """``plan()`` options of ``--budget latency`` (``{}`` for other budgets).

    A ``--latency-table`` is read here, before the model loads, and its
    settings are checked against ``--threads``/``--precision`` so that a
    mismatch names the flags, not ``plan()``'s arguments.
    """
    if args.budget != "latency":
        return {}
    from tf_precrop.latency import DEFAULT_THREADS, LatencyTable

    threads = args.threads or DEFAULT_THREADS
    precision, source = _precision(args)
    options = {"num_threads": threads, "precision": precision}
    if args.latency_table is None:
        return options
    table = LatencyTable.load(args.latency_table)
    if (table.num_threads, table.precision) != (threads, precision):
        fix = []
        if table.precision != precision:
            fix.append(f"--precision {table.precision}")
        if table.num_threads != threads:
            fix.append(f"--threads {table.num_threads}")
        raise ValueError(
            f"--latency-table {args.latency_table} was measured in {table.precision} at "
            f"{table.num_threads} threads, but the plan is for {precision} ({source}) at "
            f"{threads} threads. Expected matching settings: pass {' '.join(fix)} or a table "
            f"measured with `tf-precrop latency MODEL --precision {precision} --threads {threads}`. "
            f"Received: table precision={table.precision!r}, threads={table.num_threads}"
        )
    options["latency"] = table
    return options


def _latency_note(options):
    if not options:
        return ""
    table = options.get("latency")
    where = "this machine's cache" if table is None else table.path
    return f" ({options['precision']}, {options['num_threads']} threads, table: {where})"


def _cmd_crop(args):
    import tf_precrop
    from tf_precrop._io import save_model
    from tf_precrop.report import write_report

    out = _writable_dir(args.out)
    if args.calibration_data is not None and not os.path.exists(args.calibration_data):
        raise FileNotFoundError(
            f"calibration data not found: {args.calibration_data}; expected a .npy/.npz file or "
            f"a folder of images. Received: calibration_data={args.calibration_data!r}"
        )
    latency_options = _latency_options(args)
    _say(args, f"[1/4] loading {args.model}")
    model = load_model(args.model, args.input_shape, args.classes, args.line, args.unsafe_load)
    calibration, verification = _calibration_data(args, model)
    target = f"{args.target} latency" if isinstance(args.target, str) else f"{args.target} of {args.budget}"
    _say(args, f"[2/4] planning {args.method} to {target}{_latency_note(latency_options)}")
    t0 = time.perf_counter()
    plan = tf_precrop.plan(
        model, args.target, budget=args.budget, method=args.method, round_to=args.round_to,
        preconfig=args.preconfig, seed=args.seed, rounds=args.rounds, verbose=0 if args.quiet else 1,
        **latency_options,
    )
    _say(args, f"      planned in {time.perf_counter() - t0:.1f} s")
    _say(args, "[3/4] building the cropped model")
    small = plan.apply()
    stem = f"{model.name}_precrop"
    keras_path = os.path.join(out, stem + ".keras")
    save_model(small, keras_path)
    plan.to_json(os.path.join(out, stem + "_plan.json"))
    export = latency = None
    if args.tflite or args.quantize:
        _say(args, "[4/4] exporting to TFLite and verifying in LiteRT" + _data_note(args, calibration, verification))
        export = _export(small, os.path.join(out, stem + ".tflite"), args.quantize, calibration, verification)
        if args.bench:
            latency = tf_precrop.benchmark_tflite(export.path, **({"num_threads": args.threads} if args.threads else {}))
    paths = write_report(plan, out, stem=stem + "_report", export=export, latency=latency)
    print(plan.summary(max_rows=None if args.quiet else 40))
    print(f"wrote {keras_path}")
    if export is not None:
        print(_export_line(args, export, calibration, verification))
    if latency is not None:
        predicted = "" if plan.latency_ms is None else f" (predicted {plan.latency_ms[1]:.2f} ms)"
        print(f"LiteRT latency: median {latency.median_ms:.2f} ms, p90 {latency.p90_ms:.2f} ms{predicted}")
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

    latency_options = _latency_options(args) if args.target is not None else {}
    _say(args, f"loading CIFAR-10 ({args.data})")
    (x, y), _ = data.load_cifar10(args.data, limit=args.limit)
    (x_tr, y_tr), (x_val, y_val) = data.train_val_split(x, y, val_size=min(5000, len(x) // 10), seed=0)
    model = load_model(args.model, (32, 32, 3), 10)
    if args.target is not None:
        model = tf_precrop.crop(
            model, args.target, budget=args.budget, method=args.method, seed=args.seed,
            verbose=1 if latency_options and not args.quiet else 0, **latency_options,
        )
    config = training.TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    out = _writable_dir(args.out)
    # <out>/backup: an interrupted run resumes when the same command runs again.
    result = training.train(
        model, (x_tr, y_tr), (x_val, y_val), config=config, log_dir=out,
        backup_dir=os.path.join(out, "backup"), verbose=0 if args.quiet else 2,
    )
    print(result)
    return 0


def _cmd_latency(args):
    import tf_precrop
    import tf_precrop.latency as lat

    existing = None if args.table is None else lat.LatencyTable.load(args.table)
    threads = args.threads or (existing.num_threads if existing else lat.DEFAULT_THREADS)
    precision = args.precision or (existing.precision if existing else "fp32")
    if existing is not None and (existing.num_threads, existing.precision) != (threads, precision):
        raise ValueError(
            f"--table {args.table} holds {existing.precision} times at {existing.num_threads} "
            f"threads; it cannot be extended with {precision} times at {threads} threads. "
            "Expected matching settings: drop --precision/--threads to keep the table's, or "
            f"measure a new table. Received: precision={precision!r}, threads={threads}"
        )
    _writable_dir(os.path.dirname(os.path.abspath(args.out)))
    _say(args, f"[1/2] loading {args.model}")
    model = load_model(args.model, args.input_shape, args.classes, args.line, args.unsafe_load)
    _say(args, f"[2/2] timing its layers in LiteRT ({precision}, {threads} threads)")
    before = 0 if existing is None else len(existing)
    t0 = time.perf_counter()
    table = lat.measure_table(
        model, num_threads=threads, precision=precision, table=existing,
        upper=2.0 if args.preconfig else 1.0, verbose=0 if args.quiet else 1, path=args.out,
    )
    dense = table.dense_ms(lat.fingerprint(tf_precrop.channel_groups(model)))
    print(
        f"{model.name}: dense {dense:.3f} ms ({precision}, {threads} threads); "
        f"{len(table) - before} new points timed in {time.perf_counter() - t0:.1f} s"
    )
    print(f"wrote {args.out}: {len(table)} points, {len(table.entries)} signatures, {len(table.models)} model(s)")
    return 0
