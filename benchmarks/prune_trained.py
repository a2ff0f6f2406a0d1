"""Pruning a trained ResNet-20 (``tf_precrop.prune``) vs PreCrop trained from scratch (issue #13).

Takes the dense ResNet-20 models trained with the full CPU schedule of the
evidence runs (``cifar_accuracy.py --recipe cpu --train-size 45000``, files
``benchmarks/results/models/resnet20_dense_cpu20_seed<s>.keras``) and, for
every seed, MAC target (50% and 20% of the dense MACs), importance criterion
(``l1`` and the data-based ``taylor``) and ``widths_from`` (``synexp``):

1. evaluates the dense model on the validation split;
2. prunes it with ``tf_precrop.prune(model, target, budget="macs",
   importance=..., widths_from=...)`` and evaluates it as it is (fine-tune
   epochs 0). ``taylor`` scores |Σ w·∂L/∂w| of the plain sparse cross-entropy
   (the dense model is recompiled with it: the saved file carries its
   training loss, label-smoothed categorical cross-entropy) on
   ``--taylor-samples`` (256) training images drawn with the seed;
3. re-estimates its BatchNormalization statistics with
   :func:`tf_precrop.recalibrate_batchnorm` on ``--recalibration-samples``
   (4,096) training images drawn with the seed, batch 128, and evaluates it
   again (still 0 epochs: no weight is trained; ``0`` turns this off);
4. fine-tunes it (the recalibrated model, when step 3 ran) for
   ``--finetune-epochs`` (5) epochs and evaluates it again;
5. (``--steps K``, default 1) with ``K > 1`` repeats steps 2-4 K times
   instead (iterative pruning): step ``i`` prunes the previous step's model to
   ``target ** (i / K)`` of the *dense* cost (the fraction handed to ``prune``
   is relative to the current model, so the last step lands on the target
   within the solver's 1%), re-estimates BN and fine-tunes for its share of
   ``--finetune-epochs`` (split evenly, the remainder going to the last steps),
   so the total fine-tune epochs stay the same as one-shot. Per-step numbers
   go to the row's ``steps_history``; its top-level ``pruned`` and ``BN
   re-estimated`` accuracies are those of the last step;
6. (``--int8``, default on) exports the fine-tuned model as a full-integer
   int8 TFLite file with :func:`tf_precrop.export.export_tflite`, calibrated on
   ``--calibration-samples`` (256) training images and verified against the
   Keras model on 64 validation images, then runs the file in LiteRT on the
   first ``--int8-samples`` (1000) validation images (int8 accuracy, next to
   the Keras float accuracy on the same images).

Validation is the evidence runs' split: ``data.train_val_split(x, y,
val_size=5000, seed=0)`` of the 50,000 CIFAR-10 training images (never
trained on); fine-tuning uses the class-balanced first ``--train-size``
(45,000: all the rest, as the dense models) images of the training part.

Fine-tune recipe: ``training.recipe("cpu", epochs=N, lr=0.01,
warmup_epochs=0)``, i.e. the dense models' own recipe (SGD with Nesterov
momentum 0.9, batch 128, cosine decay to 0, label smoothing 0.1, coupled
weight decay 5e-4, pad-crop-flip augmentation) restarted at a tenth of its
peak learning rate and without warm-up: the dense model ended its cosine at
lr ~ 0, and restarting at the full 0.1 would mostly re-train the pruned
network instead of repairing it. The values are chosen, not tuned; override
them with ``--finetune-lr``, ``--finetune-warmup`` and ``--finetune-batch-size``.

The comparison with PreCrop: this script does not train PreCrop. It reads the
matching rows of ``--precrop-results`` (``benchmarks/results/cifar_accuracy.json``:
variant ``precrop_synexp``, budget ``macs``, compression ``1/target``, recipe
``cpu``, the dense model's training-set size and seed) and prints them next to
the pruned models. The fair comparison is a PreCrop model trained from scratch
for the same total number of epochs, ``dense epochs + fine-tune epochs`` (25
by default); PreCrop rows with other epoch counts are shown with their epochs
marked, and for the missing ones the script prints the ``cifar_accuracy.py``
command (``--epochs`` set to the total) that trains them.

Rows (one per finished run) go to ``--out`` and are skipped when already
there, keyed by dense file (name and SHA-256), seed, budget, target,
importance, ``widths_from``, fine-tune epochs and recipe, training-set size
and number of validation images, so an interrupted sweep resumes. The file is
rewritten atomically after every run. Each row holds the dense, pruned (0
epochs) and fine-tuned validation accuracy, params, MACs (``tf_precrop.profile``)
and their ratios to the dense model, the pruned widths, seconds per stage, the
total epochs and the int8 numbers. With ``--save-dir`` the fine-tuned model
(``.keras``, no optimizer state) and its int8 ``.tflite`` file are kept there.

Usage::

    python benchmarks/prune_trained.py                       # the issue-13 sweep
    python benchmarks/prune_trained.py --markdown            # tables from the JSON only
    python benchmarks/prune_trained.py \\
        --dense benchmarks/results/models/resnet20_dense_cpu15_seed0.keras \\
        --seeds 0 --targets 0.5 --importance l1 --finetune-epochs 1 \\
        --train-size 500 --limit 500 --out /tmp/prune_smoke.json   # smoke test
"""

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_DENSE = "benchmarks/results/models/resnet20_dense_cpu20_seed{seed}.keras"
DEFAULT_OUT = "benchmarks/results/prune_trained.json"
DEFAULT_PRECROP = "benchmarks/results/cifar_accuracy.json"
PRECROP_VARIANT = "precrop_synexp"
IMPORTANCE = ("l1", "l2", "bn_scale", "taylor", "random")
WIDTHS_FROM = ("synexp", "importance")
NUM_VERIFY = 64


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dense", default=DEFAULT_DENSE,
                        help="dense model file; '{seed}' is replaced by each seed")
    parser.add_argument("--dense-epochs", type=int, default=None,
                        help="epochs the dense model was trained for (default: from the "
                        "manifest.json beside it, else the '_cpu<N>_' tag of its name)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.2],
                        help="fractions of the dense cost to keep")
    parser.add_argument("--budget", default="macs", choices=["macs", "params"])
    parser.add_argument("--importance", nargs="+", default=["l1", "taylor"], choices=IMPORTANCE)
    parser.add_argument("--widths-from", nargs="+", default=["synexp"], choices=WIDTHS_FROM)
    parser.add_argument("--finetune-epochs", type=int, default=5, help="0: no fine-tuning")
    parser.add_argument("--finetune-lr", type=float, default=0.01,
                        help="peak lr of the fine-tune (at batch 128, cosine to 0)")
    parser.add_argument("--finetune-warmup", type=int, default=0, help="fine-tune warm-up epochs")
    parser.add_argument("--finetune-batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=1,
                        help="prune-and-fine-tune steps (iterative pruning; 1: one-shot)")
    parser.add_argument("--taylor-samples", type=int, default=256,
                        help="training images the taylor criterion scores on")
    parser.add_argument("--recalibration-samples", type=int, default=4096,
                        help="training images to re-estimate the BatchNormalization "
                        "statistics on before fine-tuning (0: do not)")
    parser.add_argument("--train-size", type=int, default=45000)
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--data", default="auto")
    parser.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True,
                        help="export each fine-tuned model as int8 TFLite and evaluate it")
    parser.add_argument("--int8-samples", type=int, default=1000,
                        help="validation images the int8 file is evaluated on")
    parser.add_argument("--calibration-samples", type=int, default=256,
                        help="training images for int8 calibration")
    parser.add_argument("--precrop-results", default=DEFAULT_PRECROP,
                        help="cifar_accuracy.py results holding the PreCrop-from-scratch rows")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--save-dir", default=None,
                        help="keep the fine-tuned .keras and int8 .tflite files here")
    parser.add_argument("--limit", type=int, default=None,
                        help="smoke tests: evaluate on at most this many validation images")
    parser.add_argument("--markdown", action="store_true",
                        help="only print the tables from --out (and --precrop-results)")
    args = parser.parse_args(argv)
    if args.finetune_epochs < 0:
        parser.error("--finetune-epochs must be >= 0")
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    if args.steps > 1 and args.finetune_epochs < args.steps:
        parser.error(f"--steps {args.steps} needs at least {args.steps} --finetune-epochs "
                     "(one per step); iterative pruning without fine-tuning is one-shot pruning")
    if any(not 0.0 < t <= 1.0 for t in args.targets):
        parser.error("--targets must be fractions in (0, 1]")
    for name in ("taylor_samples", "int8_samples", "calibration_samples", "train_size", "val_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.recalibration_samples < 0:
        parser.error("--recalibration-samples must be >= 0")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be positive")
    return args


# ----------------------------------------------------------------- the dense model
def dense_path(pattern, seed):
    return pattern.replace("{seed}", str(seed))


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dense_info(path, dense_epochs=None):
    """What is known of how the dense file was trained: its manifest entry, or its name."""
    info = {"file": os.path.basename(path), "path": path}
    manifest = os.path.join(os.path.dirname(path) or ".", "manifest.json")
    if os.path.exists(manifest):
        with open(manifest, encoding="utf-8") as f:
            entries = json.load(f).get("models", [])
        for e in entries:
            if e.get("file") == info["file"]:
                info.update(
                    model=e.get("model"), epochs=e.get("epochs"), train_size=e.get("train_size"),
                    recipe=e.get("recipe"), recorded_val_accuracy=e.get("val_accuracy"),
                    manifest_sha256=e.get("sha256"),
                )
                break
    if info.get("epochs") is None:
        match = re.search(r"_(cpu|paper)(\d+)_seed", info["file"])
        if match:
            info.update(recipe=match.group(1), epochs=int(match.group(2)))
    if dense_epochs is not None:
        info["epochs"] = dense_epochs
    if info.get("epochs") is None:
        raise SystemExit(
            f"Cannot tell how many epochs {path!r} was trained for (no manifest entry, no "
            "'_cpu<N>_' in its name). Pass --dense-epochs."
        )
    info.setdefault("model", info["file"].split("_")[0])
    return info


# ----------------------------------------------------------------------- rows
class FineTuneSteps:
    """The ``fine_tune`` of :func:`tf_precrop.prune_iteratively` here: after each prune,
    evaluate, re-estimate BN statistics, fine-tune (this step's share of
    ``--finetune-epochs``) and evaluate again, recording one ``history`` entry."""

    def __init__(self, args, seed, target, importance, dense_macs, train, val, x_recal):
        from tf_precrop.prune.iterative import split_epochs, step_fractions

        self.args, self.seed, self.importance, self.dense_macs = args, seed, importance, dense_macs
        self.train, self.val, self.x_recal = train, val, x_recal
        self.epochs = split_epochs(args.finetune_epochs, args.steps)
        self.fractions = step_fractions(target, args.steps)
        self.history, self.last_fit, self.seconds, self.recalibration_seconds = [], None, 0.0, None

    def __call__(self, pruned, step):
        import keras

        import tf_precrop
        from tf_precrop import training
        from tf_precrop._outputs import outputs_probabilities

        t_step = time.perf_counter()
        keras.utils.set_random_seed(self.seed)
        x_val, y_val = self.val
        pruned_acc = training.evaluate(pruned, x_val, y_val)
        recal_acc = None
        if len(self.x_recal):
            t_recal = time.perf_counter()
            tf_precrop.recalibrate_batchnorm(pruned, self.x_recal, batch_size=128)
            self.recalibration_seconds = time.perf_counter() - t_recal
            recal_acc = training.evaluate(pruned, x_val, y_val)
        config = finetune_config(self.args, self.seed, self.epochs[step - 1])
        self.last_fit = None
        if config is not None:
            self.last_fit = training.train(pruned, self.train, self.val, config=config, checkpoint=False,
                                           verbose=0)
            pruned = self.last_fit.model
            if self.importance == "taylor" and step < self.args.steps:
                # The fine-tuned model carries the training loss; the next step scores the plain one.
                pruned.compile(loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=not outputs_probabilities(pruned)))
        ft_acc = None if self.last_fit is None else training.evaluate(pruned, x_val, y_val)
        self.history.append(dict(
            target=self.fractions[step - 1], macs_ratio=tf_precrop.profile(pruned).macs / self.dense_macs,
            pruned_val_accuracy=pruned_acc, recalibrated_val_accuracy=recal_acc,
            finetune_epochs=self.epochs[step - 1], finetuned_val_accuracy=ft_acc,
            finetune_seconds=None if self.last_fit is None else self.last_fit.seconds,
        ))
        print(f"  step {step}/{self.args.steps}: {json.dumps(self.history[-1])}", flush=True)
        self.seconds += time.perf_counter() - t_step
        return pruned


def finetune_config(args, seed, epochs=None):
    """The fine-tune recipe of the module docstring (``None`` for 0 epochs)."""
    epochs = args.finetune_epochs if epochs is None else epochs
    if epochs == 0:
        return None
    from tf_precrop import training

    return training.recipe(
        "cpu", epochs=epochs, lr=args.finetune_lr,
        warmup_epochs=args.finetune_warmup, batch_size=args.finetune_batch_size, seed=seed,
    )


def row_key(row):
    ft = row.get("finetune_config")
    ft = None if ft is None else json.dumps({k: v for k, v in ft.items() if k != "seed"}, sort_keys=True)
    return (
        row["dense_file"], row["dense_sha256"], row["seed"], row["budget"], float(row["target"]),
        row["importance"], row["widths_from"], row["finetune_epochs"], ft, row["train_size"],
        row["val_images"], row.get("recalibration_samples", 0), row.get("steps", 1),
    )


def load_rows(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("runs", [])


def save_rows(args, rows):
    from tf_precrop._io import write_json
    from tf_precrop.report import environment

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    meta = dict(
        command=" ".join([os.path.basename(sys.executable)] + sys.argv),
        **environment(), machine=platform.machine(), args=vars(args),
    )
    write_json(args.out, {"meta": meta, "runs": rows})


# ---------------------------------------------------------------------- int8
def tflite_accuracy(path, x, y, num_threads=2):
    """Top-1 accuracy of a ``.tflite`` classifier in LiteRT, one image per invoke."""
    import numpy as np

    from tf_precrop.export.runtime import dequantize_output, load_interpreter, quantize_input

    interpreter = load_interpreter(path, num_threads=num_threads)
    signatures = interpreter.get_signature_list()
    runner = interpreter.get_signature_runner(
        "serving_default" if "serving_default" in signatures else next(iter(signatures))
    )
    ((in_name, in_detail),) = runner.get_input_details().items()
    ((out_name, out_detail),) = runner.get_output_details().items()
    correct = 0
    for i in range(len(x)):
        image = np.asarray(x[i : i + 1], dtype=np.float32)
        logits = dequantize_output(runner(**{in_name: quantize_input(image, in_detail)})[out_name], out_detail)
        correct += int(np.argmax(logits[0]) == int(y[i]))
    return correct / len(x)


def int8_export(model, path, x_cal, x_verify, x_eval, y_eval):
    """Exports ``model`` as int8 TFLite at ``path`` and evaluates it; a dict for the row."""
    from tf_precrop import training
    from tf_precrop.errors import ExportError
    from tf_precrop.export import export_tflite

    t0 = time.perf_counter()
    try:
        result = export_tflite(
            model, path, quantize="int8", representative_data=x_cal,
            num_calibration_samples=len(x_cal), verification_data=x_verify,
            num_verify_samples=len(x_verify),
        )
    except ExportError as e:  # recorded, the sweep goes on
        return dict(error=str(e), seconds=time.perf_counter() - t0)
    export_s = time.perf_counter() - t0
    acc = tflite_accuracy(path, x_eval, y_eval)
    return dict(
        val_accuracy=acc, float_val_accuracy=training.evaluate(model, x_eval, y_eval),
        samples=len(x_eval), size_bytes=result.size_bytes, relative_error=result.relative_error,
        top1_agreement=result.top1_agreement, decisive_top1_agreement=result.decisive_top1_agreement,
        verify_samples=result.num_samples, calibration_samples=len(x_cal),
        export_seconds=export_s, seconds=time.perf_counter() - t0,
    )


def save_keras(model, path):
    """``model`` without optimizer state (a fresh clone), written atomically."""
    from tf_precrop._io import save_model

    return save_model(model, path, include_optimizer=False)


def run_name(row):
    stem = os.path.splitext(row["dense_file"])[0]
    return (
        f"{stem}_prune_{row['importance']}_{row['widths_from']}_{row['budget']}{row['target']:g}"
        f"_ft{row['finetune_epochs']}" + (f"_steps{row['steps']}" if row.get("steps", 1) > 1 else "")
    )


# ----------------------------------------------------------------------- main
def main(argv=None):
    args = parse_args(argv)
    if args.markdown:
        print(markdown(load_rows(args.out), load_rows(args.precrop_results)))
        return 0

    import keras
    import numpy as np

    import tf_precrop
    from tf_precrop import data, training
    from tf_precrop._outputs import outputs_probabilities

    (x, y), _ = data.load_cifar10(args.data, verbose=0)
    (x_tr, y_tr), (x_val, y_val) = data.train_val_split(x, y, val_size=args.val_size, seed=0)
    if args.train_size < len(x_tr):
        per_class = args.train_size // 10
        idx = np.concatenate([np.flatnonzero(y_tr == c)[:per_class] for c in range(10)])
        x_tr, y_tr = x_tr[idx], y_tr[idx]
    if args.limit is not None:
        x_val, y_val = x_val[: args.limit], y_val[: args.limit]
    print(f"train {len(x_tr)} images, validation {len(x_val)} images", flush=True)
    n_int8 = min(args.int8_samples, len(x_val))

    rows = load_rows(args.out)
    done = {row_key(r) for r in rows}
    for seed in args.seeds:
        path = dense_path(args.dense, seed)
        if not os.path.exists(path):
            print(f"skipped seed {seed}: {path} does not exist (train it with cifar_accuracy.py "
                  "--variants dense --recipe cpu --train-size 45000 --save-dir "
                  "benchmarks/results/models)", flush=True)
            continue
        info = dense_info(path, args.dense_epochs)
        digest = sha256(path)
        config = finetune_config(args, seed)
        base = dict(
            dense_file=info["file"], dense_sha256=digest, seed=seed, budget=args.budget,
            finetune_epochs=args.finetune_epochs,
            finetune_config=None if config is None else config.to_dict(),
            train_size=len(x_tr), val_images=len(x_val),
            recalibration_samples=min(args.recalibration_samples, len(x_tr)), steps=args.steps,
        )
        todo = [
            dict(base, target=t, importance=imp, widths_from=wf)
            for t in args.targets for imp in args.importance for wf in args.widths_from
        ]
        todo = [r for r in todo if row_key(r) not in done]
        if not todo:
            continue
        dense = keras.saving.load_model(path)
        # The file keeps its training compile config: a label-smoothed *categorical*
        # loss, which taylor would differentiate and which needs one-hot labels.
        # Taylor scores the plain cross-entropy of the true labels instead.
        dense.compile(loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=not outputs_probabilities(dense)))
        dense_profile = tf_precrop.profile(dense)
        dense_acc = training.evaluate(dense, x_val, y_val)
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(x_tr), min(args.taylor_samples, len(x_tr)), replace=False)
        taylor_data = (x_tr[pick].astype("float32"), y_tr[pick])
        cal = rng.choice(len(x_tr), min(args.calibration_samples, len(x_tr)), replace=False)
        x_cal = x_tr[cal].astype("float32")
        recal = rng.choice(len(x_tr), base["recalibration_samples"], replace=False)
        x_recal = x_tr[recal].astype("float32")
        x_verify = x_val[:NUM_VERIFY].astype("float32")
        print(f"seed {seed}: {path} ({info.get('epochs')} epochs), val accuracy {dense_acc:.4f}",
              flush=True)
        for row in todo:
            t_start = time.perf_counter()
            steps = FineTuneSteps(args, seed, row["target"], row["importance"], dense_profile.macs,
                                  (x_tr, y_tr), (x_val, y_val), x_recal)
            t_prune = time.perf_counter()
            pruned = tf_precrop.prune_iteratively(
                dense, row["target"], args.steps, steps, budget=args.budget,
                importance=row["importance"], data=taylor_data if row["importance"] == "taylor" else None,
                widths_from=row["widths_from"], seed=seed,
            )
            # What prune() took: the whole loop less the steps' evaluation, BN re-estimation and training.
            prune_s = time.perf_counter() - t_prune - steps.seconds
            history, ft = steps.history, steps.last_fit
            last = history[-1]
            pruned_acc, recal_acc, ft_acc = (
                last["pruned_val_accuracy"], last["recalibrated_val_accuracy"], last["finetuned_val_accuracy"]
            )
            recal_s = steps.recalibration_seconds
            prof = tf_precrop.profile(pruned)
            widths = tf_precrop.channel_groups(pruned).widths()
            row.update(
                model=info["model"], dense_path=path, dense_epochs=info["epochs"],
                dense_recipe=info.get("recipe"), dense_train_size=info.get("train_size"),
                dense_recorded_val_accuracy=info.get("recorded_val_accuracy"),
                dense_val_accuracy=dense_acc, pruned_val_accuracy=pruned_acc,
                recalibrated_val_accuracy=recal_acc, recalibration_seconds=recal_s,
                finetuned_val_accuracy=ft_acc,
                finetuned_best_val_accuracy=None if ft is None else ft.best_val_accuracy,
                finetune_history=None if ft is None else {
                    k: [float(v) for v in vs] for k, vs in ft.history.items()
                },
                params=prof.params, macs=prof.macs,
                dense_params=dense_profile.params, dense_macs=dense_profile.macs,
                params_ratio=prof.params / dense_profile.params,
                macs_ratio=prof.macs / dense_profile.macs,
                widths={str(k): int(v) for k, v in widths.items()},
                total_epochs=info["epochs"] + args.finetune_epochs,
                taylor_samples=len(pick) if row["importance"] == "taylor" else None,
                prune_seconds=prune_s,
                finetune_seconds=None if ft is None else sum(h["finetune_seconds"] or 0 for h in history),
                steps_history=history if args.steps > 1 else None,
            )
            name = run_name(row)
            if args.save_dir:
                os.makedirs(args.save_dir, exist_ok=True)
                row["saved_model"] = save_keras(pruned, os.path.join(args.save_dir, name + ".keras"))
            row["int8"] = None
            if args.int8:
                folder = args.save_dir or tempfile.mkdtemp(prefix="prune_trained_")
                tfl = os.path.join(folder, name + "_int8.tflite")
                try:
                    row["int8"] = int8_export(pruned, tfl, x_cal, x_verify, x_val[:n_int8], y_val[:n_int8])
                finally:
                    if not args.save_dir:
                        shutil.rmtree(folder, ignore_errors=True)
                if args.save_dir and os.path.exists(tfl):
                    row["saved_tflite"] = tfl
            row["seconds"] = time.perf_counter() - t_start
            row["command"] = " ".join(["python"] + sys.argv)
            rows.append(row)
            done.add(row_key(row))
            print(json.dumps({k: v for k, v in row.items() if k not in ("widths", "finetune_history", "steps_history")}),
                  flush=True)
            save_rows(args, rows)
    save_rows(args, rows)
    print(markdown(rows, load_rows(args.precrop_results)))
    return 0


# ------------------------------------------------------------------- tables
def precrop_rows(precrop, row):
    """The PreCrop-from-scratch rows at this row's budget, compression and seed (any epochs)."""
    compress = 1.0 / float(row["target"])
    train_size = row.get("dense_train_size") or row["train_size"]
    return [
        r for r in precrop
        if r.get("model") == row.get("model", "resnet20") and r.get("variant") == PRECROP_VARIANT
        and r.get("budget") == row["budget"] and abs(float(r.get("compress", 0)) - compress) < 1e-6
        and r.get("recipe", "short") == "cpu" and r.get("seed") == row["seed"]
        and r.get("train_size") == train_size
    ]


def _pct(value):
    return "–" if value is None else f"{100 * value:.1f}"


def _precrop_cell(matches, total):
    equal = [r for r in matches if r["epochs"] == total]
    if equal:
        return _pct(equal[0]["val_accuracy"]), equal[0]
    others = sorted(matches, key=lambda r: abs(r["epochs"] - total))
    if others:
        return f"({_pct(others[0]['val_accuracy'])} at {others[0]['epochs']} ep)", None
    return "missing", None


def _int8_cell(row):
    q = row.get("int8")
    if not q:
        return "–"
    if "error" in q:
        return "export failed"
    return f"{_pct(q['val_accuracy'])} ({_pct(q['float_val_accuracy'])} fp32, n={q['samples']})"


def _importance_cell(row):
    steps = row.get("steps", 1)
    return row["importance"] if steps == 1 else f"{row['importance']}, {steps} steps"


def markdown(rows, precrop):
    """The per-run table, the mean over seeds, and the missing PreCrop commands."""
    if not rows:
        return "(no runs yet)"
    lines = [
        "| seed | target | importance | widths | MACs kept | params kept | dense | pruned, 0 ep "
        "| BN re-estimated, 0 ep | fine-tuned | int8 | total ep | PreCrop from scratch, same total ep |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups, missing = {}, {}
    order = sorted(rows, key=lambda r: (-float(r["target"]), r["importance"], r["widths_from"],
                                        r["finetune_epochs"], r.get("steps", 1), r["seed"]))
    for r in order:
        total = r["total_epochs"]
        cell, match = _precrop_cell(precrop_rows(precrop, r), total)
        if match is None:
            size = r.get("dense_train_size") or r["train_size"]
            missing.setdefault((r.get("model", "resnet20"), r["budget"], total, size), set()).add(
                (1.0 / float(r["target"]), r["seed"])
            )
        ft = f"{_pct(r['finetuned_val_accuracy'])} ({r['finetune_epochs']} ep)" if r["finetune_epochs"] else "–"
        lines.append(
            f"| {r['seed']} | {r['budget']} {float(r['target']):g} | {_importance_cell(r)} | {r['widths_from']} "
            f"| {_pct(r['macs_ratio'])}% | {_pct(r['params_ratio'])}% | {_pct(r['dense_val_accuracy'])} "
            f"| {_pct(r['pruned_val_accuracy'])} | {_pct(r.get('recalibrated_val_accuracy'))} | {ft} "
            f"| {_int8_cell(r)} | {total} | {cell} |"
        )
        key = (r["budget"], float(r["target"]), _importance_cell(r), r["widths_from"], r["finetune_epochs"],
               total, r.get("recalibration_samples", 0))
        groups.setdefault(key, []).append((r, match))
    lines += [
        "",
        "Mean over seeds (validation accuracy, %):",
        "",
        "| target | importance | widths | seeds | dense | pruned, 0 ep | BN re-estimated, 0 ep "
        "| fine-tuned | int8 | PreCrop from scratch (seeds) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def mean(values):
        values = [v for v in values if v is not None]
        return statistics.mean(values) if values else None

    for (budget, target, imp, wf, ft_epochs, _total, _recal), members in groups.items():
        rs = [m[0] for m in members]
        pc = [m[1]["val_accuracy"] for m in members if m[1] is not None]
        int8 = [r["int8"]["val_accuracy"] for r in rs if r.get("int8") and "val_accuracy" in r["int8"]]
        ft = f"{_pct(mean(r['finetuned_val_accuracy'] for r in rs))} ({ft_epochs} ep)" if ft_epochs else "–"
        lines.append(
            f"| {budget} {target:g} | {imp} | {wf} | {len(rs)} | {_pct(mean(r['dense_val_accuracy'] for r in rs))} "
            f"| {_pct(mean(r['pruned_val_accuracy'] for r in rs))} "
            f"| {_pct(mean(r.get('recalibrated_val_accuracy') for r in rs))} | {ft} | {_pct(mean(int8))} "
            f"| {_pct(mean(pc))} ({len(pc)}) |"
        )
    if missing:
        lines += ["", "PreCrop from scratch at the same total epochs is missing; train it with:", ""]
        for (model, budget, total, size), cells in sorted(missing.items()):
            compress = " ".join(f"{c:g}" for c in sorted({c for c, _ in cells}))
            seeds = " ".join(str(s) for s in sorted({s for _, s in cells}))
            lines.append(
                f"    python benchmarks/cifar_accuracy.py --model {model} --recipe cpu --epochs {total} "
                f"--train-size {size} --variants {PRECROP_VARIANT} --budgets {budget} "
                f"--compress {compress} --seeds {seeds} --save-dir benchmarks/results/models"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
