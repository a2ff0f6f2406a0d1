"""Deployment helpers: TFLite/LiteRT export, verification, latency, TFMOT interop.

``export_tflite``, ``verify_tflite`` and ``benchmark_tflite`` need TensorFlow
and ``ai-edge-litert``. The TFMOT helpers (``quantize_aware``,
``qat_finetune_and_export``, ``prune_unstructured_tfmot``,
``calibrate_qat_ranges``) are loaded on first use, so importing this package
never imports ``tensorflow_model_optimization`` (which would switch the
process to legacy Keras).

Modules, one concept each: ``tflite`` (the ``export_tflite`` pipeline),
``convert`` (inference-graph SavedModel, TFLiteConverter, atomic write),
``samples`` (calibration and verification inputs), ``verify`` (LiteRT against
Keras, tolerances), ``runtime`` (loading files in LiteRT, tensor
quantization), ``latency`` (``benchmark_tflite``) and ``tfmot``.
"""

import importlib

from tf_precrop.export.convert import QUANTIZE_MODES
from tf_precrop.export.latency import TFLiteLatency, benchmark_tflite
from tf_precrop.export.tflite import TFLiteExport, export_tflite
from tf_precrop.export.verify import (
    INT8_DECISIVE_MARGIN,
    INT8_MIN_TOP1,
    TOLERANCES,
    TFLiteVerification,
    verify_tflite,
)

_TFMOT_NAMES = (
    "calibrate_qat_ranges",
    "prune_unstructured_tfmot",
    "qat_finetune_and_export",
    "quantize_aware",
)

__all__ = [
    "INT8_DECISIVE_MARGIN",
    "INT8_MIN_TOP1",
    "QUANTIZE_MODES",
    "TOLERANCES",
    "TFLiteExport",
    "TFLiteLatency",
    "TFLiteVerification",
    "benchmark_tflite",
    "export_tflite",
    "verify_tflite",
    *_TFMOT_NAMES,
]


def __getattr__(name):
    # The TFMOT helpers module itself imports TFMOT lazily; loading it here on
    # demand keeps `import tf_precrop.export` light.
    if name in _TFMOT_NAMES:
        return getattr(importlib.import_module("tf_precrop.export.tfmot"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_TFMOT_NAMES))
