"""The detection agent (streams/detection/agent.py): snapshot under the lock, signed write beside it, acknowledgements after."""

from __future__ import annotations

import asyncio
import base64
import json
import pickle
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace

import pytest
import redis

from streams.counting.keys import Keys
from streams.counting.state import RedisState, StateError
from streams.detection import checkpoint
from streams.detection.agent import DetectionAgent
from streams.detection.runner import encode_points
from streams.runtime.settings import load_settings
from tests.streams.detection.test_checkpoint import KEY, OTHER_KEY, hostile_pickle

CELL = "882aac941dfffff"
T0 = 1_700_000_000.0


class MemoryState:
    """Stands in for :class:`RedisState`: what the detection agent reads and writes, kept in memory."""

    def __init__(self) -> None:
        self.keys = Keys("mem")
        self.saved: tuple[int, bytes] | None = None
        self.alerts: list[str] = []
        self.failing: StateError | None = None
        #: set to hold commit_detection until released
        self.hold: asyncio.Event | None = None
        #: the detectors' journal entries by sequence number (``P:detector:journal``)
        self.journal: dict[int, str] = {}

    async def load_detection(self) -> tuple[int, bytes] | None:
        return self.saved

    async def commit_detection(
        self, offset: int, state: bytes, *, fence: int | None = None, journal: tuple[str, int] | None = None
    ) -> None:
        if self.hold is not None:
            await self.hold.wait()
        if self.failing is not None:
            raise self.failing
        self.saved = (offset, state)
        if journal is not None:
            self.journal = {seq: m for seq, m in self.journal.items() if seq > journal[1] and m.startswith(f"{journal[0]} ")}

    async def append_alerts(
        self, offset: int, bodies: list[str], *, clock: bool = False, fence: int | None = None, journal: Sequence[tuple[int, str]] = ()
    ) -> int:
        for seq, member in journal:
            self.journal.setdefault(seq, member)
        self.alerts += bodies
        return len(bodies)

    async def detection_journal(self) -> list[str]:
        return [self.journal[seq] for seq in sorted(self.journal)]

    async def zones_version(self) -> int | None:
        return None

    async def event_zones(self) -> tuple[int | None, list[dict]]:
        return None, []


class SentAlerts:
    """Stands in for the alerts topic."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, key: bytes, value: bytes) -> asyncio.Future:
        self.sent.append(value)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class Message:
    """A detector-input event as the agent sees it: offset, value, ack()."""

    def __init__(self, offset: int) -> None:
        self.message = SimpleNamespace(topic="mem.detector-input", partition=0, offset=offset)
        self.value = encode_points([(0, offset, T0 + 60 * offset, CELL, "EMS", None)])
        self.acked = False

    def ack(self) -> None:
        self.acked = True


async def memory_input(topic: str, partition: int, first: int, last: int) -> AsyncIterator[list[tuple[int, bytes]]]:
    """The detector-input messages ``first..last`` read back (see :data:`streams.detection.agent.InputReader`): :class:`Message`'s."""
    yield [(offset, Message(offset).value) for offset in range(first, last + 1)]


def make_agent(state, key: bytes = KEY, **overrides) -> DetectionAgent:
    settings = load_settings({}, partitions=1, **overrides)
    # SentAlerts stands in for the alerts topic
    return DetectionAgent(settings, lambda: state, SentAlerts(), key=lambda: key, read_input=memory_input)  # type: ignore[arg-type]


def test_a_checkpoint_is_written_beside_the_agent_and_acknowledges_its_messages_only_once_written():
    """The snapshot is taken under the lock; while it is written the agent feeds the next message; the messages it
    covers are acknowledged after the write, the later one is not; a new agent restores the detectors from it."""

    async def go():
        state = MemoryState()
        agent = make_agent(state)
        first = [Message(i) for i in range(3)]
        for m in first:
            await agent.handle(m)
        state.hold = asyncio.Event()
        async with agent.lock:
            await agent.checkpoint()
        writing = agent.state.writing
        assert writing is not None and not writing.done()
        later = Message(3)
        await asyncio.wait_for(agent.handle(later), 5)  # the lock is free while the checkpoint is written
        assert not any(m.acked for m in first), "acknowledged before the checkpoint was written"
        state.hold.set()
        await writing
        assert all(m.acked for m in first) and not later.acked
        assert agent.state.offset == 2 and agent.state.pending == [later]
        figures = agent.metrics()
        assert figures["detector_checkpoints_total"] == 1 and figures["detector_checkpoint_bytes"] > 1000
        assert 0 < figures["detector_checkpoint_stall_seconds"] <= figures["detector_checkpoint_seconds"]
        assert figures["detector_checkpoint_stall_seconds_total"] == figures["detector_checkpoint_stall_seconds"]
        assert figures["detector_points_total"] >= 0, "with the detectors' own counters"
        offset, blob = state.saved
        assert offset == 2 and blob.startswith(checkpoint.MAGIC)
        assert checkpoint.restore(blob, KEY, offset=2)._seen == {0: 2}, "the three messages fed before it, not the fourth"  # type: ignore[attr-defined]
        restored = make_agent(state)
        async with restored.lock:
            runner = await restored.runner()
        assert restored.state.offset == 2, "restored from the checkpoint"
        assert runner._seen == {0: 3} and restored.state.applied == 3, "and given the fourth message again, as the journal says"

    asyncio.run(go())


def test_a_checkpoint_that_fails_to_write_leaves_its_messages_to_the_next():
    async def go():
        state = MemoryState()
        agent = make_agent(state)
        msgs = [Message(i) for i in range(2)]
        for m in msgs:
            await agent.handle(m)
        state.failing = StateError("Redis failed while checkpointing")
        async with agent.lock:
            await agent.checkpoint()
        await agent.state.writing
        assert not any(m.acked for m in msgs) and agent.state.pending == msgs and agent.state.offset == -1
        state.failing = None
        async with agent.lock:
            await agent.checkpoint()
        await agent.state.writing
        assert all(m.acked for m in msgs) and agent.state.offset == 1 and state.saved[0] == 1

    asyncio.run(go())


def test_a_clean_stop_waits_for_the_write_under_way_and_checkpoints_what_came_after():
    async def go():
        state = MemoryState()
        agent = make_agent(state)
        await agent.handle(Message(0))
        state.hold = asyncio.Event()
        async with agent.lock:
            await agent.checkpoint()
        later = Message(1)
        await agent.handle(later)
        asyncio.get_running_loop().call_later(0.05, state.hold.set)
        await agent.close()
        assert later.acked and state.saved[0] == 1

    asyncio.run(go())


def test_an_unsigned_checkpoint_in_the_store_stops_the_agent_with_what_to_do_and_runs_no_code(tmp_path):
    marker = tmp_path / "marker"
    state = MemoryState()
    state.saved = (12, hostile_pickle(marker))

    with pytest.raises(StateError) as refused:
        asyncio.run(make_agent(state).runner())
    message = str(refused.value)
    assert "the detectors' checkpoint in mem:detector was refused: it is not a signed checkpoint" in message
    assert "Set WF_CHECKPOINT_KEY to the key it was written with, or delete it (redis-cli DEL mem:detector)" in message
    assert not marker.exists()


def test_a_checkpoint_signed_with_another_key_stops_the_agent_and_runs_no_code(tmp_path):
    marker = tmp_path / "marker"
    state = MemoryState()
    state.saved = (12, checkpoint.sign(hostile_pickle(marker), OTHER_KEY, offset=12))
    with pytest.raises(StateError, match="was refused: its signature did not verify"):
        asyncio.run(make_agent(state).runner())
    assert not marker.exists()


def test_a_signed_checkpoint_that_is_not_a_runner_is_unreadable():
    state = MemoryState()
    state.saved = (3, checkpoint.sign(pickle.dumps({"not": "a runner"}), KEY, offset=3))
    with pytest.raises(StateError, match=r"cannot be read .*not a DetectionRunner.*redis-cli DEL mem:detector"):
        asyncio.run(make_agent(state).runner())


@pytest.mark.stack
def test_a_checkpoint_round_trips_through_redis_and_another_key_is_refused(settings):
    """Written by one agent through the real Redis state, restored by the next; under another key it is refused."""

    async def go():
        st = RedisState.from_settings(settings)
        try:
            agent = DetectionAgent(settings, lambda: st, SentAlerts(), key=lambda: KEY)  # type: ignore[arg-type]  # SentAlerts: the alerts topic
            for i in range(4):
                await agent.handle(Message(i))
            async with agent.lock:
                await agent.checkpoint()
            await agent.state.writing
            again = DetectionAgent(settings, lambda: st, SentAlerts(), key=lambda: KEY)  # type: ignore[arg-type]  # SentAlerts: the alerts topic
            runner = await again.runner()
            stranger = DetectionAgent(settings, lambda: st, SentAlerts(), key=lambda: OTHER_KEY)  # type: ignore[arg-type]  # SentAlerts: the topic
            with pytest.raises(StateError, match=f"checkpoint in {st.keys.detector} was refused: its signature did not verify"):
                await stranger.runner()
            return runner
        finally:
            await st.close()

    runner = asyncio.run(go())
    assert runner._seen == {0: 3} and runner.counters["detector_points_total"] + len(runner._merge) == 4
    # what Redis holds is the signed blob, base64 (bench/backfill.py reads its size as such)
    key = Keys(settings.redis_prefix).detector
    with redis.Redis.from_url(settings.redis_url) as client:
        stored = base64.b64decode(client.hget(key, "state"))
    assert stored.startswith(checkpoint.MAGIC) and checkpoint.restore(stored, KEY, offset=3)._seen == {0: 3}


def _profile_naming(cell: str, name: str, timezone: str):
    import json

    import h3

    from streams.jurisdiction import Areas, Profile

    geometry = json.loads(json.dumps(h3.cells_to_geo([cell])))  # GeoJSON's lists, not h3's tuples
    feature = {"type": "Feature", "properties": {"name": name}, "geometry": geometry}
    areas = Areas.from_geojson({"type": "FeatureCollection", "features": [feature]})
    return Profile(id="test", name="Test County", timezone=timezone, areas=areas)


def test_the_detectors_run_on_the_profiles_clock_and_alerts_are_published_with_their_areas_named(caplog):
    from detectors.types import Alert, AlertKind, AlertState

    async def go():
        state = MemoryState()
        profile = _profile_naming(CELL, "Norristown", "America/Los_Angeles")
        settings = load_settings({}, partitions=1)
        agent = DetectionAgent(settings, lambda: state, SentAlerts(), key=lambda: KEY, profile=profile)  # type: ignore[arg-type]  # SentAlerts: the topic
        async with agent.lock:
            runner = await agent.runner()
        assert runner.suite.surge.baseline.timezone == "America/Los_Angeles"
        assert runner.suite.feed.baseline.timezone == "America/Los_Angeles"
        alert = Alert(
            id="surge:x", kind=AlertKind.SURGE, state=AlertState.OPEN, started_at=T0, at=T0 + 900, cells=(CELL, "882aac9409fffff"),
            window_min=15, observed=9, expected=1.5, score=5.0, p_value=1e-5, reason=f"9 calls (9 incidents) in 15 min in cell {CELL}",
        )  # fmt: skip
        await agent._publish([alert], 0)
        sent = state.alerts[-1]
        assert '"areas":["Norristown"]' in sent and f"in cell {CELL} (Norristown)" in sent
        # and said in plain words from the named areas, no statistics (streams.detection.plain)
        summary = json.loads(sent)["summary"]
        assert summary.startswith("Calls in Norristown: 9 in 15 minutes, where about two are usual on a ") and "p =" not in summary
        assert agent.alerts.sent[-1].decode() == sent, "the alerts topic gets the same named record"
        await agent.checkpoint(final=True)
        # the same checkpoint read under a profile in another zone: restored, with a warning saying what to do
        other = DetectionAgent(settings, lambda: state, SentAlerts(), key=lambda: KEY, profile=_profile_naming(CELL, "N", "Asia/Tokyo"))  # type: ignore[arg-type]  # SentAlerts: the topic
        async with other.lock:
            await other.runner()

    with caplog.at_level("WARNING", logger="streams.detection.agent"):
        asyncio.run(go())
    assert any(
        "learnt its hour-of-week rhythm in America/Los_Angeles" in r.getMessage() and "Asia/Tokyo" in r.getMessage() for r in caplog.records
    )


def test_a_standby_that_does_not_hold_the_input_neither_ticks_nor_restores_the_detectors():
    """Two detection workers in one group: the one not assigned the input must not make the clock's alerts a second
    time (at other instants) nor touch the checkpoint."""

    async def go():
        state = MemoryState()
        holds = [False]
        agent = DetectionAgent(load_settings({}, partitions=1), lambda: state, SentAlerts(), key=lambda: KEY, holds_input=lambda: holds[0])  # type: ignore[arg-type]
        await agent.keep_detector_clock()
        standby = agent.state.runner
        holds[0] = True
        await agent.keep_detector_clock()
        return standby, agent.state.runner

    standby, active = asyncio.run(go())
    assert standby is None, "the standby restored (and would tick) the detectors"
    assert active is not None, "the worker that holds the input keeps the detectors' clock"


def test_a_silent_feeds_ticks_are_checkpointed_once_they_reach_the_limit_though_no_message_waits(monkeypatch):
    """Ticks that made no record wait in the journal for the next write, and a worker taking over would replay them all:
    after ``TICKS_BEFORE_CHECKPOINT`` of them the clock checkpoints, which forgets them; before, it does not."""
    from streams.detection import agent as agent_module

    monkeypatch.setattr(agent_module, "TICKS_BEFORE_CHECKPOINT", 3)

    async def go() -> list[int]:
        state = MemoryState()
        agent = make_agent(state)
        await agent.handle(Message(0))
        async with agent.lock:
            await agent.checkpoint(final=True)
        written = []
        for _ in range(4):
            agent.state.next_checkpoint = 0.0  # due at every tick
            await agent.keep_detector_clock()
            if agent.state.writing is not None:
                await agent.state.writing
            written.append(agent.state.checkpoints.written)
        return written

    assert asyncio.run(go()) == [1, 1, 2, 2]


def test_after_the_input_was_taken_away_the_detectors_are_restored_from_the_stored_checkpoint_not_resumed():
    """A worker whose input moved to another worker and came back must go on from the other's checkpoint: its own
    detectors miss what the other fed. A checkpoint the store refuses (fenced) does the same, acknowledging nothing."""
    from streams.counting.state import CheckpointFenced

    async def go():
        state = MemoryState()
        agent = make_agent(state)
        for i in range(3):
            await agent.handle(Message(i))
        mine = agent.state.runner
        # meanwhile another worker held the input, fed messages 3..5 and checkpointed at 5
        other = make_agent(state)
        for i in range(3, 6):
            await other.handle(Message(i))
        async with other.lock:
            await other.checkpoint()
        await other.state.writing
        agent.input_revoked()
        redelivered = [Message(i) for i in range(3, 8)]
        for m in redelivered:
            await agent.handle(m)
        restored = agent.state.runner
        seen = dict(restored._seen)
        # now the other worker checkpoints further along; this one's next checkpoint is refused
        state.failing = CheckpointFenced("another detection worker holds that input now")
        async with agent.lock:
            await agent.checkpoint()
        await agent.state.writing
        return mine, restored, seen, agent.state.input_lost, redelivered

    mine, restored, seen, lost, redelivered = asyncio.run(go())
    assert restored is not mine and seen == {0: 7}, "restored from the checkpoint at 5, then fed 6 and 7 (3..5 skipped)"
    assert lost, "a fenced checkpoint sets the detectors aside"
    # 3..5 are covered by the stored checkpoint (acknowledged as skipped); 6 and 7 only by the refused one
    assert [m.acked for m in redelivered] == [True, True, True, False, False], "acknowledged by a fenced checkpoint"


def test_a_backlog_fed_at_once_lets_the_event_loop_run_between_messages():
    """Messages waiting in the stream are fed under one hold of the lock; the loop must still run between them, or a
    backlog of seconds of detector work starves Kafka's heartbeats (the group then takes the input away) and /metrics."""
    import time as _time

    async def go():
        state = MemoryState()
        agent = make_agent(state)
        await agent.handle(Message(0))
        runner = agent.state.runner
        feed = runner.feed

        def slow_feed(value, out):
            _time.sleep(0.03)  # a message of a few dozen calls' detector work
            return feed(value, out)

        runner.feed = slow_feed
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0)
                ticks += 1

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        start = ticks
        await agent.handle_many([(Message(i), _time.time()) for i in range(1, 21)])
        during = ticks - start
        task.cancel()
        return during

    during = asyncio.run(go())
    # 20 messages of 30 ms: 0.6 s of work; the loop ran at least every 50 ms of it
    assert during >= 8, f"the loop ran {during} times while 0.6 s of messages were fed"


def test_detectors_restored_after_the_input_came_back_are_handed_the_event_zones_of_now():
    """The checkpoint holds the zones of when it was taken; zones the gateway changed since (with the counter unchanged
    since this worker last read it) must reach the restored detectors too."""
    zone = {"id": "z", "name": "Fair", "kind": "event", "cells": [CELL], "active_from": 0, "active_until": 4e9}

    class ZonedState(MemoryState):
        zones: list[dict] = []

        async def zones_version(self) -> int | None:
            return 1 if self.zones else None

        async def event_zones(self) -> tuple[int | None, list[dict]]:
            return (1 if self.zones else None), list(self.zones)

    async def go():
        state = ZonedState()
        agent = make_agent(state)
        await agent.handle(Message(0))
        async with agent.lock:
            await agent.checkpoint(final=True)  # no zone in it
        state.zones = [zone]
        agent.state.zones.next_poll = 0.0
        await agent.handle(Message(1))  # the zone read and handed over (version 1)
        agent.input_revoked()
        for i in (1, 2):
            await agent.handle(Message(i))  # redelivered after the checkpoint at 0, restored without the zone
        return agent.state.runner

    runner = asyncio.run(go())
    assert [z.id for z in runner.suite.zones.zones] == ["z"]
