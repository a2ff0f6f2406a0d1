"""The layer registry: one :class:`LayerRule` per layer class, the single extension point.

A rule is everything tf_precrop knows about a layer kind (see
:class:`~tf_precrop.graph.rule_base.LayerRule`): how it moves, ties and costs
channels, which of its weights are prunable kernels, how SynFlow linearises
it, and how it is rebuilt at new widths. Every stage reads this table — the
channel graph, saliency scoring, SynFlow, the plan and the rebuild — so a
layer class registered once is handled everywhere.

Rules are looked up by the layer's class name in a table that fails closed: a
layer class without a rule stops the graph with an error that names it. Users
add rules for their own layers with :func:`register_rule`.

Example:

>>> import tf_precrop
>>> tf_precrop.register_rule("MyGate", "elementwise")   # ties all inputs
>>> tf_precrop.register_rule("MyNoise", "passthrough")  # channels unchanged
>>> tf_precrop.register_rule("MyHead", "fixed")         # never resized
>>> for name in ("MyGate", "MyNoise", "MyHead"):
...     tf_precrop.unregister_rule(name)
"""

import types

from tf_precrop.errors import UnsupportedLayerError
from tf_precrop.graph.compute_rules import (
    ActivationRule,
    BatchNormRule,
    CentredNormRule,
    ConvRule,
    DenseRule,
    DepthwiseRule,
    ElementwiseRule,
    FixedRule,
    PassThroughRule,
    SeparableRule,
)
from tf_precrop.graph.rule_base import LINEARIZATIONS, GroupedView, LayerRule
from tf_precrop.graph.shape_rules import (
    ChannelShuffleRule,
    ChannelSplitRule,
    ConcatenateRule,
    FlattenRule,
    GroupNormalizationRule,
    LambdaRule,
    LayerScaleRule,
    NormalizationRule,
    OperationRule,
    PermuteRule,
    ReshapeRule,
)

__all__ = [
    "LINEARIZATIONS",
    "ActivationRule",
    "BatchNormRule",
    "CentredNormRule",
    "ChannelShuffleRule",
    "ChannelSplitRule",
    "ConcatenateRule",
    "ConvRule",
    "DenseRule",
    "DepthwiseRule",
    "ElementwiseRule",
    "FixedRule",
    "FlattenRule",
    "GroupNormalizationRule",
    "GroupedView",
    "LambdaRule",
    "LayerRule",
    "LayerScaleRule",
    "NormalizationRule",
    "OperationRule",
    "PassThroughRule",
    "PermuteRule",
    "ReshapeRule",
    "SeparableRule",
    "prunable_classes",
    "register_rule",
    "rule_for",
    "rule_of",
    "unregister_rule",
]

# SynFlow's copy drops these (identity); "Activation" keeps its layer, made linear.
_ACTIVATIONS = "ReLU LeakyReLU PReLU ELU Softmax ThresholdedReLU".split()
_PASSTHROUGH = """
Activation UnitNormalization
Dropout SpatialDropout1D SpatialDropout2D SpatialDropout3D GaussianNoise
GaussianDropout AlphaDropout ActivityRegularization Masking Identity
MaxPooling1D MaxPooling2D MaxPooling3D AveragePooling1D AveragePooling2D
AveragePooling3D MaxPool1D MaxPool2D MaxPool3D AvgPool1D AvgPool2D AvgPool3D
GlobalAveragePooling1D GlobalAveragePooling2D GlobalAveragePooling3D
GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D GlobalAvgPool1D
GlobalAvgPool2D GlobalAvgPool3D GlobalMaxPool1D GlobalMaxPool2D GlobalMaxPool3D
ZeroPadding1D ZeroPadding2D ZeroPadding3D UpSampling1D UpSampling2D
UpSampling3D Cropping1D Cropping2D Cropping3D Rescaling Resizing CenterCrop
RandomFlip RandomCrop RandomRotation RandomZoom RandomTranslation
RandomContrast RandomBrightness StochasticDepth
""".split()
_BATCH_NORMS = ("BatchNormalization", "SyncBatchNormalization")
_NON_HOMOGENEOUS = ("UnitNormalization",)

_ELEMENTWISE = "Add Subtract Multiply Average Maximum Minimum CustomScaleLayer".split()

_RULES = {}
_BUILTIN_KINDS = {
    "passthrough": PassThroughRule,
    "elementwise": ElementwiseRule,
    "fixed": FixedRule,
}


def _install_builtin_rules():
    for name in _PASSTHROUGH:
        _RULES[name] = PassThroughRule()
    for name in _NON_HOMOGENEOUS:
        _RULES[name].homogeneous = False
    for name in _PASSTHROUGH:
        if "Pool" in name:
            _RULES[name].latency_kind = "pool"
    _RULES["Activation"].latency_kind = "unary"
    for name in _ACTIVATIONS:
        _RULES[name] = ActivationRule()
    for name in _BATCH_NORMS:
        _RULES[name] = BatchNormRule()
    _RULES["LayerNormalization"] = CentredNormRule()
    _RULES["Rescaling"] = ActivationRule()  # SynFlow's copy drops it too
    for name in _ELEMENTWISE:
        _RULES[name] = ElementwiseRule(homogeneous=name not in ("Multiply",))
    for name in ("Conv1D", "Conv3D", "Convolution1D", "Convolution3D"):
        _RULES[name] = ConvRule()
    for name in ("Conv2D", "Convolution2D"):
        _RULES[name] = ConvRule(pointwise_as_dense=True)
    for name in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"):
        _RULES[name] = ConvRule(transpose=True)
    for name in ("SeparableConv1D", "SeparableConv2D"):
        _RULES[name] = SeparableRule()
    for name in ("DepthwiseConv1D", "DepthwiseConv2D"):
        _RULES[name] = DepthwiseRule()
    _RULES["Dense"] = DenseRule()
    _RULES["Concatenate"] = ConcatenateRule()
    _RULES["Flatten"] = FlattenRule()
    _RULES["Reshape"] = ReshapeRule()
    _RULES["Permute"] = PermuteRule()
    _RULES["ChannelSplit"] = ChannelSplitRule()
    _RULES["ChannelShuffle"] = ChannelShuffleRule()
    _RULES["LayerScale"] = LayerScaleRule()
    _RULES["Normalization"] = NormalizationRule()
    _RULES["GroupNormalization"] = GroupNormalizationRule()
    _RULES["Lambda"] = LambdaRule()
    _RULES["TFOpLambda"] = OperationRule()
    _RULES["SlicingOpLambda"] = OperationRule()


_install_builtin_rules()
_BUILTIN_RULES = dict(_RULES)
OPERATION_RULE = OperationRule()


def register_rule(layer_class, rule):
    """Registers how a (custom) layer class moves channels.

    Args:
        layer_class: the layer class, or its class name.
        rule: ``"passthrough"`` (one input, same channels out; per-channel
            weights are counted), ``"elementwise"`` (all inputs tied to one
            width), ``"fixed"`` (never resized: all its inputs and outputs keep
            their width), or a :class:`LayerRule` instance for full control —
            e.g. ``ConvRule()`` for a ``Conv2D`` subclass, which then is
            costed, scored by every saliency method, linearised by SynFlow and
            rebuilt like a ``Conv2D``.

    The rule applies to the class name exactly (subclasses need their own
    registration): a subclass may change what its parent computes.

    Example:

    >>> import tf_precrop
    >>> tf_precrop.register_rule("MyGate", "elementwise")
    >>> tf_precrop.unregister_rule("MyGate")
    """
    name = layer_class if isinstance(layer_class, str) else layer_class.__name__
    if isinstance(rule, str):
        if rule not in _BUILTIN_KINDS:
            raise ValueError(
                f"Unknown rule kind. Expected one of {sorted(_BUILTIN_KINDS)} or a "
                f"LayerRule instance. Received: rule={rule!r}"
            )
        rule = _BUILTIN_KINDS[rule]()
    if not isinstance(rule, LayerRule):
        raise TypeError(
            "Expected `rule` to be a rule name or a tf_precrop LayerRule instance. "
            f"Received: rule={rule!r} of type {type(rule).__name__}"
        )
    if rule.linearization not in LINEARIZATIONS:
        raise ValueError(
            f"Unknown `linearization` on the rule for {name}. Expected one of "
            f"{LINEARIZATIONS}. Received: linearization={rule.linearization!r}"
        )
    _RULES[name] = rule


def unregister_rule(layer_class):
    """Removes a rule registered with :func:`register_rule` (no-op if absent)."""
    name = layer_class if isinstance(layer_class, str) else layer_class.__name__
    _RULES.pop(name, None)
    if name in _BUILTIN_RULES:
        _RULES[name] = _BUILTIN_RULES[name]


def rule_of(layer):
    """The registered rule of ``layer``'s class, or ``None`` (never raises).

    Used where a layer without a rule is simply not prunable (saliency on a
    bare model); the graph uses :func:`rule_for`, which fails closed.
    """
    return _RULES.get(type(layer).__name__)


def prunable_classes():
    """``{class name: kernel names}`` of every registered prunable layer class, now.

    A read-only snapshot of the registry (it reflects :func:`register_rule`
    calls made before it is taken).

    Example:

    >>> prunable_classes()["SeparableConv2D"]
    ('depthwise_kernel', 'pointwise_kernel')
    """
    return types.MappingProxyType(
        {name: rule.kernels for name, rule in sorted(_RULES.items()) if rule.kernels}
    )


def rule_for(operation, key, is_layer):
    """The rule for one layer/operation; raises for classes without a rule."""
    name = type(operation).__name__
    if not is_layer:
        # Keras 3 operations (``x + 3``, ``x * w``) share class names with layers
        # (Add, Multiply) but not their semantics: judged by shapes and constants.
        return OPERATION_RULE
    if name in _RULES:
        return _RULES[name]
    raise UnsupportedLayerError(
        f"Layer '{key}' of class {type(operation).__module__}.{name} has no channel "
        "rule, so tf_precrop cannot tell how it maps channel counts. Expected a "
        "built-in Keras layer or a registered one. Register it, e.g. "
        f"`tf_precrop.register_rule({name!r}, 'passthrough')` (or 'elementwise', "
        f"'fixed', or a LayerRule). Received: class={name}"
    )
