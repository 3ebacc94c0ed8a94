"""The attacker of the partner tests: it turns every answer a partner got into equations and solves for what was withheld.

An answer is a set of *atoms* (the finest pieces of data it sums: calls of one
res-8 cell, in one time slot, of one category) and a value: "these atoms sum
to 12". A withheld value is the sum over its atoms. :meth:`Attacker.pinned`
says whether the equations learnt so far determine it (exact linear
elimination: its indicator vector lies in the span of the answers'), and
:meth:`Attacker.bounds` the least and most it can be given also that every
atom is a non-negative integer and that every withheld value is below k
(integer programming, scipy's ``milp``). :meth:`Attacker.learn_range` takes an answer
that bounds a sum without giving it (a forecast's "usually 3-5 calls" over the days it
averaged); one whose bounds meet is an equation like any other.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.stats import poisson


class Attacker:
    def __init__(self, k: int) -> None:
        self.k = k
        self.index: dict[Hashable, int] = {}
        self.equations: list[tuple[frozenset[int], float]] = []
        self.below_k: list[frozenset[int]] = []
        self.ranges: list[tuple[frozenset[int], float, float]] = []
        self._solver: tuple | None = None

    def _ids(self, atoms: Iterable[Hashable]) -> frozenset[int]:
        return frozenset(self.index.setdefault(a, len(self.index)) for a in atoms)

    def learn(self, atoms: Iterable[Hashable], value: float) -> None:
        """A released answer: the calls of ``atoms`` sum to ``value``."""
        self.equations.append((self._ids(atoms), float(value)))

    def learn_range(self, atoms: Iterable[Hashable], low: float, high: float) -> None:
        """A bounding answer: the calls of ``atoms`` sum to at least ``low`` and at most ``high`` (an equation when equal)."""
        if low == high:
            self.learn(atoms, low)
        else:
            self.ranges.append((self._ids(atoms), float(low), float(high)))

    def learn_withheld(self, atoms: Iterable[Hashable]) -> None:
        """A withheld answer: the calls of ``atoms`` sum to less than k (and at least 0)."""
        self.below_k.append(self._ids(atoms))

    def pinned(self, atoms: Iterable[Hashable]) -> float | None:
        """The value of the sum over ``atoms`` when the learnt equations determine it, else None."""
        target = self._ids(atoms)
        if not self.equations:
            return None
        if self._solver is None or self._solver[0] != (len(self.equations), len(self.index)):
            n = len(self.index)
            rows = np.zeros((len(self.equations), n))
            for i, (ids, _) in enumerate(self.equations):
                rows[i, list(ids)] = 1.0
            # the pseudo-inverse once for every target: y = P t solves rows.T @ y = t in least squares
            self._solver = ((len(self.equations), n), rows, np.linalg.pinv(rows.T))
        _, rows, inverse = self._solver
        t = np.zeros(rows.shape[1])
        t[list(target)] = 1.0
        y = inverse @ t
        if np.abs(rows.T @ y - t).max() > 1e-6:
            return None
        return float(y @ np.array([v for _, v in self.equations]))

    def bounds(self, atoms: Iterable[Hashable]) -> tuple[int, int]:
        """The least and the most the sum over ``atoms`` can be: non-negative integer atoms, every equation, every
        withheld sum in 0..k-1, every range."""
        target = self._ids(atoms)
        n = len(self.index)
        a_eq = np.zeros((len(self.equations), n))
        for i, (ids, _) in enumerate(self.equations):
            a_eq[i, list(ids)] = 1.0
        a_lt = np.zeros((len(self.below_k), n))
        for i, ids in enumerate(self.below_k):
            a_lt[i, list(ids)] = 1.0
        constraints = []
        if self.equations:
            vals = np.array([v for _, v in self.equations])
            constraints.append(LinearConstraint(a_eq, vals, vals))
        if self.below_k:
            constraints.append(LinearConstraint(a_lt, 0, self.k - 1))
        if self.ranges:
            a_rng = np.zeros((len(self.ranges), n))
            for i, (ids, _, _) in enumerate(self.ranges):
                a_rng[i, list(ids)] = 1.0
            constraints.append(LinearConstraint(a_rng, [lo for _, lo, _ in self.ranges], [hi for _, _, hi in self.ranges]))
        c = np.zeros(n)
        c[list(target)] = 1.0
        out = []
        for sign in (1.0, -1.0):
            res = milp(sign * c, constraints=constraints, integrality=np.ones(n), bounds=Bounds(0, np.inf))
            assert res.success, res.message
            out.append(int(round(sign * res.fun)))
        return out[0], out[1]


def invert_poisson_score(expected: float, score: float, decimals: int = 1, high: int = 200) -> list[int]:
    """Every observed count whose surge score ``-log10 P(X >= observed)``, X ~ Poisson(expected), rounds to ``score``.

    >>> invert_poisson_score(0.5, 1.0)
    [2]
    """
    out = []
    for o in range(high):
        tail = float(poisson.sf(o - 1, expected))
        s = -math.log10(tail) if tail > 0 else math.inf
        if round(s, decimals) == round(score, decimals):
            out.append(o)
    return out
