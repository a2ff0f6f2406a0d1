"""CIFAR ResNets (He et al. 2016, "Deep Residual Learning", section 4.2).

Three stages of ``16 / 32 / 64`` channels (times ``width``), each of
``n = (depth - 2) / 6`` basic blocks (two conv3x3-BN layers), global average
pooling and a Dense classifier. Shortcuts follow *option B*: identity when the
shape is kept, a strided 1x1 conv + BN projection when it changes.

This module also holds the small kit (argument checks, input normalization,
conv/BN helpers, classifier head) that the other bundled architectures share.

Example:

>>> from tf_precrop.models import resnet20
>>> model = resnet20()
>>> model.count_params()
274042
"""

import numbers

from tf_precrop.backend import get_line

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
"""Per-channel mean of the CIFAR-10 training images, in [0, 1]."""

CIFAR10_STD = (0.2470, 0.2435, 0.2616)
"""Per-channel standard deviation of the CIFAR-10 training images, in [0, 1]."""

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


# --------------------------------------------------------------------- checks
def _check_input_shape(input_shape):
    ok = isinstance(input_shape, (tuple, list)) and len(input_shape) == 3
    if ok:
        for i, dim in enumerate(input_shape):
            if dim is None and i < 2:
                continue
            if not isinstance(dim, numbers.Integral) or isinstance(dim, bool) or dim < 1:
                ok = False
    if not ok:
        raise ValueError(
            "`input_shape` must be (height, width, channels) with positive integers "
            "(height and width may be None). Received: "
            f"input_shape={input_shape!r}"
        )
    return tuple(None if d is None else int(d) for d in input_shape)


def _check_positive_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return int(value)


def _check_positive_number(name, value, allow_zero=False):
    bad = not isinstance(value, numbers.Real) or isinstance(value, bool)
    if not bad:
        bad = value < 0 if allow_zero else value <= 0
    if bad:
        expected = "a non-negative number" if allow_zero else "a positive number"
        raise ValueError(f"`{name}` must be {expected}. Received: {name}={value!r}")
    return float(value)


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(
            f"Unknown `{name}`. Expected one of {tuple(choices)}. Received: {name}={value!r}"
        )
    return value


# ------------------------------------------------------------------------ kit
class _Kit:
    """Layer factories bound to one Keras line and one weight-decay setting."""

    def __init__(self, line, weight_decay):
        self.keras = get_line(line).keras
        self.layers = self.keras.layers
        self.weight_decay = _check_positive_number("weight_decay", weight_decay, allow_zero=True)

    def regularizer(self):
        if self.weight_decay > 0:
            return self.keras.regularizers.L2(self.weight_decay)
        return None

    def inputs(self, input_shape, normalize):
        """The model input and, when ``normalize``, the normalized tensor after it."""
        inputs = self.keras.Input(shape=input_shape, name="image")
        x = inputs
        if normalize:
            if input_shape[-1] != len(CIFAR10_MEAN):
                raise ValueError(
                    "`normalize=True` applies the 3-channel CIFAR-10 mean and std, so "
                    "the input must have 3 channels. Received: "
                    f"input_shape={input_shape!r}"
                )
            x = self.layers.Rescaling(1.0 / 255.0, name="input_rescale")(x)
            x = self.layers.Normalization(
                axis=-1,
                mean=list(CIFAR10_MEAN),
                variance=[s * s for s in CIFAR10_STD],
                name="input_normalize",
            )(x)
        return inputs, x

    def conv(self, x, filters, kernel_size, strides, name):
        return self.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            kernel_regularizer=self.regularizer(),
            name=name,
        )(x)

    def depthwise(self, x, strides, name):
        # No weight decay on depthwise kernels (few weights, hurt by decay).
        return self.layers.DepthwiseConv2D(
            3,
            strides=strides,
            padding="same",
            use_bias=False,
            depthwise_initializer="he_normal",
            name=name,
        )(x)

    def bn(self, x, name):
        return self.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)(
            x
        )

    def relu(self, x, name, max_value=None):
        return self.layers.ReLU(max_value=max_value, name=name)(x)

    def head(self, x, classes, classifier_activation):
        x = self.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return self.layers.Dense(
            classes,
            activation=classifier_activation,
            kernel_regularizer=self.regularizer(),
            name="predictions",
        )(x)

    def model(self, inputs, outputs, name):
        return self.keras.Model(inputs, outputs, name=name)


# --------------------------------------------------------------------- ResNet
_STAGE_CHANNELS = (16, 32, 64)


def _basic_block(kit, x, filters, strides, prefix):
    shortcut = x
    y = kit.conv(x, filters, 3, strides, f"{prefix}_conv1")
    y = kit.bn(y, f"{prefix}_bn1")
    y = kit.relu(y, f"{prefix}_relu1")
    y = kit.conv(y, filters, 3, 1, f"{prefix}_conv2")
    y = kit.bn(y, f"{prefix}_bn2")
    if strides != 1 or x.shape[-1] != filters:
        shortcut = kit.conv(x, filters, 1, strides, f"{prefix}_shortcut_conv")
        shortcut = kit.bn(shortcut, f"{prefix}_shortcut_bn")
    y = kit.layers.Add(name=f"{prefix}_add")([shortcut, y])
    return kit.relu(y, f"{prefix}_out")


def cifar_resnet(
    depth,
    input_shape=(32, 32, 3),
    classes=10,
    width=1.0,
    weight_decay=0.0,
    line="keras3",
    name=None,
    normalize=False,
    classifier_activation=None,
):
    """Builds a CIFAR ResNet of any depth ``6n + 2`` (He et al. 2016).

    Layout: ``stem_conv`` (3x3, 16 channels) - BN - ReLU, then stages
    ``stage1..stage3`` of ``n`` basic blocks with 16/32/64 channels (times
    ``width``); the first block of stages 2 and 3 has stride 2 and an option-B
    projection shortcut (``*_shortcut_conv`` 1x1 stride 2 + ``*_shortcut_bn``).
    Ends with ``avg_pool`` and the Dense ``predictions`` layer. Block layers are
    named ``stage{s}_block{b}_{conv1,bn1,relu1,conv2,bn2,add,out}``.

    Args:
        depth: total number of weighted layers, ``6n + 2`` (20, 32, 44, 56, 110, ...).
        input_shape: ``(height, width, channels)`` of one image.
        classes: number of output units.
        width: channel multiplier; stage channels are ``max(1, round(c * width))``.
        weight_decay: L2 factor on conv and Dense kernels (``weight_decay *
            sum(w**2)`` is added to the loss); 0 adds no regularizer.
        line: Keras line to build with, ``"keras3"`` or ``"tf_keras"``.
        name: model name; defaults to ``"resnet{depth}"``.
        normalize: if True the model takes raw images (float32 in [0, 255]) and
            scales them by 1/255 and normalizes with the CIFAR-10 mean and std
            (layers ``input_rescale`` and ``input_normalize``).
        classifier_activation: activation of the last layer; None gives logits,
            ``"softmax"`` probabilities.

    Returns:
        A Functional model of the chosen Keras line.

    Example:

    >>> model = cifar_resnet(20, width=0.5)
    >>> model.output_shape
    (None, 10)
    """
    depth = _check_positive_int("depth", depth)
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(
            "`depth` of a CIFAR ResNet must be 6n + 2 with n >= 1 (20, 32, 44, 56, "
            f"110, ...). Received: depth={depth}"
        )
    input_shape = _check_input_shape(input_shape)
    classes = _check_positive_int("classes", classes)
    width = _check_positive_number("width", width)
    kit = _Kit(line, weight_decay)
    blocks = (depth - 2) // 6
    channels = [max(1, round(c * width)) for c in _STAGE_CHANNELS]

    inputs, x = kit.inputs(input_shape, normalize)
    x = kit.conv(x, channels[0], 3, 1, "stem_conv")
    x = kit.bn(x, "stem_bn")
    x = kit.relu(x, "stem_relu")
    for s, filters in enumerate(channels, start=1):
        for b in range(1, blocks + 1):
            strides = 2 if (s > 1 and b == 1) else 1
            x = _basic_block(kit, x, filters, strides, f"stage{s}_block{b}")
    outputs = kit.head(x, classes, classifier_activation)
    return kit.model(inputs, outputs, name or f"resnet{depth}")


def _fixed_depth(depth):
    def builder(
        input_shape=(32, 32, 3),
        classes=10,
        width=1.0,
        weight_decay=0.0,
        line="keras3",
        name=None,
        normalize=False,
        classifier_activation=None,
    ):
        return cifar_resnet(
            depth,
            input_shape=input_shape,
            classes=classes,
            width=width,
            weight_decay=weight_decay,
            line=line,
            name=name,
            normalize=normalize,
            classifier_activation=classifier_activation,
        )

    builder.__name__ = builder.__qualname__ = f"resnet{depth}"
    builder.__doc__ = f"""Builds ResNet-{depth} for CIFAR ({(depth - 2) // 6} blocks per stage).

    Same as ``cifar_resnet({depth}, ...)``; see :func:`cifar_resnet` for the
    layout and layer names.

    Args:
        input_shape: ``(height, width, channels)`` of one image.
        classes: number of output units.
        width: channel multiplier (``max(1, round(c * width))``).
        weight_decay: L2 factor on conv and Dense kernels; 0 adds none.
        line: ``"keras3"`` or ``"tf_keras"``.
        name: model name; defaults to ``"resnet{depth}"``.
        normalize: if True, take raw [0, 255] images and normalize in the model.
        classifier_activation: None for logits, or e.g. ``"softmax"``.

    Returns:
        A Functional model of the chosen Keras line.

    Example:

    >>> model = resnet{depth}(classes=100)
    >>> model.output_shape
    (None, 100)
    """
    return builder


resnet20 = _fixed_depth(20)
resnet32 = _fixed_depth(32)
resnet44 = _fixed_depth(44)
resnet56 = _fixed_depth(56)
resnet110 = _fixed_depth(110)
