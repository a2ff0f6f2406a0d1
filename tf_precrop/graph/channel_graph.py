"""Channel graph: which tensors must share a channel count, and what each costs.

:func:`channel_groups` walks a Functional or Sequential model (nested models
included) once, asks each layer's rule how it maps channel counts, and merges
width variables that must stay equal into *groups*. The result,
:class:`ChannelGraph`, knows every group's current width, which groups are
fixed (model inputs/outputs, layers that cannot change), the divisibility each
group needs, and every layer's params/MACs as polynomials of the group widths —
so the cost of any width assignment is known before a model is built.
"""

import dataclasses
import math
from fractions import Fraction

from tf_precrop.backend import line_of
from tf_precrop.errors import UnsupportedLayerError, UnsupportedModelError, WidthError
from tf_precrop.graph.builder import _Builder
from tf_precrop.graph.expr import LinearExpr, Poly
from tf_precrop.graph.rules import GroupedView


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
    """Tensors whose channel counts must stay equal.

    Attributes:
        key: stable name: the first layer (in graph order) producing it.
        width: current channel count.
        fixed: True when the width cannot change (see ``reason``).
        multiple_of: every width of this group must be a multiple of this.
        producers: keys of the layers whose outputs belong to the group.
        reason: why the group is fixed ("" when free).
    """

    key: str
    width: int
    fixed: bool
    multiple_of: int
    producers: tuple
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class LayerNode:
    """One layer of the graph with its costs as polynomials of group widths."""

    key: str
    class_name: str
    inputs: tuple
    outputs: tuple
    params: Poly
    macs: Poly
    kernel: object  # Poly or None: the prunable kernel size
    out_expr: object = None  # LinearExpr of the (first) output's channels

    def width(self, widths):
        """Output channel count of this layer for a width assignment."""
        if self.out_expr is None:
            return None
        value = self.out_expr.evaluate(widths)
        return int(value) if value.denominator == 1 else float(value)

    @property
    def prunable(self):
        return self.kernel is not None


class ChannelGraph:
    """Channel groups and per-layer costs of one model (see :func:`channel_groups`).

    Iterating yields the :class:`ChannelGroup` objects in graph order.
    """

    def __init__(self, model, builder):
        self.model = model
        self.line = builder.line
        self._builder = builder
        b = builder
        roots = {}
        for v in range(len(b.widths)):
            roots.setdefault(b.find(v)[0], []).append(v)
        root_key = {}
        taken = set()
        for root in sorted(roots):
            key = b.producers[root]
            base, n = key, 1
            while key in taken:
                n += 1
                key = f"{base}#{n}"
            taken.add(key)
            root_key[root] = key
        self._root_key = root_key

        def to_key(v):
            root, f = b.find(v)
            return root_key[root], f

        self._to_key = to_key
        fixed = {}
        for v, reason in b.fixed.items():
            fixed.setdefault(to_key(v)[0], reason)
        multiples = {k: 1 for k in root_key.values()}
        root_width = {root_key[r]: b.widths[r] for r in roots}
        for v in range(len(b.widths)):
            # A member w_v = (p/q)·w_root needs w_root to be a multiple of q.
            key, f = to_key(v)
            multiples[key] = math.lcm(multiples[key], f.denominator)
        for expr, k, where in b.multiples:
            canon = expr.map_vars(to_key)
            needs = {}
            for var, coeff in canon.terms.items():
                c = Fraction(coeff)
                needs[var] = k * c.denominator // math.gcd(c.numerator, k * c.denominator)
            if len(needs) > 1 and any(root_width[v] % n for v, n in needs.items()):
                # "Σ terms divisible by k" holds today but not term by term: the
                # sufficient per-term rule would contradict today's widths, so the
                # widths of this sum are kept as they are.
                for var in needs:
                    fixed.setdefault(var, f"a sum of widths must stay divisible by {k} at '{where}'")
                continue
            for var, need in needs.items():
                multiples[var] = math.lcm(multiples[var], need)
        groups = []
        for root in sorted(roots):
            members = roots[root]
            key = root_key[root]
            width = b.widths[root]
            bad = [b.producers[v] for v in members if b.find(v)[1] * width != b.widths[v]]
            if bad:
                raise UnsupportedLayerError(
                    f"Channel group '{key}' ties tensors whose widths do not keep the "
                    f"required ratios. Expected consistent widths. Received: producers={bad}"
                )
            groups.append(
                ChannelGroup(
                    key=key,
                    width=width,
                    fixed=key in fixed,
                    multiple_of=multiples[key],
                    producers=tuple(dict.fromkeys(b.producers[v] for v in sorted(members))),
                    reason=fixed.get(key, ""),
                )
            )
        self.groups = tuple(groups)
        self._by_key = {g.key: g for g in groups}
        self._calls = b.calls
        for call in b.calls:
            call.inputs = [_map(e, to_key) for e in call.inputs]
            call.outputs = [_map(e, to_key) for e in call.outputs]
        self.layers = tuple(self._layer_nodes())

    def _layer_nodes(self):
        nodes = {}
        order = []
        for call in self._calls:
            macs = call.rule.macs(call, self)
            if call.first:
                params = call.rule.params(call, self)
                expected = call.layer.count_params() if self.line.is_layer(call.layer) else 0
                got = params.evaluate(self.widths())
                if got != expected:
                    raise UnsupportedLayerError(
                        f"The rule for layer '{call.key}' ({call.class_name}) counts "
                        f"{got} parameters but the layer holds {expected}. Expected "
                        "a rule that matches the layer's weights. Register a fitting "
                        f"rule with `tf_precrop.register_rule`. Received: rule="
                        f"{call.rule.name}"
                    )
                nodes[id(call.layer)] = dict(
                    key=call.key,
                    class_name=call.class_name,
                    inputs=tuple(repr(e) for e in call.inputs),
                    outputs=tuple(repr(e) for e in call.outputs),
                    params=params,
                    macs=macs,
                    kernel=call.rule.kernel(call, self),
                    out_expr=next(
                        (e for e in call.outputs if isinstance(e, LinearExpr)), None
                    ),
                )
                order.append(id(call.layer))
            else:
                node = nodes[id(call.layer)]
                node["macs"] = node["macs"] + macs
        return [LayerNode(**nodes[i]) for i in order]

    # Rules ask the graph for original widths once expressions use group keys.
    def original_width(self, expr):
        if isinstance(expr, GroupedView):
            expr = expr.expr
        value = expr.evaluate(self.widths())
        return int(value) if value.denominator == 1 else value

    # ---------------------------------------------------------------- access
    def __iter__(self):
        return iter(self.groups)

    def __len__(self):
        return len(self.groups)

    def __getitem__(self, key):
        try:
            return self._by_key[key]
        except KeyError:
            raise KeyError(
                f"No channel group named {key!r}. Expected one of the group keys "
                f"(e.g. {[g.key for g in self.groups[:5]]}). Received: key={key!r}"
            ) from None

    def kernel_layers(self):
        """``[(key, layer, [(name, kernel variable)] or None)]`` for every layer, once.

        The prunable kernels each layer's rule names (``None``: not prunable),
        in graph order; a shared layer appears once, under its first call. This
        is what saliency reads when it gets the graph instead of the model.
        """
        result = []
        for call in self._calls:
            if call.first and self.line.is_layer(call.layer):
                named = call.rule.kernel_variables(call.layer) if call.rule.kernels else None
                result.append((call.key, call.layer, named))
        return result

    def widths(self):
        """``{group key: current width}``."""
        return {g.key: g.width for g in self.groups}

    @property
    def free_groups(self):
        return tuple(g for g in self.groups if not g.fixed)

    def resolve_widths(self, widths):
        """Full, validated ``{group: width}`` from a dict or a scalar multiplier.

        A scalar multiplies every free group's width, rounded to the nearest
        allowed multiple (at least one multiple). A dict may name any subset of
        the groups; the rest keep their width.
        """
        current = self.widths()
        if isinstance(widths, (int, float)) and not isinstance(widths, bool):
            if not math.isfinite(widths) or widths <= 0:
                raise WidthError(
                    "A width multiplier must be a positive finite number. "
                    f"Received: widths={widths!r}"
                )
            new = dict(current)
            for g in self.free_groups:
                m = g.multiple_of
                new[g.key] = max(m, int(round(g.width * widths / m)) * m)
            return new
        if not isinstance(widths, dict):
            raise WidthError(
                "Expected `widths` to be a dict {group key: int} or a positive "
                f"multiplier. Received: widths of type {type(widths).__name__}"
            )
        new = dict(current)
        unknown = [k for k in widths if k not in self._by_key]
        if unknown:
            raise WidthError(
                f"Unknown channel groups {unknown[:5]}. Expected keys of "
                f"`channel_groups(model)` (e.g. {[g.key for g in self.free_groups[:4]]}). "
                f"Received: {unknown[:5]}"
            )
        for key, value in widths.items():
            group = self[key]
            if isinstance(value, bool) or not isinstance(value, (int,)) and not (
                hasattr(value, "__index__")
            ):
                raise WidthError(
                    f"Width of group '{key}' must be an integer. Received: {key}={value!r}"
                )
            value = int(value)
            if group.fixed and value != group.width:
                raise WidthError(
                    f"Group '{key}' is fixed at {group.width} channels ({group.reason}). "
                    f"Expected its width unchanged. Received: {key}={value}"
                )
            if value < 1 or value % group.multiple_of:
                raise WidthError(
                    f"Width of group '{key}' must be a positive multiple of "
                    f"{group.multiple_of}. Received: {key}={value}"
                )
            new[key] = value
        return new

    def cost(self, widths=None, kind="params"):
        """Total params or MACs for a width assignment (default: current)."""
        w = self.widths() if widths is None else widths
        attr = {"params": "params", "macs": "macs"}[kind]
        return int(sum(getattr(n, attr).evaluate(w) for n in self.layers))

    def __repr__(self):
        free = len(self.free_groups)
        return (
            f"<ChannelGraph model={self.model.name!r} groups={len(self.groups)} "
            f"free={free} layers={len(self.layers)}>"
        )

    def summary(self):
        """A text table of the groups (key, width, fixed/multiple, producers)."""
        lines = [f"{'group':40s} {'width':>6s} {'mult':>5s}  status"]
        for g in self.groups:
            status = f"fixed: {g.reason}" if g.fixed else "free"
            lines.append(f"{g.key[:40]:40s} {g.width:6d} {g.multiple_of:5d}  {status}")
        return "\n".join(lines)


def _map(expr, fn):
    if isinstance(expr, GroupedView):
        return GroupedView(expr.expr.map_vars(fn), expr.groups, expr.order)
    return expr.map_vars(fn)


def channel_groups(model):
    """Walks ``model`` and returns its :class:`ChannelGraph`.

    Args:
        model: a built Functional or Sequential model, Keras 3 or tf_keras.
            Nested models, multiple inputs and outputs are supported.

    Returns:
        A :class:`ChannelGraph`: iterate it for the :class:`ChannelGroup`
        objects; ``graph.layers`` holds per-layer cost polynomials.

    Raises:
        UnsupportedModelError: for subclassed or unbuilt models.
        UnsupportedLayerError: for a layer without a rule (register one with
            :func:`tf_precrop.register_rule`) or one used in a way its rule
            cannot follow.

    Example:

    >>> import keras, tf_precrop
    >>> x = keras.Input((32, 32, 3), name="image")
    >>> y = keras.layers.Conv2D(16, 3, name="conv")(x)
    >>> y = keras.layers.GlobalAveragePooling2D()(y)
    >>> model = keras.Model(x, keras.layers.Dense(10, name="head")(y))
    >>> [(g.key, g.width, g.fixed) for g in tf_precrop.channel_groups(model)]
    [('image', 3, True), ('conv', 16, False), ('head', 10, True)]
    """
    line = line_of(model)
    if not line.is_model(model):
        raise UnsupportedModelError(
            "Expected a Keras model (Functional or Sequential). Received: "
            f"object of type {type(model).__name__}"
        )
    builder = _Builder(model)
    outputs = builder.walk(model)
    builder.resolve_ties()
    for expr in outputs:
        builder.fix(expr, "model output")
    return ChannelGraph(model, builder)
