"""MobileNetV2 (Sandler et al. 2018) adapted to 32x32 CIFAR images.

The block table is the paper's (expansion ``t``, channels ``c``, repeats ``n``,
stride ``s``); for 32x32 inputs the first conv has stride 1 and the second
block stage too, so the stage strides are ``[1, 1, 2, 2, 1, 2, 1]`` and the
last feature map is 4x4, as in the common CIFAR ports.

Example:

>>> from tf_precrop.models import mobilenet_v2_cifar
>>> mobilenet_v2_cifar().output_shape
(None, 10)
"""

from tf_precrop.models.resnet_cifar import (
    _check_input_shape,
    _check_positive_int,
    _check_positive_number,
    _Kit,
)

# (expansion, channels, repeats, stride) per stage, strides adapted to CIFAR.
_BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value, divisor=8, min_value=None):
    """Rounds a channel count to the nearest multiple of ``divisor``.

    The result is at least ``min_value`` (default ``divisor``) and never more
    than 10% below ``value``: if rounding loses more, it steps up one
    ``divisor``.

    Args:
        value: channel count to round (a float is fine, e.g. ``c * width``).
        divisor: the result is a multiple of this.
        min_value: lower bound of the result; defaults to ``divisor``.

    Returns:
        An int multiple of ``divisor``.

    Example:

    >>> make_divisible(32 * 0.35)
    16
    >>> make_divisible(116 * 0.75)
    88
    """
    divisor = _check_positive_int("divisor", divisor)
    _check_positive_number("value", value)
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def _inverted_residual(kit, x, expansion, filters, strides, prefix):
    in_channels = x.shape[-1]
    y = x
    if expansion != 1:
        y = kit.conv(y, in_channels * expansion, 1, 1, f"{prefix}_expand")
        y = kit.bn(y, f"{prefix}_expand_bn")
        y = kit.relu(y, f"{prefix}_expand_relu", max_value=6.0)
    y = kit.depthwise(y, strides, f"{prefix}_dw")
    y = kit.bn(y, f"{prefix}_dw_bn")
    y = kit.relu(y, f"{prefix}_dw_relu", max_value=6.0)
    y = kit.conv(y, filters, 1, 1, f"{prefix}_project")
    y = kit.bn(y, f"{prefix}_project_bn")
    if strides == 1 and in_channels == filters:
        y = kit.layers.Add(name=f"{prefix}_add")([x, y])
    return y


def mobilenet_v2_cifar(
    input_shape=(32, 32, 3),
    classes=10,
    width=1.0,
    weight_decay=0.0,
    line="keras3",
    name=None,
    normalize=False,
    classifier_activation=None,
):
    """Builds MobileNetV2 for CIFAR-sized (32x32) images.

    Layout: ``stem_conv`` (3x3 stride 1, ``make_divisible(32 * width)``
    channels) - ``stem_bn`` - ``stem_relu`` (ReLU6), then 7 stages of inverted
    residual blocks ``stage{s}_block{b}_{expand,expand_bn,expand_relu,dw,dw_bn,
    dw_relu,project,project_bn,add}`` (no expand layers when the expansion is 1;
    ``add`` only where stride is 1 and channels are kept), then ``last_conv``
    (1x1, 1280 channels, ``make_divisible(1280 * width)`` when ``width > 1``) -
    ``last_bn`` - ``last_relu``, ``avg_pool`` and the Dense ``predictions``.

    Args:
        input_shape: ``(height, width, channels)`` of one image.
        classes: number of output units.
        width: channel multiplier; channel counts are
            ``make_divisible(c * width, 8)``.
        weight_decay: L2 factor on conv (not depthwise) and Dense kernels; 0 adds
            no regularizer.
        line: Keras line to build with, ``"keras3"`` or ``"tf_keras"``.
        name: model name; defaults to ``"mobilenet_v2_cifar"``.
        normalize: if True the model takes raw images (float32 in [0, 255]) and
            normalizes them with the CIFAR-10 mean and std inside the model.
        classifier_activation: None for logits, or e.g. ``"softmax"``.

    Returns:
        A Functional model of the chosen Keras line.

    Example:

    >>> model = mobilenet_v2_cifar(classes=100, width=0.5)
    >>> model.output_shape
    (None, 100)
    """
    input_shape = _check_input_shape(input_shape)
    classes = _check_positive_int("classes", classes)
    width = _check_positive_number("width", width)
    kit = _Kit(line, weight_decay)

    inputs, x = kit.inputs(input_shape, normalize)
    x = kit.conv(x, make_divisible(32 * width), 3, 1, "stem_conv")
    x = kit.bn(x, "stem_bn")
    x = kit.relu(x, "stem_relu", max_value=6.0)
    for s, (expansion, channels, repeats, stride) in enumerate(_BLOCKS, start=1):
        filters = make_divisible(channels * width)
        for b in range(1, repeats + 1):
            strides = stride if b == 1 else 1
            x = _inverted_residual(kit, x, expansion, filters, strides, f"stage{s}_block{b}")
    last = make_divisible(1280 * width) if width > 1.0 else 1280
    x = kit.conv(x, last, 1, 1, "last_conv")
    x = kit.bn(x, "last_bn")
    x = kit.relu(x, "last_relu", max_value=6.0)
    outputs = kit.head(x, classes, classifier_activation)
    return kit.model(inputs, outputs, name or "mobilenet_v2_cifar")
