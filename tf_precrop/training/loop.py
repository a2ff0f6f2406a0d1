"""The training loop: :func:`train` and the :class:`TrainResult` it returns."""

import contextlib
import dataclasses
import os
import sys
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from tf_precrop._outputs import outputs_probabilities
from tf_precrop.backend import line_of
from tf_precrop.training.backup import TrainingBackup
from tf_precrop.training.callbacks import _callback_base, _make_callbacks, _write_json
from tf_precrop.training.config import TrainConfig
from tf_precrop.training.datasets import _eval_dataset, _one_hot, _train_dataset
from tf_precrop.training.penalty import _kernel_l2
from tf_precrop.training.schedules import make_lr_schedule


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: The trained model (the one built by ``model_fn`` if given).
        history: ``{metric: [value per epoch]}`` (``loss``, ``accuracy``,
            ``val_loss``, ``val_accuracy``, ``learning_rate``). ``loss``
            includes the L2 penalty.
        val_accuracy: Validation accuracy after the last epoch (``None``
            without validation data).
        best_val_accuracy: Best validation accuracy over the epochs.
        images_per_sec: Training throughput, measured over epochs 2.. (or,
            for a single epoch, over its steps after the first), so tracing
            and validation are excluded.
        peak_memory_bytes: Peak accelerator memory during training
            (``tf.config.experimental.get_memory_info``, max over GPUs), or on
            CPU the process's peak resident set size so far (which includes
            everything loaded before training); ``None`` if unavailable.
        memory_source: ``"gpu_peak"``, ``"process_max_rss"`` or ``None``.
        seconds: Wall time of the whole call.
        steps_per_epoch: Optimizer steps per epoch.
        config: The :class:`TrainConfig` used.
        log_dir: Where logs and checkpoints went (``None``: nowhere).
        checkpoint_path: The ``.keras`` checkpoint, if one was written.
        initial_epoch: Epochs restored from ``backup_dir`` (0: none). The
            history holds every epoch; ``images_per_sec`` and ``seconds``
            cover only this call.
    """

    model: object
    history: dict
    val_accuracy: float | None
    best_val_accuracy: float | None
    images_per_sec: float | None
    peak_memory_bytes: int | None
    memory_source: str | None
    seconds: float
    steps_per_epoch: int
    config: TrainConfig
    log_dir: str | None = None
    checkpoint_path: str | None = None
    initial_epoch: int = 0

    def __str__(self):
        epochs = len(next(iter(self.history.values()), []))
        parts = [f"epochs={epochs}"]
        if self.initial_epoch:
            parts.append(f"resumed_after={self.initial_epoch}")
        if self.val_accuracy is not None:
            parts.append(
                f"val_accuracy={self.val_accuracy:.4f} (best {self.best_val_accuracy:.4f})"
            )
        if self.images_per_sec is not None:
            parts.append(f"images/s={self.images_per_sec:.0f}")
        if self.peak_memory_bytes is not None:
            parts.append(
                f"peak_memory={self.peak_memory_bytes / 2**20:.0f} MiB ({self.memory_source})"
            )
        parts.append(f"seconds={self.seconds:.1f}")
        if self.checkpoint_path:
            parts.append(f"checkpoint={self.checkpoint_path}")
        return f"TrainResult({', '.join(parts)})"

    def to_dict(self):
        """The result without the model, as a JSON-able dict."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        d["config"] = self.config.to_dict()
        return d


def train(
    model=None,
    train_data=None,
    val_data=None,
    config=None,
    strategy=None,
    log_dir=None,
    checkpoint=True,
    verbose=1,
    model_fn=None,
    backup_dir=None,
):
    """Trains a classifier with the standard CIFAR recipe of ``config``.

    The model is (re)compiled with SGD + momentum, the lr schedule of
    :func:`make_lr_schedule`, the coupled L2 penalty on kernels,
    ``SparseCategoricalCrossentropy`` (``from_logits`` unless the output
    layer applies softmax, also when that layer is inside a nested model;
    ``CategoricalCrossentropy`` on one-hot labels when
    ``label_smoothing > 0``) and an ``"accuracy"`` metric, then fitted.
    Kernel constraints (the masks of masked baselines) are kept: Keras applies
    them after every update.

    Args:
        model: A built Keras 3 (or tf_keras) model. Mutually exclusive with
            ``model_fn``.
        train_data: ``(x, y)`` arrays (``uint8`` images ``(N, H, W, C)``,
            integer labels ``(N,)``; fed as the
            :func:`~tf_precrop.data.cifar10_stream` of ``config.seed``: a new
            shuffle every pass, augmentation, drop remainder, and every batch
            a function of its step, so a resumed run sees the same batches)
            or a ready batched ``tf.data.Dataset`` of ``(images, labels)``
            batches of ``config.batch_size``.
        val_data: Same kinds as ``train_data`` (no shuffle or augmentation),
            or ``None``.
        config: A :class:`TrainConfig` (default: ``TrainConfig()``, the
            160-epoch paper recipe).
        strategy: A ``tf.distribute.Strategy``, or ``None``. Its variables
            must be created inside ``strategy.scope()``: pass ``model_fn``
            and :func:`train` builds and compiles the model in the scope, or
            pass a ``model`` you built in that scope yourself.
            ``config.batch_size`` is the global batch.
        log_dir: Folder for ``history.csv`` (CSVLogger), ``history.json``
            (config + per-epoch logs, rewritten every epoch),
            ``results.json`` (the :class:`TrainResult` without model) and the
            checkpoint. ``None`` writes nothing.
        checkpoint: With a ``log_dir``, save ``best.keras`` (best
            ``val_accuracy``; the whole model with optimizer state) or,
            without validation data, ``last.keras`` after every epoch.
        verbose: Passed to ``model.fit`` (0 silent, 1 progress bar, 2 one
            line per epoch).
        model_fn: A zero-argument callable returning a built model, called
            (after seeding, inside ``strategy.scope()`` and under the
            mixed-precision policy when configured). Use it with
            ``strategy`` or ``mixed_precision``.
        backup_dir: A folder for the state of every finished epoch (weights
            with the optimizer state, logs, config; see
            :mod:`~tf_precrop.training.backup`), or ``None``. If it holds the
            state of an interrupted call with the same config, this call
            resumes it: it restores the weights and optimizer, moves the
            training data on by the finished epochs (same order and
            augmentation as an uninterrupted run) and trains the rest. It is
            emptied when the call finishes. Keras 3 models only. A backup of
            another config or architecture raises ``ValueError``.

    Returns:
        A :class:`TrainResult`.

    Example:

    >>> from tf_precrop import models
    >>> from tf_precrop.data import load_cifar10, train_val_split
    >>> from tf_precrop.training import TrainConfig
    >>> (x, y), _ = load_cifar10("sample", verbose=0)          # 500 images
    >>> (xt, yt), (xv, yv) = train_val_split(x, y, val_size=100)
    >>> model = models.resnet20(normalize=True, width=0.25)
    >>> result = train(model, (xt, yt), (xv, yv), verbose=0,
    ...                config=TrainConfig(epochs=1, batch_size=100, schedule="cosine"))
    >>> len(result.history["loss"]), 0.0 <= result.val_accuracy <= 1.0
    (1, True)

    A long run that may be interrupted (a Colab runtime that disconnects):
    rerun the same cell and it carries on after the last finished epoch.

    >>> import tempfile
    >>> run_dir = tempfile.mkdtemp()
    >>> result = train(model, (xt, yt), (xv, yv), verbose=0, backup_dir=run_dir,
    ...                config=TrainConfig(epochs=2, batch_size=100, schedule="cosine"))
    >>> result.initial_epoch, len(result.history["loss"])  # nothing to resume here
    (0, 2)
    """
    start = time.perf_counter()
    config = _check_arguments(model, train_data, config, model_fn)
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        if model_fn is not None:
            with _mixed_policy(config.mixed_precision):
                model = model_fn()
        line = line_of(model)
        _check_model(model, line, config, strategy)
        backup = None if backup_dir is None else TrainingBackup(backup_dir, config, line)
        initial_epoch = 0 if backup is None else backup.epochs_done
        train_ds, steps_per_epoch, images_per_step, fit_steps = _train_dataset(
            train_data, config, initial_epoch, _stream_seed(config, backup)
        )
        val_ds = None if val_data is None else _eval_dataset(val_data, config)
        loss, train_ds, val_ds = _loss_and_labels(model, line, config, train_ds, val_ds)
        schedule = _compile(model, line, config, loss, steps_per_epoch)
        restored = [] if backup is None else list(backup.rows)
        if initial_epoch:
            backup.restore(model)
            if isinstance(train_data, tf.data.Dataset):
                train_ds = _resume_ready_dataset(train_ds, initial_epoch, config, steps_per_epoch)

    log_dir = None if log_dir is None else os.fspath(log_dir)
    callbacks, throughput, checkpoint_path = _callbacks(
        line, schedule, images_per_step, config, log_dir, checkpoint, val_ds is not None, restored
    )
    if backup is not None:
        callbacks.append(backup.callback(_callback_base(line), callbacks[2]))
    history, peak, memory_source = _fit(
        model, line, config, train_ds, val_ds, callbacks, verbose, fit_steps, initial_epoch
    )
    history = _with_restored(history, restored)
    if backup is not None:
        backup.clear()
    val_acc = history.get("val_accuracy")
    result = TrainResult(
        model=model,
        history=history,
        val_accuracy=val_acc[-1] if val_acc else None,
        best_val_accuracy=max(val_acc) if val_acc else None,
        images_per_sec=throughput.images_per_second(),
        peak_memory_bytes=peak,
        memory_source=memory_source,
        seconds=time.perf_counter() - start,
        steps_per_epoch=steps_per_epoch,
        config=config,
        log_dir=log_dir,
        checkpoint_path=checkpoint_path
        if checkpoint_path and os.path.exists(checkpoint_path)
        else None,
        initial_epoch=initial_epoch,
    )
    if log_dir is not None:
        _write_json(os.path.join(log_dir, "results.json"), result.to_dict())
    return result


def _check_arguments(model, train_data, config, model_fn):
    """The config to use (default ``TrainConfig()``), after checking :func:`train`'s arguments."""
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(
            f"`config` must be a TrainConfig. Received: config of type {type(config).__name__}"
        )
    if (model is None) == (model_fn is None):
        raise ValueError(
            "Pass exactly one of `model` (a built model) and `model_fn` (a "
            "zero-argument callable building it, needed to build under a "
            f"strategy scope). Received: model={_short(model)}, model_fn={_short(model_fn)}"
        )
    if model_fn is not None and not callable(model_fn):
        raise TypeError(f"`model_fn` must be callable. Received: model_fn={model_fn!r}")
    if train_data is None:
        raise ValueError("`train_data` is required. Received: train_data=None")
    return config


def _loss_and_labels(model, line, config, train_ds, val_ds):
    """``(loss, train_ds, val_ds)``: the cross-entropy, with one-hot labels when smoothing."""
    from_logits = not outputs_probabilities(model)
    losses = line.keras.losses
    if config.label_smoothing <= 0:
        return losses.SparseCategoricalCrossentropy(from_logits=from_logits), train_ds, val_ds
    num_classes = int(model.outputs[0].shape[-1])
    train_ds = _one_hot(train_ds, num_classes)
    val_ds = None if val_ds is None else _one_hot(val_ds, num_classes)
    loss = losses.CategoricalCrossentropy(
        from_logits=from_logits, label_smoothing=config.label_smoothing
    )
    return loss, train_ds, val_ds


def _compile(model, line, config, loss, steps_per_epoch):
    """Compiles ``model`` with SGD on the schedule of ``config``; returns the schedule."""
    schedule = make_lr_schedule(config, steps_per_epoch, line)
    optimizer = line.keras.optimizers.SGD(
        learning_rate=schedule, momentum=config.momentum, nesterov=config.nesterov
    )
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    return schedule


def _callbacks(line, schedule, images_per_step, config, log_dir, checkpoint, validated, restored):
    """``(callbacks, the throughput meter among them, checkpoint path or None)``.

    The first three are the lr logger, the throughput meter and the JSON
    history. With a ``log_dir`` (created here): a CSV log and, with
    ``checkpoint``, a ``best.keras`` (``validated``: there is validation data)
    or ``last.keras`` checkpoint. ``restored``: the logs of epochs restored from
    a backup; the CSV log is appended to and ``best.keras`` is replaced only by
    a better epoch than those.
    """
    json_path = None if log_dir is None else os.path.join(log_dir, "history.json")
    callbacks = list(
        _make_callbacks(line, schedule, images_per_step, json_path, config, restored)
    )
    throughput = callbacks[1]
    if log_dir is None:
        return callbacks, throughput, None
    os.makedirs(log_dir, exist_ok=True)
    keras_callbacks = line.keras.callbacks
    callbacks.append(
        keras_callbacks.CSVLogger(os.path.join(log_dir, "history.csv"), append=bool(restored))
    )
    if not checkpoint:
        return callbacks, throughput, None
    if validated:
        path = os.path.join(log_dir, "best.keras")
        best = keras_callbacks.ModelCheckpoint(
            path, monitor="val_accuracy", mode="max", save_best_only=True
        )
        previous = [r["val_accuracy"] for r in restored if "val_accuracy" in r]
        if previous and os.path.exists(path):
            best.best = max(previous)
        callbacks.append(best)
    else:
        path = os.path.join(log_dir, "last.keras")
        callbacks.append(keras_callbacks.ModelCheckpoint(path))
    return callbacks, throughput, path


def _fit(model, line, config, train_ds, val_ds, callbacks, verbose, steps_per_epoch, initial_epoch):
    """Fits under the L2 penalty; ``(history as floats, peak memory, its source)``."""
    gpus = _reset_gpu_memory_stats()
    with _kernel_l2(model, line, config.weight_decay):
        try:
            history = model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=config.epochs,
                initial_epoch=initial_epoch,
                steps_per_epoch=steps_per_epoch,
                callbacks=callbacks,
                verbose=verbose,
                shuffle=False,  # the pipeline shuffles
            )
        finally:
            # The traced steps hold the penalty; make the next fit/evaluate re-trace.
            model.train_function = None
            model.test_function = None
    peak, memory_source = _peak_memory(gpus)
    hist = {k: [float(v) for v in values] for k, values in history.history.items()}
    return hist, peak, memory_source


def _stream_seed(config, backup):
    """The seed of the training stream: ``config.seed``, else the interrupted run's, else a new one."""
    if config.seed is not None:
        return config.seed
    if backup is not None and backup.stream_seed is not None:
        return backup.stream_seed
    seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    if backup is not None:
        backup.stream_seed = seed
    return seed


def _resume_ready_dataset(train_ds, epochs_done, config, steps_per_epoch):
    """A ready ``tf.data.Dataset`` moved on by ``epochs_done`` epochs, where that is exact.

    With ``config.steps_per_epoch`` set, ``model.fit`` keeps one iterator over
    the repeated dataset, so skipping the finished steps (which computes those
    batches once) gives the uninterrupted run's batches. Without it, Keras
    opens iterators per epoch in ways its versions differ on, so the dataset
    is used as it is, with a warning.
    """
    if config.steps_per_epoch is not None:
        return train_ds.skip(epochs_done * steps_per_epoch)
    warnings.warn(
        f"Resuming after {epochs_done} epochs on a ready tf.data.Dataset: the "
        "remaining epochs see the dataset's next shuffles, not those of an "
        "uninterrupted run. For an exact resume pass (x, y) arrays (train then "
        "uses tf_precrop.data.cifar10_stream) or set `config.steps_per_epoch`.",
        stacklevel=3,
    )
    return train_ds


def _with_restored(history, restored):
    """``history`` with the restored epochs' logs in front (every epoch, in order)."""
    if not restored:
        return history
    keys = list(history) or [k for k in restored[0] if k != "epoch"]
    return {
        k: [float(r.get(k, "nan")) for r in restored] + history.get(k, []) for k in keys
    }


def _short(obj):
    return "None" if obj is None else f"<{type(obj).__name__}>"


@contextlib.contextmanager
def _mixed_policy(enabled):
    """Sets the mixed_float16 policy (both Keras lines if loaded), then restores it."""
    if not enabled:
        yield
        return
    previous = keras.mixed_precision.dtype_policy()
    tk = sys.modules.get("tf_keras")
    tk_previous = tk.mixed_precision.global_policy() if tk is not None else None
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    if tk is not None:
        tk.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
        if tk is not None:
            tk.mixed_precision.set_global_policy(tk_previous)


def _check_model(model, line, config, strategy):
    if not line.is_model(model):
        raise TypeError(
            "`model` (or what `model_fn` returned) must be a Keras model. "
            f"Received: {type(model).__module__}.{type(model).__name__}"
        )
    if not model.built or not model.trainable_weights:
        raise ValueError(
            "The model must be built and have trainable weights. Expected a "
            "model started with `keras.Input(...)` or built with "
            f"`model.build(input_shape)`. Received: model.built={model.built}, "
            f"{len(model.trainable_weights)} trainable weights"
        )
    if config.mixed_precision:
        compute = getattr(model, "compute_dtype", None)
        if compute not in ("float16", "bfloat16"):
            raise ValueError(
                "`mixed_precision=True` needs a model built under a mixed policy. "
                "Pass `model_fn` (train builds the model under 'mixed_float16') "
                "or build the model after "
                "`keras.mixed_precision.set_dtype_policy('mixed_float16')`. "
                f"Received: model.compute_dtype={compute!r}"
            )
    if strategy is not None:
        variable = model.trainable_weights[0]
        variable = line.raw_variable(variable)
        if not strategy.extended.variable_created_in_scope(variable):
            raise ValueError(
                "The model's variables were not created under `strategy.scope()`. "
                "Expected `model_fn=` (a zero-argument callable building the "
                "model; train calls it inside the scope) or a model built inside "
                f"`with strategy.scope():`. Received: strategy={type(strategy).__name__}, "
                "a model built outside its scope"
            )


def _reset_gpu_memory_stats():
    gpus = [d.name.split("device:")[-1] for d in tf.config.list_logical_devices("GPU")]
    for gpu in gpus:
        try:
            tf.config.experimental.reset_memory_stats(gpu)
        except (ValueError, RuntimeError):
            pass
    return gpus


def _peak_memory(gpus):
    peaks = []
    for gpu in gpus:
        try:
            peaks.append(int(tf.config.experimental.get_memory_info(gpu)["peak"]))
        except (ValueError, RuntimeError, KeyError):
            pass
    if peaks:
        return max(peaks), "gpu_peak"
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None, None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), "process_max_rss"
