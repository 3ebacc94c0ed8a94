"""Sliding-window bookkeeping shared by the surge and zone detectors (pure).

Both keep the calls of their longest window twice: in one list in time order,
and per cell, each call a tuple starting ``(t, cell, ...)``;
:func:`insort_by_time` adds one in order, :func:`drop_expired` trims both at
once. A window holds at most its detector's ``max_window_calls``: beyond that
(a synthetic storm, hundreds of times any real centre's rate)
:func:`shed_cutoff` says how many of the oldest to drop early, so that memory
stays bounded whatever the rate.
"""

from __future__ import annotations

import bisect
import operator
from typing import Any, TypeVar

#: A call in a window: a tuple whose first item is its time (each detector keeps its own fields after it).
_Call = TypeVar("_Call", bound=tuple[Any, ...])


def drop_expired(calls: list[_Call], by_cell: dict[str, list[_Call]], cutoff: float) -> int:
    """Remove the calls at or before ``cutoff`` from ``calls`` (time order) and from ``by_cell``; how many went.

    >>> a, b, c = (1.0, "x"), (2.0, "y"), (5.0, "x")
    >>> calls, by_cell = [a, b, c], {"x": [a, c], "y": [b]}
    >>> drop_expired(calls, by_cell, 2.0), calls, by_cell
    (2, [(5.0, 'x')], {'x': [(5.0, 'x')]})
    """
    n = bisect.bisect_right(calls, cutoff, key=time_of)
    if not n:
        return 0
    for cell in {call[1] for call in calls[:n]}:
        mine = by_cell.get(cell)
        if mine:
            del mine[: bisect.bisect_right(mine, cutoff, key=time_of)]
            if not mine:
                del by_cell[cell]
    del calls[:n]
    return n


#: Default cap of a detector's windows: about 2 calls a second for 3 hours, hundreds of times a
#: real centre's rate (Montgomery: about 400 calls a day), at roughly 0.5 KB per call and detector.
MAX_WINDOW_CALLS = 200_000
#: A window over its cap is cut to this share of the cap at once, not one call at a time.
SHED_TO = 0.9


def shed_cutoff(calls: list[_Call], cap: int) -> float | None:
    """The time through which to drop the oldest of ``calls`` (time order) when they are more than ``cap``; None within it.

    >>> calls = [(float(i), "x") for i in range(12)]
    >>> shed_cutoff(calls, 12), shed_cutoff(calls, 10)
    (None, 2.0)
    """
    if len(calls) <= cap:
        return None
    cutoff: float = calls[len(calls) - int(cap * SHED_TO) - 1][0]
    return cutoff


def check_cap(value: object) -> int:
    """``value`` as a window cap, or ValueError.

    >>> check_cap(0)
    Traceback (most recent call last):
    ...
    ValueError: max_window_calls must be an integer >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_window_calls must be an integer >= 1, got {value!r}")
    return value


#: A call's time, its first item (the key of the windows' bisections).
time_of = operator.itemgetter(0)


def insort_by_time(calls: list[_Call], call: _Call) -> None:
    """Add ``call`` to ``calls`` (time order), after any call at the same time; calls mostly come in order.

    >>> calls = [(1.0, "x"), (5.0, "y")]
    >>> insort_by_time(calls, (7.0, "z")); insort_by_time(calls, (1.0, "w")); calls
    [(1.0, 'x'), (1.0, 'w'), (5.0, 'y'), (7.0, 'z')]
    """
    if not calls or calls[-1][0] <= call[0]:
        calls.append(call)
    else:
        bisect.insort_right(calls, call, key=time_of)
