"""Put detector input back into event-time order (pure).

Calls reach the detection agent from several ingest partitions and batches,
so they are only roughly in event-time order. Detectors need them in order.
:class:`WatermarkMerge` (what the worker uses) releases a point once every
active source partition has reached its event time (a partition is active
while the counting agent reports it behind, not caught up, or, when it does
not report, while it is not silent); :class:`ReorderBuffer`
(a fixed delay behind the newest point; kept so that checkpoints written
before the merge still load) holds each point until the newest event time is
``delay_s`` past it. With either, a point older than what has already been
released is *late*: it is returned separately (it is counted in Redis like
any call, but the detectors never see it out of order).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


class _Held(Generic[T]):
    """Items held in a heap of ``(event time, seq, item)`` until released in time order.

    Subclasses are dataclasses with the fields ``_heap`` and ``released_until``.
    """

    _heap: list[tuple[float, int, T]]
    released_until: float

    def flush(self) -> list[T]:
        """Release everything held (at shutdown, or when the stream goes idle)."""
        return self._release(float("inf"))

    def __len__(self) -> int:
        return len(self._heap)

    def _release(self, until: float) -> list[T]:
        """Pop the items at or before ``until`` in time order; ``released_until`` becomes the last one's time."""
        heap = self._heap
        out = []
        while heap and heap[0][0] <= until:
            self.released_until, _, item = heapq.heappop(heap)
            out.append(item)
        return out


@dataclass
class ReorderBuffer(_Held[T]):
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
    _seq: itertools.count[int] = field(default_factory=itertools.count, repr=False)
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


@dataclass
class WatermarkMerge(_Held[T]):
    """Merge the streams of several source partitions into event-time order.

    Each partition's stream is roughly in event-time order, but partitions
    drift apart: a replay at full speed puts one partition's batches hours of
    event time ahead of another's. An item is released once every *active*
    partition has reached its event time (the low watermark), less
    ``delay_s`` for disorder within a partition. An item older than what has
    been released is *late* and returned separately.

    Which partitions are active is said by facts when the counting agent
    reports them (:meth:`report`, from the detector input's ``status``): a
    partition *caught up* (every record up to the broker's end of its log has
    been published on the detector input) holds nothing back, however long
    ago it was heard from; a partition *behind* (records the counting agent
    has not published yet) holds the others back at its event time, for up to
    ``history_idle_s`` after it was last heard from (the counting worker may
    have died). A record that comes later from a partition reported caught up
    is released in order if its time is not before what was released, and
    is late otherwise, as any late record.

    A partition never reported (detector input from a worker that does not
    report, or a partition not heard from yet) follows the silence rule: it
    is active while it has sent something in the last ``idle_s`` wall-clock
    seconds, or ``history_idle_s`` while it replays history (its event time
    more than ``live_s`` behind the wall clock: a backfill's partition is
    behind, not quiet, and a loaded worker can leave it unread for seconds).

    Call :meth:`add` with each item of a message, :meth:`report` with its
    partitions' status, then :meth:`release`; or :meth:`push`, which adds and
    releases one item. Call :meth:`poll` periodically (it releases what
    partitions that went silent were holding back).

    >>> m = WatermarkMerge(delay_s=0.0, idle_s=5.0)
    >>> m.push(0, 100.0, "p0@100", wall=0.0)      # only partition 0 is active
    (['p0@100'], [])
    >>> m.push(1, 40.0, "p1@40", wall=0.1)       # partition 1 is behind: 40 < released 100
    ([], ['p1@40'])
    >>> m.push(0, 200.0, "p0@200", wall=0.2), m.push(1, 150.0, "p1@150", wall=0.3)
    (([], []), (['p1@150'], []))
    >>> m.push(1, 250.0, "p1@250", wall=0.4)     # both past 200 now
    (['p0@200'], [])
    >>> m.poll(wall=6.0)                          # partition 0 went silent: 1 alone decides
    ['p1@250']

    With the counting agent's reports, no silence is waited for:

    >>> m = WatermarkMerge(partitions=2)
    >>> m.add(0, 100.0, "p0@100", wall=0.0)
    False
    >>> m.report(0, True, wall=0.0); m.report(1, False, wall=0.0)
    >>> m.release(wall=0.0)                       # partition 1 has records not published yet
    []
    >>> m.add(1, 90.0, "p1@90", wall=0.01); m.report(1, True, wall=0.01)
    False
    >>> m.release(wall=0.01)                      # both caught up: everything, in time order
    ['p1@90', 'p0@100']
    """

    delay_s: float = 0.0
    idle_s: float = 2.0
    #: source partitions expected (0..n-1): until each has been heard from or
    #: has stayed silent ``idle_s``, it holds the others back (a start or a
    #: restart must not release one partition's hours-ahead points first)
    partitions: int = 0
    #: how far behind the wall clock a partition's event time is history, and how long
    #: a partition replaying history (or reported behind) holds the others back after it was last heard from
    live_s: float = 600.0
    history_idle_s: float = 300.0
    _heap: list[tuple[float, int, T]] = field(default_factory=list, repr=False)
    _seq: itertools.count[int] = field(default_factory=itertools.count, repr=False)
    _wm: dict[int, float] = field(default_factory=dict, repr=False)
    _heard: dict[int, float] = field(default_factory=dict, repr=False)
    #: what the counting agent last reported of each partition: caught up (True) or behind (False)
    _caught_up: dict[int, bool] = field(default_factory=dict, repr=False)
    #: event time up to which items have been released
    released_until: float = float("-inf")

    def __post_init__(self) -> None:
        if self.delay_s < 0 or self.idle_s <= 0:
            raise ValueError(f"delay_s must be >= 0 and idle_s > 0, got {self.delay_s}, {self.idle_s}")

    def __setstate__(self, state: dict[str, object]) -> None:
        state.setdefault("_caught_up", {})  # a checkpoint from before the reports
        self.__dict__.update(state)

    def push(self, partition: int, t: float, item: T, wall: float) -> tuple[list[T], list[T]]:
        """Add one item from ``partition`` received at wall-clock ``wall`` and release; return ``(released in order, late)``."""
        if self.add(partition, t, item, wall):
            return [], [item]
        return self.release(wall), []

    def add(self, partition: int, t: float, item: T, wall: float) -> bool:
        """Hold one item from ``partition`` received at wall-clock ``wall`` without releasing anything; True if it is late
        (then it is not held: the caller handles it)."""
        self._start(wall)
        self._heard[partition] = wall
        self._wm[partition] = max(self._wm.get(partition, float("-inf")), t)
        if t < self.released_until:
            return True
        heapq.heappush(self._heap, (t, next(self._seq), item))
        return False

    def report(self, partition: int, caught_up: bool, wall: float) -> None:
        """The counting agent says at wall-clock ``wall`` whether ``partition`` is caught up (see the class's text)."""
        self._start(wall)
        self._heard[partition] = wall
        self._wm.setdefault(partition, float("-inf"))
        self._caught_up[partition] = caught_up

    def release(self, wall: float) -> list[T]:
        """Release, in time order, the items every active partition has reached."""
        return self._release(self.low_watermark(wall))

    def poll(self, wall: float) -> list[T]:
        """Release what partitions that went silent were holding back."""
        return self.release(wall)

    def low_watermark(self, wall: float) -> float:
        """Event time every active partition has reached, less ``delay_s`` (+inf when none is active)."""
        live = wall - self.live_s
        reported = self._caught_up
        active = []
        for p, wm in self._wm.items():
            status = reported.get(p)
            if status is None:
                holds = wall - self._heard[p] < (self.idle_s if wm >= live else self.history_idle_s)
            else:
                holds = not status and wall - self._heard[p] < self.history_idle_s
            if holds:
                active.append(wm)
        return min(active) - self.delay_s if active else float("inf")

    def _start(self, wall: float) -> None:
        """At the first item or report: every expected partition holds the others back until heard from or silent."""
        if not self._heard:
            for p in range(self.partitions):
                self._heard[p], self._wm[p] = wall, float("-inf")
