"""Model graph stage: channel groups, layer rules and width algebra."""

from tf_precrop.graph.channel_graph import ChannelGraph, ChannelGroup, LayerNode, channel_groups
from tf_precrop.graph.rules import LayerRule, register_rule, unregister_rule

__all__ = [
    "ChannelGraph",
    "ChannelGroup",
    "LayerNode",
    "LayerRule",
    "channel_groups",
    "register_rule",
    "unregister_rule",
]
