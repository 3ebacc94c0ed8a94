"""CDC EARS C1, C2, C3 and a fixed threshold: the baselines our surge detector is compared with.

The Early Aberration Reporting System (EARS) methods are Shewhart-type charts
on a count series with a short moving baseline (Hutwagner L., Thompson W.,
Seeman G. M., Treadwell T., "The bioterrorism preparedness and response Early
Aberration Reporting System (EARS)", *Journal of Urban Health* 80(2) Suppl 1,
i89-i96, 2003; formulas as restated by Fricker R. D., Hegler B. L., Dunfee
D. A., "Comparing syndromic surveillance detection methods: EARS' versus a
CUSUM-based methodology", *Statistics in Medicine* 27:3407-3429, 2008, and as
implemented in the R package ``surveillance``, ``earsC``).

With ``Y[t]`` the count of period ``t`` and, for a baseline of periods
``B``, ``mean(B)`` and ``sd(B)`` the sample mean and sample standard deviation
(``n - 1`` in the denominator) of those counts:

* **C1** (MILD): ``C1[t] = (Y[t] - mean(Y[t-7..t-1])) / sd(Y[t-7..t-1])``;
  alarm when ``C1[t] > 3``.
* **C2** (MEDIUM): the same with a two-period guard band,
  ``C2[t] = (Y[t] - mean(Y[t-9..t-3])) / sd(Y[t-9..t-3])``; alarm when ``C2[t] > 3``.
* **C3** (ULTRA): ``C3[t] = sum over i = t-2..t of max(0, C2[i] - 1)``;
  alarm when ``C3[t] > 2``.

EARS was designed for daily counts. Our counts are sparse (most cells see no
call in most 15-minute periods), which makes ``sd`` zero; as in ``earsC``'s
``minSigma`` the standard deviation is floored at ``min_sigma``. The
evaluation (``bench/evaluate.py``) tunes every method's threshold to the same
false-alert rate, so the CDC's 3 and 2 are only the defaults here.

:func:`ears_statistic` works on many series at once (NumPy, for the
evaluation); :class:`EarsDetector` and :class:`FixedThreshold` are the same
statistics one period at a time with the River verbs.

Examples
--------
>>> import numpy as np
>>> history = np.array([[2, 3, 1, 2, 4, 3, 2, 2, 3, 1, 2, 9]])  # oldest first; the last is now
>>> float(np.round(ears_statistic(history, "C1", min_sigma=0.0)[0], 3))
6.734
>>> det = EarsDetector(method="C1", threshold=3.0, min_sigma=0.0)
>>> for y in history[0, :-1]:
...     det.learn_one(int(y))
>>> round(det.score_one(9), 3), det.score_one(9) > det.threshold
(6.734, True)
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from detectors.base import Detector

METHODS = ("C1", "C2", "C3")
#: Periods of history each statistic needs before the current one.
HISTORY = {"C1": 7, "C2": 9, "C3": 11}
#: The CDC's alarm thresholds.
CDC_THRESHOLDS = {"C1": 3.0, "C2": 3.0, "C3": 2.0}


def _z(counts: np.ndarray, now: int, base_from: int, base_to: int, min_sigma: float) -> np.ndarray:
    """``(Y[now] - mean(B)) / max(sd(B), min_sigma)`` with ``B = Y[base_from:base_to]`` (column indices)."""
    base = counts[:, base_from:base_to].astype(float)
    mean = base.mean(axis=1)
    sd = base.std(axis=1, ddof=1)
    sd = np.maximum(sd, min_sigma)
    y = counts[:, now].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (y - mean) / sd
    # sd == 0 (min_sigma 0): any excess is infinitely surprising, no excess is not
    return np.where(sd > 0, z, np.where(y > mean, np.inf, 0.0))


def ears_statistic(counts: np.ndarray, method: str, min_sigma: float = 0.5) -> np.ndarray:
    """The EARS statistic of the last column of each row.

    Parameters
    ----------
    counts : array of shape (n, k)
        One series per row, oldest period first, the current period last;
        ``k >= HISTORY[method] + 1`` (extra older columns are ignored).
    method : {"C1", "C2", "C3"}
    min_sigma : float
        Floor of the baseline standard deviation (>= 0).

    Returns
    -------
    array of shape (n,)

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([[0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 3]])
    >>> [round(float(ears_statistic(y, m, min_sigma=0.5)[0]), 3) for m in METHODS]
    [6.0, 5.714, 4.714]
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not (isinstance(min_sigma, (int, float)) and math.isfinite(min_sigma) and min_sigma >= 0):
        raise ValueError(f"min_sigma must be a finite number >= 0, got {min_sigma!r}")
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[1] < HISTORY[method] + 1:
        raise ValueError(f"counts must have shape (n, >= {HISTORY[method] + 1}) for {method}, got {counts.shape}")
    k = counts.shape[1]
    now = k - 1
    if method == "C1":
        return _z(counts, now, now - 7, now, min_sigma)
    if method == "C2":
        return _z(counts, now, now - 9, now - 2, min_sigma)
    # C3: C2 at now, now - 1 and now - 2, each with its own guard band and baseline
    total = np.zeros(counts.shape[0])
    for lag in range(3):
        c2 = _z(counts, now - lag, now - lag - 9, now - lag - 2, min_sigma)
        total += np.maximum(0.0, c2 - 1.0)
    return total


class EarsDetector(Detector):
    """EARS C1, C2 or C3 on one count series, one period at a time.

    Call :meth:`score_one` with the current period's count (the statistic,
    ``0.0`` until enough history), then :meth:`learn_one` with the same count
    to move on to the next period.

    Parameters
    ----------
    method : {"C1", "C2", "C3"}
    threshold : float
        Alarm when the statistic exceeds it (the CDC uses 3 for C1 and C2, 2 for C3).
    min_sigma : float
        Floor of the baseline standard deviation (>= 0).

    Examples
    --------
    >>> det = EarsDetector(method="C3", threshold=2.0)
    >>> for y in [0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0]:
    ...     det.learn_one(y)
    >>> round(det.score_one(4), 3), det.alarm(4)
    (6.429, True)
    """

    def __init__(self, method: str = "C3", threshold: float | None = None, min_sigma: float = 0.5) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if threshold is not None and not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
            raise ValueError(f"threshold must be a finite number or None (the CDC's), got {threshold!r}")
        if not (isinstance(min_sigma, (int, float)) and math.isfinite(min_sigma) and min_sigma >= 0):
            raise ValueError(f"min_sigma must be a finite number >= 0, got {min_sigma!r}")
        self.method = method
        self.threshold = CDC_THRESHOLDS[method] if threshold is None else threshold
        self.min_sigma = min_sigma
        self._history: deque[int] = deque(maxlen=HISTORY[method])

    def learn_one(self, y: int) -> None:
        """Append the count of the period just finished."""
        self._history.append(int(y))

    def score_one(self, y: int) -> float:
        """The statistic of a current count ``y`` against the history (0.0 until it is long enough)."""
        if len(self._history) < HISTORY[self.method]:
            return 0.0
        row = np.array([[*self._history, int(y)]])
        return float(ears_statistic(row, self.method, self.min_sigma)[0])

    def alarm(self, y: int) -> bool:
        return self.score_one(y) > self.threshold


class FixedThreshold(Detector):
    """The simplest baseline: alarm when a period's count reaches ``threshold``.

    Examples
    --------
    >>> FixedThreshold(5).alarm(5), FixedThreshold(5).score_one(3)
    (True, 3.0)
    """

    def __init__(self, threshold: float = 5.0) -> None:
        if not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")
        self.threshold = threshold

    def learn_one(self, y: int) -> None:
        """Nothing to learn: the threshold is fixed."""

    def score_one(self, y: int) -> float:
        return float(y)

    def alarm(self, y: int) -> bool:
        return self.score_one(y) >= self.threshold
