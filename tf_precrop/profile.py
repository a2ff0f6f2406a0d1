"""Cost report: per-layer parameters and MACs of a model.

MAC convention: multiply-accumulates of one example (batch excluded) in the
layers that have kernels — Conv (per output position: k·k·C_in/groups·C_out),
transposed Conv (per *input* position), DepthwiseConv, SeparableConv (depthwise
plus pointwise) and Dense (per leading position). Bias additions, batch
normalisation, activations, pooling and element-wise merges count zero, as in
the FLOPs tables of the pruning literature (1 MAC = 2 FLOPs).
"""

import dataclasses
import json

from tf_precrop._io import write_text
from tf_precrop._table import render_table
from tf_precrop.graph.channel_graph import channel_groups


@dataclasses.dataclass(frozen=True)
class LayerCost:
    key: str
    class_name: str
    params: int
    macs: int


@dataclasses.dataclass(frozen=True)
class Profile:
    """Per-layer and total params/MACs of one model (or of a width plan).

    Attributes:
        layers: tuple of :class:`LayerCost` in graph order.
        params: total parameters (equals ``model.count_params()``).
        macs: total multiply-accumulates per example (see module docstring).
    """

    name: str
    layers: tuple
    params: int
    macs: int

    def to_dict(self):
        return {
            "name": self.name,
            "params": self.params,
            "macs": self.macs,
            "layers": [dataclasses.asdict(layer) for layer in self.layers],
        }

    def to_json(self, path=None):
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            write_text(path, text)
        return text

    def summary(self, only_costly=True):
        rows = [
            (c.key, c.class_name, c.params, c.macs)
            for c in self.layers
            if not only_costly or c.params or c.macs
        ]
        rows.append(("total", "", self.params, self.macs))
        return render_table(["layer", "class", "params", "MACs"], rows, title=self.name)

    def __str__(self):
        return f"Profile({self.name}: {self.params:,} params, {self.macs:,} MACs)"


def profile(model, widths=None, graph=None):
    """Counts parameters and MACs per layer.

    Args:
        model: a Functional or Sequential model (Keras 3 or tf_keras).
        widths: optional ``{group: width}`` or multiplier: predict the cost of
            the model rebuilt with these widths, without building it.
        graph: the model's ChannelGraph, if already computed.

    Returns:
        A :class:`Profile` with ``.params`` and ``.macs``.

    Example:

    >>> import tf_precrop
    >>> p = tf_precrop.profile(tf_precrop.models.resnet20())
    >>> p.params
    274042
    """
    graph = graph if graph is not None else channel_groups(model)
    w = graph.widths() if widths is None else graph.resolve_widths(widths)
    rows = tuple(
        LayerCost(n.key, n.class_name, int(n.params.evaluate(w)), int(n.macs.evaluate(w)))
        for n in graph.layers
    )
    return Profile(
        name=model.name,
        layers=rows,
        params=sum(r.params for r in rows),
        macs=sum(r.macs for r in rows),
    )
