"""ShuffleNet V2 (Ma et al. 2018, "ShuffleNet V2: Practical Guidelines ...").

The channel split and channel shuffle are the serializable
:class:`~tf_precrop.layers.ChannelSplit` / ``ChannelShuffle`` layers of the
chosen Keras line. With ``shuffle="reshape"`` the shuffle is instead built
from the common ``Reshape -> Permute -> Reshape`` pattern (the split stays a
``ChannelSplit`` layer).

Example:

>>> from tf_precrop.models import shufflenet_v2
>>> model = shufflenet_v2()
>>> model.count_params() > 2_278_604
True
"""

from tf_precrop.models.mobilenet_cifar import make_divisible
from tf_precrop.models.resnet_cifar import (
    _check_choice,
    _check_input_shape,
    _check_positive_int,
    _check_positive_number,
    _Kit,
)

# width -> (stage2, stage3, stage4 output channels, conv5 channels), Table 5.
_WIDTHS = {
    0.5: (48, 96, 192, 1024),
    1.0: (116, 232, 464, 1024),
    1.5: (176, 352, 704, 1024),
    2.0: (244, 488, 976, 2048),
}
_REPEATS = (4, 8, 4)
_STEM_CHANNELS = 24


def _channels_for(width):
    if width in _WIDTHS:
        return _WIDTHS[width]
    stages = tuple(make_divisible(c * width, 8) for c in _WIDTHS[1.0][:3])
    return stages + (2048 if width >= 2.0 else 1024,)


def _shuffle(kit, blocks, x, mode, prefix):
    if mode == "layer":
        return blocks.ChannelShuffle(2, name=f"{prefix}_shuffle")(x)
    h, w, c = x.shape[1:]
    if h is None or w is None:
        raise ValueError(
            '`shuffle="reshape"` builds fixed Reshape layers, so the spatial size '
            "must be known. Expected an `input_shape` with integer height and "
            f'width, or shuffle="layer". Received: feature map shape={tuple(x.shape)}'
        )
    x = kit.layers.Reshape((h, w, 2, c // 2), name=f"{prefix}_shuffle_reshape1")(x)
    x = kit.layers.Permute((1, 2, 4, 3), name=f"{prefix}_shuffle_permute")(x)
    return kit.layers.Reshape((h, w, c), name=f"{prefix}_shuffle_reshape2")(x)


def _branch(kit, x, channels, strides, prefix):
    """1x1 conv-BN-ReLU, dw3x3-BN, 1x1 conv-BN-ReLU."""
    y = kit.conv(x, channels, 1, 1, f"{prefix}_conv1")
    y = kit.bn(y, f"{prefix}_bn1")
    y = kit.relu(y, f"{prefix}_relu1")
    y = kit.depthwise(y, strides, f"{prefix}_dw")
    y = kit.bn(y, f"{prefix}_dw_bn")
    y = kit.conv(y, channels, 1, 1, f"{prefix}_conv2")
    y = kit.bn(y, f"{prefix}_bn2")
    return kit.relu(y, f"{prefix}_relu2")


def _down_unit(kit, blocks, x, out_channels, shuffle, prefix):
    half = out_channels // 2
    # branch 1 (the "projection"): dw3x3 s2-BN, 1x1 conv-BN-ReLU on the full input.
    p = kit.depthwise(x, 2, f"{prefix}_proj_dw")
    p = kit.bn(p, f"{prefix}_proj_dw_bn")
    p = kit.conv(p, half, 1, 1, f"{prefix}_proj_conv")
    p = kit.bn(p, f"{prefix}_proj_bn")
    p = kit.relu(p, f"{prefix}_proj_relu")
    y = _branch(kit, x, half, 2, prefix)
    y = kit.layers.Concatenate(name=f"{prefix}_concat")([p, y])
    return _shuffle(kit, blocks, y, shuffle, prefix)


def _basic_unit(kit, blocks, x, shuffle, prefix):
    passed, y = blocks.ChannelSplit(2, name=f"{prefix}_split")(x)
    y = _branch(kit, y, x.shape[-1] // 2, 1, prefix)
    y = kit.layers.Concatenate(name=f"{prefix}_concat")([passed, y])
    return _shuffle(kit, blocks, y, shuffle, prefix)


def shufflenet_v2(
    input_shape=(224, 224, 3),
    classes=1000,
    width=1.0,
    stem="imagenet",
    shuffle="layer",
    weight_decay=0.0,
    line="keras3",
    name=None,
    normalize=False,
    classifier_activation=None,
):
    """Builds ShuffleNet V2.

    Layout: ``stem_conv`` (3x3, 24 channels) - ``stem_bn`` - ``stem_relu``, plus
    ``stem_pool`` (max-pool 3x3 stride 2) for the ImageNet stem; stages
    ``stage2..stage4`` of 4, 8, 4 units; ``conv5`` (1x1) - ``conv5_bn`` -
    ``conv5_relu``; ``avg_pool`` and the Dense ``predictions``.

    The first unit of each stage downsamples: both branches read the full
    input (``*_proj_dw``/``*_proj_dw_bn``/``*_proj_conv``/``*_proj_bn``/
    ``*_proj_relu``, and ``*_conv1``/``*_bn1``/``*_relu1``/``*_dw``/``*_dw_bn``/
    ``*_conv2``/``*_bn2``/``*_relu2``), then ``*_concat`` and ``*_shuffle``.
    The other units split the input with ``*_split``, pass the first half
    through and run the second through the same 1x1/dw/1x1 branch before
    ``*_concat`` and ``*_shuffle``. Unit names are ``stage{s}_block{b}``.

    Args:
        input_shape: ``(height, width, channels)`` of one image.
        classes: number of output units.
        width: 0.5, 1.0, 1.5 or 2.0 use the paper's channel table
            (stage channels 48/96/192, 116/232/464, 176/352/704, 244/488/976;
            conv5 1024, 2048 for 2.0). Other values scale the 1.0 table with
            ``make_divisible(c * width, 8)`` (conv5 2048 from width 2.0 up).
        stem: ``"imagenet"`` (conv3x3 stride 2 + max-pool, for 224x224) or
            ``"cifar"`` (conv3x3 stride 1, no pool, for 32x32).
        shuffle: ``"layer"`` builds each shuffle as a ``ChannelShuffle`` layer;
            ``"reshape"`` as ``Reshape((h, w, 2, c // 2))`` (``*_shuffle_reshape1``)
            - ``Permute((1, 2, 4, 3))`` (``*_shuffle_permute``) -
            ``Reshape((h, w, c))`` (``*_shuffle_reshape2``), which needs a fixed
            spatial input size.
        weight_decay: L2 factor on conv (not depthwise) and Dense kernels; 0 adds
            no regularizer.
        line: Keras line to build with, ``"keras3"`` or ``"tf_keras"``.
        name: model name; defaults to ``"shufflenet_v2_x1_0"`` (width in the name).
        normalize: if True the model takes raw images (float32 in [0, 255]) and
            normalizes them with the CIFAR-10 mean and std inside the model.
        classifier_activation: None for logits, or e.g. ``"softmax"``.

    Returns:
        A Functional model of the chosen Keras line.

    Example:

    >>> model = shufflenet_v2((32, 32, 3), classes=10, width=0.5, stem="cifar")
    >>> model.get_layer("conv5").output.shape[1:]
    (4, 4, 1024)
    """
    input_shape = _check_input_shape(input_shape)
    classes = _check_positive_int("classes", classes)
    width = _check_positive_number("width", width)
    stem = _check_choice("stem", stem, ("imagenet", "cifar"))
    shuffle = _check_choice("shuffle", shuffle, ("layer", "reshape"))
    kit = _Kit(line, weight_decay)
    from tf_precrop.layers import for_line  # imports Keras; deferred to build time

    blocks = for_line(line)
    *stage_channels, last = _channels_for(width)

    inputs, x = kit.inputs(input_shape, normalize)
    x = kit.conv(x, _STEM_CHANNELS, 3, 2 if stem == "imagenet" else 1, "stem_conv")
    x = kit.bn(x, "stem_bn")
    x = kit.relu(x, "stem_relu")
    if stem == "imagenet":
        x = kit.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for s, (channels, repeats) in enumerate(zip(stage_channels, _REPEATS, strict=True), start=2):
        x = _down_unit(kit, blocks, x, channels, shuffle, f"stage{s}_block1")
        for b in range(2, repeats + 1):
            x = _basic_unit(kit, blocks, x, shuffle, f"stage{s}_block{b}")
    x = kit.conv(x, last, 1, 1, "conv5")
    x = kit.bn(x, "conv5_bn")
    x = kit.relu(x, "conv5_relu")
    outputs = kit.head(x, classes, classifier_activation)
    return kit.model(inputs, outputs, name or _default_name(width))


def _default_name(width):
    text = f"{width:g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return "shufflenet_v2_x" + text.replace(".", "_").replace("-", "m")
