"""Bundled architectures, each built as a Functional model for either Keras line.

Every builder takes ``input_shape``, ``classes``, ``width``, ``weight_decay``,
``line`` (``"keras3"`` or ``"tf_keras"``), ``name``, ``normalize`` and
``classifier_activation``. Importing this package loads no Keras module;
``tf_keras`` is loaded only when a model is built with ``line="tf_keras"``.

Example:

>>> from tf_precrop.models import get_model
>>> model = get_model("resnet20", classes=100)
>>> model.output_shape
(None, 100)
"""

from tf_precrop.models.mobilenet_cifar import make_divisible, mobilenet_v2_cifar
from tf_precrop.models.resnet_cifar import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    cifar_resnet,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
    resnet110,
)
from tf_precrop.models.shufflenet import shufflenet_v2

ARCHITECTURES = {
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet44": resnet44,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "shufflenet_v2": shufflenet_v2,
    "mobilenet_v2_cifar": mobilenet_v2_cifar,
}
"""Builder of each bundled architecture, by name."""


def get_model(name, **kwargs):
    """Builds a bundled architecture by name.

    Args:
        name: a key of :data:`ARCHITECTURES` (e.g. ``"resnet56"``).
        **kwargs: passed to the builder (``input_shape``, ``classes``,
            ``width``, ``line``, ...).

    Returns:
        The Functional model built by ``ARCHITECTURES[name](**kwargs)``.

    Raises:
        ValueError: ``name`` is not a known architecture.

    Example:

    >>> model = get_model("shufflenet_v2", input_shape=(32, 32, 3), classes=10,
    ...                   width=0.5, stem="cifar")
    >>> model.output_shape
    (None, 10)
    """
    builder = ARCHITECTURES.get(name) if isinstance(name, str) else None
    if builder is None:
        raise ValueError(
            f"Unknown architecture. Expected one of {sorted(ARCHITECTURES)}. "
            f"Received: name={name!r}"
        )
    return builder(**kwargs)


__all__ = [
    "ARCHITECTURES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "cifar_resnet",
    "get_model",
    "make_divisible",
    "mobilenet_v2_cifar",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "shufflenet_v2",
]
