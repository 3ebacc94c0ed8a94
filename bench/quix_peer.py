"""The rolling-count job written with Quix Streams: the peer the worker is compared with in ``bench/throughput.py``.

    pip install -e '.[bench]'        # quixstreams 3.x
    python bench/quix_peer.py --group GROUP --state-dir DIR

Run by ``bench/throughput.py`` as a subprocess, configured like the worker by
the ``WF_*`` variables (``streams.runtime.settings``): it reads
``{WF_TOPIC_PREFIX}.calls`` and ``{WF_TOPIC_PREFIX}.incident-updates`` from the
beginning in consumer group ``GROUP`` and keeps its counts under
``{WF_REDIS_PREFIX}:`` until it gets SIGTERM.

What it does, per record, in one idiomatic Quix Streams 3 application (an
:class:`~quixstreams.Application`, one ``StreamingDataFrame`` per topic with the
``bytes`` deserializer, ``sdf.apply`` for the per-record work, and a
:class:`~quixstreams.sinks.BatchingSink` that writes each batch to Redis in one
MULTI/EXEC pipeline):

- validates it with the worker's own validator (``streams.ingest.schema.parse_event``:
  size, UTF-8 JSON, type and version, required fields and their types, lat/lng
  on Earth and inside ``WF_JURISDICTION``, ISO 8601 times with an offset, not
  before 2000 nor in the future), so validation costs the same on both sides;
- a call: computes its H3 cell at ``WF_H3_RESOLUTION`` and its
  ``WF_H3_PARENT_LEVELS`` parents (``h3.latlng_to_cell`` / ``cell_to_parent``)
  and adds one to ``{cell}|{category}`` and ``{cell}|ALL`` in the hash of its
  event-time minute, ``P:b:{minute}``, the worker's own bucket layout, and the
  minute to ``P:buckets``;
- an incident update: counted per incident and status in the hash
  ``P:updates`` (``{call id}|{status}`` -> n). The worker does more with an
  update (reads the call's state, response-time histograms, open incidents);
  the peer stops at one validated increment per update;
- a refused record (or one on the wrong topic): ``deadletter_total|{reason}``
  in ``P:metrics``; accepted ones ``events_total|call`` / ``|update``;
  every record ``records_total`` (the benchmark polls it for progress).

Batches follow the worker's: a checkpoint (sink flush, then the Kafka offset
commit) every ``WF_BATCH_SIZE`` records or ``WF_BATCH_WITHIN_S`` seconds.
Quix Streams hands a batching sink one batch per topic-partition, so a
checkpoint is up to ``2 x WF_PARTITIONS`` pipelines; increments are summed
per batch before they are sent, as the worker does.

What the peer does *not* do that the worker does, so read the comparison
with this in mind:

- no exactly-once: Quix Streams' at-least-once checkpoints commit Kafka
  offsets after the sink flush, so a crash in between counts a batch twice. The
  worker commits its counts and its Kafka offsets in Redis in one
  compare-and-set Lua script and skips redelivered records;
- no detector input: the worker publishes every batch's accepted calls to
  ``detector-input`` and waits for the broker's acknowledgement before it commits;
- no dead letters on Kafka (only counted), no call state (open incidents per cell,
  response times, updates held until their call arrives, duplicate call ids),
  no per-partition watermarks, late-event refusal or expiry of old buckets.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import redis
from _common import parser
from quixstreams import Application
from quixstreams.sinks import BatchingSink, SinkBatch

from streams.counting.keys import ALL, Keys
from streams.counting.rolling import cells_for, minute_of
from streams.ingest.schema import Call, IncidentUpdate, InvalidRecord, Reason, parse_event
from streams.runtime.settings import Settings, load_settings
from streams.topics import CALLS, INCIDENT_UPDATES, topic_name

#: Field of ``P:metrics`` counting every record the sink has written, valid or not.
RECORDS_TOTAL = "records_total"


def updates_key(prefix: str) -> str:
    """The peer's hash of incident updates, ``{call id}|{status}`` -> n."""
    return f"{prefix}:updates"


def _event(value: bytes, settings: Settings, kind: type) -> Call | IncidentUpdate | dict:
    """The record validated by the worker's own reader, if it is a ``kind``; else ``{"refused": reason}``."""
    try:
        event = parse_event(value, now=time.time(), jurisdiction=settings.jurisdiction).event
    except InvalidRecord as exc:
        return {"refused": exc.reason.value}
    return event if isinstance(event, kind) else {"refused": Reason.WRONG_TOPIC.value}


def count_call(value: bytes, settings: Settings) -> dict:
    """A call record to what the sink adds up: its minute, category and cells, finest first (or why it was refused)."""
    event = _event(value, settings, Call)
    if isinstance(event, dict):
        return event
    cells = list(cells_for(event.lat, event.lng, settings.resolutions))
    return {"minute": minute_of(event.received_at), "category": event.category.value, "cells": cells}


def count_update(value: bytes, settings: Settings) -> dict:
    """An incident update to ``{call id}|{status}`` (or why it was refused)."""
    event = _event(value, settings, IncidentUpdate)
    if isinstance(event, dict):
        return event
    return {"incident": f"{event.call_id}|{event.status.value}"}


class RedisCounts(BatchingSink):
    """Adds a batch of :func:`count_call` / :func:`count_update` results to Redis in one MULTI/EXEC."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        super().__init__()
        self.redis_url = redis_url
        self.keys = Keys(prefix)
        self.updates = updates_key(prefix)
        self.client: redis.Redis | None = None

    def setup(self) -> None:
        self.client = redis.Redis.from_url(self.redis_url)
        self.client.ping()

    def write(self, batch: SinkBatch) -> None:
        assert self.client is not None, "setup() runs before the first write"
        incr: Counter[tuple[str, str]] = Counter()
        minutes: set[int] = set()
        metrics: Counter[str] = Counter({RECORDS_TOTAL: batch.size})
        for item in batch:
            v = item.value
            if "refused" in v:
                metrics[f"deadletter_total|{v['refused']}"] += 1
            elif "incident" in v:
                incr[(self.updates, v["incident"])] += 1
                metrics["events_total|update"] += 1
            else:
                bucket, cat = self.keys.bucket(v["minute"]), "|" + v["category"]
                minutes.add(v["minute"])
                for cell in v["cells"]:
                    incr[(bucket, cell + cat)] += 1
                    incr[(bucket, cell + "|" + ALL)] += 1
                metrics["events_total|call"] += 1
        pipe = self.client.pipeline(transaction=True)
        for (key, field), n in incr.items():
            pipe.hincrby(key, field, n)
        if minutes:
            pipe.zadd(self.keys.buckets, {str(m): m for m in minutes})
        for field, n in metrics.items():
            pipe.hincrby(self.keys.metrics, field, n)
        pipe.execute()


def build_app(settings: Settings, group: str, state_dir: Path) -> Application:
    """The Quix Streams application: both ingest topics, from the beginning, into :class:`RedisCounts`."""
    app = Application(
        broker_address=settings.kafka_bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        # The worker's batching: a Redis write and an offset commit per batch.
        commit_every=settings.batch_size,
        commit_interval=settings.batch_within_s,
        state_dir=state_dir,
        loglevel="INFO",
    )
    calls = app.topic(topic_name(settings.topic_prefix, CALLS), value_deserializer="bytes")
    updates = app.topic(topic_name(settings.topic_prefix, INCIDENT_UPDATES), value_deserializer="bytes")
    app.dataframe(calls).apply(lambda v: count_call(v, settings)).sink(RedisCounts(settings.redis_url, settings.redis_prefix))
    app.dataframe(updates).apply(lambda v: count_update(v, settings)).sink(RedisCounts(settings.redis_url, settings.redis_prefix))
    return app


def main(argv: list[str] | None = None) -> int:
    p = parser(__file__, __doc__)
    p.add_argument("--group", required=True, help="Kafka consumer group (use a fresh one to read from the beginning)")
    p.add_argument("--state-dir", type=Path, required=True, help="Quix Streams' state folder (unused by this stateless job)")
    args = p.parse_args(argv)
    build_app(load_settings(), args.group, args.state_dir).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
