"""The hyper-parameters of :func:`~tf_precrop.training.train` and the named recipes.

:class:`TrainConfig` holds one training run's hyper-parameters (immutable,
JSON-able); :data:`RECIPES` and :func:`recipe` name the two standard ones
(``"paper"``: 160 epochs, ``"cpu"``: 20 epochs).
"""

import dataclasses
import json
import math

SCHEDULES = ("step", "cosine")
_REFERENCE_BATCH = 128


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
        epochs=20, batch_size=128, lr=0.1, schedule="cosine", warmup_epochs=1,
        label_smoothing=0.1, nesterov=True,
    ),
}


def recipe(name, **changes):
    """A named training recipe: a :class:`TrainConfig` with some fields optionally changed.

    * ``"paper"``: the 160-epoch step schedule of the pruning-at-init papers
      (the :class:`TrainConfig` defaults). For a GPU or Colab.
    * ``"cpu"``: the short schedule for two CPU cores, meant to bring dense
      ResNet-20 to >= 85% CIFAR-10 validation accuracy on 45,000 training
      images (docs/results.md): 20 epochs at batch 128 (lr 0.1), one warm-up
      epoch then cosine decay to 0, Nesterov momentum, label smoothing 0.1,
      weight decay 5e-4, pad-crop-flip augmentation. A short schedule needs
      the warm-up and the cosine tail. The first version, 15 epochs at batch
      256 (half the steps), stopped at 84.6% (seed 0), below the bar.

    Args:
        name: ``"paper"`` or ``"cpu"``.
        **changes: fields of :class:`TrainConfig` to override.

    Returns:
        A :class:`TrainConfig`.

    Example:

    >>> config = recipe("cpu", seed=1)
    >>> config.epochs, config.peak_lr, config.seed
    (20, 0.1, 1)
    """
    if name not in RECIPES:
        raise ValueError(
            f"Unknown training recipe. Expected one of {sorted(RECIPES)}. Received: name={name!r}"
        )
    return RECIPES[name].replace(**changes)
