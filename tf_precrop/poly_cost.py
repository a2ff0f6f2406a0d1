"""Params and MACs as a cost of the channel widths: sums of degree-≤2 polynomials.

Every layer's params and MACs are polynomials of degree ≤ 2 in the widths of
its input and output groups (:mod:`tf_precrop.graph`); :class:`CompiledPolys`
evaluates many of them at once with numpy, and :class:`PolyCost` is the
whole-model params or MACs cost the width solver (:mod:`tf_precrop.widths`)
minimises against, next to the latency cost of :mod:`tf_precrop.latency`.

Example:

>>> from tf_precrop.graph.expr import Poly
>>> cost = PolyCost([Poly({("a", "b"): 9.0}), Poly({("b",): 3.0})], {"a": 0, "b": 1})
>>> cost.total(np.array([2.0, 4.0]))  # 9·2·4 + 3·4
84.0
"""

import numpy as np


class CompiledPolys:
    """Many degree-≤2 polynomials over group widths, evaluated with numpy."""

    def __init__(self, polys, index):
        owner, coef, left, right = [], [], [], []
        const = len(index)
        for k, poly in enumerate(polys):
            for mono, c in poly.terms.items():
                idx = [index[v] for v in mono] + [const] * (2 - len(mono))
                owner.append(k)
                coef.append(float(c))
                left.append(idx[0])
                right.append(idx[1])
        self.n = len(polys)
        self.owner = np.asarray(owner, dtype=np.int64)
        self.coef = np.asarray(coef, dtype=np.float64)
        self.left = np.asarray(left, dtype=np.int64)
        self.right = np.asarray(right, dtype=np.int64)
        self.size = len(index)

    def _ext(self, w):
        return np.append(w, 1.0)

    def values(self, w):
        e = self._ext(w)
        return np.bincount(self.owner, self.coef * e[self.left] * e[self.right], minlength=self.n)

    def jacobian(self, w):
        """d value_k / d w_g as a dense (n_polys, n_groups) array."""
        e = self._ext(w)
        jac = np.zeros((self.n, self.size + 1))
        np.add.at(jac, (self.owner, self.left), self.coef * e[self.right])
        np.add.at(jac, (self.owner, self.right), self.coef * e[self.left])
        return jac[:, : self.size]


class PolyCost:
    """A params or MACs cost: the sum of the layers' degree-≤2 polynomials.

    The interface the solver needs of any cost (:class:`LatencyCost
    <tf_precrop.latency.LatencyCost>` has it too): ``total(w)``,
    ``gradient(w)``, ``batch(W)`` (one total per row) and ``quadratic``
    (True: the exchange repair may solve for a width in closed form).
    """

    quadratic = True

    def __init__(self, polys, index):
        self.polys = CompiledPolys(polys, index)

    def total(self, w):
        return float(self.polys.values(w).sum())

    def gradient(self, w):
        return self.polys.jacobian(w).sum(axis=0)

    def matrix(self):
        """Symmetric ``M`` with ``cost(w) = e·M·e`` for ``e = (w, 1)``."""
        cp = self.polys
        m = np.zeros((cp.size + 1, cp.size + 1))
        np.add.at(m, (cp.left, cp.right), cp.coef / 2)
        np.add.at(m, (cp.right, cp.left), cp.coef / 2)
        return m

    def batch(self, widths):
        e = np.hstack([widths.astype(np.float64), np.ones((len(widths), 1))])
        return np.einsum("ij,jk,ik->i", e, self.matrix(), e)
