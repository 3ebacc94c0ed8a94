"""Sliding-window bookkeeping shared by the surge and zone detectors (pure).

Both keep the calls of their longest window twice: in one list in time order,
and per cell. :func:`drop_expired` trims both at once.
"""

from __future__ import annotations


def drop_expired(calls: list, by_cell: dict[str, list], cutoff: float) -> int:
    """Remove the calls at or before ``cutoff`` from ``calls`` (time order) and from ``by_cell``; how many went.

    >>> from types import SimpleNamespace as C
    >>> a, b, c = C(t=1.0, cell="x"), C(t=2.0, cell="y"), C(t=5.0, cell="x")
    >>> calls, by_cell = [a, b, c], {"x": [a, c], "y": [b]}
    >>> drop_expired(calls, by_cell, 2.0), [k.t for k in calls], {k: [v.t for v in vs] for k, vs in by_cell.items()}
    (2, [5.0], {'x': [5.0]})
    """
    n = 0
    while n < len(calls) and calls[n].t <= cutoff:
        n += 1
    if not n:
        return 0
    for call in calls[:n]:
        mine = by_cell.get(call.cell)
        if mine:
            while mine and mine[0].t <= cutoff:
                mine.pop(0)
            if not mine:
                del by_cell[call.cell]
    del calls[:n]
    return n
