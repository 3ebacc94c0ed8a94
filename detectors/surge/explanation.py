"""A surge alert and the sentence that explains it, from the finding it reports (pure).

Every alert explains itself: ``observed`` is the number of calls of ``cells``
in the window ``(at - window_min, at]`` of its strongest region, ``expected``
the calls expected there, ``categories`` those calls by category (largest
first), ``cells`` busiest first, ``score`` and ``p_value`` the test,
``model`` and ``model_version``, and a one-sentence ``reason``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from detectors.surge.regions import JURISDICTION
from detectors.types import Alert, AlertKind, AlertState

if TYPE_CHECKING:
    from detectors.surge.lifecycle import _Episode
    from detectors.surge.scan import _Finding

MODEL = "surge-poisson-scan"
#: Bump when the test, the regions, the incident rule or the alert lifecycle change
#: (1.1: an open alert reports growth by a fifth, not every call it gains).
MODEL_VERSION = "1.1"


def surge_alert(ep: _Episode, state: AlertState, now: float, close_threshold: float, close_after_min: float) -> Alert:
    """The alert record of episode ``ep`` at ``now``, explained by its reported finding (``ep.best``, its calls listed)."""
    f = ep.best
    assert f is not None and f.calls is not None
    categories: dict[str, int] = {}
    for c in f.calls:
        categories[c[2]] = categories.get(c[2], 0) + 1
    categories = dict(sorted(categories.items(), key=lambda kv: (-kv[1], kv[0])))
    per_cell: dict[str, int] = {}
    for c in f.calls:
        per_cell[c[1]] = per_cell.get(c[1], 0) + 1
    cells = tuple(sorted(per_cell, key=lambda c: (-per_cell[c], c)))
    if state is AlertState.CLOSED:
        reason = f"closed: no region of this surge has scored {close_threshold:g} for {close_after_min:g} min"
    else:
        how = f.method if f.method is not None else f"p = {f.p:.0e}"
        reason = f"{f.observed} calls ({f.incidents} incidents) in {f.window_min} min {where(f)}, {f.expected:.2g} expected ({how})"
    return Alert(
        id=ep.id,
        kind=AlertKind.SURGE,
        state=state,
        started_at=ep.started_at,
        at=now,
        cells=cells,
        window_min=f.window_min,
        observed=f.observed,
        expected=round(f.expected, 3),
        score=round(f.score, 3),
        p_value=f.p,
        categories=categories,
        model=MODEL,
        model_version=MODEL_VERSION,
        reason=reason,
    )


def where(f: _Finding) -> str:
    """The finding's region in words.

    >>> from detectors.surge.scan import _Finding
    >>> where(_Finding("disk:882aac941dfffff", 15, 0.0, 7.0, 1e-7, 9, 8, 0.5, None, ()))
    'in 7 cells around 882aac941dfffff'
    """
    if f.key == JURISDICTION:
        return f"across the jurisdiction{'' if f.category is None else f' ({f.category})'}"
    kind, cell = f.key.split(":", 1)
    return f"in cell {cell}" if kind == "cell" else f"in 7 cells around {cell}"
