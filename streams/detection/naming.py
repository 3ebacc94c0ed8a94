"""Name the places of an alert: the jurisdiction's areas holding its cells (pure).

The detectors know H3 cells; a supervisor knows towns, districts and beats.
Before an alert is published the detection agent passes it through
:func:`name_alert` with the named areas of the jurisdiction's profile
(:class:`streams.jurisdiction.Areas`): the alert gets ``areas`` (the names of
the areas holding its cells, most cells first) and every cell id in its
``reason`` is followed by the name of the area that holds it. Naming is not
detector state: it is applied at publication, so a checkpoint holds no names
and a renamed area takes effect at the next start.

>>> from detectors.types import Alert, AlertKind, AlertState
>>> class Areas:
...     names = {"882aac941dfffff": "Norristown", "882aac9435fffff": "Norristown", "882aac9409fffff": "Plymouth"}
...     def name_of(self, cell):
...         return self.names.get(cell)
...     def names_of(self, cells):
...         from collections import Counter
...         counts = Counter(n for n in map(self.name_of, cells) if n)
...         return [n for n, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
>>> alert = Alert(id="s1", kind=AlertKind.SURGE, state=AlertState.OPEN, started_at=0.0, at=60.0,
...               cells=("882aac941dfffff", "882aac9435fffff", "882aac9409fffff"), window_min=15, observed=9,
...               expected=1.2, score=6.0, p_value=1e-6,
...               reason="9 calls (8 incidents) in 15 min in 7 cells around 882aac941dfffff, 1.2 expected (p = 1e-06)")
>>> named = name_alert(alert, Areas())
>>> named.areas
('Norristown', 'Plymouth')
>>> named.reason
'9 calls (8 incidents) in 15 min in 7 cells around 882aac941dfffff (Norristown), 1.2 expected (p = 1e-06)'
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Protocol

from detectors.types import Alert

#: An H3 cell id as the detectors write them (15 hex digits, mode 1: starts with 8).
_CELL = re.compile(r"\b8[0-9a-f]{14}\b")


class AreaNames(Protocol):
    """What naming needs from the jurisdiction's areas (:class:`streams.jurisdiction.Areas` has it)."""

    def name_of(self, cell: str) -> str | None: ...

    def names_of(self, cells: Iterable[str]) -> list[str]: ...


def name_alert(alert: Alert, areas: AreaNames) -> Alert:
    """``alert`` with ``areas`` set from its cells and its reason's cell ids named; unchanged when no cell is named."""
    names = tuple(areas.names_of(alert.cells))

    def label(m: re.Match[str]) -> str:
        name = areas.name_of(m.group())
        return m.group() if name is None else f"{m.group()} ({name})"

    reason = _CELL.sub(label, alert.reason)
    if not names and reason == alert.reason:
        return alert
    return dataclasses.replace(alert, areas=names, reason=reason)
