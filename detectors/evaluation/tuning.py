"""A baseline's threshold tuned to a false-alert rate: the comparison with our detector is at equal false alerts.

Examples
--------
>>> import numpy as np
>>> from detectors.evaluation.baselines import Points
>>> from detectors.evaluation.injection import Plan
>>> from detectors.evaluation.tuning import Tuner
>>> points = Points(t=np.arange(100.0) * 86400.0, region=np.zeros(100, dtype=np.int64), stats={})
>>> plan = Plan([], clean_days=[], injection_days=[], warmup_days=[], excluded_days={})
>>> tuner = Tuner("fixed", points, [("a",)], np.arange(100.0), plan, clean_live_days=100.0)
>>> tuner.tune(1.0).threshold  # no clean day in the plan: every threshold meets any target
95.0
"""

from __future__ import annotations

import numpy as np

from detectors.evaluation.baselines import Points, score_baseline
from detectors.evaluation.injection import Plan
from detectors.evaluation.scoring import Score

#: At most this many candidate thresholds (quantiles of the statistic beyond it).
MAX_CANDIDATES = 4000


class Tuner:
    """Thresholds of one baseline method, scored on demand and remembered (several targets share them).

    Candidates are the statistic's distinct positive values from its 95th percentile up, plus infinity
    (no alert at all, which meets any target).
    """

    def __init__(self, method: str, points: Points, regions: list[tuple[str, ...]], stat: np.ndarray, plan: Plan, clean_live_days: float):
        self.method, self.points, self.regions, self.stat, self.plan, self.clean = method, points, regions, stat, plan, clean_live_days
        finite = stat[np.isfinite(stat)]
        # A rule on at more than 5 % of its evaluations is no alert (and its exceedances merge into a few
        # county-wide episodes that look like few false alerts): thresholds start at the 95th percentile.
        floor = np.quantile(finite, 0.95) if len(finite) else 0.0
        candidates = np.unique(finite[(finite > 0) & (finite >= floor)])
        if len(candidates) > MAX_CANDIDATES:
            candidates = np.unique(np.quantile(candidates, np.linspace(0, 1, MAX_CANDIDATES)))
        self.candidates = np.append(candidates, np.inf)
        self._cache: dict[int, Score] = {}

    def at(self, k: int) -> Score:
        """The score at candidate ``k`` (computed once)."""
        if k not in self._cache:
            self._cache[k] = score_baseline(
                self.method, self.points, self.regions, self.stat, float(self.candidates[k]), self.plan, self.clean
            )
        return self._cache[k]

    def tune(self, target: float) -> Score:
        """The lowest threshold whose false alerts per day on clean days are at most ``target``.

        Galloping down from the top (high thresholds are cheap: few exceedances), then bisection.
        """
        lo, hi = 0, len(self.candidates) - 1  # invariant: candidates[hi] meets the target
        step = 1
        while True:
            k = hi - step
            if k <= lo:
                if self.at(lo).fa_per_day <= target:
                    return self.at(lo)
                break
            if self.at(k).fa_per_day > target:
                lo = k
                break
            hi, step = k, step * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.at(mid).fa_per_day <= target:
                hi = mid
            else:
                lo = mid
        return self.at(hi)
