"""How far the worker is behind the ingest topics (Kafka end offsets against the offsets applied in Redis)."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from kafka import KafkaConsumer, TopicPartition

from streams.counting.keys import Keys
from streams.counting.planner import CALL, UPDATE
from streams.runtime.redisconn import sync_client_for
from streams.runtime.settings import Settings
from streams.topics import CALLS, DETECTOR_INPUT, INCIDENT_UPDATES, topic_name


class NotCaughtUp(TimeoutError):
    """The worker did not apply everything in time; the message says where it stands."""


def end_offsets(settings: Settings) -> dict[tuple[str, int], int]:
    """The next offset to be written, per (kind, partition) of the ingest topics."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        out = {}
        for kind, base in ((CALL, CALLS), (UPDATE, INCIDENT_UPDATES)):
            tps = [TopicPartition(topic_name(settings.topic_prefix, base), p) for p in range(settings.partitions)]
            for tp, off in consumer.end_offsets(tps).items():
                out[(kind, tp.partition)] = off
        return out
    finally:
        consumer.close()


def lag(settings: Settings, client: redis.Redis, ends: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """Records written to each partition but not yet applied in Redis."""
    keys = Keys(settings.redis_prefix)
    tps = list(ends)
    applied = client.mget([keys.offset(kind, p) for kind, p in tps])
    return {tp: ends[tp] - (int(v) + 1 if v is not None else 0) for tp, v in zip(tps, applied, strict=True)}


def wait_caught_up(settings: Settings, timeout_s: float = 240.0, check: Callable[[], None] | None = None) -> None:
    """Wait until Redis has applied every record written to the ingest topics so far.

    ``check`` runs between polls and may raise (for example when the worker
    process has exited). Raises :class:`NotCaughtUp` after ``timeout_s``.
    """
    ends = end_offsets(settings)

    def behind(client: redis.Redis) -> str | None:
        late = {tp: n for tp, n in lag(settings, client, ends).items() if n > 0}
        return f"records not yet applied per (kind, partition): {late}" if late else None

    _poll(settings, behind, timeout_s, check, "not caught up")


def wait_detected(settings: Settings, timeout_s: float = 240.0, check: Callable[[], None] | None = None) -> None:
    """Wait until the detectors have been fed every detector-input record written so far (their alerts are in Redis).

    With the stage split over detection workers (``WF_DETECTION_PARTS``), every
    set of parts that has written its ``applied`` offset (``P:detector`` and each
    ``P:detector:{set}`` hash) must have applied everything; before any has, none
    has applied anything. Call after :func:`wait_caught_up` (the counting agent
    publishes detector input before it commits).
    """
    end = detector_input_end(settings)
    keys = Keys(settings.redis_prefix)

    def behind(client: redis.Redis) -> str | None:
        applied = detection_applied(client, keys)
        late = {key: done for key, done in applied.items() if done + 1 < end} if applied else {keys.detector: -1}
        if not late:
            return None
        where = ", ".join(f"{done} in {key}" for key, done in sorted(late.items()))
        return f"detector input written to offset {end - 1}, applied to {where}"

    _poll(settings, behind, timeout_s, check, "detectors not caught up")


def detection_applied(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """The ``applied`` detector-input offset of each detection part-set that has one, by its hash (``P:detector``, ``P:detector:{set}``)."""
    found = client.scan_iter(match=f"{keys.detector}:*", count=1000)
    names = [keys.detector, *(k.decode() if isinstance(k, bytes) else str(k) for k in found)]
    hashes = sorted({k for k in names if not k.endswith((":written", ":journal"))})
    values = [client.hget(k, "applied") for k in hashes]
    return {k: int(v) for k, v in zip(hashes, values, strict=True) if v is not None}


def detector_input_end(settings: Settings) -> int:
    """The end offset of the detector-input topic (its one partition): one past the last message written."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        tp = TopicPartition(topic_name(settings.topic_prefix, DETECTOR_INPUT), 0)
        return consumer.end_offsets([tp])[tp]
    finally:
        consumer.close()


def _poll(
    settings: Settings, behind: Callable[[redis.Redis], str | None], timeout_s: float, check: Callable[[], None] | None, what: str
) -> None:
    """Poll ``behind`` (None once caught up; else where things stand) every 0.2 s until ``timeout_s``."""
    client = sync_client_for(settings)
    deadline = time.monotonic() + timeout_s
    state: str | None = "not polled yet"
    try:
        while time.monotonic() < deadline:
            state = behind(client)
            if state is None:
                return
            if check is not None:
                check()
            time.sleep(0.2)
    finally:
        client.close()
    raise NotCaughtUp(f"{what} after {timeout_s:.0f} s; {state}")
