"""Kafka topic names and partition counts.

``calls`` and ``incident-updates`` are co-partitioned: both are keyed by call id
and have the same partition count, so a call and its updates land in the same
partition number and are handled by the same worker (the worker checks this at
start-up). The dead-letter topic keeps refused records for operators; it holds
original bytes, so it is restricted like the ingest topics.
"""

from __future__ import annotations

from dataclasses import dataclass

CALLS = "calls"
INCIDENT_UPDATES = "incident-updates"
DEADLETTER = "deadletter"
#: Accepted calls as the detectors see them (cell, time, category), one message per worker batch.
DETECTOR_INPUT = "detector-input"
#: Alert lifecycle records (open / update / closed), keyed by alert id.
ALERTS = "alerts"
#: Forecast sets (``streams.forecasting.build``), one every 15 minutes of event time, keyed "forecast".
FORECASTS = "forecasts"

DEADLETTER_PARTITIONS = 1
#: One partition: the detectors need the whole jurisdiction in one place, in order.
DETECTOR_INPUT_PARTITIONS = 1
ALERTS_PARTITIONS = 1
FORECASTS_PARTITIONS = 1
#: Forecast sets keep two days: the latest is in Redis too (``P:forecast``), and a set is a few hundred kilobytes.
FORECASTS_RETENTION_MS = 2 * 24 * 3600 * 1000
#: Ingest topics keep 8 days, like the Redis counts they feed (a rebuild replays them).
INGEST_RETENTION_MS = 8 * 24 * 3600 * 1000
DEADLETTER_RETENTION_MS = 30 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int


def topic_name(prefix: str, base: str) -> str:
    """The full name of a topic.

    >>> topic_name("wf", CALLS)
    'wf.calls'
    """
    return f"{prefix}.{base}"


def topic_specs(prefix: str, partitions: int) -> list[TopicSpec]:
    """The topics a deployment needs, with explicit partition counts."""
    return [
        TopicSpec(topic_name(prefix, CALLS), partitions, INGEST_RETENTION_MS),
        TopicSpec(topic_name(prefix, INCIDENT_UPDATES), partitions, INGEST_RETENTION_MS),
        TopicSpec(topic_name(prefix, DEADLETTER), DEADLETTER_PARTITIONS, DEADLETTER_RETENTION_MS),
        TopicSpec(topic_name(prefix, DETECTOR_INPUT), DETECTOR_INPUT_PARTITIONS, INGEST_RETENTION_MS),
        TopicSpec(topic_name(prefix, ALERTS), ALERTS_PARTITIONS, DEADLETTER_RETENTION_MS),
        TopicSpec(topic_name(prefix, FORECASTS), FORECASTS_PARTITIONS, FORECASTS_RETENTION_MS),
    ]
