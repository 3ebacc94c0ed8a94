"""The intake's counters, rendered with the worker's Prometheus renderer (pure; the clock is passed in).

Families (``watchfloor_`` prefix): ``intake_records_total{source,outcome,reason}``,
``intake_requests_total{status}``, ``intake_fields_dropped_total{source}``,
``intake_newest_event_seconds{source}`` and ``intake_lag_seconds{source}`` (now minus the
newest event time accepted). Counted since the intake process started.

>>> m = IntakeMetrics()
>>> m.record("dev", "refused", "wrong_agency"); m.request(200); m.newest("dev", 100.0)
>>> print(m.render(now=160.0), end="")  # doctest: +ELLIPSIS
# HELP watchfloor_intake_lag_seconds ...
# TYPE watchfloor_intake_lag_seconds gauge
watchfloor_intake_lag_seconds{source="dev"} 60.0
...
watchfloor_intake_records_total{source="dev",outcome="refused",reason="wrong_agency"} 1
...
watchfloor_intake_requests_total{status="200"} 1
"""

from __future__ import annotations

from collections import Counter

from streams.intake.core import format_prometheus_label
from streams.runtime.metrics import render_prometheus


class IntakeMetrics:
    """Counters and the newest event time per source, for ``GET /metrics``."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.newest_event: dict[str, float] = {}

    def record(self, source: str, outcome: str, reason: str | None, n: int = 1) -> None:
        self.counters[f"intake_records_total|{format_prometheus_label(source)}|{outcome}|{reason or ''}"] += n

    def request(self, status: int) -> None:
        self.counters[f"intake_requests_total|{status}"] += 1

    def dropped(self, source: str, n: int) -> None:
        if n:
            self.counters[f"intake_fields_dropped_total|{format_prometheus_label(source)}"] += n

    def newest(self, source: str, event_time: float) -> None:
        if event_time > self.newest_event.get(source, float("-inf")):
            self.newest_event[source] = event_time

    def render(self, now: float) -> str:
        values: dict[str, float] = dict(self.counters)
        for source, t in self.newest_event.items():
            label = format_prometheus_label(source)
            values[f"intake_newest_event_seconds|{label}"] = t
            values[f"intake_lag_seconds|{label}"] = round(now - t, 3)
        return render_prometheus(values)
