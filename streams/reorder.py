"""Put detector input back into event-time order (pure).

Calls reach the detection agent from several ingest partitions and batches,
so they are only roughly in event-time order. Detectors need them in order:
:class:`ReorderBuffer` holds each point until the newest event time seen is
``delay_s`` past it, then releases points oldest first. A point older than
what has already been released is *late*: it is returned separately (it is
counted in Redis like any call, but the detectors never see it out of order).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class ReorderBuffer(Generic[T]):
    """Release items in event-time order once the stream is ``delay_s`` past them.

    >>> buf = ReorderBuffer(delay_s=60)
    >>> buf.push(100.0, "a"), buf.push(40.0, "b"), buf.push(170.0, "c")
    (([], []), (['b'], []), (['a'], []))
    >>> buf.push(90.0, "late")
    ([], ['late'])
    >>> buf.flush()
    ['c']
    """

    delay_s: float
    _heap: list[tuple[float, int, T]] = field(default_factory=list, repr=False)
    _seq: itertools.count = field(default_factory=itertools.count, repr=False)
    _newest: float = float("-inf")
    #: event time up to which items have been released
    released_until: float = float("-inf")

    def __post_init__(self) -> None:
        if self.delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {self.delay_s}")

    def push(self, t: float, item: T) -> tuple[list[T], list[T]]:
        """Add one item; return ``(released in order, late)``."""
        if t < self.released_until:
            return [], [item]
        heapq.heappush(self._heap, (t, next(self._seq), item))
        self._newest = max(self._newest, t)
        return self._release(self._newest - self.delay_s), []

    def flush(self) -> list[T]:
        """Release everything held (at shutdown or when the stream goes idle)."""
        return self._release(float("inf"))

    def __len__(self) -> int:
        return len(self._heap)

    def _release(self, until: float) -> list[T]:
        out = []
        while self._heap and self._heap[0][0] <= until:
            t, _, item = heapq.heappop(self._heap)
            out.append(item)
            self.released_until = t
        return out
