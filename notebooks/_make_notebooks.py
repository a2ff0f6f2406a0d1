"""Generates the tutorial notebooks in this folder from plain Python.

The notebooks are written with ``nbformat`` from the cell sources below, so
they stay reviewable as code and diff cleanly (fixed cell ids, no outputs).

Usage::

    python notebooks/_make_notebooks.py          # (re)write the .ipynb files
    python notebooks/_make_notebooks.py --check  # exit 1 if any file is stale

Every notebook starts with a title (plus an "Open in Colab" badge once the
repository is on GitHub, see :data:`INSTALL_SOURCE`) and a setup cell that
pip-installs ``tf_precrop`` only inside Colab. ``TF_PRECROP_FAST=1`` in the
environment selects a small FAST mode (at most the 500 CIFAR-10 images that ship
with the package, one epoch, small inputs) that ``tests/test_notebooks.py``
executes; without it the notebooks run the real, Colab-sized experiments.
"""

import argparse
import re
import sys
import textwrap
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

INSTALL_SOURCE = None
"""Where the notebooks' Colab setup cell pip-installs tf_precrop from: the ONE
install setting (edit it here, then run this script).

A pip requirement string: a PyPI name such as ``"tf_precrop[tfmot]"`` once the
package is on PyPI, or a git URL such as
``"tf_precrop[tfmot] @ git+https://github.com/OWNER/REPO"`` (optionally
``...REPO@BRANCH``) once the repository is public. ``None`` while it is
published nowhere (today): in Colab the setup cell then uses an already
installed tf_precrop or stops with a message saying how to install one.
When it is a ``github.com`` git URL, every notebook also gets an "Open in
Colab" badge for ``notebooks/<stem>.ipynb`` on that repository and branch
(default ``main``); otherwise there is no badge, since Colab opens notebooks
from GitHub.
"""

BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
_GITHUB_GIT = re.compile(
    r"git\+https://github\.com/(?P<repo>[\w.-]+/[\w.-]+?)(?:\.git)?(?:@(?P<ref>[\w./-]+))?$"
)


def colab_url(stem, install_source=INSTALL_SOURCE):
    """The Colab address of notebook ``stem``, or ``None`` without a GitHub source.

    Args:
        stem: Notebook file name without ``.ipynb``.
        install_source: A pip requirement (see :data:`INSTALL_SOURCE`) or ``None``.

    Returns:
        ``https://colab.research.google.com/github/OWNER/REPO/blob/BRANCH/notebooks/<stem>.ipynb``
        when ``install_source`` is a ``git+https://github.com/...`` requirement, else ``None``.

    Example:

    >>> colab_url("01_quickstart", "tf_precrop @ git+https://github.com/me/tf_precrop")
    'https://colab.research.google.com/github/me/tf_precrop/blob/main/notebooks/01_quickstart.ipynb'
    """
    if install_source is None:
        return None
    match = _GITHUB_GIT.search(install_source.strip())
    if match is None:
        return None
    ref = match.group("ref") or "main"
    return f"https://colab.research.google.com/github/{match.group('repo')}/blob/{ref}/notebooks/{stem}.ipynb"


def md(text):
    return ("markdown", textwrap.dedent(text).strip("\n"))


def code(text):
    return ("code", textwrap.dedent(text).strip("\n"))


def header(stem, title, intro):
    """Title (+ Colab badge) markdown, then the Colab-only install / FAST-mode cell."""
    url = colab_url(stem)
    if url is not None:
        where = f"[![Open In Colab]({BADGE})]({url})"
    else:
        where = (
            '*Running it:* locally, `pip install -e ".[tfmot]"` in a checkout of the '
            'repository and open this file in Jupyter. There is no "Open in Colab" badge '
            "yet: Colab opens notebooks from GitHub, and the repository is not published. "
            "Once it is, set `INSTALL_SOURCE` in `notebooks/_make_notebooks.py` to "
            '`"tf_precrop[tfmot] @ git+https://github.com/OWNER/REPO"` and rerun that '
            "script: the badge then opens this notebook from "
            f"`github.com/OWNER/REPO/blob/main/notebooks/{stem}.ipynb`."
        )
    return [
        md(f"# {title}\n\n{where}\n\n" + textwrap.dedent(intro).strip("\n")),
        code(
            f"""
            # Setup: installs tf_precrop only when running in Google Colab.
            import os
            import subprocess
            import sys

            # Where pip gets tf_precrop in Colab (set in notebooks/_make_notebooks.py;
            # None: not published yet).
            INSTALL_SOURCE = {INSTALL_SOURCE!r}
            if "google.colab" in sys.modules:
                if INSTALL_SOURCE:
                    subprocess.run(
                        [sys.executable, "-m", "pip", "install", "-q", INSTALL_SOURCE],
                        check=True,
                    )
                else:
                    try:
                        import tf_precrop  # noqa: F401  (e.g. installed from an uploaded checkout)
                    except ImportError:
                        raise RuntimeError(
                            "tf_precrop is not published yet, so this cell cannot pip-install "
                            "it. Upload a checkout and run `pip install -e '.[tfmot]'` in it, "
                            "or set INSTALL_SOURCE to a pip requirement for it."
                        ) from None

            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # quiet: no TensorFlow C++ log lines
            os.environ.setdefault("KERAS_BACKEND", "tensorflow")
            import tensorflow as tf

            tf.get_logger().setLevel("ERROR")  # no "Assets written to ..." lines from exports

            # FAST mode (TF_PRECROP_FAST=1): tiny data (at most the 500 CIFAR-10 images bundled
            # with tf_precrop), one epoch, small inputs; used by the test suite. Leave it unset
            # for the real runs.
            FAST = os.environ.get("TF_PRECROP_FAST") == "1"
            print("FAST mode:", FAST)
            """
        ),
    ]


# --------------------------------------------------------------- 01 quickstart
def quickstart():
    stem = "01_quickstart"
    cells = header(
        stem,
        "PreCropping quickstart: plan, crop and deploy MobileNetV2",
        """
        **PreCropping** (Cai et al., *Structured Pruning is All You Need for Pruning CNNs at
        Initialization*, [arXiv 2203.02549](https://arxiv.org/abs/2203.02549)) prunes a CNN
        *before training*: it scores the weights at initialization, turns the scores into one
        density per layer, and turns the densities into per-layer **channel widths** that meet
        an exact parameter or MAC budget. The result is a plain, smaller dense model: no masks,
        no sparse kernels, and the speed-up shows up on any runtime.

        This notebook takes `keras.applications.MobileNetV2` (random init), plans a crop to
        **30 % of the MACs** with the default data-free method (`"synexp"`, i.e. PreCrop-FLOPs),
        looks at the plan, builds the cropped model, exports both models to TFLite (verified
        against Keras in the LiteRT interpreter) and compares their LiteRT latency.
        """,
    )
    cells += [
        code(
            """
            import keras
            from IPython.display import Image, display

            import tf_precrop
            from tf_precrop.report import plot_plan

            SIZE = 96 if FAST else 224
            dense = keras.applications.MobileNetV2(weights=None, input_shape=(SIZE, SIZE, 3))
            dense_profile = tf_precrop.profile(dense)
            print(dense_profile)
            """
        ),
        md(
            """
            ## 1. Profile

            `tf_precrop.profile` counts parameters (same as `count_params()`) and multiply-
            accumulates per example in every layer with a kernel.
            """
        ),
        code("print(dense_profile.summary())"),
        md(
            """
            ## 2. Plan a crop to 30 % of the MACs

            `tf_precrop.plan` computes the new width of every channel group (channels tied by
            residual additions share one width) without building anything. The summary shows,
            per prunable layer, the width before → after, the target density that the method
            asked for → the density the integer widths achieve, and the cost before → after.
            """
        ),
        code(
            """
            plan = tf_precrop.plan(dense, target=0.3, budget="macs")
            print(plan.summary())
            print(plan)
            """
        ),
        code(
            """
            png = plot_plan(plan, "mobilenetv2_plan.png")
            display(Image(filename=png))
            """
        ),
        md(
            """
            ## 3. Build the cropped model

            `plan.apply()` rebuilds the model with the new widths (fresh initial weights: this
            is pruning *at initialization*; train the cropped model from scratch). A plan is
            plain data: `plan.to_json()` saves it, `Plan.from_json(...).apply(model)` replays it.
            """
        ),
        code(
            """
            small = plan.apply()
            small_profile = tf_precrop.profile(small)
            print(small_profile)
            (p0, p1), (m0, m1) = plan.params, plan.macs
            print(f"params: {p0:,} -> {p1:,} ({p1 / p0:.1%})")
            print(f"MACs:   {m0:,} -> {m1:,} ({m1 / m0:.1%}), within ±1 %: {plan.within_tolerance}")
            assert small_profile.macs == m1 and small.count_params() == p1
            """
        ),
        md(
            """
            ## 4. Export to TFLite and compare LiteRT latency

            `export_tflite` converts through a SavedModel, runs the file in the LiteRT
            interpreter on sample inputs, checks it against Keras (float32: relative error
            ≤ 1e-4) and only then writes it. `benchmark_tflite` times `invoke()` at batch 1.
            (At random initialization MobileNetV2's softmax is nearly uniform, so the check is
            easy here; notebook 03 verifies a trained model, and int8 files too.)
            """
        ),
        code(
            """
            exports = {
                "dense": tf_precrop.export_tflite(dense, "mobilenetv2_dense.tflite"),
                "precrop": tf_precrop.export_tflite(small, "mobilenetv2_precrop.tflite"),
            }
            for name, result in exports.items():
                print(
                    f"{name:8s} {result.size_bytes / 2**20:6.2f} MiB  "
                    f"max |tflite - keras| = {result.max_abs_error:.2e}  "
                    f"top-1 agreement = {result.top1_agreement:.2f}"
                )
            """
        ),
        code(
            """
            RUNS = 20 if FAST else 100
            latency = {
                name: tf_precrop.benchmark_tflite(result.path, num_threads=2, runs=RUNS)
                for name, result in exports.items()
            }
            print(f"{'':8s} {'MACs':>12s} {'params':>10s} {'size MiB':>9s} {'median ms':>10s} {'p90 ms':>8s}")
            for name, prof in (("dense", dense_profile), ("precrop", small_profile)):
                lat, size = latency[name], exports[name].size_bytes / 2**20
                print(
                    f"{name:8s} {prof.macs:12,d} {prof.params:10,d} {size:9.2f} "
                    f"{lat.median_ms:10.2f} {lat.p90_ms:8.2f}"
                )
            speedup = latency["dense"].median_ms / latency["precrop"].median_ms
            print(f"LiteRT speed-up at {m1 / m0:.0%} of the MACs: {speedup:.2f}x")
            """
        ),
        code('print("DONE", f"macs_ratio={m1 / m0:.3f}", f"speedup={speedup:.2f}x")'),
    ]
    return stem, cells


# ------------------------------------------------- 02 PreCrop vs SynFlow on CIFAR
def cifar_comparison():
    stem = "02_cifar10_precrop_vs_synflow"
    cells = header(
        stem,
        "CIFAR-10: PreCrop vs uniform width vs SynFlow at 10× fewer parameters",
        """
        Four ResNet-20s trained with the same short recipe on CIFAR-10:

        | model | how it is made smaller |
        |---|---|
        | dense | not at all (reference) |
        | PreCrop-SynExp | `tf_precrop.crop(..., target=0.1, budget="params")`: per-layer widths from the data-free SynExp densities |
        | uniform width | every layer's width scaled by one factor (`method="uniform_width"`) |
        | SynFlow (unstructured) | SynFlow scores at init, 90 % of the weights masked to zero (same model shape, sparse kernels) |

        The SynFlow baseline keeps the dense shape, so it is no faster to train or run; the two
        cropped models are genuinely 10× smaller dense models. The paper's claim: at the same
        budget, structured PreCrop matches unstructured pruning-at-init accuracy.

        The real run (Colab GPU) trains 30 epochs per model on the full training split; FAST
        mode uses 500 images (400 to train, 100 to validate; the sample that ships with the
        package, so it also runs offline) and a single epoch, so its accuracies are near chance.
        """,
    )
    cells += [
        code(
            """
            import time

            import matplotlib.pyplot as plt
            import numpy as np

            import tf_precrop
            from tf_precrop.data import load_cifar10, train_val_split
            from tf_precrop.models import resnet20
            from tf_precrop.training import TrainConfig, evaluate, train

            LIMIT = 500 if FAST else None  # FAST: the size of the bundled sample
            VAL_SIZE = 100 if FAST else 5000
            EPOCHS = 1 if FAST else 30
            TARGET = 0.1  # 10x parameter compression
            # Every finished epoch is backed up here, so a run cut off by a disconnect carries
            # on where it stopped when you rerun the notebook. On Colab, a folder on your
            # Google Drive also survives a runtime reset.
            BACKUP_DIR = "precrop_backups"

            # A local copy if one is found (offline), else keras.datasets (downloads in Colab),
            # else (offline, no copy) the 500-image sample bundled with tf_precrop, with a warning.
            (x, y), test = load_cifar10("auto", limit=LIMIT, verbose=0)
            (x_train, y_train), (x_val, y_val) = train_val_split(x, y, val_size=VAL_SIZE, seed=0)
            print("train", x_train.shape, "val", x_val.shape, "class counts", np.bincount(y_val))
            """
        ),
        md(
            """
            ## 1. The four models

            All start from `resnet20(normalize=True)` (it takes raw `[0, 255]` images). The
            masked baseline comes from `tf_precrop.baselines.masked_model(model, "synflow", 0.1)`:
            it keeps the top 10 % of the SynFlow scores over all kernels (one global threshold)
            and holds the rest at zero with fixed-mask kernel constraints, which Keras re-applies
            after every optimizer step. Its "nonzero params" also count the BatchNorm and bias
            parameters, which are never masked.
            """
        ),
        code(
            """
            from tf_precrop.baselines import mask_density, masked_model


            def base():
                return resnet20(normalize=True)


            dense = base()
            models = {  # every model starts from fresh initial weights
                "dense": dense,
                "PreCrop-SynExp": tf_precrop.crop(base(), TARGET, budget="params", method="synexp", seed=0),
                "uniform width": tf_precrop.crop(base(), TARGET, budget="params", method="uniform_width"),
                "SynFlow (unstructured)": masked_model(base(), "synflow", TARGET, seed=0, verbose=0),
            }


            def kernel_nonzeros(model):
                # Parameters that are not masked to zero (all of them for dense and cropped models).
                zeros = sum(
                    int(np.sum(w.numpy() == 0)) for w in model.weights if w.path.endswith("kernel")
                )
                return model.count_params() - zeros


            print(f"SynFlow mask keeps {mask_density(models['SynFlow (unstructured)']):.1%} of the kernel weights")
            for name, model in models.items():
                nz = kernel_nonzeros(model)
                print(f"{name:24s} params {model.count_params():8,d}  nonzero {nz:8,d} "
                      f"({nz / dense.count_params():.1%} of dense)  MACs {tf_precrop.profile(model).macs:12,d}")
            """
        ),
        md(
            """
            ## 2. Train with one recipe

            `tf_precrop.training.train`: SGD + momentum 0.9, coupled L2 5e-4, cosine schedule,
            pad-crop-flip augmentation. `images_per_sec` is the training throughput (tracing and
            validation excluded). With `backup_dir`, a model whose training was cut off resumes
            after its last finished epoch, on the same batches it would have seen
            (`resumed_after` in its line).
            """
        ),
        code(
            """
            config = TrainConfig(epochs=EPOCHS, batch_size=128, schedule="cosine", seed=0)
            results = {}
            for name, model in models.items():
                start = time.perf_counter()
                backup = f"{BACKUP_DIR}/{''.join(c if c.isalnum() else '_' for c in name)}"
                r = train(model, (x_train, y_train), (x_val, y_val), config=config, verbose=0,
                          backup_dir=backup)
                results[name] = r
                resumed = f", resumed_after {r.initial_epoch}" if r.initial_epoch else ""
                print(f"{name:24s} val acc {r.val_accuracy:.3f}  {r.images_per_sec or float('nan'):8.0f} img/s "
                      f"({time.perf_counter() - start:.0f} s{resumed})")
            """
        ),
        code(
            """
            rows = []
            for name, r in results.items():
                nz = kernel_nonzeros(r.model)
                acc = r.val_accuracy
                test_acc = None if test is None else evaluate(r.model, *test)
                rows.append((name, nz, acc, test_acc, r.images_per_sec or float("nan")))

            print(f"{'model':24s} {'nonzero params':>14s} {'val acc':>8s} {'test acc':>8s} {'train img/s':>12s}")
            for name, nz, acc, test_acc, ips in rows:
                t = "-" if test_acc is None else f"{test_acc:.3f}"
                print(f"{name:24s} {nz:14,d} {acc:8.3f} {t:>8s} {ips:12.0f}")
            # The masked baseline must still be 10x sparse after training.
            assert kernel_nonzeros(results["SynFlow (unstructured)"].model) < 0.12 * dense.count_params()
            """
        ),
        code(
            """
            names = [r[0] for r in rows]
            colors = ["#888888", "#2f6db3", "#e0a030", "#d1495b"]
            fig, (ax_acc, ax_ips) = plt.subplots(1, 2, figsize=(11, 3.8))
            ax_acc.bar(names, [r[2] for r in rows], color=colors)
            ax_acc.set_ylabel("validation accuracy")
            ax_acc.set_title(f"ResNet-20, {EPOCHS} epoch(s), 10x fewer params")
            ax_ips.bar(names, [r[4] for r in rows], color=colors)
            ax_ips.set_ylabel("training images / s")
            ax_ips.set_title("training throughput")
            for ax in (ax_acc, ax_ips):
                ax.tick_params(axis="x", rotation=20)
            fig.tight_layout()
            fig.savefig("cifar10_precrop_vs_synflow.png", dpi=110)
            plt.show()
            """
        ),
        code(
            """
            best = max(rows[1:], key=lambda r: r[2])
            print("DONE", "; ".join(f"{name}={acc:.3f}" for name, _, acc, _, _ in rows), f"| best compressed: {best[0]}")
            """
        ),
    ]
    return stem, cells


# --------------------------------------------------------------- 03 TFLite
def deploy():
    stem = "03_deploy_tflite"
    cells = header(
        stem,
        "Deploy a PreCropped ResNet-20 to TFLite / LiteRT",
        """
        A cropped model is an ordinary dense Keras model, so every TFLite conversion mode
        applies. This notebook crops ResNet-20 to 30 % of its parameters, trains it briefly and
        exports it four ways:

        | mode | weights | activations | checked against Keras |
        |---|---|---|---|
        | fp32 | float32 | float32 | relative error ≤ 1e-4 |
        | float16 | float16 | float32 | relative error ≤ 1e-2 |
        | dynamic | int8 | float32 (quantized on the fly) | relative error ≤ 5e-2 |
        | int8 | int8 | int8 (calibrated on representative data) | relative error ≤ 0.1, top-1 agreement ≥ 0.95 on decisive samples |

        Every file is verified in the LiteRT interpreter before it is written. FAST mode trains
        on 400 images for one epoch (of the 500 that ship with the package, so it also runs
        offline; 100 validate) and calibrates int8 on random images.
        """,
    )
    cells += [
        code(
            """
            import matplotlib.pyplot as plt
            import numpy as np
            from ai_edge_litert.interpreter import Interpreter

            import tf_precrop
            from tf_precrop.data import load_cifar10, train_val_split
            from tf_precrop.models import resnet20
            from tf_precrop.training import TrainConfig, train

            # FAST: 500 images, the size of the sample bundled with tf_precrop (used offline).
            (x, y), _ = load_cifar10("auto", limit=500 if FAST else None, verbose=0)
            (x_train, y_train), (x_val, y_val) = train_val_split(x, y, val_size=100 if FAST else 5000)

            model = resnet20(normalize=True)
            plan = tf_precrop.plan(model, 0.3, budget="params", seed=0)
            print(plan)
            small = plan.apply()
            result = train(
                small, (x_train, y_train), (x_val, y_val),
                config=TrainConfig(epochs=1 if FAST else 15, schedule="cosine"), verbose=0,
            )
            print(f"Keras val accuracy: {result.val_accuracy:.3f}")
            """
        ),
        md(
            """
            ## 1. Export in four modes

            int8 calibration needs *representative data*: a few hundred real input images
            (raw `[0, 255]` floats here, because the model normalizes inside). In FAST mode
            random images stand in.
            """
        ),
        code(
            """
            rng = np.random.default_rng(0)
            if FAST:
                representative = rng.uniform(0, 255, size=(64, 32, 32, 3)).astype("float32")
            else:
                representative = x_train[rng.choice(len(x_train), 256, replace=False)].astype("float32")

            exports = {}
            for mode in (None, "float16", "dynamic", "int8"):
                name = mode or "fp32"
                exports[name] = tf_precrop.export_tflite(
                    small, f"resnet20_precrop_{name}.tflite", quantize=mode,
                    representative_data=representative,
                )
                print(name, "written and verified:", exports[name].size_bytes, "bytes")
            """
        ),
        md(
            """
            ## 2. Size, error, agreement, latency and accuracy

            `max_abs_error` and `top1_agreement` compare the file with the Keras model on the
            verification samples; `benchmark_tflite` times batch-1 `invoke()` with 2 threads;
            the last column runs the whole validation split through each file.
            """
        ),
        code(
            """
            def tflite_accuracy(path, images, labels, batch=100):
                interpreter = Interpreter(model_path=path, num_threads=2)
                inp = interpreter.get_input_details()[0]
                out = interpreter.get_output_details()[0]
                correct = 0
                for i in range(0, len(images), batch):
                    chunk = images[i:i + batch].astype("float32")
                    interpreter.resize_tensor_input(inp["index"], chunk.shape)
                    interpreter.allocate_tensors()
                    interpreter.set_tensor(inp["index"], chunk)
                    interpreter.invoke()
                    logits = interpreter.get_tensor(out["index"])
                    correct += int(np.sum(np.argmax(logits, axis=-1) == labels[i:i + batch]))
                return correct / len(images)


            RUNS = 20 if FAST else 100
            table = []
            for name, e in exports.items():
                lat = tf_precrop.benchmark_tflite(e.path, num_threads=2, runs=RUNS)
                acc = tflite_accuracy(e.path, x_val, y_val)
                table.append((name, e.size_bytes / 1024, e.max_abs_error, e.top1_agreement, lat.median_ms, acc))

            print(f"{'mode':8s} {'size KiB':>9s} {'max abs err':>12s} {'top-1 agree':>12s} {'median ms':>10s} {'val acc':>8s}")
            for name, kib, err, agree, ms, acc in table:
                print(f"{name:8s} {kib:9.1f} {err:12.2e} {agree:12.3f} {ms:10.3f} {acc:8.3f}")
            """
        ),
        code(
            """
            names = [row[0] for row in table]
            fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
            for ax, col, label in zip(axes, (1, 4, 5), ("size (KiB)", "median latency (ms)", "val accuracy"), strict=True):
                ax.bar(names, [row[col] for row in table], color="#2f6db3")
                ax.set_title(label)
            fig.suptitle(f"PreCropped ResNet-20 ({plan.params[1]:,} params) in LiteRT")
            fig.tight_layout()
            fig.savefig("resnet20_tflite_modes.png", dpi=110)
            plt.show()
            """
        ),
        code(
            """
            ratio = exports["fp32"].size_bytes / exports["int8"].size_bytes
            int8 = exports["int8"]
            # Unformatted on purpose: None (no decisive sample) must not crash the line.
            print("DONE", f"int8 is {ratio:.1f}x smaller than fp32,",
                  f"decisive_top1_agreement={int8.decisive_top1_agreement}",
                  f"num_decisive={int8.num_decisive}")
            """
        ),
    ]
    return stem, cells


# --------------------------------------------------------------- 04 QAT
def qat():
    stem = "04_qat_with_tfmot"
    cells = header(
        stem,
        "Quantization-aware training of a PreCropped model with TFMOT",
        """
        PreCropping and quantization compose: crop the widths first (fewer channels), then
        quantize what is left (int8 weights and activations).

        **TFMOT only accepts tf_keras (Keras 2) models.** The TensorFlow Model Optimization
        Toolkit wraps layers of the legacy `tf_keras` package and rejects Keras 3 models, so the
        model here is built with `tf_precrop.models.resnet20(line="tf_keras")`; `tf_precrop`
        plans, crops and exports tf_keras models exactly like Keras 3 ones. Importing TFMOT also
        switches the process to legacy Keras (`TF_USE_LEGACY_KERAS=1`), so this notebook uses
        **only tf_keras** — keep Keras 3 work in a separate process (notebooks 01–03).

        TFMOT also has no quantize config for the `Rescaling`/`Normalization` input layers of
        `resnet20(normalize=True)`, so this model is built with `normalize=False` and is fed
        images normalized with the CIFAR-10 mean/std outside the model.

        Steps: build → crop to 30 % of the parameters → short float training → QAT fine-tune
        (`qat_finetune_and_export`: fake-quant wrappers, range calibration, a gentle Adam
        fine-tune) → full-integer int8 `.tflite`, verified against the QAT model in LiteRT.
        """,
    )
    cells += [
        code(
            """
            import numpy as np
            import tf_keras

            import tf_precrop
            from tf_precrop.data import CIFAR10_MEAN, CIFAR10_STD, load_cifar10, train_val_split
            from tf_precrop.export import benchmark_tflite, qat_finetune_and_export
            from tf_precrop.models import resnet20
            from tf_precrop.training import TrainConfig, evaluate, train

            # FAST: 600 images (offline, the bundled sample's 500). The int8 check of a QAT
            # model fine-tuned this briefly is at the edge of its tolerance on 400 images.
            (x, y), _ = load_cifar10("auto", limit=600 if FAST else None, verbose=0)
            (x_train, y_train), (x_val, y_val) = train_val_split(x, y, val_size=100 if FAST else 5000)


            def normalized(images):
                # TFMOT cannot quantize the in-model `Rescaling`/`Normalization` layers of
                # resnet20(normalize=True), so this model takes normalized images instead.
                mean = np.array(CIFAR10_MEAN, "float32") * 255
                std = np.array(CIFAR10_STD, "float32") * 255
                return (images.astype("float32") - mean) / std


            model = resnet20(line="tf_keras", normalize=False)
            assert isinstance(model, tf_keras.Model)
            small = tf_precrop.crop(model, 0.3, budget="params", seed=0)
            print(f"{model.count_params():,} -> {small.count_params():,} params")
            """
        ),
        md("## 1. Train the cropped float model (from scratch, as pruning at init intends)"),
        code(
            """
            result = train(
                small, (x_train, y_train), (x_val, y_val),
                # FAST: 10 epochs at batch 32 on the small subset, enough to lift it off
                # chance (about 25 %); a chance-level model may have no decisive sample
                # for the int8 check below.
                config=TrainConfig(
                    epochs=10 if FAST else 15, batch_size=32 if FAST else 128,
                    schedule="cosine", normalize=True,
                ),
                verbose=0,
            )
            x_val_n = normalized(x_val)
            float_acc = evaluate(result.model, x_val_n, y_val)
            print(f"float val accuracy: {float_acc:.3f}")
            """
        ),
        md(
            """
            ## 2. QAT fine-tune and int8 export

            `qat_finetune_and_export` imports TFMOT lazily (only here), wraps the model with
            `tfmot.quantization.keras.quantize_model`, sets the activation ranges from the data,
            fine-tunes, converts to full-integer int8 and verifies it against the QAT model:
            relative error ≤ 0.1 and top-1 agreement ≥ 0.95 on the *decisive* samples (top-1
            margin ≥ 5 % of the logit scale; near-ties may flip in any faithful int8 file).
            """
        ),
        code(
            """
            n_ft = 512 if FAST else 10000
            x_ft = normalized(x_train[:n_ft])
            y_ft = y_train[:n_ft]
            qat_model, export = qat_finetune_and_export(
                result.model, x_ft, y_ft, "resnet20_precrop_qat_int8.tflite",
                epochs=1 if FAST else 2, batch_size=64, num_verify_samples=256,
            )
            qat_acc = evaluate(qat_model, x_val_n, y_val)
            print(f"QAT (fake-quant) val accuracy: {qat_acc:.3f}")
            decisive = (
                "no decisive sample: the model is too unsure to judge its int8 top-1"
                if export.decisive_top1_agreement is None
                else f"{export.decisive_top1_agreement:.3f} on its {export.num_decisive} decisive samples"
            )
            print(f"int8 file: {export.size_bytes / 1024:.1f} KiB, "
                  f"top-1 agreement with the QAT model {export.top1_agreement:.3f} ({decisive})")
            """
        ),
        code(
            """
            from ai_edge_litert.interpreter import Interpreter

            # The whole validation split through the int8 file (float inputs and outputs;
            # quantization happens inside), 100 images per invoke().
            interpreter = Interpreter(model_path=export.path, num_threads=2)
            inp = interpreter.get_input_details()[0]
            out = interpreter.get_output_details()[0]
            correct = 0
            for i in range(0, len(x_val_n), 100):
                chunk = x_val_n[i:i + 100]
                interpreter.resize_tensor_input(inp["index"], chunk.shape)
                interpreter.allocate_tensors()
                interpreter.set_tensor(inp["index"], chunk)
                interpreter.invoke()
                correct += int(np.sum(np.argmax(interpreter.get_tensor(out["index"]), -1) == y_val[i:i + 100]))
            int8_acc = correct / len(x_val_n)
            latency = benchmark_tflite(export.path, num_threads=2, runs=20 if FAST else 100)
            print(f"{'':14s} {'val acc':>8s}")
            for name, acc in (("float", float_acc), ("QAT", qat_acc), ("int8 TFLite", int8_acc)):
                print(f"{name:14s} {acc:8.3f}")
            print(f"int8 LiteRT latency: {latency.median_ms:.3f} ms (median, batch 1, 2 threads)")
            """
        ),
        code(
            """
            # Unformatted on purpose: None (no decisive sample) must not crash the line.
            print("DONE", f"int8_decisive_top1_agreement={export.decisive_top1_agreement}",
                  f"num_decisive={export.num_decisive} int8_val_acc={int8_acc:.3f}")
            """
        ),
    ]
    return stem, cells



# ------------------------------------------------------------- 05 prune
def prune_trained():
    stem = "05_prune_trained_model"
    cells = header(
        stem,
        "Prune a trained model and keep its weights",
        """
        `tf_precrop.crop` rebuilds a model with fresh weights (pruning at initialisation).
        `tf_precrop.prune` starts from a **trained** model: it chooses which channels to keep
        in every channel group (residual adds, concatenations and SE gates keep consistent
        indices), copies their trained weights, and returns a smaller dense model that needs
        only a short fine-tune. This notebook trains ResNet-20, prunes it to half its MACs by
        L1 importance, fine-tunes it, compares it with PreCrop trained from scratch for the
        same total epochs, and exports the pruned model to an int8 TFLite file calibrated on
        real training images and verified on held-back validation images.

        FAST mode trains on 400 images (of the 500 that ship with the package, so it runs
        offline) for one epoch per stage; set `EPOCHS` higher on a GPU.
        """,
    )
    cells += [
        code(
            """
            import tf_precrop
            from tf_precrop.data import load_cifar10, train_val_split
            from tf_precrop.models import resnet20
            from tf_precrop.training import TrainConfig, evaluate, train

            EPOCHS = 1 if FAST else 20          # dense training
            FINETUNE = 1 if FAST else 5         # after pruning
            (x, y), _ = load_cifar10("auto", limit=500 if FAST else None, verbose=0)
            (x_train, y_train), (x_val, y_val) = train_val_split(x, y, val_size=100 if FAST else 5000)

            dense = resnet20(normalize=True)
            train(dense, (x_train, y_train), (x_val, y_val), verbose=0,
                  config=TrainConfig(epochs=EPOCHS, schedule="cosine", seed=0))
            dense_acc = evaluate(dense, x_val, y_val)
            print(f"dense: {dense.count_params():,} params, val accuracy {dense_acc:.3f}")
            """
        ),
        md(
            """
            ## 1. Prune to half the MACs, keeping the trained weights

            `importance="l1"` ranks each channel by the mean |w| of every weight slice coupled to
            it (its filters, the next layers' input rows); zero channels go first, ties keep
            the lower index. The input model is not modified.

            The pruned model keeps the dense model's BatchNormalization statistics, which
            no longer match its activations. `tf_precrop.recalibrate_batchnorm` measures them
            again on a few thousand training images (forward passes only; it updates the
            pruned model in place, as `fit` would), which recovers much of the accuracy
            before any fine-tuning.
            """
        ),
        code(
            """
            pruned = tf_precrop.prune(dense, 0.5, budget="macs", importance="l1")
            before, after = tf_precrop.profile(dense), tf_precrop.profile(pruned)
            print(f"MACs {before.macs:,} -> {after.macs:,} ({after.macs / before.macs:.1%})")
            pruned_acc = evaluate(pruned, x_val, y_val)
            tf_precrop.recalibrate_batchnorm(pruned, x_train[:4096])
            recalibrated_acc = evaluate(pruned, x_val, y_val)
            train(pruned, (x_train, y_train), (x_val, y_val), verbose=0,
                  config=TrainConfig(epochs=FINETUNE, lr=0.01, schedule="cosine", seed=0))
            finetuned_acc = evaluate(pruned, x_val, y_val)
            print(f"pruned: {pruned_acc:.3f} as it is, {recalibrated_acc:.3f} with BN statistics "
                  f"re-estimated, {finetuned_acc:.3f} after {FINETUNE} fine-tune epochs")
            """
        ),
        md(
            """
            ## 2. Against PreCrop from scratch at the same MACs and total epochs
            """
        ),
        code(
            """
            scratch = tf_precrop.crop(resnet20(normalize=True), 0.5, budget="macs", seed=0)
            train(scratch, (x_train, y_train), (x_val, y_val), verbose=0,
                  config=TrainConfig(epochs=EPOCHS + FINETUNE, schedule="cosine", seed=0))
            scratch_acc = evaluate(scratch, x_val, y_val)
            print(f"PreCrop from scratch ({EPOCHS + FINETUNE} epochs): {scratch_acc:.3f}")
            """
        ),
        md(
            """
            ## 3. int8 TFLite, calibrated on real images, verified on held-back ones

            The file must keep the top-1 class of at least 95 % of the decisive held-back
            images, and its worst logit error must stay within 0.1 of the logit scale. A
            network trained for a single epoch (FAST mode) has widely spread logits, and its
            worst-sample error reaches 0.15–0.2 with every decisive top-1 intact, so FAST
            mode raises only that error bound, to 0.3; the top-1 gate stays as it is.
            """
        ),
        code(
            """
            calibration = x_train[:256].astype("float32")
            held_back = x_val[:64].astype("float32")
            export = tf_precrop.export_tflite(
                pruned, "resnet20_pruned_int8.tflite", quantize="int8",
                representative_data=calibration, verification_data=held_back,
                num_verify_samples=len(held_back), tolerance=0.3 if FAST else None,
            )
            print("written and verified:", export.size_bytes, "bytes;",
                  f"relative error {export.relative_error:.3f},",
                  f"decisive top-1 agreement {export.decisive_top1_agreement}",
                  f"on {export.num_decisive} decisive samples")
            print("DONE", f"dense={dense_acc:.3f} pruned={pruned_acc:.3f} recalibrated={recalibrated_acc:.3f}",
                  f"finetuned={finetuned_acc:.3f}",
                  f"scratch={scratch_acc:.3f} macs_ratio={after.macs / before.macs:.3f}")
            """
        ),
    ]
    return stem, cells


NOTEBOOKS = (quickstart, cifar_comparison, deploy, qat, prune_trained)


def build(stem, cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "accelerator": "GPU",
        "colab": {"name": f"{stem}.ipynb", "provenance": []},
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for i, (kind, source) in enumerate(cells):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        nb.cells.append(make(source, id=f"{stem[:2]}-{i:02d}"))
    nbformat.validate(nb)
    return nb


def render(nb):
    return nbformat.writes(nb) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check the files are up to date")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: here)")
    args = parser.parse_args(argv)
    stale = []
    for make in NOTEBOOKS:
        stem, cells = make()
        text = render(build(stem, cells))
        path = args.out / f"{stem}.ipynb"
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
            print("wrote", path)
    if stale:
        print("stale notebooks (run python notebooks/_make_notebooks.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
