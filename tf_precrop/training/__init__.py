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

One concept per module:

- :mod:`~tf_precrop.training.config`: :class:`TrainConfig`, :data:`RECIPES`,
  :func:`recipe`;
- :mod:`~tf_precrop.training.schedules`: :class:`LRSchedule`,
  :func:`make_lr_schedule`;
- :mod:`~tf_precrop.training.loop`: :func:`train`, :class:`TrainResult`;
- :mod:`~tf_precrop.training.backup`: the per-epoch state behind
  ``train(..., backup_dir=...)``, which resumes an interrupted run on the
  batches it would have seen;
- :mod:`~tf_precrop.training.callbacks`, ``datasets``, ``penalty``: its
  callbacks, input pipelines and the L2 penalty;
- :mod:`~tf_precrop.training.evaluate`: :func:`evaluate`.

Importing this package registers :class:`LRSchedule` with Keras.
"""

from tf_precrop.training.config import RECIPES, SCHEDULES, TrainConfig, recipe
from tf_precrop.training.evaluate import evaluate  # binds the function over the submodule
from tf_precrop.training.loop import TrainResult, train
from tf_precrop.training.penalty import _kernel_l2  # noqa: F401 - used by tests
from tf_precrop.training.schedules import LRSchedule, make_lr_schedule  # registers LRSchedule

__all__ = [
    "RECIPES",
    "SCHEDULES",
    "LRSchedule",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "make_lr_schedule",
    "recipe",
    "train",
]
