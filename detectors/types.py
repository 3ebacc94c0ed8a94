"""What detectors consume and produce (pure data, shared by the worker and the evaluation).

A detector sees a :class:`CallPoint`: when, which H3 cell, what category,
priority and response times when known. It never sees call ids, caller data
or coordinates. It produces :class:`Alert` records that carry their own
explanation: observed and expected counts, window, cells, the categories that
drove them, the score, the model and its version, and for event-zone alerts
the zone's id.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

#: H3 resolution of the cells detectors work on (res 8: ~0.74 km^2).
DETECTION_RESOLUTION = 8


@dataclass(frozen=True)
class CallPoint:
    """One call as a detector sees it.

    ``t`` is the event time (epoch seconds, UTC); ``cell`` the H3 cell at
    :data:`DETECTION_RESOLUTION`; ``category`` one of
    :data:`streams.ingest.schema.CATEGORIES` (detectors count any other as OTHER).
    ``dispatch_s`` / ``travel_s`` are response times when known (the anomaly
    model uses them); ``priority`` is 1..5 or None.
    """

    t: float
    cell: str
    category: str
    priority: int | None = None
    dispatch_s: float | None = None
    travel_s: float | None = None


class AlertKind(enum.StrEnum):
    SURGE = "surge"
    ANOMALY = "anomaly"
    FEED_OUTAGE = "feed_outage"
    #: a surge inside an event zone (see :mod:`detectors.zones`)
    ZONE_SURGE = "zone_surge"


class AlertState(enum.StrEnum):
    """Lifecycle: one surge is one alert, opened once, updated while it lasts, closed once."""

    OPEN = "open"
    UPDATE = "update"
    CLOSED = "closed"


@dataclass(frozen=True)
class Alert:
    """An alert and why it fired. ``id`` is stable for the whole life of one surge."""

    id: str
    kind: AlertKind
    state: AlertState
    #: event time the condition started (first minute of the window that fired)
    started_at: float
    #: event time of this open/update/close
    at: float
    cells: tuple[str, ...]
    window_min: int
    observed: int
    expected: float
    #: high means more unusual (for surges: -log10 of the tail probability)
    score: float
    p_value: float | None
    #: observed calls per category in the window, largest first
    categories: dict[str, int] = field(default_factory=dict)
    model: str = ""
    model_version: str = ""
    #: one sentence a supervisor can read
    reason: str = ""
    #: id of the event zone the alert is about (zone surges), else None
    zone: str | None = None
    #: names of the jurisdiction's areas holding ``cells``, most cells first: set by the
    #: worker from its jurisdiction profile (the detectors know cells, not names)
    areas: tuple[str, ...] = ()
    #: the alert in one plain sentence, no statistics: set by the worker at publication with ``areas``
    #: (:mod:`streams.detection.plain`); empty on records older than it
    summary: str = ""

    def to_json(self) -> dict[str, Any]:
        # Spelled out in field order rather than dataclasses.asdict, which recursed into every
        # cell: a county-wide alert lists thousands, and in a storm its once-a-minute updates
        # held the detection agent up to a second (py-spy, bench/latency.py). The same keys in
        # the same order: the bytes are digested to drop the copies a replay makes again.
        return {
            "id": self.id, "kind": self.kind.value, "state": self.state.value, "started_at": self.started_at,
            "at": self.at, "cells": list(self.cells), "window_min": self.window_min, "observed": self.observed,
            "expected": self.expected, "score": self.score, "p_value": self.p_value, "categories": dict(self.categories),
            "model": self.model, "model_version": self.model_version, "reason": self.reason, "zone": self.zone,
            "areas": list(self.areas), "summary": self.summary,
        }  # fmt: skip
