"""tf_precrop: structured pruning at initialization (PreCropping) for Keras CNNs.

The pipeline, one stage per module:

model graph (:func:`channel_groups`) → saliency scores (:mod:`tf_precrop.saliency`)
→ layer densities (:mod:`tf_precrop.densities`) → channel widths
(:mod:`tf_precrop.widths`) → rebuilt model (:func:`rebuild`) → export/report
(:mod:`tf_precrop.export`, :func:`profile`).

One call does it all: ``small = tf_precrop.crop(model, target=0.3)``.
"""

from tf_precrop import errors
from tf_precrop.graph import (
    ChannelGraph,
    ChannelGroup,
    LayerRule,
    channel_groups,
    register_rule,
    unregister_rule,
)
from tf_precrop.plan import METHODS, Plan, crop, plan
from tf_precrop.profile import Profile, profile
from tf_precrop.prune import prune
from tf_precrop.rebuild import rebuild

__version__ = "0.1.0"


def _register_keras_objects():
    """Registers tf_precrop's serializable Keras 3 objects at import.

    ``ChannelSplit``/``ChannelShuffle`` (ShuffleNet), ``FixedMask`` (masked
    baselines) and ``LRSchedule`` (the training recipe's schedule, stored in a
    compiled model's optimizer config), so that ``keras.saving.load_model``
    loads any model this package saves after a plain ``import tf_precrop``.
    This imports Keras (and TensorFlow) once; tf_keras is registered on first
    use of that line (``tf_precrop.layers.for_line("tf_keras")``), so it is
    never imported here.
    """
    from tf_precrop import baselines, layers, training  # noqa: F401 - registers on import


_register_keras_objects()

__all__ = [
    "ChannelGraph",
    "ChannelGroup",
    "LayerRule",
    "METHODS",
    "Plan",
    "Profile",
    "channel_groups",
    "crop",
    "errors",
    "export_tflite",
    "benchmark_tflite",
    "plan",
    "profile",
    "prune",
    "rebuild",
    "register_rule",
    "unregister_rule",
]


def __getattr__(name):
    # Stages outside the core pipeline load on first use.
    import importlib

    lazy = {
        "models": "tf_precrop.models",
        "layers": "tf_precrop.layers",
        "saliency": "tf_precrop.saliency",
        "densities": "tf_precrop.densities",
        "export": "tf_precrop.export",
        "data": "tf_precrop.data",
        "training": "tf_precrop.training",
        "baselines": "tf_precrop.baselines",
        "report": "tf_precrop.report",
    }
    if name in lazy:
        return importlib.import_module(lazy[name])
    if name in ("export_tflite", "benchmark_tflite", "verify_tflite"):
        return getattr(importlib.import_module("tf_precrop.export"), name)
    raise AttributeError(f"module 'tf_precrop' has no attribute {name!r}")
