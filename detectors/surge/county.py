"""The jurisdiction's windows, kept up to date as calls enter and leave them (pure).

The county-wide test (:meth:`~detectors.surge.scan.Scan._evaluate_jurisdiction`)
reads, for each of its windows ending at the clock, the calls and incidents in
all and per category, and the disk (a cell and its ring) holding the most calls,
which it leaves out. Counted afresh at each test, these cost a bisection of every
cell's times per window and a sum over every disk: on a quiet centre's replay,
where an event minute passes at nearly every call, about two thirds of the surge
detector's time. :class:`CountyWindows` keeps the sums instead, each call added
once to each window it enters and taken off once when it leaves, so that a test
costs a pass over the disks with calls.

Its contract with the detector that owns it:

- :meth:`~CountyWindows.move` brings every window's end to ``now`` (never back),
  reading the detector's calls in time order;
- :meth:`~CountyWindows.learn` is told of every call added to the detector's
  calls after a move (a call at or before the windows' end, late, counts at
  once; a later one is counted by the next move);
- :meth:`~CountyWindows.forget` is told of every call dropped from them (expired
  or shed).

Then, after each move, each window holds exactly the calls ``c`` of the
detector's list with ``now - 60 w < c.t <= now``, the same floats as counting
afresh compares, so the test's findings do not change.

>>> import h3
>>> a, b = "882aac941dfffff", "882aac9417fffff"
>>> calls = [(0.0, a, "EMS", True), (30.0, b, "FIRE", False), (90.0, a, "EMS", True)]
>>> county = CountyWindows((1, 3), calls, now=60.0)
>>> county.calls(0), county.calls(1)[0], county.incidents(1)[0]  # in the last minute: the FIRE call alone
([1, 0, 1, 0, 0, 0], 2, 1)
>>> county.move(120.0, calls)
>>> county.calls(0)[0], county.calls(1)[0], county.busiest(1) in set(h3.grid_disk(a, 1)) & set(h3.grid_disk(b, 1))
(1, 3, True)
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from itertools import compress
from typing import TYPE_CHECKING

from detectors.surge.regions import disk
from detectors.windows import time_of
from streams.ingest.schema import CATEGORIES, CATEGORY_INDEX

if TYPE_CHECKING:
    from detectors.surge.scan import _Rec

#: the index unknown categories count as (OTHER)
_OTHER = CATEGORY_INDEX["OTHER"]


def _between(calls: Sequence[_Rec], start: float, end: float) -> Sequence[_Rec]:
    """The calls (time order) with ``start < t <= end``."""
    if end <= start:
        return ()
    return calls[bisect.bisect_right(calls, start, key=time_of) : bisect.bisect_right(calls, end, key=time_of)]


class CountyWindows:
    """Calls and incidents (in all and per category) and calls per disk, in each window ending at :attr:`at`.

    Parameters
    ----------
    windows_min : sequence of int
        The windows, minutes (each >= 1), in the order their sums are read by index.
    calls : sequence of calls
        The detector's calls in time order, ``(t, cell, category, incident)``.
    now : float
        Where the windows end at first.
    """

    __slots__ = ("windows_min", "at", "pending", "_spans", "_calls", "_incidents", "_disks", "_busiest")

    def __init__(self, windows_min: Sequence[int], calls: Sequence[_Rec], now: float) -> None:
        self.windows_min = tuple(windows_min)
        #: where every window ends
        self.at = float(now)
        #: calls learnt after :attr:`at` since the last move, that the next move counts (so that a caller can move
        #: the windows before the work piles up: at 1,000 calls a second a minute is 60,000 calls to add)
        self.pending = 0
        self._spans = tuple(60.0 * w for w in self.windows_min)
        n = len(CATEGORIES) + 1
        # per window: calls and incidents, index 0 all and 1.. each category; calls per disk centre (none at 0)
        self._calls = [[0] * n for _ in self._spans]
        self._incidents = [[0] * n for _ in self._spans]
        self._disks: list[dict[str, int]] = [{} for _ in self._spans]
        # per window: its busiest disk's centre, kept as calls enter; None (found again when read) once a call left it
        self._busiest: list[str | None] = [None for _ in self._spans]
        for i, span in enumerate(self._spans):
            for call in _between(calls, self.at - span, self.at):
                self._add(i, call)

    # ------------------------------------------------------------------ reading

    def calls(self, i: int) -> list[int]:
        """Calls in window ``i``: all at index 0, then one per category of ``CATEGORIES`` (a copy)."""
        return self._calls[i][:]

    def incidents(self, i: int) -> list[int]:
        """Incidents in window ``i``, as :meth:`calls` (a copy)."""
        return self._incidents[i][:]

    def busiest(self, i: int) -> str:
        """The centre of the disk with the most calls in window ``i``, the smallest centre among equals; "" for none."""
        got = self._busiest[i]
        if got is None:
            disks = self._disks[i]
            if not disks:
                return ""
            most = max(disks.values())
            got = self._busiest[i] = min(compress(disks, map(most.__eq__, disks.values())))  # no Python loop
        return got

    # ------------------------------------------------------------------ keeping up

    def move(self, now: float, calls: Sequence[_Rec]) -> None:
        """Bring every window's end to ``now`` (>= :attr:`at`), ``calls`` the detector's calls in time order."""
        before = self.at
        if now < before:
            raise ValueError(f"the windows end at {before!r} and cannot move back to {now!r}")
        for i, span in enumerate(self._spans):
            start = now - span
            for call in _between(calls, before - span, min(start, before)):  # left the window
                self._take(i, call)
            for call in _between(calls, max(before, start), now):  # entered it
                self._add(i, call)
        self.at = float(now)
        self.pending = 0

    def learn(self, call: _Rec) -> None:
        """Count ``call``, just added to the detector's calls, in the windows it is in (none if after :attr:`at`)."""
        t, at = call[0], self.at
        if t > at:
            self.pending += 1
            return
        for i, span in enumerate(self._spans):
            if t > at - span:
                self._add(i, call)

    def forget(self, calls: Iterable[_Rec]) -> None:
        """Take ``calls``, just dropped from the detector's calls, off the windows they were in."""
        at = self.at
        for call in calls:
            t = call[0]
            if t <= at:
                for i, span in enumerate(self._spans):
                    if t > at - span:
                        self._take(i, call)

    def _add(self, i: int, call: _Rec) -> None:
        _, cell, category, incident = call
        j = CATEGORY_INDEX.get(category, _OTHER) + 1
        n = self._calls[i]
        n[0] += 1
        n[j] += 1
        if incident:
            n = self._incidents[i]
            n[0] += 1
            n[j] += 1
        disks = self._disks[i]
        get = disks.get
        best = self._busiest[i]
        most = disks[best] if best is not None else 0
        for centre in disk(cell):  # a cell is in the disk of each centre of its own disk
            held = disks[centre] = get(centre, 0) + 1
            if best is not None and (held > most or (held == most and centre < best)):  # only a disk that gained can pass it
                best, most = centre, held
        self._busiest[i] = best

    def _take(self, i: int, call: _Rec) -> None:
        _, cell, category, incident = call
        j = CATEGORY_INDEX.get(category, _OTHER) + 1
        n = self._calls[i]
        n[0] -= 1
        n[j] -= 1
        if incident:
            n = self._incidents[i]
            n[0] -= 1
            n[j] -= 1
        disks = self._disks[i]
        centres = disk(cell)
        if self._busiest[i] in centres:
            self._busiest[i] = None  # the busiest lost a call: another may now lead
        for centre in centres:
            left = disks[centre] - 1
            if left:
                disks[centre] = left
            else:
                del disks[centre]
