"""Pruning trained models: :func:`prune` keeps the weights of the channels it keeps.

Modules: :mod:`~tf_precrop.prune.channels` (which original channel each kept
channel is), :mod:`~tf_precrop.prune.importance` (channel scores),
:mod:`~tf_precrop.prune.selection` (which channels per group; widths from
importance), :mod:`~tf_precrop.prune.slicing` (copies the kept weights),
:mod:`~tf_precrop.prune.budget` (budget widths the kept channels can follow),
:mod:`~tf_precrop.prune.api` (:func:`prune`), :mod:`~tf_precrop.prune.cli`
(the ``tf-precrop prune`` command) and :mod:`~tf_precrop.prune.report` (its
JSON report and summary), :mod:`~tf_precrop.prune.batchnorm`
(:func:`recalibrate_batchnorm`: BatchNormalization statistics measured again),
:mod:`~tf_precrop.prune.iterative` (:func:`prune_iteratively`: several prune →
fine-tune steps).
"""

from tf_precrop.prune.api import DEFAULT_WIDTHS_FROM, WIDTHS_FROM, prune
from tf_precrop.prune.batchnorm import recalibrate_batchnorm
from tf_precrop.prune.importance import CRITERIA, DEFAULT_IMPORTANCE
from tf_precrop.prune.iterative import prune_iteratively

__all__ = ["CRITERIA", "DEFAULT_IMPORTANCE", "DEFAULT_WIDTHS_FROM", "WIDTHS_FROM", "prune", "prune_iteratively",
           "recalibrate_batchnorm"]
