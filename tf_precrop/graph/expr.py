"""Width algebra of the channel graph.

Every tensor's channel count is a :class:`LinearExpr` over *width variables*
(one per channel-producing layer output or model input): a plain layer output
is ``1·w``, a channel concatenation is a sum, a ``ChannelSplit`` in two is
``½·w``, a ``Flatten`` of an ``H×W×C`` map is ``HW·w``. Costs (params, MACs)
of a layer are :class:`Poly` nomials of degree ≤ 2 in those variables (a conv
costs ``k²/groups · w_in · w_out``). Coefficients are exact ``Fraction``s so a
predicted parameter count is exact, not rounded.
"""

from fractions import Fraction


class LinearExpr:
    """An immutable linear expression ``Σ c_v · w_v`` over width variables."""

    __slots__ = ("terms",)

    def __init__(self, terms=None):
        clean = {}
        for var, coeff in (terms or {}).items():
            coeff = Fraction(coeff)
            if coeff != 0:
                clean[var] = clean.get(var, Fraction(0)) + coeff
        self.terms = {v: c for v, c in clean.items() if c != 0}

    @classmethod
    def var(cls, v, coeff=1):
        return cls({v: coeff})

    def __add__(self, other):
        terms = dict(self.terms)
        for v, c in other.terms.items():
            terms[v] = terms.get(v, Fraction(0)) + c
        return LinearExpr(terms)

    def scale(self, factor):
        return LinearExpr({v: c * Fraction(factor) for v, c in self.terms.items()})

    def map_vars(self, fn):
        """Substitutes variables: ``fn(v)`` returns ``(new_var, factor)`` with
        ``w_v = factor · w_new_var``."""
        terms = {}
        for v, c in self.terms.items():
            root, factor = fn(v)
            terms[root] = terms.get(root, Fraction(0)) + c * Fraction(factor)
        return LinearExpr(terms)

    def evaluate(self, widths):
        total = sum(c * widths[v] for v, c in self.terms.items())
        return Fraction(total)

    def single(self):
        """``(var, coeff)`` when the expression has exactly one term, else None."""
        if len(self.terms) == 1:
            return next(iter(self.terms.items()))
        return None

    @property
    def vars(self):
        return tuple(self.terms)

    def __eq__(self, other):
        return isinstance(other, LinearExpr) and self.terms == other.terms

    def __hash__(self):
        return hash(frozenset(self.terms.items()))

    def __repr__(self):
        parts = [f"{c}*{v}" if c != 1 else str(v) for v, c in self.terms.items()]
        return " + ".join(parts) or "0"


class Poly:
    """A polynomial of degree ≤ 2 in width variables, with exact coefficients.

    Stored as ``{monomial: coeff}`` where a monomial is a sorted tuple of
    variables (``()`` constant, ``(a,)`` linear, ``(a, b)`` quadratic).
    """

    __slots__ = ("terms",)

    def __init__(self, terms=None):
        clean = {}
        for mono, coeff in (terms or {}).items():
            coeff = Fraction(coeff)
            if coeff != 0:
                mono = tuple(sorted(mono, key=str))
                clean[mono] = clean.get(mono, Fraction(0)) + coeff
        self.terms = {m: c for m, c in clean.items() if c != 0}

    @classmethod
    def const(cls, value):
        return cls({(): value})

    @classmethod
    def linear(cls, expr, factor=1):
        return cls({(v,): c * Fraction(factor) for v, c in expr.terms.items()})

    @classmethod
    def product(cls, a, b, factor=1):
        """``factor · a · b`` for two linear expressions."""
        terms = {}
        for va, ca in a.terms.items():
            for vb, cb in b.terms.items():
                mono = tuple(sorted((va, vb), key=str))
                terms[mono] = terms.get(mono, Fraction(0)) + ca * cb * Fraction(factor)
        return cls(terms)

    def __add__(self, other):
        terms = dict(self.terms)
        for m, c in other.terms.items():
            terms[m] = terms.get(m, Fraction(0)) + c
        return Poly(terms)

    def scaled(self, factor):
        return Poly({m: c * Fraction(factor) for m, c in self.terms.items()})

    def evaluate(self, widths):
        total = Fraction(0)
        for mono, coeff in self.terms.items():
            value = coeff
            for v in mono:
                value *= widths[v]
            total += value
        return total

    @property
    def vars(self):
        return tuple(sorted({v for m in self.terms for v in m}, key=str))

    def __repr__(self):
        return " + ".join(f"{c}*{'*'.join(map(str, m)) or '1'}" for m, c in self.terms.items()) or "0"


ZERO = Poly()
