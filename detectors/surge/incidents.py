"""Incidents, not records: the surge detector's repeat rule, defined once (pure).

Real feeds record one incident several times (several callers, one record per
agency, the same record geocoded to two neighbouring intersections). A call is
a *repeat* when a new incident was counted in the same cell at most
``repeat_s`` seconds before it, or when any call arrived in a neighbouring cell
at most ``same_instant_s`` seconds before it; otherwise it is a new incident.
A cell thus counts at most one incident per ``repeat_s``, and a long burst
still counts many.

:func:`is_incident` is the rule for one call, given what came before;
:class:`~detectors.surge.SurgeDetector` asks it of its windows and
:func:`incidents` of a whole stream (for evaluations).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from detectors.surge.regions import disk
from detectors.types import CallPoint


def is_incident(
    cell: str, t: float, last_incident: float | None, last_call: Callable[[str], float | None], repeat_s: float, same_instant_s: float
) -> bool:
    """Whether a call at ``t`` in ``cell`` is a new incident.

    ``last_incident`` is the time of the latest incident counted in ``cell``
    (None for none); ``last_call(n)`` the time of the latest call in cell ``n``
    (None for none), asked only of ``cell``'s neighbours.

    >>> is_incident("882aac941dfffff", 100.0, 30.0, lambda n: None, 120.0, 1.0)   # 70 s after one
    False
    >>> is_incident("882aac941dfffff", 200.0, 30.0, lambda n: 199.5, 120.0, 1.0)  # a neighbour's, half a second before
    False
    >>> is_incident("882aac941dfffff", 200.0, 30.0, lambda n: 150.0, 120.0, 1.0)
    True
    """
    if last_incident is not None and 0.0 <= t - last_incident <= repeat_s:
        return False
    if same_instant_s > 0:
        for n in disk(cell):
            if n != cell:
                last = last_call(n)
                if last is not None and 0.0 <= t - last <= same_instant_s:
                    return False
    return True


def incidents(points: Iterable[CallPoint], repeat_s: float = 120.0, same_instant_s: float = 1.0) -> list[bool]:
    """For calls in event-time order, whether each is a new incident under :func:`is_incident`.

    >>> cell = "882aac941dfffff"
    >>> incidents([CallPoint(t, cell, "EMS") for t in (0.0, 60.0, 150.0, 200.0, 600.0)])
    [True, False, True, False, True]
    """
    last_incident: dict[str, float] = {}
    last_call: dict[str, float] = {}
    out = []
    for x in points:
        t = float(x.t)
        new = is_incident(x.cell, t, last_incident.get(x.cell), last_call.get, repeat_s, same_instant_s)
        out.append(new)
        last_call[x.cell] = max(t, last_call.get(x.cell, t))
        if new:
            last_incident[x.cell] = t
    return out
