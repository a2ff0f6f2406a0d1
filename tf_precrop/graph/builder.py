"""The walk behind :func:`~tf_precrop.graph.channel_groups`: width variables, ties, constraints.

:class:`_Builder` visits every layer call of a Functional or Sequential model
(nested models included) once, in graph order, and asks the layer's rule
(:func:`~tf_precrop.graph.rules.rule_for`) how it maps channel counts. It
collects one width variable per new channel count, the ties between them (a
weighted union-find: ``w_a = f · w_b``), the fixed widths and divisibility
constraints. :class:`~tf_precrop.graph.channel_graph.ChannelGraph` turns them
into groups and cost polynomials.
"""

import dataclasses
from fractions import Fraction

from tf_precrop.backend import line_of
from tf_precrop.errors import UnsupportedLayerError, UnsupportedModelError
from tf_precrop.graph.expr import LinearExpr
from tf_precrop.graph.rules import GroupedView, rule_for


@dataclasses.dataclass
class LayerCall:
    """One call of one layer in the graph (what a rule sees)."""

    key: str
    layer: object
    class_name: str
    config: dict
    inputs: list
    in_shapes: list
    out_shapes: list
    outputs: list = dataclasses.field(default_factory=list)
    meta: dict = dataclasses.field(default_factory=dict)
    first: bool = True
    constants: list = dataclasses.field(default_factory=list)
    #: The call that produced each input tensor (None: a model input).
    producers: list = dataclasses.field(default_factory=list)



class _Builder:
    """Walks the model graph and collects variables, ties and constraints."""

    def __init__(self, model):
        self.line = line_of(model)
        self.widths = []  # original width per variable
        self.producers = []
        self.parent = []
        self.factor = []
        self.fixed = {}  # var -> reason
        self.ties = []
        self.multiples = []
        self.calls = []
        self.seen_layers = {}
        self.submodel_inputs = {}  # id(model) -> {tensor_key: expr}
        self.tensor_call = {}  # tensor_key -> the LayerCall that produced it

    # ------------------------------------------------------------ variables
    def new_var(self, width, producer):
        if width is None:
            raise UnsupportedLayerError(
                f"Layer '{producer}' has an unknown channel count. Expected a static "
                "channel dimension. Received: channels=None"
            )
        self.widths.append(int(width))
        self.producers.append(producer)
        self.parent.append(len(self.parent))
        self.factor.append(Fraction(1))
        return LinearExpr.var(len(self.widths) - 1)

    def new_fixed(self, width, producer, reason):
        expr = self.new_var(width, producer)
        self.fix(expr, reason)
        return expr

    def find(self, v):
        """``(root, f)`` with ``w_v = f · w_root`` (weighted union-find)."""
        if self.parent[v] == v:
            return v, Fraction(1)
        root, f = self.find(self.parent[v])
        self.factor[v] *= f
        self.parent[v] = root
        return root, self.factor[v]

    def union(self, a, ca, b, cb):
        """Records ``ca · w_a = cb · w_b``; False if it contradicts earlier ties."""
        ra, fa = self.find(a)
        rb, fb = self.find(b)
        left, right = ca * fa, cb * fb  # left · w_ra = right · w_rb
        if ra == rb:
            return left == right
        if ra < rb:  # the older variable stays the root
            self.parent[rb], self.factor[rb] = ra, left / right
        else:
            self.parent[ra], self.factor[ra] = rb, right / left
        return True

    def canonical(self, expr):
        return expr.map_vars(self.find)

    def original_width(self, expr):
        if isinstance(expr, GroupedView):
            expr = expr.expr
        value = expr.evaluate(self.widths)
        return int(value) if value.denominator == 1 else value

    def tie(self, a, b, where):
        self.ties.append((a, b, where))
        ca, cb = self.canonical(a), self.canonical(b)
        sa, sb = ca.single(), cb.single()
        if sa and sb:
            self.union(sa[0], sa[1], sb[0], sb[1])

    def fix(self, expr, reason):
        for v in getattr(expr, "expr", expr).vars:
            self.fixed.setdefault(v, reason)

    def require_multiple(self, expr, k, where):
        if k > 1:
            self.multiples.append((expr, int(k), where))

    # ----------------------------------------------------------------- walk
    def walk(self, model, input_exprs=None, prefix="", input_calls=None):
        line = self.line
        graph = line.functional_view(model)
        exprs = {}
        inputs = line.graph_inputs(graph)
        for i, tensor in enumerate(inputs):
            if input_exprs is None:
                name = tensor._keras_history[0].name
                exprs[line.tensor_key(tensor)] = self.new_fixed(
                    tensor.shape[-1], prefix + name, "model input"
                )
            else:
                exprs[line.tensor_key(tensor)] = input_exprs[i]
                if input_calls is not None:
                    self.tensor_call[line.tensor_key(tensor)] = input_calls[i]
        self.submodel_inputs[id(model)] = dict(exprs)
        for node in line.nodes_in_order(graph):
            op = line.node_operation(node)
            if line.is_input_layer(op):
                continue
            in_tensors = line.node_inputs(node)
            out_tensors = line.node_outputs(node)
            try:
                in_exprs = [exprs[line.tensor_key(t)] for t in in_tensors]
            except KeyError as e:  # pragma: no cover - malformed graph
                raise UnsupportedModelError(
                    f"Layer '{prefix}{op.name}' reads a tensor produced outside the "
                    "model graph. Expected every input to come from the model's "
                    f"inputs. Received: layer={op.name}"
                ) from e
            key = prefix + op.name
            if line.is_model(op):
                outer = [self.tensor_call.get(line.tensor_key(t)) for t in in_tensors]
                outs = self.walk(op, in_exprs, key + "/", input_calls=outer)
                inner = [self.tensor_call.get(line.tensor_key(t)) for t in line.graph_outputs(line.functional_view(op))]
                for t, producer in zip(out_tensors, inner, strict=False):
                    self.tensor_call[line.tensor_key(t)] = producer
            else:
                outs = self._call(op, key, in_exprs, in_tensors, out_tensors, node)
                for t in out_tensors:
                    self.tensor_call[line.tensor_key(t)] = self.calls[-1]
            if len(outs) != len(out_tensors):
                raise UnsupportedLayerError(
                    f"Layer '{key}' produced {len(out_tensors)} tensors but its rule "
                    f"described {len(outs)}. Expected one expression per output. "
                    f"Received: outputs={len(out_tensors)}"
                )
            for t, e in zip(out_tensors, outs, strict=True):
                exprs[line.tensor_key(t)] = e
        return [exprs[line.tensor_key(t)] for t in line.graph_outputs(graph)]

    def _call(self, op, key, in_exprs, in_tensors, out_tensors, node):
        is_layer = self.line.is_layer(op)
        rule = rule_for(op, key, is_layer)
        try:
            config = op.get_config() if is_layer else {}
        except NotImplementedError:
            config = {}
        call = LayerCall(
            key=key,
            layer=op,
            class_name=type(op).__name__,
            config=config,
            inputs=in_exprs,
            in_shapes=[tuple(t.shape[1:]) for t in in_tensors],
            out_shapes=[tuple(t.shape[1:]) for t in out_tensors],
            constants=self.line.node_constants(node),
            producers=[self.tensor_call.get(self.line.tensor_key(t)) for t in in_tensors],
        )
        call.rule = rule
        previous = self.seen_layers.get(id(op))
        call.first = previous is None
        outs = rule.propagate(call, self)
        call.outputs = list(outs)
        if previous is not None and getattr(op, "weights", None):
            # A shared layer with weights: every call has the same widths.
            for a, b in zip(previous.inputs, call.inputs, strict=False):
                if isinstance(a, LinearExpr) and isinstance(b, LinearExpr):
                    self.tie(a, b, key)
            for a, b in zip(previous.outputs, call.outputs, strict=False):
                if isinstance(a, LinearExpr) and isinstance(b, LinearExpr):
                    self.tie(a, b, key)
        if previous is None:
            self.seen_layers[id(op)] = call
        self.calls.append(call)
        return outs

    # ------------------------------------------------------------- finalize
    def resolve_ties(self):
        changed = True
        while changed:
            changed = False
            for a, b, _ in self.ties:
                ca, cb = self.canonical(a), self.canonical(b)
                if ca == cb:
                    continue
                sa, sb = ca.single(), cb.single()
                if sa and sb and sa[0] != sb[0]:
                    self.union(sa[0], sa[1], sb[0], sb[1])
                    changed = True
        for a, b, where in self.ties:
            ca, cb = self.canonical(a), self.canonical(b)
            if ca != cb:
                # Widths tied through different sums: keep all of them as they are.
                if self.original_width(ca) != self.original_width(cb):
                    raise UnsupportedLayerError(
                        f"Layer '{where}' ties tensors of {self.original_width(ca)} and "
                        f"{self.original_width(cb)} channels. Expected equal widths. "
                        f"Received: {ca} vs {cb}"
                    )
                self.fix(ca, f"tied through unequal sums at '{where}'")
                self.fix(cb, f"tied through unequal sums at '{where}'")
