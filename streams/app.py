"""The Faust application: factory, topics and the counting agent.

``create_app(settings)`` builds an app with its agent wired to Redis; the
module ``streams.worker`` holds the module-level ``app`` the Faust CLI runs.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import faust
from faust.types import EventT

from streams.metrics import render_prometheus
from streams.planner import CALL, UPDATE, DeadLetter, Incoming, encode_deadletter
from streams.settings import Settings, load_settings
from streams.state import RedisState
from streams.topics import CALLS, DEADLETTER, INCIDENT_UPDATES, topic_name

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> faust.App:
    """A Faust app whose ``count_calls_and_updates`` agent keeps the Redis counts."""
    s = settings or load_settings()
    faust_dirs = Path(tempfile.gettempdir()) / "watchfloor-faust"
    faust_dirs.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        s.app_id,
        broker=f"kafka://{s.kafka_bootstrap}",
        store="memory://",
        topic_partitions=s.partitions,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_port=s.web_port,
        web_host="127.0.0.1",
        # Faust keeps a small folder per app id; keep it out of the working tree.
        datadir=str(faust_dirs / s.app_id),
    )
    calls_topic = topic_name(s.topic_prefix, CALLS)
    updates_topic = topic_name(s.topic_prefix, INCIDENT_UPDATES)
    kinds = {calls_topic: CALL, updates_topic: UPDATE}
    ingest = app.topic(calls_topic, updates_topic, key_serializer="raw", value_serializer="raw")
    deadletter = app.topic(topic_name(s.topic_prefix, DEADLETTER), key_serializer="raw", value_serializer="raw")
    holder: dict[str, RedisState] = {}

    async def state() -> RedisState:
        if "state" not in holder:
            holder["state"] = RedisState.from_settings(s)
        return holder["state"]

    async def publish_dead_letters(letters: list[DeadLetter]) -> None:
        # Awaited to the broker's acknowledgement before the batch commits, so a
        # refused record is never lost; a crash in between may publish it twice
        # (the envelope's topic/partition/offset identify the copy).
        now = time.time()
        futures = []
        for dl in letters:
            topic = calls_topic if dl.source.kind == CALL else updates_topic
            futures.append(await deadletter.send(key=str(dl.source.offset).encode(), value=encode_deadletter(dl, topic, at=now)))
            log.warning("dead letter %s[%d]@%d: %s: %s", topic, dl.source.partition, dl.source.offset, dl.reason.value, dl.detail)
        for fut in futures:
            await fut

    @app.agent(ingest, name="count_calls_and_updates")
    async def count_calls_and_updates(stream: faust.StreamT) -> None:
        """Fold calls and incident updates into per-cell, per-minute counts in Redis, batch by batch."""
        st = await state()
        async for events in stream.take_events(s.batch_size, within=s.batch_within_s):
            batch = [_incoming(e, kinds) for e in events]
            result = await st.apply(batch, publish_dead_letters)
            if result.plan.skipped:
                log.info("skipped %d records already counted before a restart", result.plan.skipped)

    @app.page("/metrics")
    async def metrics(web, request):  # noqa: ANN001 -- Faust's view signature
        body = render_prometheus(await (await state()).metrics())
        return web.text(body, content_type="text/plain; version=0.0.4")

    @app.on_before_shutdown.connect
    async def close_redis(app_, **kwargs) -> None:  # noqa: ANN001
        if "state" in holder:
            await holder.pop("state").close()

    return app


def _incoming(event: EventT, kinds: dict[str, str]) -> Incoming:
    msg = event.message
    return Incoming(kinds[msg.topic], msg.partition, msg.offset, msg.value)
