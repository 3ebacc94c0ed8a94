"""Helpers for tests that run the real worker process against the real stack.

The worker processes themselves are :mod:`infra.processes` (the bench scripts use them too); they are
imported here under their old names so tests keep importing them from ``tests.stackutil``.
"""

from __future__ import annotations

import time

from infra.processes import ROOT, WorkerExited, WorkerProcess, free_port, plan_processes, wait_caught_up, worker_env
from streams.runtime.settings import Settings

__all__ = ["ROOT", "WorkerExited", "WorkerProcess", "free_port", "plan_processes", "read_topic", "wait_caught_up", "worker_env"]


def read_topic(settings: Settings, base: str, expect: int = 1, timeout_s: float = 60.0) -> list[dict]:
    """The JSON records of ``{prefix}.{base}`` from the beginning: at least ``expect`` of them, or what came in ``timeout_s``."""
    import json

    from kafka import KafkaConsumer

    from streams.topics import topic_name

    consumer = KafkaConsumer(
        topic_name(settings.topic_prefix, base), bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest", consumer_timeout_ms=2000,
    )  # fmt: skip
    got: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < expect and time.monotonic() < deadline:
            got += [json.loads(msg.value) for msg in consumer]
    finally:
        consumer.close()
    return got
