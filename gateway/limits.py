"""Token-bucket rate limits keyed by who asks (pure: the caller passes the clock).

The gateway keeps one :class:`RateLimits` for API calls per token and one for
refused or unauthenticated requests per client address, so that neither a
partner flooding queries nor an outsider knocking with bad tokens can take
the event loop (and the audit log) from the dispatch supervisors.

>>> limits = RateLimits(rate_per_s=1.0, burst=2)
>>> [limits.allow("a", now=0.0) for _ in range(3)], limits.allow("b", now=0.0), limits.allow("a", now=1.0)
([True, True, False], True, True)
"""

from __future__ import annotations

from collections import OrderedDict


class RateLimits:
    """A token bucket per key: ``burst`` at once, refilled at ``rate_per_s``; at most ``max_keys`` remembered
    (the least recently seen are forgotten, so a flood of new keys cannot grow memory)."""

    def __init__(self, rate_per_s: float, burst: float, max_keys: int = 100_000) -> None:
        if not rate_per_s > 0 or not burst >= 1 or max_keys < 1:
            raise ValueError(f"rate_per_s must be > 0, burst >= 1 and max_keys >= 1, got {rate_per_s}, {burst}, {max_keys}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        #: refusals per key since :meth:`take_refused` was last called
        self.refused: dict[str, int] = {}

    def allow(self, key: str, now: float) -> bool:
        """Take one token from ``key``'s bucket at time ``now`` (seconds, monotonic); False when it is empty."""
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate_per_s)
        ok = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if ok else tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        if not ok:
            self.refused[key] = self.refused.get(key, 0) + 1
        return ok

    def take_refused(self) -> dict[str, int]:
        """Refusals per key since the last call (for one aggregated audit record per key)."""
        out, self.refused = self.refused, {}
        return out
