"""Sliding-window bookkeeping shared by the surge and zone detectors (pure).

Both keep the calls of their longest window twice: in one list in time order,
and per cell. :func:`drop_expired` trims both at once.
"""

from __future__ import annotations

import bisect


def drop_expired(calls: list, by_cell: dict[str, list], cutoff: float) -> int:
    """Remove the calls at or before ``cutoff`` from ``calls`` (time order) and from ``by_cell``; how many went.

    >>> from types import SimpleNamespace as C
    >>> a, b, c = C(t=1.0, cell="x"), C(t=2.0, cell="y"), C(t=5.0, cell="x")
    >>> calls, by_cell = [a, b, c], {"x": [a, c], "y": [b]}
    >>> drop_expired(calls, by_cell, 2.0), [k.t for k in calls], {k: [v.t for v in vs] for k, vs in by_cell.items()}
    (2, [5.0], {'x': [5.0]})
    """
    n = bisect.bisect_right(calls, cutoff, key=_time)
    if not n:
        return 0
    for cell in {call.cell for call in calls[:n]}:
        mine = by_cell.get(cell)
        if mine:
            del mine[: bisect.bisect_right(mine, cutoff, key=_time)]
            if not mine:
                del by_cell[cell]
    del calls[:n]
    return n


def _time(call) -> float:  # noqa: ANN001 -- any record with a time ``t``
    return call.t
