"""The learning-rate schedule of :class:`~tf_precrop.training.TrainConfig`.

:func:`make_lr_schedule` returns a serializable ``LearningRateSchedule`` of
either Keras line: :class:`LRSchedule` (Keras 3, registered as
``"tf_precrop>LRSchedule"`` on import, so compiled models saved by
:func:`~tf_precrop.training.train` load after ``import tf_precrop``) or its
tf_keras twin, created and registered on first use of that line.
"""

import math

import keras
import tensorflow as tf

from tf_precrop.backend import KERAS3, get_line


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


def _schedule_class(line):
    """The schedule class that subclasses ``line``'s ``LearningRateSchedule``."""
    if issubclass(LRSchedule, line.keras.optimizers.schedules.LearningRateSchedule):
        return LRSchedule
    return _other_line_schedule_class(line)


_OTHER_LINE_CLASSES = {}


def _other_line_schedule_class(line):
    """:class:`LRSchedule` for a line other than Keras 3 (tf_keras), made and registered once."""
    if line.name not in _OTHER_LINE_CLASSES:
        k = line.keras

        @k.saving.register_keras_serializable(package="tf_precrop")
        class LRSchedule(_ScheduleMixin, k.optimizers.schedules.LearningRateSchedule):
            """The :class:`TrainConfig` learning-rate schedule (tf_keras)."""

        _OTHER_LINE_CLASSES[line.name] = LRSchedule
    return _OTHER_LINE_CLASSES[line.name]


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

    >>> from tf_precrop.training import TrainConfig
    >>> config = TrainConfig(epochs=160)
    >>> s = make_lr_schedule(config, steps_per_epoch=351)
    >>> round(float(s(0)), 6), round(float(s(80 * 351)), 6), round(float(s(120 * 351)), 6)
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
