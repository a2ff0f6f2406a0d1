"""tf_precrop: structured pruning at initialization (PreCropping) for Keras CNNs.

The pipeline, one stage per module:

model graph (:func:`channel_groups`) → saliency scores (:mod:`tf_precrop.saliency`)
→ layer densities (:mod:`tf_precrop.densities`) → channel widths
(:mod:`tf_precrop.widths`) → rebuilt model (:func:`rebuild`) → export/report
(:mod:`tf_precrop.export`, :func:`profile`).

One call does it all: ``small = tf_precrop.crop(model, target=0.3)``.

``import tf_precrop`` does not import TensorFlow or Keras (the core modules need
only NumPy; TensorFlow loads on first use of a stage that needs it), yet
``keras.saving.load_model`` loads models tf_precrop saved as soon as
``tf_precrop`` is imported: its Keras objects are registered when Keras is
imported, before or after tf_precrop (see ``_RegisterAfterKeras``).
"""

import importlib.abc
import sys
import warnings

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
from tf_precrop.prune import prune, prune_iteratively, recalibrate_batchnorm
from tf_precrop.rebuild import rebuild

__version__ = "0.1.0"


def _register_keras_objects():
    """Registers tf_precrop's serializable Keras 3 objects.

    ``ChannelSplit``/``ChannelShuffle`` (ShuffleNet), ``FixedMask`` (masked
    baselines) and ``LRSchedule`` (the training recipe's schedule, stored in a
    compiled model's optimizer config), so that ``keras.saving.load_model``
    loads any model this package saves after a plain ``import tf_precrop``.
    This imports Keras (and TensorFlow), so it runs only once Keras is imported
    (see :class:`_RegisterAfterKeras`); tf_keras is registered on first use of
    that line (``tf_precrop.layers.for_line("tf_keras")``), so it is never
    imported here.
    """
    from tf_precrop import baselines, layers, training  # noqa: F401 - registers on import


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Runs :func:`_register_keras_objects` once Keras is imported.

    ``import tf_precrop`` does not import TensorFlow (seconds): the core
    pipeline modules imported above need only NumPy. The promise that
    ``keras.saving.load_model(path)`` loads tf_precrop's models after
    ``import tf_precrop`` still holds, because loading needs ``keras``: if
    Keras is already imported, tf_precrop registers at once; if not, this
    finder sits first on ``sys.meta_path`` and registers as soon as ``keras``
    has been imported (``import keras``, ``tf.keras``, or any tf_precrop stage),
    before that import statement returns, then removes itself.

    Registration imports ``tf_precrop.layers``/``baselines``/``training``, which
    import TensorFlow, Keras and other tf_precrop modules; it must not run while
    any of those is half-imported (``tf_precrop.data`` imports TensorFlow, which
    imports Keras, and ``tf_precrop.training`` imports ``tf_precrop.data``). So
    the finder wraps the loaders of ``keras``, ``tensorflow`` and every
    ``tf_precrop.*`` submodule while registration is pending, and registers
    when one of them finishes and none of them is still being imported. Every
    other import passes straight through.
    """

    def find_spec(self, fullname, path=None, target=None):
        if _REGISTERING or not _watched(fullname):
            return None
        spec = None
        for finder in list(sys.meta_path):
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _RegisteringLoader(spec.loader)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    """The normal loader, then :func:`_register_when_ready`."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        module.__loader__ = self._loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        _register_when_ready(module.__name__)


_REGISTERING = False


def _watched(name):
    return name in ("keras", "tensorflow", "tf_precrop") or name.startswith("tf_precrop.")


def _ready(finishing=None):
    """Keras is imported and no module registration needs is half-imported."""
    if "keras" not in sys.modules:
        return False
    for name, module in list(sys.modules.items()):
        if name != finishing and _watched(name):
            if getattr(getattr(module, "__spec__", None), "_initializing", False):
                return False
    return True


def _register_when_ready(finishing=None):
    global _REGISTERING
    if _REGISTERING or not _ready(finishing):
        return
    _REGISTERING = True
    try:
        _register_keras_objects()
    except Exception as e:  # noqa: BLE001 - never break the import that triggered it
        warnings.warn(
            "tf_precrop could not register its Keras objects, so keras.saving.load_model "
            "may not load tf_precrop models. Expected `import tf_precrop.layers` to work. "
            f"Received: {type(e).__name__}: {e}",
            RuntimeWarning,
            stacklevel=2,
        )
    finally:
        _REGISTERING = False
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterAfterKeras)]


def _install_keras_hook():
    if _ready(finishing="tf_precrop"):  # this package is still being imported
        _register_keras_objects()
    elif not any(isinstance(f, _RegisterAfterKeras) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterKeras())


_install_keras_hook()

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
    "prune_iteratively",
    "rebuild",
    "recalibrate_batchnorm",
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
        "latency": "tf_precrop.latency",
    }
    if name in lazy:
        return importlib.import_module(lazy[name])
    if name in ("export_tflite", "benchmark_tflite", "verify_tflite"):
        return getattr(importlib.import_module("tf_precrop.export"), name)
    raise AttributeError(f"module 'tf_precrop' has no attribute {name!r}")
