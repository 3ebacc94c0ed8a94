"""Redis going back under the detection agent (streams/detection/agent.py, ``refeed``): the lost alert records come back.

A failover to a replica that lacked the primary's last writes leaves Redis as it
was a moment earlier: an older ``applied`` offset and checkpoint in the
detectors' hash, fewer digests, fewer alert records in the stream. These tests
make that state on the session's single-node Redis by saving the three keys
(``DUMP``) at one point and putting them back (``RESTORE ... REPLACE``) after the
agent wrote more, and read the detector input back from the session's Kafka.

The detectors are :class:`EchoRunner`: one alert record per call fed, named by
the call's offset, so every record lost and made again is known by name and the
test needs no warm-up of the real detectors (the fault test in
``tests/faults/test_redis_failover.py`` runs the real ones through a real failover).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from types import SimpleNamespace

import pytest
import redis
from kafka import KafkaProducer

from detectors.types import Alert, AlertKind, AlertState
from streams.counting.keys import Keys
from streams.counting.state import RedisState, RedisWentBack
from streams.detection.agent import DetectionAgent
from streams.detection.runner import DetectionRunner, decode_message, encode_points
from streams.topics import DETECTOR_INPUT, topic_name
from tests.streams.detection.test_agent import CELL, KEY, T0, SentAlerts

pytestmark = pytest.mark.stack


class EchoRunner(DetectionRunner):
    """Detectors that make one alert record per call fed (``echo:<offset>``): deterministic, as the real ones are."""

    def feed(self, raw: bytes, wall: float) -> list[Alert]:
        out = []
        for partition, offset, t, cell, _, _ in decode_message(raw).points:
            if offset <= self._seen.get(partition, -1):
                continue
            self._seen[partition] = offset
            out.append(
                Alert(
                    id=f"echo:{offset}",
                    kind=AlertKind.SURGE,
                    state=AlertState.OPEN,
                    started_at=t,
                    at=t,
                    cells=(cell,),
                    window_min=15,
                    observed=1,
                    expected=0.0,
                    score=1.0,
                    p_value=None,
                    reason=f"call {offset}",
                )  # fmt: skip
            )
        return out

    def tick(self, wall: float) -> list[Alert]:
        return []


def value(offset: int) -> bytes:
    return encode_points([(0, offset, T0 + 60 * offset, CELL, "EMS", None)])


def produce(settings, n: int) -> str:
    """Detector-input messages 0..n-1 on the test's topic (one partition); its name."""
    topic = topic_name(settings.topic_prefix, DETECTOR_INPUT)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    try:
        for i in range(n):
            producer.send(topic, value(i), partition=0).get(timeout=30)
    finally:
        producer.close()
    return topic


class Message:
    """A detector-input event as Faust hands it to the agent."""

    def __init__(self, topic: str, offset: int) -> None:
        self.message = SimpleNamespace(topic=topic, partition=0, offset=offset)
        self.value = value(offset)
        self.acked = False

    def ack(self) -> None:
        self.acked = True


def make_agent(settings, st: RedisState) -> DetectionAgent:
    agent = DetectionAgent(settings, lambda: st, SentAlerts(), key=lambda: KEY)  # type: ignore[arg-type]  # SentAlerts: the alerts topic
    agent._fresh_runner = lambda: EchoRunner(partitions=1)  # type: ignore[method-assign]  # detectors known by name
    return agent


async def feed(agent: DetectionAgent, topic: str, offsets) -> list[Message]:
    msgs = [Message(topic, i) for i in offsets]
    for m in msgs:
        await agent.handle(m)  # type: ignore[arg-type]  # Message stands in for Faust's event
    return msgs


async def checkpoint(agent: DetectionAgent) -> None:
    async with agent.lock:
        await agent.checkpoint(final=True)


class Snapshot:
    """The detectors' hash, their digests and the alerts stream as Redis holds them now: what a lagging replica has."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.names = [keys.detector, keys.detector_written, keys.detector_journal, keys.alerts]
        self.dumps = {k: client.dump(k) for k in self.names}

    def put_back(self) -> None:
        """The failover: Redis holds these keys as they were when the snapshot was taken."""
        for k, blob in self.dumps.items():
            self.client.delete(k)
            if blob is not None:
                self.client.restore(k, 0, blob)


def stream(client: redis.Redis, keys: Keys) -> list[tuple[str, str]]:
    return [(sid.decode(), json.loads(f[b"alert"])["id"]) for sid, f in client.xrange(keys.alerts)]


def sent_ids(agent: DetectionAgent) -> list[str]:
    return [json.loads(v)["id"] for v in agent.alerts.sent]  # type: ignore[attr-defined]  # SentAlerts


def names(first: int, last: int) -> list[str]:
    return [f"echo:{i}" for i in range(first, last + 1)]


def test_records_lost_when_redis_went_back_are_made_again_from_kafka_once_and_in_order(settings, caplog):
    """Redis goes back to a moment when it held the checkpoint at 9 and the records up to 19, after the agent wrote records
    up to 29 and a checkpoint at 24: the next message's write is refused by the fence, the agent restores the checkpoint at
    9, reads 10..30 back from Kafka and feeds them again. The stream ends with every record once, in the order they were
    made, the records 20..29 under ids above those they had (a client holding one does not skip them), the alerts topic
    with each record once (the lost ones were sent already), and the next checkpoint acknowledging every message."""
    topic = produce(settings, 31)
    keys = Keys(settings.redis_prefix)
    client = redis.Redis.from_url(settings.redis_url)

    async def go():
        st = RedisState.from_settings(settings)
        try:
            agent = make_agent(settings, st)
            await feed(agent, topic, range(10))
            await checkpoint(agent)
            await feed(agent, topic, range(10, 20))
            replica = Snapshot(client, keys)
            msgs = await feed(agent, topic, range(20, 25))
            await checkpoint(agent)
            assert all(m.acked for m in msgs)
            msgs = await feed(agent, topic, range(25, 30))
            lost_ids = [sid for sid, _ in stream(client, keys)[20:]]
            replica.put_back()
            assert [n for _, n in stream(client, keys)] == names(0, 19)
            msgs += await feed(agent, topic, [30])
            await checkpoint(agent)
            return agent, lost_ids, msgs
        finally:
            await st.close()

    try:
        with caplog.at_level("WARNING", logger="streams.detection.agent"):
            agent, lost_ids, msgs = asyncio.run(go())
        entries = stream(client, keys)
    finally:
        client.close()
    assert [n for _, n in entries] == names(0, 30), "every record once, in the order made"
    ids = [sid for sid, _ in entries]
    assert ids == sorted(ids, key=lambda s: tuple(map(int, s.split("-")))), "stream ids grow"
    made_again = [sid for sid, n in entries if n in names(20, 29)]
    assert min(tuple(map(int, s.split("-"))) for s in made_again) > max(tuple(map(int, s.split("-"))) for s in lost_ids)
    assert sent_ids(agent) == names(0, 30), "the alerts topic got each record once"
    assert all(m.acked for m in msgs), "the checkpoint after the re-feed acknowledges the messages fed before it"
    figures = agent.metrics()
    assert figures["detector_refeeds_total"] == 1
    assert figures["detector_refed_messages_total"] == 21 and figures["detector_refed_alert_records_total"] == 11
    assert any("Redis went back under the detection" in r.getMessage() and "10..30" in r.getMessage() for r in caplog.records)


def test_a_worker_started_after_redis_went_back_feeds_what_lies_between_the_stored_checkpoint_and_kafkas_offsets(settings):
    """Kafka's committed offsets moved on a checkpoint (at 24) that Redis lost: a worker started then restores the one at 9
    and is given message 25 first. At the restore it follows the journal Redis kept (10..19, their records skipped: they
    survived); given 25, it reads 20..24 back from Kafka before feeding it, so the records 20..24 are in the stream
    again, once, before 25's. The alerts topic is sent 10..19 again (at the restore nothing says the worker before sent
    them: the topic is at least once), not 20..24 (Kafka's offsets past them say it did)."""
    topic = produce(settings, 26)
    keys = Keys(settings.redis_prefix)
    client = redis.Redis.from_url(settings.redis_url)

    async def go():
        st = RedisState.from_settings(settings)
        try:
            first = make_agent(settings, st)
            await feed(first, topic, range(10))
            await checkpoint(first)
            await feed(first, topic, range(10, 20))
            replica = Snapshot(client, keys)
            await feed(first, topic, range(20, 25))
            await checkpoint(first)
            replica.put_back()
            second = make_agent(settings, st)
            await feed(second, topic, [25])
            return second
        finally:
            await st.close()

    try:
        second = asyncio.run(go())
        entries = stream(client, keys)
    finally:
        client.close()
    assert [n for _, n in entries] == names(0, 25)
    assert sent_ids(second) == [*names(10, 19), "echo:25"]
    assert second.metrics()["detector_refed_messages_total"] == 15


def test_when_the_detectors_hash_is_gone_the_detectors_start_afresh_and_are_fed_from_the_start_of_the_input(settings):
    """Redis went back to before the first write of the detection (no hash, no digests, no stream): the fence sees nothing
    where the worker wrote offset 5, the detectors start empty, as on a first start, and are fed the input from its first
    message (the write of 6 is the one refused: 0..6 are fed again, 7 as usual); every record is in the stream again, once."""
    topic = produce(settings, 8)
    keys = Keys(settings.redis_prefix)
    client = redis.Redis.from_url(settings.redis_url)

    async def go():
        st = RedisState.from_settings(settings)
        try:
            agent = make_agent(settings, st)
            await feed(agent, topic, range(6))
            client.delete(keys.detector, keys.detector_written, keys.alerts)
            await feed(agent, topic, [6, 7])
            return agent
        finally:
            await st.close()

    try:
        agent = asyncio.run(go())
        entries = stream(client, keys)
    finally:
        client.close()
    assert [n for _, n in entries] == names(0, 7)
    assert agent.metrics()["detector_refed_messages_total"] == 7


def test_the_fences_refuse_a_write_when_redis_holds_less_than_the_worker_wrote_and_write_nothing(settings):
    """An alert append fenced at applied 5 where Redis holds 3, or a checkpoint fenced at 4 where Redis holds none, raises
    RedisWentBack and writes nothing; at or above the fence they are written."""
    keys = Keys(settings.redis_prefix)

    async def go():
        st = RedisState.from_settings(settings)
        try:
            assert await st.append_alerts(3, ['{"id":"a3"}'], fence=-1) == 1
            with pytest.raises(RedisWentBack, match="holds detector-input offset 3, this worker wrote 5"):
                await st.append_alerts(6, ['{"id":"a6"}'], fence=5)
            with pytest.raises(RedisWentBack, match="holds detector-input offset -1, this worker wrote 4"):
                await st.commit_detection(6, b"state", fence=4)
            assert await st.append_alerts(4, ['{"id":"a4"}'], fence=3) == 1
            await st.commit_detection(4, b"state", fence=-1)
            await st.commit_detection(5, b"state", fence=4)
            return await st.client.hgetall(keys.detector), await st.client.xlen(keys.alerts)
        finally:
            await st.close()

    stored, length = asyncio.run(go())
    assert stored["applied"] == "4" and stored["offset"] == "5" and length == 2


def test_a_record_never_gets_a_stream_id_at_or_below_one_this_process_got_even_when_redis_clock_is_behind(settings):
    """After a failover to a primary whose clock is a minute behind the old one's, Redis's ``*`` would give ids below those
    clients hold as ``last_id``: the append takes the id after the highest one this process got instead, then Redis's own."""
    keys = Keys(settings.redis_prefix)

    async def go():
        st = RedisState.from_settings(settings)
        try:
            await st.append_alerts(0, ['{"id":"a0"}'])
            now_ms = int(st.alerts_floor.split("-")[0])
            st.alerts_floor = f"{now_ms + 60_000}-4"  # ids the old primary gave, a minute ahead of this one's clock
            await st.append_alerts(1, ['{"id":"a1"}', '{"id":"a2"}'])
            ids = [sid for sid, _ in await st.client.xrange(keys.alerts)]
            return now_ms, ids, st.alerts_floor
        finally:
            await st.close()

    now_ms, ids, floor = asyncio.run(go())
    assert ids[1:] == [f"{now_ms + 60_000}-5", f"{now_ms + 60_000}-6"] and floor == ids[-1]


def test_a_checkpoint_that_finds_redis_behind_starts_the_re_feed_at_the_next_message_and_acknowledges_after_it(settings):
    """The loss found by a checkpoint write (taken beside the agent): nothing acknowledged then; the next message restores
    the stored checkpoint, re-feeds what followed it and writes the lost records again; the checkpoint after that
    acknowledges every message fed since."""
    topic = produce(settings, 14)
    keys = Keys(settings.redis_prefix)
    client = redis.Redis.from_url(settings.redis_url)

    async def go():
        st = RedisState.from_settings(settings)
        try:
            agent = make_agent(settings, st)
            await feed(agent, topic, range(5))
            await checkpoint(agent)
            replica = Snapshot(client, keys)
            await feed(agent, topic, range(5, 10))
            await checkpoint(agent)
            msgs = await feed(agent, topic, range(10, 13))
            replica.put_back()
            async with agent.lock:
                await agent.checkpoint()
            await agent.state.writing
            found = agent.state.went_back is not None
            acked_then = [m.acked for m in msgs]
            msgs += await feed(agent, topic, [13])
            await checkpoint(agent)
            return agent, found, acked_then, msgs
        finally:
            await st.close()

    try:
        agent, found, acked_then, msgs = asyncio.run(go())
        entries = stream(client, keys)
    finally:
        client.close()
    assert found and not any(acked_then), "the refused checkpoint acknowledged nothing"
    assert [n for _, n in entries] == names(0, 13)
    assert agent.metrics()["detector_refed_messages_total"] == 8, "5..12 fed again, before 13"
    assert all(m.acked for m in msgs)


def test_a_worker_that_no_longer_holds_the_input_sets_its_detectors_aside_instead_of_re_feeding(settings):
    """Redis behind this worker while the input is another worker's (a standby took over): that worker goes on from the
    stored checkpoint; this one writes nothing and reads nothing back."""
    topic = produce(settings, 6)
    keys = Keys(settings.redis_prefix)
    client = redis.Redis.from_url(settings.redis_url)
    holds = [True]

    async def go():
        st = RedisState.from_settings(settings)
        try:
            agent = DetectionAgent(settings, lambda: st, SentAlerts(), key=lambda: KEY, holds_input=lambda: holds[0])  # type: ignore[arg-type]  # SentAlerts: the topic
            agent._fresh_runner = lambda: EchoRunner(partitions=1)  # type: ignore[method-assign]
            await feed(agent, topic, range(3))
            await checkpoint(agent)
            replica = Snapshot(client, keys)
            await feed(agent, topic, range(3, 5))
            replica.put_back()
            holds[0] = False
            await feed(agent, topic, [5])
            return agent
        finally:
            await st.close()

    try:
        agent = asyncio.run(go())
        entries = stream(client, keys)
    finally:
        client.close()
    assert [n for _, n in entries] == names(0, 2)
    assert agent.state.input_lost and agent.metrics()["detector_refeeds_total"] == 0


class ClockEchoRunner(EchoRunner):
    """:class:`EchoRunner` whose records carry the wall time their call was fed at, and whose clock makes one record a
    tick (``clock:<n>``): what the real detectors' outage and quiet-area records depend on."""

    ticks = 0

    def feed(self, raw: bytes, wall: float) -> list[Alert]:
        return [dataclasses.replace(a, score=wall) for a in super().feed(raw, wall)]

    def tick(self, wall: float) -> list[Alert]:
        self.ticks += 1
        return [
            Alert(
                id=f"clock:{self.ticks}",
                kind=AlertKind.FEED_OUTAGE,
                state=AlertState.OPEN,
                started_at=wall,
                at=wall,
                cells=(),
                window_min=15,
                observed=0,
                expected=1.0,
                score=wall,
                p_value=None,
                reason=f"tick {self.ticks}",
            )  # fmt: skip
        ]


def test_the_clocks_records_lost_with_redis_are_made_again_byte_for_byte_between_the_messages_they_came_between(settings):
    """Redis goes back to the checkpoint at 4 after the agent fed 5..9 with three ticks of its clock among them, each tick
    making a record: the re-feed gives the restored detectors the messages at the wall times they were first fed at
    and the ticks where they came, so the stream ends with every record once, the clock's too, in the order made and
    with the bodies the alerts topic has (sent once each). Without the journal the clock's records were lost and the
    messages' were made again with other times."""
    topic = produce(settings, 11)
    keys = Keys(settings.redis_prefix)
    client = redis.Redis.from_url(settings.redis_url)

    async def go() -> DetectionAgent:
        st = RedisState.from_settings(settings)
        try:
            agent = make_agent(settings, st)
            agent._fresh_runner = lambda: ClockEchoRunner(partitions=1)  # type: ignore[method-assign]
            await feed(agent, topic, range(5))
            await checkpoint(agent)
            replica = Snapshot(client, keys)
            await feed(agent, topic, range(5, 8))
            await agent.keep_detector_clock()
            await feed(agent, topic, [8])
            await agent.keep_detector_clock()
            await agent.keep_detector_clock()
            await feed(agent, topic, [9])
            replica.put_back()
            await feed(agent, topic, [10])
            await checkpoint(agent)
            return agent
        finally:
            await st.close()

    try:
        agent = asyncio.run(go())
        entries = [json.loads(f[b"alert"]) for _, f in client.xrange(keys.alerts)]
    finally:
        client.close()
    made = [*names(0, 7), "clock:1", "echo:8", "clock:2", "clock:3", "echo:9", "echo:10"]
    assert [e["id"] for e in entries] == made, "every record once, the clock's too, in the order made"
    sent = [json.loads(v) for v in agent.alerts.sent]  # type: ignore[attr-defined]  # SentAlerts
    assert [e["id"] for e in sent] == made, "the alerts topic got each record once"
    assert entries == sent, "the records made again are those made first, byte for byte (the same wall times)"
    assert agent.metrics()["detector_refeeds_total"] == 1


class TickCountRunner(ClockEchoRunner):
    """:class:`ClockEchoRunner` whose clock makes a record every other tick only, and whose calls' records count the ticks
    before them (``observed``): a tick that wrote nothing still changes what comes after it."""

    def feed(self, raw: bytes, wall: float) -> list[Alert]:
        return [dataclasses.replace(a, observed=self.ticks) for a in super().feed(raw, wall)]

    def tick(self, wall: float) -> list[Alert]:
        made = super().tick(wall)
        return made if self.ticks % 2 else []


def test_a_worker_taking_the_input_over_from_a_dead_one_makes_its_records_again_byte_for_byte_and_the_stream_keeps_one(settings):
    """The worker holding the detector input checkpoints at 4, then feeds 5..9 with four ticks of its clock among them (two
    making a record, two making none but counted by the calls after them), and dies: no checkpoint, nothing acknowledged
    past 4. Another worker is given the input: its clock ticks first, then Kafka hands it 5..10 again. It restores the
    checkpoint, reads the dead worker's journal back from Redis and feeds 5..9 at the wall times they were first fed at,
    with the ticks between them, before its own tick: the stream ends with every record once, those of the dead worker
    byte for byte as it wrote them, then the new worker's. Without the journal in Redis the records of 5..9 were made
    again with other times (a second copy of each) and the clock's were not made. The new worker's checkpoint forgets the
    journal's entries it covers, and acknowledges 5..10."""
    topic = produce(settings, 11)
    keys = Keys(settings.redis_prefix)
    client = redis.Redis.from_url(settings.redis_url)

    async def go() -> tuple[list[dict], DetectionAgent, list[Message], int, int]:
        st = RedisState.from_settings(settings)
        try:
            dead = make_agent(settings, st)
            dead._fresh_runner = lambda: TickCountRunner(partitions=1)  # type: ignore[method-assign]
            await feed(dead, topic, range(5))
            await checkpoint(dead)
            await feed(dead, topic, range(5, 7))
            await dead.keep_detector_clock()  # tick 1: a record
            await dead.keep_detector_clock()  # tick 2: none
            await feed(dead, topic, [7, 8])
            await dead.keep_detector_clock()  # tick 3: a record
            await dead.keep_detector_clock()  # tick 4: none
            await feed(dead, topic, [9])
            await dead.keep_detector_clock()  # tick 5: a record
            await dead.keep_detector_clock()  # tick 6: none, and never written: the worker dies before its next write
            written = [json.loads(v) for v in dead.alerts.sent]  # type: ignore[attr-defined]  # SentAlerts
            journal_then = client.zcard(keys.detector_journal)
            successor = make_agent(settings, st)
            successor._fresh_runner = lambda: TickCountRunner(partitions=1)  # type: ignore[method-assign]
            await successor.keep_detector_clock()  # its own first tick (the sixth: none), after the dead worker's five
            msgs = await feed(successor, topic, range(5, 11))
            await checkpoint(successor)
            return written, successor, msgs, journal_then, client.zcard(keys.detector_journal)
        finally:
            await st.close()

    try:
        written, successor, msgs, journal_then, journal_after = asyncio.run(go())
        entries = [json.loads(f[b"alert"]) for _, f in client.xrange(keys.alerts)]
    finally:
        client.close()
    made = [*names(0, 6), "clock:1", "echo:7", "echo:8", "clock:3", "echo:9", "clock:5", "echo:10"]
    assert [e["id"] for e in entries] == made, "every record once, in the order made"
    assert entries[: len(written)] == written, "the dead worker's records, made again byte for byte"
    assert [e["observed"] for e in entries if e["id"] in names(5, 10)] == [0, 0, 2, 2, 4, 6], "ticks that wrote nothing count"
    assert journal_then == 5 + 5, "the dead worker's messages and ticks after its checkpoint, but the tick it never wrote"
    assert journal_after == 0, "the successor's checkpoint forgets the entries it covers"
    assert all(m.acked for m in msgs)
    figures = successor.metrics()
    assert figures["detector_refeeds_total"] == 1 and figures["detector_refed_messages_total"] == 5


def test_a_worker_taking_over_from_one_that_died_before_its_first_checkpoint_follows_the_journal_it_started(settings):
    """No checkpoint at all: the dead worker started the detectors afresh, fed 0..4 with two ticks among them and died.
    Its journal started at entry 1 from fresh detectors, which the successor makes too: it follows that journal, so the
    stream ends with each record once, the dead worker's byte for byte, then 5's."""
    topic = produce(settings, 6)
    keys = Keys(settings.redis_prefix)
    client = redis.Redis.from_url(settings.redis_url)

    async def go() -> tuple[list[dict], DetectionAgent]:
        st = RedisState.from_settings(settings)
        try:
            dead = make_agent(settings, st)
            dead._fresh_runner = lambda: TickCountRunner(partitions=1)  # type: ignore[method-assign]
            await feed(dead, topic, range(3))
            await dead.keep_detector_clock()  # tick 1: a record
            await dead.keep_detector_clock()  # tick 2: none
            await feed(dead, topic, [3, 4])
            written = [json.loads(v) for v in dead.alerts.sent]  # type: ignore[attr-defined]  # SentAlerts
            successor = make_agent(settings, st)
            successor._fresh_runner = lambda: TickCountRunner(partitions=1)  # type: ignore[method-assign]
            await feed(successor, topic, range(6))
            return written, successor
        finally:
            await st.close()

    try:
        written, successor = asyncio.run(go())
        entries = [json.loads(f[b"alert"]) for _, f in client.xrange(keys.alerts)]
    finally:
        client.close()
    assert [e["id"] for e in entries] == [*names(0, 2), "clock:1", *names(3, 5)], "every record once, in the order made"
    assert entries[: len(written)] == written, "the dead worker's records, made again byte for byte"
    assert successor.metrics()["detector_refed_messages_total"] == 5


def test_a_re_feed_from_a_checkpoint_older_than_the_workers_own_journal_follows_the_journal_redis_kept(settings):
    """Redis goes back to when it held the checkpoint at 2 and the journal after it (3, a tick, 4), after the worker
    checkpointed twice more (at 5 and 6): its own journal no longer reaches back to 2. It follows the journal Redis kept:
    3, the tick and 4 are fed at their first wall times, so their records, which survived, are made byte for byte and
    skipped; 5..7, lost or refused, are fed at today's time and written; the stream holds each record once. Without the
    journal in Redis, 3 and 4 were fed at today's time too: a second copy of each, and no clock record."""
    topic = produce(settings, 8)
    keys = Keys(settings.redis_prefix)
    client = redis.Redis.from_url(settings.redis_url)

    async def go() -> DetectionAgent:
        st = RedisState.from_settings(settings)
        try:
            agent = make_agent(settings, st)
            agent._fresh_runner = lambda: ClockEchoRunner(partitions=1)  # type: ignore[method-assign]
            await feed(agent, topic, range(3))
            await checkpoint(agent)
            await feed(agent, topic, [3])
            await agent.keep_detector_clock()
            await feed(agent, topic, [4])
            replica = Snapshot(client, keys)
            await feed(agent, topic, [5])
            await checkpoint(agent)
            await feed(agent, topic, [6])
            await checkpoint(agent)
            assert agent.state.journal.after(SimpleNamespace(journal_id=agent.state.journal.id, journal_seq=0)) is None
            replica.put_back()
            await feed(agent, topic, [7])
            return agent
        finally:
            await st.close()

    try:
        agent = asyncio.run(go())
        entries = [json.loads(f[b"alert"]) for _, f in client.xrange(keys.alerts)]
    finally:
        client.close()
    assert [e["id"] for e in entries] == [*names(0, 3), "clock:1", *names(4, 7)], "every record once, in the order made"
    assert agent.metrics()["detector_refed_messages_total"] == 5, "3..7 fed again (7's write was the one refused)"
