"""Exception types raised by tf_precrop.

Every error is also a built-in ``ValueError`` or ``TypeError`` so callers that
catch those keep working. Messages follow one shape: what went wrong, what was
expected, and ``Received: name=value``; where there is a way out (a rule to
register, a flag to set) the message says it.
"""


class PrecropError(Exception):
    """Base class of every error raised on purpose by tf_precrop."""


class UnsupportedModelError(PrecropError, TypeError):
    """The object is not a model tf_precrop can walk (subclassed, unbuilt, ...)."""


class UnsupportedLayerError(PrecropError, ValueError):
    """A layer has no rule, or its rule cannot handle how the layer is used."""


class WidthError(PrecropError, ValueError):
    """Widths given to ``rebuild`` do not fit the channel graph."""


class BudgetError(PrecropError, ValueError):
    """A target or budget is invalid or cannot be met."""


class ScoreError(PrecropError, ValueError):
    """Saliency scores could not be computed or are unusable (NaN, all zero)."""


class ExportError(PrecropError, ValueError, RuntimeError):
    """A TFLite/LiteRT export failed or did not verify.

    A ``ValueError``, as this module promises for every error. It stays a
    ``RuntimeError`` too, for compatibility: it was only a ``RuntimeError``
    before, and code that catches ``RuntimeError`` around ``export_tflite``,
    ``verify_tflite`` or ``benchmark_tflite`` keeps working.
    """


class ExportPathError(ExportError, FileNotFoundError):
    """A path the export helpers need does not exist.

    Raised when the destination folder of ``export_tflite`` is missing (or is
    not a folder), and when the ``.tflite`` file given to ``verify_tflite`` or
    ``benchmark_tflite`` does not exist. Both an :class:`ExportError` and a
    ``FileNotFoundError``, so either ``except`` clause catches it.
    """


class BudgetWarning(UserWarning):
    """A plan could not reach its budget's tolerance band; it holds the closest cost found.

    The message gives the cost reached, the band, and whether the closest cost
    is proven (every width assignment was tried) or only the best the repair
    found. Turn it into an error with
    ``warnings.simplefilter("error", tf_precrop.errors.BudgetWarning)``.
    """


class LatencyError(PrecropError, ValueError):
    """A latency table or latency budget cannot be used as given.

    Raised for an unknown precision or thread count, a table measured with
    other settings or missing the model's layer signatures, a corrupt table
    file, and a latency target outside what the widths can reach.
    """


class LatencyWarning(UserWarning):
    """A latency prediction is less certain than usual (e.g. no measured per-model constant)."""
