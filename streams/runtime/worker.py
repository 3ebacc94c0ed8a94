"""Run the worker: ``python -m streams.runtime.worker`` (extra arguments go to Faust's ``worker`` command).

Before Faust starts, a pre-flight check makes sure the topics exist with the
configured, equal partition counts (calls and their updates must be
co-partitioned), that Redis answers and, for the detection role, that the
detectors' checkpoint key can be had; each failure says what to do. Then
:func:`streams.runtime.app.create_app` builds the app from the settings, and
Faust's command line runs it (there is no module-level ``app`` to point
``faust -A`` at: the settings are read here, at start).
"""

from __future__ import annotations

import gc
import sys

from streams.faustext import quiet_expected_startup_errors
from streams.runtime.app import create_app
from streams.runtime.settings import Settings, SettingsError, checkpoint_key, load_settings
from streams.topics import CALLS, INCIDENT_UPDATES, topic_name

#: CPython's thread switch interval in the worker (its default is 0.005 s; see main()).
GIL_SWITCH_S = 0.001


class PreflightError(RuntimeError):
    """The worker cannot start; the message says why and what to do."""


def preflight(settings: Settings) -> None:
    import redis
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    from streams.runtime.redisconn import describe, sync_client_for

    client = sync_client_for(settings, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise PreflightError(f"{describe(settings)} does not answer ({exc}); start it with: python -m infra.stack up") from exc
    finally:
        client.close()
    try:
        consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10000)
    except KafkaError as exc:
        raise PreflightError(
            f"Kafka at {settings.kafka_bootstrap} does not answer ({exc}); start it with: python -m infra.stack up"
        ) from exc
    try:
        counts = {}
        for base in (CALLS, INCIDENT_UPDATES):
            name = topic_name(settings.topic_prefix, base)
            parts = consumer.partitions_for_topic(name)
            if not parts:
                raise PreflightError(f"topic {name} does not exist; create the topics with: python -m infra.stack up")
            counts[name] = len(parts)
    finally:
        consumer.close()
    if len(set(counts.values())) != 1 or settings.partitions not in counts.values():
        raise PreflightError(
            f"calls and incident updates must have the same partition count as WF_PARTITIONS={settings.partitions}, found {counts}"
        )
    if "detect" in settings.roles:
        try:
            checkpoint_key(settings)  # made here on a first start, read again by the detection agent
        except SettingsError as exc:
            raise PreflightError(f"no key to sign the detectors' checkpoints: {exc}") from exc


def main(argv: list[str] | None = None) -> None:
    settings = load_settings()
    try:
        preflight(settings)
    except PreflightError as exc:
        print(f"watchfloor worker: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    app = create_app(settings)
    quiet_expected_startup_errors()  # aiokafka's "coordinator not available" while the group forms: INFO, not ERROR
    # Faust, aiokafka, River and SciPy leave 140,000 objects that live as long as the process:
    # a full collection walked them every time (74 ms of each; 150-280 ms pauses of the detection
    # worker in a storm, bench/latency.py). Frozen out of collection; later objects are collected as before.
    gc.collect()
    gc.freeze()
    # Faust runs aiokafka's consumer in a thread of its own, which hands each fetch to the
    # event loop's thread; with CPython's default 5 ms switch interval a busy loop keeps the
    # GIL up to that long before the consumer thread can answer. On a backlog of 100,000
    # records (bench/throughput.py) the loop waited 4.3 s for fetches that had records; 3.1 s
    # at 1 ms.
    sys.setswitchinterval(GIL_SWITCH_S)
    sys.argv = [sys.argv[0], "worker", *(argv if argv is not None else sys.argv[1:] or ["-l", "info"])]
    app.main()


if __name__ == "__main__":
    main()
