"""Where a call's time goes between its production and its alert: the stamps of the in-path timing, and their stages (pure).

With ``WF_STAGE_TIMING=1`` (``Settings.stage_timing``, off by default) the
worker stamps every accepted call with the wall clock (``time.time()``, one
clock for every process of a machine) as it passes each point of the path:

- ``t``: the call's event time; for a live call, the moment it was produced;
- ``in``: the counting agent took the record from Faust's stream;
- ``closed``: a committer took the batch holding it;
- ``sending``: its batch was planned and its detector input handed to the producer;
- ``got``: the detection agent received that detector-input message;
- ``fed``: the detection agent took its lock to feed the message (with the others waiting in its
  stream: a message fed after others in the same hold counts their detectors' time in ``reorder``);
- ``out``: the event-time merge released the call to the detectors;
- ``done``: the detectors ran on it and the alerts they made were in the Redis stream.

The counting agent carries ``in``, ``closed`` and ``sending`` in the
detector-input message (:func:`streams.detection.runner.encode_points`); the
detection agent adds the rest and appends one record per call to the Redis
list ``P:stage-timing`` (capped at :data:`KEEP`), which ``bench/latency.py``
reads. :data:`STAGES` are the differences of consecutive stamps;
:func:`summarize` gives each stage's percentiles and its share of the total.

Examples
--------
>>> rec = {"t": 0.0, "in": 0.004, "closed": 0.054, "sending": 0.060, "got": 0.065, "fed": 0.066, "out": 1.066, "done": 1.070}
>>> {k: round(v * 1000, 1) for k, v in durations(rec).items()}  # doctest: +NORMALIZE_WHITESPACE
{'to_counting': 4.0, 'batch': 50.0, 'plan': 6.0, 'detector_input': 5.0, 'detection_wait': 1.0, 'reorder': 1000.0,
 'detect': 4.0, 'total': 1070.0}
>>> durations({"t": 0.0, "in": 0.004}) is None
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

#: The stamps in path order (see the module's text).
STAMPS = ("t", "in", "closed", "sending", "got", "fed", "out", "done")

#: Each stage, named for what takes the time, from one stamp to the next.
STAGES = (
    "to_counting",  # t -> in: the producer, Kafka, the counting worker's fetch and Faust's delivery
    "batch",  # in -> closed: waiting in the Batcher (its time limit, or a committer still busy)
    "plan",  # closed -> sending: validation, the Redis snapshot, the plan, dead letters
    "detector_input",  # sending -> got: the detector-input topic (acks=all) and the detection worker's fetch
    "detection_wait",  # got -> fed: the detection agent's lock (a checkpoint's snapshot, the clock's tick, zones)
    "reorder",  # fed -> out: held by the event-time merge of the source partitions (and the messages fed before it in one hold)
    "detect",  # out -> done: the detectors, and the alerts' append to the Redis stream
)

#: Records kept in the Redis list (the oldest are trimmed).
KEEP = 200_000


def durations(record: Mapping[str, float | None]) -> dict[str, float] | None:
    """Seconds of each stage of one call's record, and ``total`` (``t`` to ``done``); None when a stamp is missing."""
    stamps = [record.get(k) for k in STAMPS]
    if any(s is None for s in stamps):
        return None
    values = [float(s) for s in stamps if s is not None]
    out = {stage: values[i + 1] - values[i] for i, stage in enumerate(STAGES)}
    out["total"] = values[-1] - values[0]
    return out


def _percentile(sorted_values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``sorted_values``, linear between ranks (numpy's default)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = (len(sorted_values) - 1) * q / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (rank - lo)


def summarize(records: Iterable[Mapping[str, float | None]]) -> dict[str, dict[str, float]]:
    """Per stage (and ``total``): ``n``, ``mean``, ``p50``, ``p99``, ``max`` in milliseconds, and ``share``, the stage's
    part of the mean total (0..1). Records missing a stamp are left out; empty when none is complete.

    >>> s = summarize([{"t": 0, "in": 0.001, "closed": 0.05, "sending": 0.05, "got": 0.06, "fed": 0.06, "out": 0.06, "done": 0.1}])
    >>> s["batch"]["p50"], round(s["batch"]["share"], 2), s["total"]["n"]
    (49.0, 0.49, 1.0)
    """
    rows = [d for d in (durations(r) for r in records) if d is not None]
    if not rows:
        return {}
    mean_total = sum(r["total"] for r in rows) / len(rows)
    out: dict[str, dict[str, float]] = {}
    for stage in (*STAGES, "total"):
        values = sorted(r[stage] for r in rows)
        mean = sum(values) / len(values)
        out[stage] = {
            "n": float(len(values)),
            "mean": round(1000 * mean, 2),
            "p50": round(1000 * _percentile(values, 50), 2),
            "p99": round(1000 * _percentile(values, 99), 2),
            "max": round(1000 * values[-1], 2),
            "share": mean / mean_total if mean_total > 0 else 0.0,
        }
    return out
