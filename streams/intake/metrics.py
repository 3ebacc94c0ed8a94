"""The intake's counters, rendered with the worker's Prometheus renderer (pure; the clock is passed in).

Families (``watchfloor_`` prefix): ``intake_records_total{source,outcome,reason}``,
``intake_requests_total{status}``, ``intake_fields_dropped_total{source}``,
``intake_newest_event_seconds{source}`` and ``intake_lag_seconds{source}`` (now minus the
newest event time accepted), and two histograms (:mod:`streams.intake.timing`):
``intake_answer_seconds`` (a ``POST /v1/events`` from its first byte read to its answer
and audit record, every status) and ``intake_kafka_ack_seconds`` (a request's wait for
``acks=all`` on its events); with stage timing on (``WF_INTAKE_STAGE_TIMING=1``), also
``intake_stage_seconds{stage}``. Counted since the intake process started.

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
# HELP watchfloor_intake_answer_seconds ...
# TYPE watchfloor_intake_answer_seconds histogram
...
watchfloor_intake_answer_seconds_count 0
...
"""

from __future__ import annotations

from collections import Counter

from streams.intake.core import format_prometheus_label
from streams.intake.timing import Histogram, Stopwatch
from streams.runtime.metrics import render_prometheus

_ANSWER_HELP = "Seconds a POST /v1/events took in the intake, from reading its body to its audit record (every status)."
_KAFKA_HELP = "Seconds a request waited for Kafka to acknowledge its events (acks=all), from the first send."
_STAGE_HELP = "Seconds each stage of a POST /v1/events took (WF_INTAKE_STAGE_TIMING=1 only), by stage."


class IntakeMetrics:
    """Counters and the newest event time per source, for ``GET /metrics``."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.newest_event: dict[str, float] = {}
        self.answer = Histogram()
        self.kafka_ack = Histogram()
        #: by stage; filled only by :meth:`timed` with ``stages=True``
        self.stages: dict[str, Histogram] = {}

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

    def timed(self, sw: Stopwatch, *, stages: bool = False) -> None:
        """Observe one finished request: its total, its Kafka wait (when it sent events), and each stage if ``stages``."""
        self.answer.observe(sw.total)
        if "kafka" in sw.laps:
            self.kafka_ack.observe(sw.laps["kafka"])
        if stages:
            for stage, seconds in sw.laps.items():
                hist = self.stages.get(stage)
                if hist is None:
                    hist = self.stages[stage] = Histogram()
                hist.observe(seconds)

    def render(self, now: float) -> str:
        values: dict[str, float] = dict(self.counters)
        for source, t in self.newest_event.items():
            label = format_prometheus_label(source)
            values[f"intake_newest_event_seconds|{label}"] = t
            values[f"intake_lag_seconds|{label}"] = round(now - t, 3)
        text = render_prometheus(values)
        text += self.answer.render("watchfloor_intake_answer_seconds", _ANSWER_HELP)
        text += self.kafka_ack.render("watchfloor_intake_kafka_ack_seconds", _KAFKA_HELP)
        if self.stages:
            name = "watchfloor_intake_stage_seconds"
            text += f"# HELP {name} {_STAGE_HELP}\n# TYPE {name} histogram\n"
            text += "".join(h.samples(name, f'stage="{stage}"') for stage, h in self.stages.items())
        return text
