"""Upper-tail probabilities of counts, in log10, accurate far into the tail (pure).

Shared by the detectors that test an observed count against an expected one:
:mod:`detectors.surge` (Poisson for cells and disks, negative binomial for the
jurisdiction) and :mod:`detectors.zones` (Poisson for event zones). Both
return ``log10 P(X >= k)``, floored at ``-MAX_SCORE`` (a score is ``-log10 p``).
"""

from __future__ import annotations

import math

__all__ = ["MAX_SCORE", "log10_negbin_sf", "log10_poisson_sf"]

#: Scores (``-log10 p``) are capped here: p below 1e-300 is not more informative.
MAX_SCORE = 300.0
_LN10 = math.log(10.0)


def log10_poisson_sf(k: int, mu: float) -> float:
    """``log10 P(X >= k)`` for ``X ~ Poisson(mu)``, accurate far into the tail.

    >>> round(log10_poisson_sf(3, 0.1), 3)   # P(X >= 3) = 1.547e-4
    -3.811
    >>> log10_poisson_sf(0, 2.0)
    0.0
    """
    if k <= 0:
        return 0.0
    if mu <= 0.0:
        return -MAX_SCORE
    if k <= mu:
        term = math.exp(-mu)
        cdf = 0.0
        for j in range(k):
            cdf += term
            term *= mu / (j + 1)
        return math.log10(max(1.0 - cdf, 1e-300))
    log_first = -mu + k * math.log(mu) - math.lgamma(k + 1)
    total, term, j = 1.0, 1.0, k
    while term > 1e-12 * total:
        j += 1
        term *= mu / j
        total += term
    return (log_first + math.log(total)) / _LN10


def log10_negbin_sf(k: int, mu: float, shape: float) -> float:
    """``log10 P(X >= k)`` for a negative binomial with mean ``mu`` and variance ``mu + mu**2 / shape``.

    >>> round(log10_negbin_sf(40, 18.0, 20.0), 2)   # a Poisson(18) would give -5.27
    -2.91
    """
    if k <= 0:
        return 0.0
    if mu <= 0.0:
        return -MAX_SCORE
    q = mu / (mu + shape)
    if k <= mu:
        term = (1.0 - q) ** shape
        cdf = 0.0
        for j in range(k):
            cdf += term
            term *= (j + shape) / (j + 1) * q
        return math.log10(max(1.0 - cdf, 1e-300))
    log_first = math.lgamma(k + shape) - math.lgamma(shape) - math.lgamma(k + 1) + shape * math.log1p(-q) + k * math.log(q)
    total, term, j = 1.0, 1.0, k
    while True:
        ratio = (j + shape) / (j + 1) * q
        term *= ratio
        total += term
        j += 1
        if term < 1e-12 * total and ratio < 1.0:
            break
    return (log_first + math.log(total)) / _LN10
