"""Tiny model builders, one per channel-graph pattern.

Every builder takes ``line`` (``"keras3"`` or ``"tf_keras"``) and returns a
small, built model whose layers all carry explicit names, so the channel-group
keys are the same in both Keras lines. Sizes are kept tiny (8x8 or 16x16
inputs, a handful of channels) so that graph walks, rebuilds and forward
passes take milliseconds.

``PATTERNS`` maps a pattern name to its builder; every pattern builds in both
Keras lines (``ops`` records Keras 3 operations in one and ``TFOpLambda``
layers in the other, from the same source). ``REFUSED`` lists the patterns
that :func:`tf_precrop.channel_groups` refuses on purpose and ``REBUILDABLE``
all the others. ``dict_inputs`` is kept out of ``PATTERNS`` (a known rebuild
bug, see tests/test_rebuild.py).
"""

import numpy as np

from tf_precrop.backend import get_line

LINES = ("keras3", "tf_keras")


def keras_of(line):
    """The Keras module (``keras`` or ``tf_keras``) of ``line``."""
    return get_line(line).keras


def _head(k, x, classes=10, name="out"):
    x = k.layers.GlobalAveragePooling2D(name="gap")(x)
    return k.layers.Dense(classes, name=name)(x)


def chain(line="keras3"):
    """Conv → BN → ReLU → MaxPool → Conv → GAP → Dense: a pass-through chain."""
    k = keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    y = k.layers.Conv2D(8, 3, padding="same", name="c1")(x)
    y = k.layers.BatchNormalization(name="bn")(y)
    y = k.layers.ReLU(name="relu")(y)
    y = k.layers.MaxPooling2D(name="pool")(y)
    y = k.layers.Conv2D(12, 3, padding="same", name="c2")(y)
    return k.Model(x, _head(k, y), name="chain")


def residual(line="keras3"):
    """stem → a → b, ``Add([stem, b])``, then a 1x1 conv: stem and b are tied."""
    k = keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    s = k.layers.Conv2D(8, 3, padding="same", name="stem")(x)
    y = k.layers.Conv2D(6, 3, padding="same", name="a")(s)
    y = k.layers.Conv2D(8, 3, padding="same", name="b")(y)
    y = k.layers.Add(name="sum")([s, y])
    y = k.layers.Conv2D(16, 1, name="c")(y)
    return k.Model(x, _head(k, y), name="residual")


def se_block(line="keras3"):
    """Squeeze-excite with ``GlobalAveragePooling2D(keepdims=True)`` and 1x1 convs."""
    k = keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    c = k.layers.Conv2D(16, 3, padding="same", name="c")(x)
    s = k.layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(c)
    s = k.layers.Conv2D(4, 1, activation="relu", name="se_reduce")(s)
    s = k.layers.Conv2D(16, 1, activation="sigmoid", name="se_expand")(s)
    y = k.layers.Multiply(name="excite")([c, s])
    return k.Model(x, _head(k, y), name="se_block")


def se_block_reshape(line="keras3"):
    """Squeeze-excite with GAP → Dense → Dense → ``Reshape((1, 1, C))``."""
    k = keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    c = k.layers.Conv2D(16, 3, padding="same", name="c")(x)
    s = k.layers.GlobalAveragePooling2D(name="squeeze")(c)
    s = k.layers.Dense(4, activation="relu", name="se_reduce")(s)
    s = k.layers.Dense(16, activation="sigmoid", name="se_expand")(s)
    s = k.layers.Reshape((1, 1, 16), name="se_reshape")(s)
    y = k.layers.Multiply(name="excite")([c, s])
    return k.Model(x, _head(k, y), name="se_block_reshape")


def concat_channels(line="keras3"):
    """Two convs (8 and 4 channels) concatenated on the channel axis (12)."""
    k = keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    a = k.layers.Conv2D(8, 3, padding="same", name="a")(x)
    b = k.layers.Conv2D(4, 1, name="b")(x)
    y = k.layers.Concatenate(name="cat")([a, b])
    y = k.layers.Conv2D(6, 3, padding="same", name="c")(y)
    return k.Model(x, _head(k, y), name="concat_channels")


def concat_spatial(line="keras3"):
    """Two convs of 8 channels concatenated along the height axis: tied."""
    k = keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    a = k.layers.Conv2D(8, 3, padding="same", name="a")(x)
    b = k.layers.Conv2D(8, 1, name="b")(x)
    y = k.layers.Concatenate(axis=1, name="cat")([a, b])
    y = k.layers.Conv2D(6, 3, padding="same", name="c")(y)
    return k.Model(x, _head(k, y), name="concat_spatial")


def depthwise(line="keras3"):
    """Conv(8) → DepthwiseConv2D(depth_multiplier=2) (16 channels) → Conv(6)."""
    k = keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    y = k.layers.Conv2D(8, 1, name="a")(x)
    y = k.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(y)
    y = k.layers.Conv2D(6, 1, name="c")(y)
    return k.Model(x, _head(k, y), name="depthwise")


def grouped_conv(line="keras3"):
    """Conv(8) → Conv2D(16, groups=4) → Conv(6): both sides multiple of 4."""
    k = keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    y = k.layers.Conv2D(8, 1, name="a")(x)
    y = k.layers.Conv2D(16, 3, groups=4, padding="same", name="g")(y)
    y = k.layers.Conv2D(6, 1, name="c")(y)
    return k.Model(x, _head(k, y), name="grouped_conv")


def groups_as_depthwise(line="keras3"):
    """Conv(8) → Conv2D(8, groups=8): a depthwise conv, its output tied to its input."""
    k = keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    y = k.layers.Conv2D(8, 1, name="a")(x)
    y = k.layers.Conv2D(8, 3, groups=8, padding="same", name="dwg")(y)
    y = k.layers.Conv2D(6, 1, name="c")(y)
    return k.Model(x, _head(k, y), name="groups_as_depthwise")


def separable(line="keras3"):
    """Conv(8) → SeparableConv2D(16) → GAP → Dense."""
    k = keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    y = k.layers.Conv2D(8, 1, name="a")(x)
    y = k.layers.SeparableConv2D(16, 3, padding="same", name="sep")(y)
    return k.Model(x, _head(k, y), name="separable")


def conv1d(line="keras3"):
    """A sequence model: Conv1D(8) → Conv1D(12) → GlobalAveragePooling1D → Dense."""
    k = keras_of(line)
    x = k.Input((16, 3), name="signal")
    y = k.layers.Conv1D(8, 3, padding="same", name="c1")(x)
    y = k.layers.Conv1D(12, 3, strides=2, name="c2")(y)
    y = k.layers.GlobalAveragePooling1D(name="gap")(y)
    y = k.layers.Dense(10, name="out")(y)
    return k.Model(x, y, name="conv1d")


def conv_transpose(line="keras3"):
    """Conv(8, stride 2) → Conv2DTranspose(4, stride 2) → Conv(3): image to image."""
    k = keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    y = k.layers.Conv2D(8, 3, strides=2, padding="same", name="down")(x)
    y = k.layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="up")(y)
    y = k.layers.Conv2D(3, 1, name="out")(y)
    return k.Model(x, y, name="conv_transpose")


def flatten_dense(line="keras3"):
    """Conv(8, valid 3x3 on 8x8 → 6x6) → Flatten (288) → Dense(16) → Dense(10)."""
    k = keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    y = k.layers.Conv2D(8, 3, name="c")(x)
    y = k.layers.Flatten(name="flat")(y)
    y = k.layers.Dense(16, activation="relu", name="fc")(y)
    y = k.layers.Dense(10, name="out")(y)
    return k.Model(x, y, name="flatten_dense")


def shuffle_layers(line="keras3"):
    """ShuffleNet V2 units built from ``ChannelSplit`` / ``ChannelShuffle`` layers.

    stem(8) → down unit: convs ``p``(4) and ``q``(4) on the full input,
    concat, shuffle → two basic units: split, conv ``b{i}``(4) on the second
    half, concat with the first half, shuffle → Conv(6) → GAP → Dense.
    """
    k = keras_of(line)
    blocks = _shuffle_layers_of(line)
    x = k.Input((8, 8, 3), name="image")
    s = k.layers.Conv2D(8, 1, name="stem")(x)
    p = k.layers.Conv2D(4, 1, name="p")(s)
    q = k.layers.Conv2D(4, 1, name="q")(s)
    y = k.layers.Concatenate(name="cat0")([p, q])
    y = blocks.ChannelShuffle(2, name="shuffle0")(y)
    for i in (1, 2):
        passed, branch = blocks.ChannelSplit(2, name=f"split{i}")(y)
        branch = k.layers.Conv2D(4, 1, name=f"b{i}")(branch)
        y = k.layers.Concatenate(name=f"cat{i}")([passed, branch])
        y = blocks.ChannelShuffle(2, name=f"shuffle{i}")(y)
    y = k.layers.Conv2D(6, 1, name="c")(y)
    return k.Model(x, _head(k, y), name="shuffle_layers")


def split_after_conv(line="keras3"):
    """A basic ShuffleNet unit whose input is a plain conv, followed by a second unit.

    stem(8) → split → conv ``b1``(4) on the second half → concat (4 + 4) →
    split → conv ``b2``(4) → concat → GAP → Dense.
    """
    k = keras_of(line)
    blocks = _shuffle_layers_of(line)
    x = k.Input((8, 8, 3), name="image")
    y = k.layers.Conv2D(8, 1, name="stem")(x)
    for i in (1, 2):
        passed, branch = blocks.ChannelSplit(2, name=f"split{i}")(y)
        branch = k.layers.Conv2D(4, 1, name=f"b{i}")(branch)
        y = k.layers.Concatenate(name=f"cat{i}")([passed, branch])
    return k.Model(x, _head(k, y), name="split_after_conv")


def _shuffle_layers_of(line):
    from tf_precrop.layers import for_line

    return for_line(line)


def shuffle_reshape(line="keras3"):
    """Concat of two 4-channel convs, then Reshape → Permute → Reshape (shuffle)."""
    k = keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    a = k.layers.Conv2D(4, 1, name="a")(x)
    b = k.layers.Conv2D(4, 1, name="b")(x)
    y = k.layers.Concatenate(name="cat")([a, b])
    y = k.layers.Reshape((8, 8, 2, 4), name="split_groups")(y)
    y = k.layers.Permute((1, 2, 4, 3), name="swap")(y)
    y = k.layers.Reshape((8, 8, 8), name="merge_groups")(y)
    y = k.layers.Conv2D(6, 1, name="c")(y)
    return k.Model(x, _head(k, y), name="shuffle_reshape")


def nested_mobilenet(line="keras3"):
    """``Sequential([MobileNetV2(include_top=False, 32x32), GAP, Dense(10)])``."""
    k = keras_of(line)
    base = k.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(32, 32, 3), alpha=0.35
    )
    return k.Sequential(
        [
            base,
            k.layers.GlobalAveragePooling2D(name="gap"),
            k.layers.Dense(10, name="out"),
        ],
        name="nested_mobilenet",
    )


def nested_functional(line="keras3"):
    """A functional ``inner`` model (Conv 8 → Conv 12) used as a layer of an outer one."""
    k = keras_of(line)
    t = k.Input((8, 8, 5), name="inner_in")
    u = k.layers.Conv2D(8, 3, padding="same", name="i1")(t)
    u = k.layers.ReLU(name="i_relu")(u)
    u = k.layers.Conv2D(12, 3, padding="same", name="i2")(u)
    inner = k.Model(t, u, name="inner")
    x = k.Input((8, 8, 3), name="image")
    y = k.layers.Conv2D(5, 1, name="pre")(x)
    y = inner(y)
    y = k.layers.Conv2D(6, 1, name="post")(y)
    return k.Model(x, _head(k, y), name="nested_functional")


def two_in_two_out(line="keras3"):
    """Inputs ``image`` (8x8x3) and ``meta`` (4,); outputs ``cls`` (10) and ``box`` (4)."""
    k = keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    m = k.Input((4,), name="meta")
    y = k.layers.Conv2D(8, 3, padding="same", name="c")(x)
    y = k.layers.GlobalAveragePooling2D(name="gap")(y)
    z = k.layers.Dense(8, name="meta_fc")(m)
    j = k.layers.Concatenate(name="join")([y, z])
    cls = k.layers.Dense(10, name="cls")(j)
    box = k.layers.Dense(4, name="box")(j)
    return k.Model([x, m], [cls, box], name="two_in_two_out")


def dict_inputs(line="keras3"):
    """Inputs given as a dict whose keys are not in sorted order.

    ``{"zimage": 8x8x3, "ameta": (4,)}`` → Conv(8) → GAP and Dense(6) →
    Concatenate → Dense(2). Not in :data:`PATTERNS`: ``rebuild`` mis-assigns its
    inputs today (see tests/test_rebuild.py).
    """
    k = keras_of(line)
    image = k.Input((8, 8, 3), name="zimage")
    meta = k.Input((4,), name="ameta")
    y = k.layers.Conv2D(8, 3, name="c")(image)
    y = k.layers.GlobalAveragePooling2D(name="gap")(y)
    z = k.layers.Dense(6, name="m")(meta)
    y = k.layers.Concatenate(name="cat")([y, z])
    return k.Model({"zimage": image, "ameta": meta}, k.layers.Dense(2, name="out")(y))


def shared_layer(line="keras3"):
    """One Conv2D ``shared``(6) applied to two convs ``a``(8) and ``b``(8), then Concatenate.

    The shared layer's weights force its two inputs (a, b) to one width and
    its two outputs to one width; nothing else ties them.
    """
    k = keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    a = k.layers.Conv2D(8, 1, name="a")(x)
    b = k.layers.Conv2D(8, 3, padding="same", name="b")(x)
    shared = k.layers.Conv2D(6, 3, padding="same", name="shared")
    y = k.layers.Concatenate(name="cat")([shared(a), shared(b)])
    return k.Model(x, _head(k, y), name="shared_layer")


def ops(line="keras3"):
    """``(relu(c) + 3.0) * c`` written with Python operators on symbolic tensors.

    Keras 3 records the arithmetic as operations; tf_keras as ``TFOpLambda``
    layers.
    """
    k = keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    c = k.layers.Conv2D(8, 3, padding="same", name="c")(x)
    r = k.layers.ReLU(name="relu")(c)
    y = (r + 3.0) * c
    y = k.layers.Conv2D(6, 1, name="post")(y)
    return k.Model(x, _head(k, y), name="ops")


def lambda_agnostic(line="keras3"):
    """``Lambda(lambda t: t * 2.0 - 1.0)`` between two convs: keeps its channels."""
    k = keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    y = k.layers.Conv2D(8, 3, padding="same", name="c")(x)
    y = k.layers.Lambda(lambda t: t * 2.0 - 1.0, name="scale_shift")(y)
    y = k.layers.Conv2D(6, 1, name="post")(y)
    return k.Model(x, _head(k, y), name="lambda_agnostic")


def lambda_halves(line="keras3"):
    """``Lambda(lambda t: t[..., : C // 2])``: its output width follows its input."""
    k = keras_of(line)
    x = k.Input((8, 8, 3), name="image")
    y = k.layers.Conv2D(8, 3, padding="same", name="c")(x)
    y = k.layers.Lambda(lambda t: t[..., : t.shape[-1] // 2], name="first_half")(y)
    y = k.layers.Conv2D(6, 1, name="post")(y)
    return k.Model(x, _head(k, y), name="lambda_halves")


def channels_first(line="keras3"):
    """A Conv2D with ``data_format="channels_first"`` (refused by the graph)."""
    k = keras_of(line)
    x = k.Input((3, 8, 8), name="image")
    y = k.layers.Conv2D(8, 3, data_format="channels_first", name="c")(x)
    y = k.layers.Flatten(name="flat")(y)
    y = k.layers.Dense(10, name="out")(y)
    return k.Model(x, y, name="channels_first")


def densenet_like(line="keras3", blocks=2, layers_per_block=3, growth=4):
    """A DenseNet-style model: each layer's output is concatenated to its input.

    stem(8) → per block ``layers_per_block`` × [BN → ReLU → Conv(growth) →
    Concatenate] → transition (BN → Conv(half) → AvgPool) → ... → GAP → Dense.
    """
    k = keras_of(line)
    x = k.Input((16, 16, 3), name="image")
    y = k.layers.Conv2D(8, 3, padding="same", name="stem")(x)
    for b in range(1, blocks + 1):
        for i in range(1, layers_per_block + 1):
            p = f"block{b}_layer{i}"
            z = k.layers.BatchNormalization(name=f"{p}_bn")(y)
            z = k.layers.ReLU(name=f"{p}_relu")(z)
            z = k.layers.Conv2D(growth, 3, padding="same", name=f"{p}_conv")(z)
            y = k.layers.Concatenate(name=f"{p}_cat")([y, z])
        if b < blocks:
            p = f"transition{b}"
            y = k.layers.BatchNormalization(name=f"{p}_bn")(y)
            y = k.layers.Conv2D(int(y.shape[-1]) // 2, 1, name=f"{p}_conv")(y)
            y = k.layers.AveragePooling2D(2, name=f"{p}_pool")(y)
    y = k.layers.BatchNormalization(name="final_bn")(y)
    return k.Model(x, _head(k, y), name="densenet_like")


PATTERNS = {
    "chain": chain,
    "residual": residual,
    "se_block": se_block,
    "se_block_reshape": se_block_reshape,
    "concat_channels": concat_channels,
    "concat_spatial": concat_spatial,
    "depthwise": depthwise,
    "grouped_conv": grouped_conv,
    "groups_as_depthwise": groups_as_depthwise,
    "separable": separable,
    "conv1d": conv1d,
    "conv_transpose": conv_transpose,
    "flatten_dense": flatten_dense,
    "shuffle_layers": shuffle_layers,
    "split_after_conv": split_after_conv,
    "shuffle_reshape": shuffle_reshape,
    "nested_mobilenet": nested_mobilenet,
    "nested_functional": nested_functional,
    "two_in_two_out": two_in_two_out,
    "shared_layer": shared_layer,
    "ops": ops,
    "lambda_agnostic": lambda_agnostic,
    "lambda_halves": lambda_halves,
    "channels_first": channels_first,
    "densenet_like": densenet_like,
}
"""Every builder, by pattern name."""

REFUSED = ("lambda_halves", "channels_first")
"""Patterns that :func:`tf_precrop.channel_groups` refuses on purpose."""

REBUILDABLE = tuple(name for name in PATTERNS if name not in REFUSED)
"""Patterns that :func:`tf_precrop.rebuild` handles."""


def build(name, line="keras3"):
    """Builds pattern ``name`` in Keras line ``line``."""
    return PATTERNS[name](line=line)


def sample_inputs(model, seed=0):
    """Random float32 inputs matching ``model``'s inputs (batch of 2)."""
    rng = np.random.default_rng(seed)
    shapes = [tuple(t.shape[1:]) for t in model.inputs]
    arrays = [rng.standard_normal((2, *s)).astype("float32") for s in shapes]
    return arrays[0] if len(arrays) == 1 else arrays


def output_shapes(model):
    """``model``'s output shapes as a list of tuples (one per output)."""
    outs = model.outputs
    return [tuple(t.shape) for t in outs]


def input_shapes(model):
    """``model``'s input shapes as a list of tuples (one per input)."""
    return [tuple(t.shape) for t in model.inputs]


# ------------------------------------------------------------ independent counts
_KERNEL_LAYERS = (
    "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D",
    "SeparableConv2D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "Dense",
)


def _spatial(shape):
    import math

    return math.prod(int(d) for d in shape[1:-1])


def call_macs(layer, in_shape, out_shape):
    """MACs of one call of a kernel layer, from its config and the call's shapes.

    Written out per layer kind from ``kernel_size``, ``filters``/``units``,
    ``groups`` and ``depth_multiplier`` — independent of the channel graph's
    cost polynomials. 0 for layers without kernels.
    """
    import math

    name = type(layer).__name__
    if name not in _KERNEL_LAYERS:
        return 0
    cin = int(in_shape[-1])
    if name == "Dense":
        return _spatial(in_shape) * cin * layer.units
    taps = math.prod(layer.kernel_size)
    if name.startswith("Depthwise"):
        return _spatial(out_shape) * taps * cin * layer.depth_multiplier
    if name.startswith("Separable"):
        dm = layer.depth_multiplier
        return _spatial(out_shape) * (taps * cin * dm + cin * dm * layer.filters)
    if name.endswith("Transpose"):
        return _spatial(in_shape) * taps * cin * layer.filters
    return _spatial(out_shape) * taps * (cin // getattr(layer, "groups", 1)) * layer.filters


def independent_macs(model):
    """Total MACs of ``model`` per example: every call of every kernel layer, nested models too."""
    from tf_precrop.backend import line_of  # node access only; no cost formulas

    total = 0
    for layer in model.layers:
        if hasattr(layer, "layers") and hasattr(layer, "inputs"):  # a nested model
            calls = max(1, len(getattr(layer, "_inbound_nodes", [])))
            total += calls * independent_macs(layer)
            continue
        if type(layer).__name__ not in _KERNEL_LAYERS:
            continue
        line = line_of(layer)
        for node in layer._inbound_nodes:
            ins, outs = line.node_inputs(node), line.node_outputs(node)
            total += call_macs(layer, tuple(ins[0].shape), tuple(outs[0].shape))
    return total


# ------------------------------------------------------------ the compatibility sweep
#: One keras.applications model per family (Keras 3), and tf_keras RegNet (only there):
#: the CI subset of benchmarks/compat_sweep.py (tests/test_sweep.py, tests/test_mac_count.py).
SWEEP_CASES = [
    ("ResNet50", "keras3"),
    ("ResNet50V2", "keras3"),
    ("MobileNet", "keras3"),
    ("MobileNetV2", "keras3"),
    ("MobileNetV3Small", "keras3"),
    ("EfficientNetB0", "keras3"),
    ("EfficientNetV2B0", "keras3"),
    ("DenseNet121", "keras3"),
    ("Xception", "keras3"),
    ("InceptionV3", "keras3"),
    ("NASNetMobile", "keras3"),
    ("ConvNeXtTiny", "keras3"),
    ("VGG16", "keras3"),
    ("RegNetX002", "tf_keras"),
]


def benchmark_script(name):
    """``benchmarks/<name>.py`` imported as a module (once per process), for its functions."""
    import importlib.util
    import pathlib
    import sys

    if name in sys.modules:
        return sys.modules[name]
    script = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def compat_sweep():
    """``benchmarks/compat_sweep.py`` imported as a module (its ``build``, ``check_model``...)."""
    return benchmark_script("compat_sweep")


def fake_latency_table(model, num_threads=2, precision="fp32", constant_ms=0.5, scale=1e-4):
    """A hand-built :class:`~tf_precrop.latency.LatencyTable` for ``model``, timed by nothing.

    Every grid point the model's probes need costs ``0.001 + scale * Π widths``
    ms (bilinear interpolation reproduces a product exactly), and the dense
    model costs its layer sum plus ``constant_ms``. Plans on it take no
    LiteRT timing at all.
    """
    import tf_precrop
    from tf_precrop import latency

    graph = tf_precrop.channel_groups(model)
    probes = latency.probes_of(graph)
    table = latency.LatencyTable(num_threads, precision)
    for probe, grids in probes:
        for point in table.missing(probe.signature, grids):
            table.add(probe.signature, point, 1e-3 + scale * float(np.prod(point)))
    layer_sum = latency.latency_cost(graph, table, dense_ms=0.0, probes=probes).layer_sum_dense
    table.add_model(latency.fingerprint(graph), model.name, layer_sum + constant_ms)
    return table
