"""The standard CIFAR training recipe, so every method is trained the same way.

:func:`train` compiles a model with SGD + momentum, an L2 penalty on kernels
and a step or cosine learning-rate schedule, trains it on CIFAR-style data
with the usual augmentation, and returns a :class:`TrainResult` (history,
validation accuracy, throughput, peak memory, wall time). :func:`evaluate`
returns top-1 accuracy.

Recipe (defaults of :class:`TrainConfig`), the one the pruning-at-init
papers (SNIP, GraSP, SynFlow, ...) use on CIFAR-10:

- SGD, momentum 0.9, lr 0.1 at batch size 128 (scaled linearly with the
  batch size), batch 128, 160 epochs, lr x0.1 at epochs 80 and 120;
- weight decay 5e-4 as a *coupled L2 penalty* ``0.5 * wd * ||W||^2`` on the
  kernels (every variable whose name ends in ``kernel``; not biases or
  BatchNorm), i.e. the gradient gets ``wd * W`` before momentum, exactly like
  ``torch.optim.SGD(weight_decay=5e-4)`` used by those papers. Keras 3's own
  ``SGD(weight_decay=...)`` is *decoupled* (``W -= lr * wd * W`` outside the
  momentum) and with momentum 0.9 decays ~10x less at the same number, so it
  is not used. The penalty is attached only for the duration of
  :func:`train` (restored afterwards, never saved) and shows up in the
  training ``loss``.
- pad-4 / random-crop / horizontal-flip augmentation, no label smoothing.

Keras 3 models come first; tf_keras models work too (their optimizer, losses
and callbacks come from ``line_of(model).keras``).
"""

import contextlib
import dataclasses
import json
import math
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from tf_precrop._io import write_json
from tf_precrop.backend import KERAS3, get_line, line_of
from tf_precrop.data import cifar10_dataset

SCHEDULES = ("step", "cosine")
_REFERENCE_BATCH = 128


# ---------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train` (immutable, JSON-able).

    Args:
        epochs: Number of epochs.
        batch_size: Global batch size (summed over replicas under a
            strategy).
        lr: Peak learning rate *at batch size 128*. With ``scale_lr`` the
            learning rate used is ``lr * batch_size / 128`` (linear scaling
            rule); see :attr:`peak_lr`.
        scale_lr: Scale ``lr`` linearly with ``batch_size``.
        momentum: SGD momentum.
        nesterov: Use Nesterov momentum.
        weight_decay: Coefficient ``wd`` of the coupled L2 penalty
            ``0.5 * wd * ||W||^2`` on kernels (gradient ``wd * W``, as in
            PyTorch's SGD). ``0`` turns it off.
        schedule: ``"step"`` (lr times ``gamma`` at each milestone) or
            ``"cosine"`` (cosine decay to 0 after the warmup).
        milestones: For ``"step"``: epochs of the lr drops, as fractions of
            ``epochs`` (``(0.5, 0.75)`` gives epochs 80 and 120 of 160).
        gamma: For ``"step"``: factor of each drop.
        warmup_epochs: Epochs of linear warmup from ``peak_lr / warmup_steps``
            to ``peak_lr`` (0 = none; useful for large batches).
        label_smoothing: Label smoothing of the cross-entropy (0 = none).
        mixed_precision: Train under the ``"mixed_float16"`` policy. The
            policy is applied while ``model_fn`` builds the model and restored
            afterwards; a ready ``model`` must already be mixed.
        augment: Pad-crop-flip augmentation of array training data.
        normalize: Normalize array data with the CIFAR-10 mean/std in the
            pipeline (leave ``False`` for models that normalize inside).
        steps_per_epoch: Steps per epoch; ``None`` = one pass over the
            training data. Needed for datasets of unknown length.
        seed: Seed of ``keras.utils.set_random_seed`` (before ``model_fn``),
            of the shuffle and of the augmentation. ``None`` = not seeded.

    Example:

    >>> config = TrainConfig(epochs=30, schedule="cosine", batch_size=256)
    >>> config.peak_lr
    0.2
    >>> TrainConfig.from_dict(config.to_dict()) == config
    True
    """

    epochs: int = 160
    batch_size: int = 128
    lr: float = 0.1
    scale_lr: bool = True
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "step"
    milestones: tuple = (0.5, 0.75)
    gamma: float = 0.1
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    mixed_precision: bool = False
    augment: bool = True
    normalize: bool = False
    steps_per_epoch: int | None = None
    seed: int | None = 0

    def __post_init__(self):
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
        if self.steps_per_epoch is not None and (
            isinstance(self.steps_per_epoch, bool)
            or not isinstance(self.steps_per_epoch, int)
            or self.steps_per_epoch <= 0
        ):
            raise ValueError(
                "`steps_per_epoch` must be None or a positive int. "
                f"Received: steps_per_epoch={self.steps_per_epoch!r}"
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"Unknown learning-rate schedule. Expected one of {SCHEDULES}. "
                f"Received: schedule={self.schedule!r}"
            )
        if not all(0.0 < m < 1.0 for m in self.milestones) or list(self.milestones) != sorted(
            self.milestones
        ):
            raise ValueError(
                "`milestones` must be increasing fractions of `epochs` in (0, 1). "
                f"Received: milestones={self.milestones!r}"
            )
        checks = (
            ("lr", self.lr > 0),
            ("momentum", 0 <= self.momentum < 1),
            ("weight_decay", self.weight_decay >= 0),
            ("gamma", 0 < self.gamma <= 1),
            ("label_smoothing", 0 <= self.label_smoothing < 1),
            ("warmup_epochs", 0 <= self.warmup_epochs < self.epochs),
        )
        ranges = {
            "lr": "> 0",
            "momentum": "in [0, 1)",
            "weight_decay": ">= 0",
            "gamma": "in (0, 1]",
            "label_smoothing": "in [0, 1)",
            "warmup_epochs": "in [0, epochs)",
        }
        for name, ok in checks:
            if not ok:
                raise ValueError(
                    f"`{name}` must be {ranges[name]}. Received: {name}={getattr(self, name)!r}"
                )

    @property
    def peak_lr(self):
        """The learning rate after warmup (``lr`` scaled by ``batch_size / 128``)."""
        if not self.scale_lr:
            return float(self.lr)
        return float(self.lr) * self.batch_size / _REFERENCE_BATCH

    @property
    def milestone_epochs(self):
        """The epochs at which the ``"step"`` schedule drops the lr."""
        return tuple(math.floor(m * self.epochs + 0.5) for m in self.milestones)

    def replace(self, **changes):
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """The fields as a JSON-able dict."""
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    def to_json(self, **kwargs):
        """The fields as a JSON string (``kwargs`` go to ``json.dumps``)."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d):
        """The config from :meth:`to_dict` output (unknown keys are an error)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(
                f"Unknown TrainConfig fields. Expected a subset of {sorted(names)}. "
                f"Received: {unknown}"
            )
        return cls(**d)


RECIPES = {
    "paper": TrainConfig(),
    "cpu": TrainConfig(
        epochs=15, batch_size=256, lr=0.1, schedule="cosine", warmup_epochs=1,
        label_smoothing=0.1, nesterov=True,
    ),
}


def recipe(name, **changes):
    """A named training recipe: a :class:`TrainConfig` with some fields optionally changed.

    * ``"paper"``: the 160-epoch step schedule of the pruning-at-init papers
      (the :class:`TrainConfig` defaults). For a GPU or Colab.
    * ``"cpu"``: the 15-epoch schedule on which dense ResNet-20 reaches >= 85%
      CIFAR-10 validation accuracy on 45,000 training images, on two CPU
      cores (docs/results.md). Batch 256 (lr 0.2 by the linear scaling rule),
      one warm-up epoch then cosine decay to 0, Nesterov momentum, label
      smoothing 0.1, weight decay 5e-4, pad-crop-flip augmentation. A short
      schedule needs the warm-up and the cosine tail; label smoothing keeps the
      last epochs from over-fitting the small models less than the dense one.

    Args:
        name: ``"paper"`` or ``"cpu"``.
        **changes: fields of :class:`TrainConfig` to override.

    Returns:
        A :class:`TrainConfig`.

    Example:

    >>> config = recipe("cpu", seed=1)
    >>> config.epochs, config.peak_lr, config.seed
    (15, 0.2, 1)
    """
    if name not in RECIPES:
        raise ValueError(
            f"Unknown training recipe. Expected one of {sorted(RECIPES)}. Received: name={name!r}"
        )
    return RECIPES[name].replace(**changes)


# -------------------------------------------------------------------- schedule
def _lr_at(step, peak_lr, steps_per_epoch, epochs, schedule, milestones, gamma, warmup_epochs):
    step = tf.cast(step, tf.float32)
    total = float(epochs * steps_per_epoch)
    warmup = float(warmup_epochs * steps_per_epoch)
    if schedule == "cosine":
        progress = tf.clip_by_value((step - warmup) / max(total - warmup, 1.0), 0.0, 1.0)
        lr = peak_lr * 0.5 * (1.0 + tf.cos(math.pi * progress))
    else:
        lr = tf.constant(peak_lr, tf.float32)
        for m in milestones:
            boundary = float(math.floor(m * epochs + 0.5) * steps_per_epoch)
            lr = tf.where(step >= boundary, lr * gamma, lr)
    if warmup > 0:
        lr = tf.where(step < warmup, peak_lr * (step + 1.0) / warmup, lr)
    return lr


class _ScheduleMixin:
    """Step or cosine schedule with linear warmup, counted in optimizer steps."""

    def __init__(
        self,
        peak_lr,
        steps_per_epoch,
        epochs,
        schedule="step",
        milestones=(0.5, 0.75),
        gamma=0.1,
        warmup_epochs=0,
    ):
        self.peak_lr = float(peak_lr)
        self.steps_per_epoch = int(steps_per_epoch)
        self.epochs = int(epochs)
        self.schedule = schedule
        self.milestones = tuple(float(m) for m in milestones)
        self.gamma = float(gamma)
        self.warmup_epochs = warmup_epochs

    def __call__(self, step):
        return _lr_at(
            step,
            self.peak_lr,
            self.steps_per_epoch,
            self.epochs,
            self.schedule,
            self.milestones,
            self.gamma,
            self.warmup_epochs,
        )

    def get_config(self):
        return {
            "peak_lr": self.peak_lr,
            "steps_per_epoch": self.steps_per_epoch,
            "epochs": self.epochs,
            "schedule": self.schedule,
            "milestones": list(self.milestones),
            "gamma": self.gamma,
            "warmup_epochs": self.warmup_epochs,
        }


@keras.saving.register_keras_serializable(package="tf_precrop")
class LRSchedule(_ScheduleMixin, keras.optimizers.schedules.LearningRateSchedule):
    """The :class:`TrainConfig` learning-rate schedule (Keras 3).

    Step ``s`` (0-based optimizer update) is in epoch ``s // steps_per_epoch``.
    During warmup the lr is ``peak_lr * (s + 1) / warmup_steps``; then
    ``"step"`` gives ``peak_lr * gamma ** (number of milestone epochs <=
    current epoch)`` and ``"cosine"`` gives ``0.5 * peak_lr * (1 + cos(pi *
    progress))`` with ``progress`` running from 0 after warmup to 1 at the
    last step.

    Args:
        peak_lr: Learning rate after warmup.
        steps_per_epoch: Optimizer steps per epoch.
        epochs: Total epochs.
        schedule: ``"step"`` or ``"cosine"``.
        milestones: Fractions of ``epochs`` at which ``"step"`` drops the lr.
        gamma: Factor of each drop.
        warmup_epochs: Epochs of linear warmup.

    Example:

    >>> s = LRSchedule(0.1, steps_per_epoch=10, epochs=160)
    >>> round(float(s(799)), 4), round(float(s(800)), 4), round(float(s(1200)), 5)
    (0.1, 0.01, 0.001)
    """


@contextlib.contextmanager
def _noop():
    yield


def _schedule_class(line):
    if line.name == KERAS3:
        return LRSchedule
    return _tf_keras_schedule_class()


_TF_KERAS_CLASSES = {}


def _tf_keras_schedule_class():
    if "schedule" not in _TF_KERAS_CLASSES:
        tk = get_line("tf_keras").keras

        @tk.saving.register_keras_serializable(package="tf_precrop")
        class LRSchedule(_ScheduleMixin, tk.optimizers.schedules.LearningRateSchedule):
            """The :class:`TrainConfig` learning-rate schedule (tf_keras)."""

        _TF_KERAS_CLASSES["schedule"] = LRSchedule
    return _TF_KERAS_CLASSES["schedule"]


def make_lr_schedule(config, steps_per_epoch, line=KERAS3):
    """The learning-rate schedule :func:`train` uses for ``config``.

    Args:
        config: A :class:`TrainConfig`.
        steps_per_epoch: Optimizer steps per epoch.
        line: ``"keras3"`` (default) or ``"tf_keras"``: which Keras line's
            ``LearningRateSchedule`` to subclass.

    Returns:
        A serializable ``LearningRateSchedule``; call it with a step to get
        the learning rate.

    Example:

    >>> config = TrainConfig(epochs=160)
    >>> s = make_lr_schedule(config, steps_per_epoch=351)
    >>> float(s(0)), round(float(s(80 * 351)), 6), round(float(s(120 * 351)), 6)
    (0.1, 0.01, 0.001)
    """
    line = get_line(line) if isinstance(line, str) else line
    return _schedule_class(line)(
        config.peak_lr,
        steps_per_epoch,
        config.epochs,
        schedule=config.schedule,
        milestones=config.milestones,
        gamma=config.gamma,
        warmup_epochs=config.warmup_epochs,
    )


# ------------------------------------------------------------------ L2 penalty
def _is_kernel(variable):
    name = getattr(variable, "path", None) or variable.name
    return name.split("/")[-1].split(":")[0].endswith("kernel")


class _L2Penalty:
    """``coeff * sum(w ** 2)``, plus a regularizer the variable already had."""

    def __init__(self, coeff, previous=None):
        self.coeff = coeff
        self.previous = previous

    def __call__(self, w):
        penalty = self.coeff * keras.ops.sum(keras.ops.square(w))
        if self.previous is not None:
            penalty = penalty + self.previous(w)
        return penalty


@contextlib.contextmanager
def _kernel_l2(model, line, weight_decay):
    """Adds ``0.5 * weight_decay * ||W||^2`` of every kernel to the model loss."""
    kernels = [v for v in model.trainable_weights if _is_kernel(v)]
    if not weight_decay or not kernels:
        yield kernels
        return
    coeff = 0.5 * float(weight_decay)
    if line.name == KERAS3:
        saved = [(v, v.regularizer) for v in kernels]
        for v, previous in saved:
            v.regularizer = _L2Penalty(coeff, previous)
        try:
            yield kernels
        finally:
            for v, previous in saved:
                v.regularizer = previous
    else:
        before = len(model._callable_losses)
        model.add_loss(lambda: coeff * tf.add_n([tf.reduce_sum(tf.square(v)) for v in kernels]))
        try:
            yield kernels
        finally:
            del model._callable_losses[before:]


# ------------------------------------------------------------------- callbacks
def _callback_base(line):
    return line.keras.callbacks.Callback


def _make_callbacks(line, schedule, images_per_step, json_path, config):
    base = _callback_base(line)

    class LearningRateLogger(base):
        """Adds the lr of the epoch's last step to the logs (before History)."""

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                step = max(int(self.model.optimizer.iterations.numpy()) - 1, 0)
                logs["learning_rate"] = float(schedule(step))

    class Throughput(base):
        """Times the training part of each epoch (validation excluded)."""

        def __init__(self):
            super().__init__()
            self.epochs = []  # (seconds, steps) per epoch
            self.first_epoch_after_step0 = None  # (seconds, steps)

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch
            self._start = time.perf_counter()
            self._after_step0 = None
            self._train_end = None
            self._steps = 0

        def on_train_batch_begin(self, batch, logs=None):
            self._steps = batch + 1
            if self._epoch == 0 and batch == 1:
                self._after_step0 = time.perf_counter()

        def on_test_begin(self, logs=None):
            if self._train_end is None:
                self._train_end = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            end = self._train_end or time.perf_counter()
            self.epochs.append((end - self._start, self._steps))
            if epoch == 0 and self._after_step0 is not None:
                self.first_epoch_after_step0 = (end - self._after_step0, self._steps - 1)

        def images_per_second(self):
            if len(self.epochs) >= 2:
                seconds = sum(s for s, _ in self.epochs[1:])
                steps = sum(n for _, n in self.epochs[1:])
            elif self.first_epoch_after_step0 is not None:
                seconds, steps = self.first_epoch_after_step0
            elif self.epochs:
                seconds, steps = self.epochs[0]
            else:
                return None
            return steps * images_per_step / seconds if seconds > 0 else None

    class JsonHistory(base):
        """Rewrites ``history.json`` (config + per-epoch logs) after every epoch."""

        def __init__(self):
            super().__init__()
            self.rows = []

        def on_epoch_end(self, epoch, logs=None):
            self.rows.append({"epoch": epoch, **_jsonable(logs or {})})
            if json_path is not None:
                _write_json(json_path, {"config": config.to_dict(), "epochs": self.rows})

    return LearningRateLogger(), Throughput(), JsonHistory()


def _jsonable(logs):
    out = {}
    for k, v in logs.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            out[k] = str(v)
    return out


def _write_json(path, obj):
    write_json(path, obj)


# ---------------------------------------------------------------------- result
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

    def __str__(self):
        epochs = len(next(iter(self.history.values()), []))
        parts = [f"epochs={epochs}"]
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


# ------------------------------------------------------------------- training
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
):
    """Trains a classifier with the standard CIFAR recipe of ``config``.

    The model is (re)compiled with SGD + momentum, the lr schedule of
    :func:`make_lr_schedule`, the coupled L2 penalty on kernels,
    ``SparseCategoricalCrossentropy`` (``from_logits`` unless the output
    layer applies softmax; ``CategoricalCrossentropy`` on one-hot labels when
    ``label_smoothing > 0``) and an ``"accuracy"`` metric, then fitted.
    Kernel constraints (the masks of masked baselines) are kept: Keras applies
    them after every update.

    Args:
        model: A built Keras 3 (or tf_keras) model. Mutually exclusive with
            ``model_fn``.
        train_data: ``(x, y)`` arrays (``uint8`` images ``(N, H, W, C)``,
            integer labels ``(N,)``; the pipeline is built with
            :func:`~tf_precrop.data.cifar10_dataset`: shuffle, augmentation,
            drop remainder) or a ready batched ``tf.data.Dataset`` of
            ``(images, labels)`` batches of ``config.batch_size``.
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

    Returns:
        A :class:`TrainResult`.

    Example:

    >>> (x, y), _ = load_cifar10(limit=2000, verbose=0)
    >>> (xt, yt), (xv, yv) = train_val_split(x, y, val_size=500)
    >>> result = train(model, (xt, yt), (xv, yv),
    ...                config=TrainConfig(epochs=2, schedule="cosine"), verbose=0)
    >>> result.val_accuracy, result.images_per_sec
    """
    start = time.perf_counter()
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

    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)

    scope = strategy.scope() if strategy is not None else _noop()
    with scope:
        if model_fn is not None:
            with _mixed_policy(config.mixed_precision):
                model = model_fn()
        line = line_of(model)
        _check_model(model, line, config, strategy)
        train_ds, steps_per_epoch, images_per_step = _train_dataset(train_data, config)
        val_ds = None if val_data is None else _eval_dataset(val_data, config)
        probabilities = _outputs_probabilities(model, line)
        if config.label_smoothing > 0:
            num_classes = int(model.outputs[0].shape[-1])
            train_ds = _one_hot(train_ds, num_classes)
            val_ds = None if val_ds is None else _one_hot(val_ds, num_classes)
            loss = line.keras.losses.CategoricalCrossentropy(
                from_logits=not probabilities, label_smoothing=config.label_smoothing
            )
        else:
            loss = line.keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities)
        schedule = make_lr_schedule(config, steps_per_epoch, line)
        optimizer = line.keras.optimizers.SGD(
            learning_rate=schedule, momentum=config.momentum, nesterov=config.nesterov
        )
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])

    lr_logger, throughput, json_history = _make_callbacks(
        line,
        schedule,
        images_per_step,
        None if log_dir is None else os.path.join(log_dir, "history.json"),
        config,
    )
    callbacks = [lr_logger, throughput, json_history]
    checkpoint_path = None
    if log_dir is not None:
        log_dir = os.fspath(log_dir)
        os.makedirs(log_dir, exist_ok=True)
        callbacks.append(line.keras.callbacks.CSVLogger(os.path.join(log_dir, "history.csv")))
        if checkpoint:
            if val_ds is not None:
                checkpoint_path = os.path.join(log_dir, "best.keras")
                callbacks.append(
                    line.keras.callbacks.ModelCheckpoint(
                        checkpoint_path, monitor="val_accuracy", mode="max", save_best_only=True
                    )
                )
            else:
                checkpoint_path = os.path.join(log_dir, "last.keras")
                callbacks.append(line.keras.callbacks.ModelCheckpoint(checkpoint_path))

    gpus = _reset_gpu_memory_stats()
    with _kernel_l2(model, line, config.weight_decay):
        try:
            history = model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=config.epochs,
                steps_per_epoch=config.steps_per_epoch,
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
    val_acc = hist.get("val_accuracy")
    result = TrainResult(
        model=model,
        history=hist,
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
    )
    if log_dir is not None:
        _write_json(os.path.join(log_dir, "results.json"), result.to_dict())
    return result


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
        variable = getattr(variable, "value", variable) if line.name == KERAS3 else variable
        if not strategy.extended.variable_created_in_scope(variable):
            raise ValueError(
                "The model's variables were not created under `strategy.scope()`. "
                "Expected `model_fn=` (a zero-argument callable building the "
                "model; train calls it inside the scope) or a model built inside "
                f"`with strategy.scope():`. Received: strategy={type(strategy).__name__}, "
                "a model built outside its scope"
            )


def _train_dataset(data, config):
    """(dataset, steps per epoch, images per step) for the training data."""
    if isinstance(data, tf.data.Dataset):
        batch = _static_batch(data)
        if batch is not None and batch != config.batch_size:
            raise ValueError(
                "The training dataset's batch size differs from "
                "`config.batch_size`, which sets the scaled learning rate and the "
                "throughput. Expected batches of config.batch_size="
                f"{config.batch_size}. Received: dataset batch size {batch}"
            )
        cardinality = int(data.cardinality())
        if config.steps_per_epoch is not None:
            steps = config.steps_per_epoch
            if cardinality != tf.data.INFINITE_CARDINALITY:
                data = data.repeat()
        elif cardinality > 0:
            steps = cardinality
        else:
            raise ValueError(
                "The training dataset has an unknown or infinite number of "
                "batches. Expected `config.steps_per_epoch` to be set. Received: "
                f"dataset cardinality={cardinality}, steps_per_epoch=None"
            )
        return data, steps, config.batch_size
    x, y = _unpack(data, "train_data")
    ds = cifar10_dataset(
        x,
        y,
        batch_size=config.batch_size,
        training=True,
        augment=config.augment,
        normalize=config.normalize,
        seed=config.seed,
    )
    n = len(x)
    images_per_step = config.batch_size if n >= config.batch_size else n
    steps = max(n // config.batch_size, 1)
    if config.steps_per_epoch is not None:
        steps = config.steps_per_epoch
        ds = ds.repeat()
    return ds, steps, images_per_step


def _eval_dataset(data, config, batch_size=None):
    if isinstance(data, tf.data.Dataset):
        return data
    x, y = _unpack(data, "val_data")
    return cifar10_dataset(
        x,
        y,
        batch_size=batch_size or config.batch_size,
        training=False,
        normalize=config.normalize,
    )


def _unpack(data, name):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(
            f"`{name}` must be an (x, y) pair of arrays or a tf.data.Dataset. "
            f"Received: {name} of type {type(data).__name__}"
        )
    return np.asarray(data[0]), np.asarray(data[1])


def _static_batch(ds):
    spec = ds.element_spec
    first = spec[0] if isinstance(spec, (tuple, list)) else spec
    shape = getattr(first, "shape", None)
    if shape is None or shape.rank is None or shape.rank == 0:
        return None
    return shape[0]


def _one_hot(ds, num_classes):
    def to_one_hot(x, y):
        if y.shape.rank is not None and y.shape.rank >= 2:
            return x, y
        return x, tf.one_hot(tf.cast(y, tf.int32), num_classes)

    return ds.map(to_one_hot, num_parallel_calls=tf.data.AUTOTUNE)


def _outputs_probabilities(model, line):
    """True when the output layer ends in a softmax (so not logits)."""
    layer = None
    try:
        history = model.outputs[0]._keras_history
        layer = history[0]
    except (AttributeError, IndexError, TypeError):
        layer = model.layers[-1] if model.layers else None
    if layer is None:
        return False
    if isinstance(layer, line.layers.Softmax):
        return True
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) == "softmax"


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


# ------------------------------------------------------------------ evaluation
def evaluate(model, x, y=None, batch_size=256, normalize=False):
    """Top-1 accuracy of ``model`` on ``(x, y)`` (or on a dataset ``x``).

    Args:
        model: A Keras 3 or tf_keras classifier (logits or probabilities).
        x: ``uint8`` images ``(N, H, W, C)``, or a ``tf.data.Dataset`` of
            ``(images, labels)`` batches (labels integer or one-hot).
        y: Integer labels ``(N,)``; ``None`` when ``x`` is a dataset.
        batch_size: Batch size for arrays.
        normalize: Normalize arrays with the CIFAR-10 mean/std, as in
            training with ``TrainConfig(normalize=True)``.

    Returns:
        Accuracy as a Python float in ``[0, 1]``.

    Example:

    >>> acc = evaluate(result.model, x_val, y_val)
    """
    if isinstance(x, tf.data.Dataset):
        if y is not None:
            raise ValueError(
                "`y` must be None when `x` is a tf.data.Dataset (labels come "
                f"from the dataset). Received: y of type {type(y).__name__}"
            )
        ds = x
    else:
        if y is None:
            raise ValueError("`y` is required when `x` is an array. Received: y=None")
        ds = cifar10_dataset(
            np.asarray(x),
            np.asarray(y),
            batch_size=batch_size,
            training=False,
            normalize=normalize,
        )

    @tf.function(reduce_retracing=True)
    def predict(images):
        return tf.argmax(model(images, training=False), axis=-1)

    correct = 0
    total = 0
    for images, labels in ds:
        if labels.shape.rank is not None and labels.shape.rank >= 2:
            labels = tf.argmax(labels, axis=-1)
        predicted = predict(images)
        correct += int(tf.reduce_sum(tf.cast(predicted == tf.cast(labels, tf.int64), tf.int32)))
        total += int(tf.shape(labels)[0])
    if total == 0:
        raise ValueError("Cannot evaluate on empty data. Received: 0 examples")
    return correct / total
