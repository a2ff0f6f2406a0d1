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
from tf_precrop.rebuild import rebuild

__version__ = "0.1.0"

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
    "rebuild",
    "register_rule",
    "unregister_rule",
]


def __getattr__(name):
    # Heavier stages load on first use, keeping `import tf_precrop` light.
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
