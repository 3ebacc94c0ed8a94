"""The calls an evaluation replays: parallel lists in event-time order, each marked with its injection.

Examples
--------
>>> from detectors.evaluation.calls import Calls
>>> calls = Calls.from_history([(120.0, 40.1, -75.3, "EMS", None), (60.0, 40.1, -75.3, "Fire", 200.0)])
>>> calls.t, calls.category, calls.inj
([60.0, 120.0], ['Fire', 'EMS'], [-1, -1])
>>> calls.point(0).cell == calls.cell[1]
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import h3

from detectors.types import DETECTION_RESOLUTION, CallPoint

#: One call of a history: (event time in epoch seconds, lat, lng, category, seconds to dispatch or None).
HistoryCall = tuple[float, float, float, str, float | None]


@dataclass
class Calls:
    """Calls as parallel lists, in event-time order; ``inj`` is the injection index or -1 (a real call)."""

    t: list[float] = field(default_factory=list)
    cell: list[str] = field(default_factory=list)
    category: list[str] = field(default_factory=list)
    dispatch_s: list[float | None] = field(default_factory=list)
    inj: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.t)

    def point(self, i: int) -> CallPoint:
        """Call ``i`` as the detectors take it."""
        return CallPoint(t=self.t[i], cell=self.cell[i], category=self.category[i], dispatch_s=self.dispatch_s[i])

    def append(self, t: float, cell: str, category: str, dispatch_s: float | None, inj: int = -1) -> None:
        """Add one call at the end (the caller keeps the event-time order)."""
        self.t.append(t)
        self.cell.append(cell)
        self.category.append(category)
        self.dispatch_s.append(dispatch_s)
        self.inj.append(inj)

    @classmethod
    def from_history(cls, history: Iterable[HistoryCall]) -> Calls:
        """Real calls from ``(t, lat, lng, category, dispatch_s)`` records (any order), located in their
        detection-resolution H3 cell and sorted by event time (stable: ties keep their order)."""
        rows = [(t, h3.latlng_to_cell(lat, lng, DETECTION_RESOLUTION), category, d) for t, lat, lng, category, d in history]
        rows.sort(key=lambda r: r[0])
        calls = cls()
        for t, cell, category, d in rows:
            calls.append(t, cell, category, d)
        return calls
