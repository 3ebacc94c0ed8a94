"""Where a request's answer time goes: a stopwatch over its stages, and Prometheus histograms (pure; the clock is passed in).

Every request to ``POST /v1/events`` carries a :class:`Stopwatch`: the handler
calls :meth:`Stopwatch.lap` after each stage (:data:`STAGES`), which costs one
clock read and a dictionary update. The intake always feeds two
:class:`Histogram` families from it (``watchfloor_intake_answer_seconds``, the
whole request in the handler, and ``watchfloor_intake_kafka_ack_seconds``, the
wait for Kafka's ``acks=all``); with ``WF_INTAKE_STAGE_TIMING=1`` it also
answers each request with a ``Server-Timing`` header naming every stage
(:meth:`Stopwatch.server_timing`, the W3C Server-Timing syntax), which
``bench/intake_load.py`` collects per request.

Examples
--------
>>> ticks = iter([0.0, 0.001, 0.0015, 0.0215])
>>> sw = Stopwatch(clock=lambda: next(ticks))
>>> sw.lap("read"); sw.lap("auth"); sw.lap("kafka")
>>> sw.server_timing()
'read;dur=1.000, auth;dur=0.500, kafka;dur=20.000, total;dur=21.500'
>>> h = Histogram((0.01, 0.1))
>>> h.observe(sw.seconds("kafka")); h.observe(0.5)
>>> print(h.render("watchfloor_intake_kafka_ack_seconds", "Waits for Kafka."), end="")
# HELP watchfloor_intake_kafka_ack_seconds Waits for Kafka.
# TYPE watchfloor_intake_kafka_ack_seconds histogram
watchfloor_intake_kafka_ack_seconds_bucket{le="0.01"} 0
watchfloor_intake_kafka_ack_seconds_bucket{le="0.1"} 1
watchfloor_intake_kafka_ack_seconds_bucket{le="+Inf"} 2
watchfloor_intake_kafka_ack_seconds_sum 0.52
watchfloor_intake_kafka_ack_seconds_count 2
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence

#: The stages of ``POST /v1/events`` in the order the handler runs them (a request that stops early has fewer).
STAGES = (
    "read",  # the body read from the socket
    "auth",  # the signature checked
    "examine",  # split, rate bucket, each record validated and keyed
    "owners",  # Redis: the owners of the call ids
    "claim",  # Redis: the idempotency keys claimed (and what lost claims found)
    "kafka",  # the events produced and every acks=all acknowledgement awaited
    "dead_letters",  # refused records produced and acknowledged
    "done",  # Redis: keys marked done, call owners written, and the door status with them
    "door",  # Redis: the source's status hash for "Doors in", alone when there was nothing to mark done
    "answer",  # the JSON answer built
    "audit",  # the audit record appended
)

#: Upper bounds (seconds) of the answer-time and Kafka-wait histograms: 1 ms to 10 s, about three a decade.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Stopwatch:
    """The time each stage of one request took: call :meth:`lap` with a stage's name when it ends.

    Starts at construction; a stage lapped twice adds up (a request's dead letters after a retry, say).
    """

    __slots__ = ("_clock", "_last", "_start", "laps")

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._start = self._last = clock()
        #: seconds by stage, in the order first lapped
        self.laps: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        """Charge the time since the previous lap (or the start) to ``stage``."""
        now = self._clock()
        self.laps[stage] = self.laps.get(stage, 0.0) + (now - self._last)
        self._last = now

    def skip(self) -> None:
        """Charge the time since the previous lap to no stage (work that is not the request's own)."""
        self._last = self._clock()

    def seconds(self, stage: str) -> float:
        """Seconds charged to ``stage`` (0.0 when it did not run)."""
        return self.laps.get(stage, 0.0)

    @property
    def total(self) -> float:
        """Seconds from the start to the last lap."""
        return self._last - self._start

    def server_timing(self) -> str:
        """The laps as a ``Server-Timing`` header value, milliseconds, then ``total``."""
        parts = [f"{stage};dur={s * 1000:.3f}" for stage, s in self.laps.items()]
        parts.append(f"total;dur={self.total * 1000:.3f}")
        return ", ".join(parts)


def parse_server_timing(value: str) -> dict[str, float]:
    """Seconds by name from a ``Server-Timing`` header written by :meth:`Stopwatch.server_timing` (for the bench).

    >>> parse_server_timing("read;dur=1.000, kafka;dur=20.000, total;dur=21.000")
    {'read': 0.001, 'kafka': 0.02, 'total': 0.021}
    """
    out: dict[str, float] = {}
    for part in value.split(","):
        name, _, params = part.strip().partition(";")
        for param in params.split(";"):
            key, _, text = param.partition("=")
            if key.strip() == "dur":
                out[name] = float(text) / 1000
    return out


class Histogram:
    """A Prometheus histogram: counts of observations at or below each bound, their sum and count.

    ``bounds`` must be increasing; ``+Inf`` is added. Observing costs a bisection of the bounds.
    """

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        if not bounds or any(b >= c for b, c in zip(bounds, bounds[1:], strict=False)):
            raise ValueError(f"histogram bounds must be a non-empty increasing sequence, got {tuple(bounds)!r}")
        self.bounds = tuple(float(b) for b in bounds)
        #: observations in each bucket alone (not cumulative); the last is above every bound
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def render(self, name: str, help_text: str, labels: str = "") -> str:
        """The histogram in Prometheus text: ``name_bucket{le=...}`` (cumulative), ``name_sum``, ``name_count``.

        ``labels`` (``source="x"``, already escaped) go before ``le`` and on the sum and count.
        """
        head = f"# HELP {name} {help_text}\n# TYPE {name} histogram\n"
        return head + self.samples(name, labels)

    def samples(self, name: str, labels: str = "") -> str:
        """The sample lines of :meth:`render` without the ``HELP`` and ``TYPE`` lines (several label sets under one family)."""
        pre = f"{labels}," if labels else ""
        lines = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            lines.append(f'{name}_bucket{{{pre}le="{le}"}} {running}')
        tag = f"{{{labels}}}" if labels else ""
        lines.append(f"{name}_sum{tag} {round(self.sum, 6)}")
        lines.append(f"{name}_count{tag} {self.count}")
        return "\n".join(lines) + "\n"
