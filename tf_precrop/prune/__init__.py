"""Pruning trained models: :func:`prune` keeps the weights of the channels it keeps.

Modules: :mod:`~tf_precrop.prune.channels` (which original channel each kept
channel is), :mod:`~tf_precrop.prune.importance` (channel scores),
:mod:`~tf_precrop.prune.selection` (which channels per group; widths from
importance), :mod:`~tf_precrop.prune.slicing` (copies the kept weights),
:mod:`~tf_precrop.prune.budget` (budget widths the kept channels can follow),
:mod:`~tf_precrop.prune.api` (:func:`prune`), :mod:`~tf_precrop.prune.cli`
(the ``tf-precrop prune`` command) and :mod:`~tf_precrop.prune.report` (its
JSON report and summary), :mod:`~tf_precrop.prune.batchnorm`
(:func:`recalibrate_batchnorm`: BatchNormalization statistics measured again).
"""

from tf_precrop.prune.api import DEFAULT_WIDTHS_FROM, WIDTHS_FROM, prune
from tf_precrop.prune.batchnorm import recalibrate_batchnorm
from tf_precrop.prune.importance import CRITERIA, DEFAULT_IMPORTANCE

__all__ = ["CRITERIA", "DEFAULT_IMPORTANCE", "DEFAULT_WIDTHS_FROM", "WIDTHS_FROM", "prune", "recalibrate_batchnorm"]
