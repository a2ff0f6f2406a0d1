"""Which channels each producer keeps, and widths from importance under a budget.

Producers whose channels are combined element-wise (a residual add, an SE
gate) share their channels: they form one *class* and keep the same indices.
A class keeps its ``width`` most important channels (ties: the lower index
first; so zero-importance channels go first). When its channels are read in
``k`` equal groups (a grouped conv, a ``ChannelSplit`` of a conv's output,
``GroupNormalization``), each group keeps ``width / k`` of its own channels.
"""

import math
from fractions import Fraction

import numpy as np

from tf_precrop.errors import UnsupportedLayerError, WidthError
from tf_precrop.prune.channels import with_ids


def rank_keep(importance, width, parts=1):
    """Sorted indices of the ``width`` best channels (``parts`` equal groups, each its share).

    Higher importance is kept first; ties keep the lower index.

    Example:

    >>> rank_keep(np.array([0.5, 0.0, 0.5, 0.9]), 2).tolist()
    [0, 3]
    """
    importance = np.asarray(importance, dtype=np.float64)
    n = importance.size
    if width % parts or n % parts:
        raise WidthError(
            f"Cannot keep {width} of {n} channels in {parts} equal groups. Expected a "
            f"width that is a multiple of {parts}. Received: width={width}"
        )
    size, per = n // parts, width // parts
    keep = []
    for b in range(parts):
        seg = importance[b * size : (b + 1) * size]
        order = np.lexsort((np.arange(size), -seg))  # by -importance, then index
        keep.extend(np.sort(order[:per]) + b * size)
    return np.asarray(keep, dtype=np.int64)


def producer_classes(trace):
    """Lists of producers that share their channels (same ids up to the union-find).

    Producers combined element-wise in another order or only in part (an add of
    a concatenation and a conv, as in NASNet's cells) cannot keep one set of
    indices: they form one *whole* class (``cls["conflict"]`` names two of
    them) whose channels all stay. :func:`choose_keeps` refuses widths that
    would cut it, naming the producers, and the budget path keeps its groups
    at today's width.
    """
    uf = trace.uf
    classes, owner = [], {}  # owner: root -> class index

    def live(i):
        while "merged" in classes[i]:
            i = classes[i]["merged"]
        return i

    for producer in trace.producers.values():
        roots = uf.roots(producer.ids)
        found = sorted({live(owner[r]) for r in roots.tolist() if r in owner})
        if not found:
            for r in roots.tolist():
                owner[r] = len(classes)
            classes.append({"roots": roots, "members": [producer]})
            continue
        cls = classes[found[0]]
        same = roots.shape == cls["roots"].shape and np.all(roots == cls["roots"])
        if len(found) == 1 and same and "conflict" not in cls:
            cls["members"].append(producer)
            continue
        # A conflict: merge every class these channels touch into one whole class.
        cls.setdefault("conflict", (producer.key, cls["members"][0].key))
        parts = [cls["roots"], roots]
        for i in found[1:]:
            other = classes[i]
            cls["members"].extend(other["members"])
            parts.append(other["roots"])
            other["merged"] = found[0]
        cls["members"].append(producer)
        cls["roots"] = np.unique(np.concatenate(parts))
        for r in cls["roots"].tolist():
            owner[r] = found[0]
    return [c for c in classes if "merged" not in c]


def conflict_error(cls):
    """The error for widths that would cut a whole (conflicting) class."""
    a, b = cls["conflict"]
    return with_ids(
        UnsupportedLayerError(
            f"The channels of '{a}' are combined element-wise with those of '{b}' in "
            "another order or only in part (e.g. an add of a concatenation and a conv), so "
            "no choice of kept indices fits both. Expected producers combined channel by "
            f"channel. Keep their group's width. Received: producers={[a, b]}"
        ),
        [cls["roots"]],
    )


def whole_groups(trace, classes):
    """Keys of the channel groups of whole (conflicting) classes: they keep their width."""
    keys = set()
    for cls in classes:
        if "conflict" in cls:
            keys |= groups_of(trace, [cls], cls["roots"])
    return keys


def choose_keeps(trace, classes, scores, scored, width_of, criterion):
    """``{producer key: kept indices}`` for every producer whose width changes."""
    keeps = {}
    for cls in classes:
        members = cls["members"]
        if "conflict" in cls:
            if any(width_of(p) != p.ids.size for p in members):
                raise conflict_error(cls)
            continue
        n = cls["roots"].size
        widths = {width_of(p) for p in members}
        if len(widths) != 1:  # pragma: no cover - the graph ties their widths
            raise WidthError(
                f"Producers {[p.key for p in members]} share channels but get widths "
                f"{sorted(widths)}. Expected one width. Received: {sorted(widths)}"
            )
        width = widths.pop()
        if width == n:
            continue
        if width > n:
            raise WidthError(
                f"'{members[0].key}' would grow from {n} to {width} channels. Expected "
                "prune widths at most today's (a trained model cannot gain trained "
                f"channels). Received: width={width}"
            )
        if any(int(r) in _pinned_roots(trace) for r in cls["roots"]):
            raise WidthError(
                f"'{members[0].key}' feeds a fixed layer or is a model input/output, so "
                f"its {n} channels must all stay. Received: width={width}"
            )
        importance = scores[cls["roots"]]
        if criterion == "bn_scale" and not np.any(scored[cls["roots"]]):
            raise ValueError(
                f"importance='bn_scale' needs a BatchNormalization on the channels of "
                f"'{members[0].key}', and there is none. Expected a BN after each "
                "pruned producer, or another criterion (e.g. 'l1'). Received: "
                f"producers={[p.key for p in members]}"
            )
        keep = _keep_with_parts(
            cls["roots"], importance, width, _parts_of(trace, cls), members[0].key
        )
        for p in members:
            keeps[p.slot] = keep
    return keeps


def _parts_of(trace, cls):
    """Equal-share constraints on one class: lists of index arrays (class coordinates).

    Every layer that reads its input in equal parts (a split, a grouped conv,
    GroupNormalization) and holds this class's channels spread evenly over
    the parts (as many in each) asks each part to keep the same number.
    """
    index = _need_index(trace)
    where = {int(r): i for i, r in enumerate(cls["roots"].tolist())}
    touching = sorted({n for r in where for n, _ in index["by_root"].get(r, ())})
    result = []
    for n in touching:
        part_roots, layer = index["needs"][n]
        parts = [
            np.asarray(sorted(where[r] for r in roots.tolist() if r in where), dtype=np.int64)
            for roots in part_roots
        ]
        sizes = {p.size for p in parts}
        if len(sizes) == 1 and sizes != {0}:
            result.append((parts, layer))
    return result


def _need_index(trace):
    """The equal-part needs of the trace as roots per part, and which need touches a root."""
    cached = getattr(trace, "_need_index", None)
    if cached is None:
        needs, by_root = [], {}
        for ids, k, layer in trace.block_needs:
            if ids.ndim != 1 or ids.size % k:
                continue
            part_roots = [trace.uf.roots(part) for part in np.split(ids, k)]
            for j, roots in enumerate(part_roots):
                for r in set(roots.tolist()):
                    by_root.setdefault(r, []).append((len(needs), j))
            needs.append((part_roots, layer))
        cached = trace._need_index = {"needs": needs, "by_root": by_root}
    return cached


def _keep_with_parts(roots, importance, width, constraints, name):
    """The best ``width`` channels, each constrained part keeping an equal share.

    Constraints must nest (each one splits a set that is already a node of the
    tree of earlier, larger ones); one that does not is left to the replay of
    :mod:`tf_precrop.prune.channels`, which refuses a wrong index map.
    """
    n = roots.size
    tree = _tree(n, constraints)
    keep = []

    def assign(node, count, layer=None):
        entry = tree.get(node)
        if entry is None:
            idx = np.asarray(node, dtype=np.int64)
            if count > idx.size:
                raise with_ids(
                    WidthError(
                        f"'{name}' cannot keep {count} of the {idx.size} channels of one of "
                        f"the equal parts that layer '{layer}' reads. Expected a width whose "
                        f"share fits each part. Received: count={count}"
                    ),
                    [roots],
                )
            order = np.lexsort((idx, -importance[idx]))
            keep.extend(idx[order[:count]].tolist())
            return
        children, layer = entry
        if count % len(children):
            raise with_ids(
                WidthError(
                    f"'{name}' is read in {len(children)} equal parts by layer '{layer}' (a "
                    "split, grouped conv or group norm; after a channel shuffle, a part may "
                    "be read again in halves by the next split), so its kept channels must "
                    f"divide into them. Expected a multiple of {len(children)}. Received: "
                    f"kept={count}"
                ),
                [roots],
            )
        for child in children:
            assign(child, count // len(children), layer)

    assign(tuple(range(n)), width)
    return np.sort(np.asarray(keep, dtype=np.int64))


def _tree(n, constraints):
    """``{node: (children, layer) or None}``: nested equal-share constraints of a class."""
    tree = {tuple(range(n)): None}  # node (sorted indices) -> (children, layer) or None
    for parts, layer in sorted(constraints, key=lambda c: -sum(p.size for p in c[0])):
        union = tuple(sorted(np.concatenate(parts).tolist()))
        if union in tree and tree[union] is None:
            tree[union] = ([tuple(p.tolist()) for p in parts], layer)
            for p in tree[union][0]:
                tree.setdefault(p, None)
    return tree


def _required_multiple(tree, node):
    entry = tree.get(node)
    if entry is None:
        return 1
    children, _ = entry
    return len(children) * math.lcm(*(_required_multiple(tree, c) for c in children))


def share_multiples(trace, classes):
    """``{group key: multiple}`` that every class's equal-share constraints need.

    A class read in ``k`` equal parts, one of which is read again in ``j``
    parts (a split after a shuffle after a split...), keeps a multiple of
    ``k·j`` channels; the group's width is a multiple of what its classes need.
    """
    result = {}
    for cls in classes:
        if "conflict" in cls:
            continue  # kept whole
        need = _required_multiple(
            _tree(cls["roots"].size, _parts_of(trace, cls)), tuple(range(cls["roots"].size))
        )
        if need == 1:
            continue
        for p in cls["members"]:
            single = p.call.outputs[p.index].single() if p.call is not None else None
            if single is None:
                continue
            key, coeff = single  # class width = coeff · group width
            coeff = Fraction(coeff)
            m = coeff.denominator * need // math.gcd(coeff.numerator, need)
            result[key] = math.lcm(result.get(key, 1), m)
    return result


def _pinned_roots(trace):
    cache = getattr(trace, "_pinned_roots", None)
    if cache is None:
        cache = {trace.uf.find(a) for a in trace.pinned}
        trace._pinned_roots = cache
    return cache


def importance_targets(problem, graph, classes, scores, value):
    """Layer target densities from one global ranking of the channel scores.

    Every free group ranks its channels by the mean score of the producers
    that create it; one threshold over all groups gives each group the
    fraction of its channels above it (at least its smallest width); the
    threshold is bisected until the continuous cost meets the budget
    ``value``. The densities of those widths are the targets of the width
    solver (:class:`~tf_precrop.widths.WidthProblem`), which rounds them to
    ``round_to`` and hits the budget within 1%.
    """
    per_group = {}
    for cls in classes:
        if "conflict" in cls:
            continue  # kept whole: no ranking
        for p in cls["members"]:
            if p.call is None:
                continue
            single = p.call.outputs[p.index].single()
            if single and single[1] == 1 and problem.free[problem.index[single[0]]]:
                per_group.setdefault(single[0], []).append(scores[cls["roots"]])
    group_scores = {k: np.mean(v, axis=0) for k, v in per_group.items()}
    if not group_scores:
        raise WidthError(
            "No free channel group has scored channels, so the budget cannot be met by "
            "removing channels. Expected a model with prunable convs or dense layers. "
            f"Received: groups={len(graph)}"
        )
    values = np.unique(np.concatenate(list(group_scores.values())))

    def widths_at(t):
        w = problem.w0.copy()
        for key, s in group_scores.items():
            i = problem.index[key]
            w[i] = max(float(np.sum(s >= t)), problem.lower[i] * problem.w0[i])
        return w

    lo, hi = 0, len(values)  # threshold values[i]; a higher i costs less
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if problem.cost(widths_at(values[mid])) > value:
            lo = mid
        else:
            hi = mid
    densities = problem.densities(widths_at(values[min(hi, len(values) - 1)]))
    return {n.key: float(d) for n, d in zip(problem.prunable, densities, strict=True)}


def groups_of(trace, classes, ids):
    """Keys of the channel groups whose producers create the given ids."""
    roots = set(trace.uf.roots(np.asarray(ids, dtype=np.int64)).tolist()) if len(ids) else set()
    keys = set()
    for cls in classes:
        if roots & set(cls["roots"].tolist()):
            for p in cls["members"]:
                if p.call is not None:
                    keys.update(p.call.outputs[p.index].vars)
    return keys
