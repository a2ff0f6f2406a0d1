"""Which original channel each channel of each tensor is: the index map behind ``prune``.

Every channel a layer creates (a conv's filters, a model input's channels) gets
an integer *id*. The model is walked once, in graph order, and each layer's rule
maps the ids of its inputs to the ids of its outputs
(:meth:`~tf_precrop.graph.rule_base.LayerRule.map_channels`): a pass-through
layer keeps them, a concatenation concatenates them, a split slices them, a
channel shuffle permutes them, a depthwise conv with multiplier ``m`` repeats
each ``m`` times (as new ids tied to the input's). An element-wise layer (add,
multiply) makes channel ``i`` of all its inputs *one* channel (a union-find over
ids): removing it removes it from every input.

The first walk (:class:`Trace`) runs on the original model; the second
(:class:`Replay`) on the ids each producer keeps. Because both apply the same
maps, channel ``j`` of a tensor of the pruned model is exactly the original
channel that carries the same id — or the replay finds a channel in a place
where the original had none (a split after a shuffle that keeps unequal halves)
and stops with an error naming the layer: the pruned model would not compute a
sub-network of the original.
"""

import dataclasses
from fractions import Fraction

import numpy as np

from tf_precrop.errors import UnsupportedLayerError


class _UnionFind:
    def __init__(self):
        self.parent = []

    def add(self, n):
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return np.arange(start, start + n, dtype=np.int64)

    def find(self, a):
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a, b):
        ra, rb = self.find(int(a)), self.find(int(b))
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def roots(self, array):
        flat = [self.find(int(a)) for a in np.asarray(array).reshape(-1)]
        return np.asarray(flat, dtype=np.int64).reshape(np.shape(array))


@dataclasses.dataclass
class Producer:
    """The channels one layer output creates (or a model input)."""

    key: str
    ids: np.ndarray
    call: object = None  # None for a model input
    index: int = 0
    pinned: bool = False
    slot: tuple = ()  # its key in Trace.producers: (id(layer), output index)


class _Walk:
    """What both walks share: the graph order and the per-call records."""

    def __init__(self, graph):
        self.graph = graph
        self.records = []  # (call, input ids, output ids), graph order

    def run(self):
        calls = iter(self.graph._calls)
        line = self.graph.line

        def visit(model, input_ids, prefix):
            view = line.functional_view(model)
            ids = {}
            for i, tensor in enumerate(line.graph_inputs(view)):
                if input_ids is None:
                    name = prefix + tensor._keras_history[0].name
                    ids[line.tensor_key(tensor)] = self.model_input(name, int(tensor.shape[-1]))
                else:
                    ids[line.tensor_key(tensor)] = input_ids[i]
            for node in line.nodes_in_order(view):
                op = line.node_operation(node)
                if line.is_input_layer(op):
                    continue
                ins = [ids[line.tensor_key(t)] for t in line.node_inputs(node)]
                if line.is_model(op):
                    outs = visit(op, ins, f"{prefix}{op.name}/")
                else:
                    call = next(calls)
                    if call.layer is not op:  # pragma: no cover - the builder's walk differs
                        raise UnsupportedLayerError(
                            f"Layer '{prefix}{op.name}' is not where the channel graph "
                            f"had it. Expected the graph's order. Received: {call.key}"
                        )
                    outs = self._call(call, ins)
                for t, a in zip(line.node_outputs(node), outs, strict=True):
                    ids[line.tensor_key(t)] = a
            return [ids[line.tensor_key(t)] for t in line.graph_outputs(view)]

        visit(self.graph.model, None, "")
        return self

    def _call(self, call, ins):
        self.current = len(self.records)
        self.shared(call, ins)
        outs = [np.asarray(o, dtype=np.int64) for o in call.rule.map_channels(call, ins, self)]
        self.check(call, outs)
        self.records.append((call, ins, outs))
        return outs

    # Helpers the rules call (see LayerRule.map_channels).
    def repeat(self, call, ids, factor):
        """Each id ``factor`` times in a row: output ``c·factor + j`` comes from ``c``."""
        factor = Fraction(factor)
        if factor.denominator != 1 or factor < 1:
            raise UnsupportedLayerError(
                f"Layer '{call.key}' ({call.class_name}) maps each input channel to "
                f"{factor} output channels. Expected a whole multiplier. Received: {factor}"
            )
        m = int(factor)
        if m == 1:
            return ids
        out = np.empty(len(ids) * m, dtype=np.int64)
        for j in range(m):
            out[j::m] = self.derive(call, ("repeat", j), ids)
        return out

    def tile(self, call, ids, copies):
        """``copies`` copies of the ids (a flatten: index ``s·C + c`` is channel ``c``)."""
        if copies == 1:
            return ids
        return np.concatenate([self.derive(call, ("tile", s), ids) for s in range(copies)])


class Trace(_Walk):
    """The walk on the original model: ids, element-wise unions, constraints."""

    def __init__(self, graph):
        super().__init__(graph)
        self.uf = _UnionFind()
        self.producers = {}  # (id(layer) or input name, output index) -> Producer
        self.derived = {}
        self.pinned = set()
        self.block_needs = []  # (ids, parts, layer key)
        self.concat_copies = {}
        self.first_inputs = {}

    def model_input(self, name, width):
        ids = self.uf.add(width)
        self.producers[(name, 0)] = Producer(name, ids, pinned=True, slot=(name, 0))
        self.pinned.update(ids.tolist())
        return ids

    def fresh(self, call, index):
        key = (id(call.layer), index)
        if key not in self.producers:
            shape = call.out_shapes[index]
            ids = self.uf.add(int(shape[-1]) if shape else 1)
            self.producers[key] = Producer(call.key, ids, call, index, slot=key)
        return self.producers[key].ids

    def derive(self, call, tag, ids):
        out = []
        for base in np.asarray(ids).reshape(-1):
            key = (id(call.layer), tag, int(base))
            if key not in self.derived:
                new = int(self.uf.add(1)[0])
                self.uf.union(new, base)  # the same channel, seen again
                self.derived[key] = new
            out.append(self.derived[key])
        return np.asarray(out, dtype=np.int64)

    def concat(self, call, arrays):
        seen, parts, copies = set(), [], set()
        for k, ids in enumerate(arrays):
            if seen & set(ids.tolist()):  # the same tensor twice: a second copy
                ids = self.derive(call, ("concat", k), ids)
                copies.add(k)
            seen.update(ids.tolist())
            parts.append(ids)
        self.concat_copies[id(call.layer), self.current] = copies
        return np.concatenate(parts)

    def union(self, call, arrays):
        for ids in arrays[1:]:
            for a, b in zip(arrays[0].reshape(-1), ids.reshape(-1), strict=True):
                self.uf.union(a, b)

    def pin(self, call, ids):
        self.pinned.update(np.asarray(ids).reshape(-1).tolist())

    def blocks(self, call, role, ids, parts):
        self.block_needs.append((np.asarray(ids).copy(), int(parts), call.key))

    def shared(self, call, ins):
        if call.first or not getattr(call.layer, "weights", None):
            self.first_inputs.setdefault(id(call.layer), ins)
            return
        # A shared layer with weights: every call keeps the same channels.
        for a, b in zip(self.first_inputs[id(call.layer)], ins, strict=False):
            if a.shape == b.shape:
                self.union(call, [a, b])

    def check(self, call, outs):
        for i, ids in enumerate(outs):
            if len(set(ids.reshape(-1).tolist())) != ids.size:
                raise UnsupportedLayerError(
                    f"Layer '{call.key}' ({call.class_name}) outputs the same channel twice "
                    f"in output {i}, which tf_precrop.prune cannot follow. Expected each "
                    "output channel to come from one place. Received: "
                    f"channels={ids.size}, distinct={len(set(ids.reshape(-1).tolist()))}"
                )


class Replay(_Walk):
    """The walk on the kept channels: each producer keeps ``keeps[key]``."""

    def __init__(self, trace, keeps):
        super().__init__(trace.graph)
        self.trace, self.keeps = trace, keeps

    def model_input(self, name, width):
        return self.trace.producers[(name, 0)].ids

    def fresh(self, call, index):
        key = (id(call.layer), index)
        producer = self.trace.producers[key]
        keep = self.keeps.get(key)
        return producer.ids if keep is None else producer.ids[keep]

    def derive(self, call, tag, ids):
        derived = self.trace.derived
        return np.asarray(
            [derived[id(call.layer), tag, int(b)] for b in np.asarray(ids).reshape(-1)],
            dtype=np.int64,
        )

    def concat(self, call, arrays):
        copies = self.trace.concat_copies.get((id(call.layer), self.current), set())
        parts = [
            self.derive(call, ("concat", k), a) if k in copies else a for k, a in enumerate(arrays)
        ]
        return np.concatenate(parts)

    def union(self, call, arrays):
        uf = self.trace.uf
        first = uf.roots(arrays[0])
        for ids in arrays[1:]:
            if ids.shape != arrays[0].shape or np.any(uf.roots(ids) != first):
                raise with_ids(
                    UnsupportedLayerError(
                        f"Layer '{call.key}' ({call.class_name}) combines its inputs channel "
                        "by channel, but the kept channels of its inputs differ (in number "
                        "or order), so the pruned model would add unrelated channels. "
                        "Expected inputs that keep the same channels in the same order. "
                        f"Received: kept per input={[int(a.size) for a in arrays]}"
                    ),
                    self.trace.records[self.current][1],
                )

    def pin(self, call, ids):
        pass  # checked where the weights are sliced (FixedRule.slice_weights)

    def blocks(self, call, role, ids, parts):
        old_call, old_ins, old_outs = self.trace.records[self.current]
        old = (old_ins if role[0] == "in" else old_outs)[role[1]]
        ok = len(ids) % parts == 0
        if ok:
            for new_part, old_part in zip(np.split(ids, parts), np.split(old, parts), strict=True):
                ok = ok and bool(np.all(np.isin(new_part, old_part)))
        if not ok:
            raise with_ids(
                UnsupportedLayerError(
                    f"Layer '{call.key}' ({call.class_name}) works on {parts} groups of "
                    f"channels, but the kept channels of its {role[0]}put would move "
                    "channels across groups. Expected the same number of kept channels "
                    "in every group, each in its own group. Received: "
                    f"kept={len(ids)} of {len(old)}"
                ),
                [old],
            )

    def shared(self, call, ins):
        pass  # the slices of both calls are compared in slicing.copy_kept_weights

    def check(self, call, outs):
        _, _, old_outs = self.trace.records[self.current]
        for i, (new, old) in enumerate(zip(outs, old_outs, strict=True)):
            if not np.all(np.isin(new.reshape(-1), old.reshape(-1))):
                raise with_ids(
                    UnsupportedLayerError(
                        f"Layer '{call.key}' ({call.class_name}): in the pruned model, "
                        f"its output {i} would hold channels that its original output "
                        "does not (e.g. a split after a channel shuffle whose halves keep "
                        "unequal channels), so the result would not be a sub-network of "
                        "the model. Expected kept channels that stay in their part. Keep "
                        "the width of this channel group, or prune other groups. Received: "
                        f"layer={call.key}"
                    ),
                    self.trace.records[self.current][1],
                )


def with_ids(error, ids):
    """``error`` carrying the channel ids it concerns (``error.channel_ids``).

    :func:`tf_precrop.prune` uses them, for a budget target, to keep the channel
    groups involved whole and solve the budget again over the others.
    """
    error.channel_ids = np.concatenate([np.asarray(a).reshape(-1) for a in ids]) if ids else ()
    return error


def positions(old, new):
    """Indices in ``old`` (a tensor's original ids) of each id of ``new``."""
    old, new = np.asarray(old).reshape(-1), np.asarray(new).reshape(-1)
    order = np.argsort(old, kind="stable")
    return order[np.searchsorted(old, new, sorter=order)]
