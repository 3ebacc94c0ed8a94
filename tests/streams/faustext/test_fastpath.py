"""The fetch loop's fast path: a delivery runs in the loop until it blocks, then finishes as its task would have.

These are pure asyncio; the worker's stack tests (``test_pipeline.py``) run on the worker's transport
(``streams.faustext.transport``), ``test_flag_off.py`` on Faust as released.
"""

from __future__ import annotations

import asyncio

import pytest

from streams.faustext import fastpath as faust_fastpath
from streams.faustext.fastpath import _wait_next_records, run_until_blocked
from streams.runtime.settings import load_settings


def test_a_delivery_that_does_not_wait_runs_at_once_and_leaves_nothing_to_await():
    seen = []

    async def deliver():
        seen.append("delivered")
        return 1

    assert run_until_blocked(deliver()) is None
    assert seen == ["delivered"]


def test_an_error_raised_before_the_first_wait_is_raised_in_the_loop():
    async def deliver():
        raise ValueError("bad record")

    with pytest.raises(ValueError, match="bad record"):
        run_until_blocked(deliver())


def test_a_delivery_that_waits_finishes_with_its_value_and_sees_the_result_of_what_it_waited_for():
    async def go():
        fut = asyncio.get_running_loop().create_future()
        steps = []

        async def deliver():
            steps.append("before")
            got = await fut
            steps.append(got)
            await asyncio.sleep(0)  # a bare yield
            return "done"

        rest = run_until_blocked(deliver())
        assert steps == ["before"]
        task = asyncio.ensure_future(rest)
        await asyncio.sleep(0)
        fut.set_result("result")
        return await task, steps

    value, steps = asyncio.run(go())
    assert value == "done"
    assert steps == ["before", "result"]


def test_the_exception_of_what_a_delivery_waited_for_reaches_the_delivery():
    async def go():
        fut = asyncio.get_running_loop().create_future()

        async def deliver():
            try:
                await fut
            except KeyError:
                return "handled"
            return "not raised"

        task = asyncio.ensure_future(run_until_blocked(deliver()))
        await asyncio.sleep(0)
        fut.set_exception(KeyError("x"))
        return await task

    assert asyncio.run(go()) == "handled"


def test_cancelling_a_blocked_delivery_cancels_what_it_waits_for_and_runs_its_cleanup():
    # What Faust's wait_first does to a delivery when a rebalance suspends the flow.
    async def go():
        queue: asyncio.Queue = asyncio.Queue(maxsize=1)
        queue.put_nowait("full")
        cleaned = []

        async def deliver():
            try:
                await queue.put("event")  # blocks: the buffer is full
            finally:
                cleaned.append(True)

        task = asyncio.ensure_future(run_until_blocked(deliver()))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return cleaned, queue.qsize()

    cleaned, size = asyncio.run(go())
    assert cleaned == [True]
    assert size == 1  # the event was not put


class _PausedConsumer:
    """What ``_wait_next_records`` reads of Faust's consumer, with every partition paused for a full buffer."""

    flow_active = True

    def __init__(self) -> None:
        self.not_waiting_next_records = asyncio.Event()
        self.app = type("App", (), {"client_only": False})()
        self.active: set = set()

    def _get_active_partitions(self) -> set:
        return self.active

    async def _getmany(self, active_partitions, timeout):
        return {"tp": ["record"]}


def test_a_fetcher_with_every_partition_paused_looks_again_as_soon_as_one_resumes():
    # Faust sleeps a whole second here; the counting agent drains a buffer in milliseconds.
    async def go():
        consumer = _PausedConsumer()
        waiting = asyncio.ensure_future(_wait_next_records(consumer, timeout=1.0))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        consumer.active.add("tp")
        faust_fastpath._resumed(consumer).set()  # what the worker consumer's on_buffer_drop and resume_partitions do
        records, _ = await asyncio.wait_for(waiting, 0.5)
        # and the next call reads from the partition that resumed
        return records, await _wait_next_records(consumer, timeout=1.0)

    first, (second, active) = asyncio.run(go())
    assert first == {}
    assert second == {"tp": ["record"]} and active == {"tp"}


def test_the_worker_keeps_faust_monitor_whose_inbound_times_feed_faust_own_liveness_check():
    # Faust's consumer logs "Stream has not started processing" (an ERROR) for a partition whose
    # monitor never recorded an event: a monitor without per-record calls made that false alarm
    # after 5 minutes of a soak.
    from faust.types import TP

    from streams.runtime.app import create_app

    class Owner:
        pass

    class Stream:  # what the monitor reads of a stream: itself and its task's owner, both weakly referenced
        task_owner = Owner()

    app = create_app(load_settings({}))
    tp = TP("wf.calls", 1)
    app.monitor.on_stream_event_in(tp, 0, Stream(), None)
    assert tp in app.monitor.stream_inbound_time


def test_the_worker_bounds_each_fetch_by_max_poll_records_and_refuses_a_bound_past_the_buffer_room():
    from streams.runtime.app import create_app
    from streams.runtime.settings import MAX_POLL_RECORDS_LIMIT, SettingsError

    assert create_app(load_settings({"WF_MAX_POLL_RECORDS": "50"})).conf.broker_max_poll_records == 50
    assert create_app(load_settings({})).conf.broker_max_poll_records == load_settings({}).max_poll_records
    # the room above the mark where Faust pauses a partition, in the buffer the worker's app has
    from mode.utils.queues import FlowControlEvent, FlowControlQueue

    maxsize = create_app(load_settings({})).conf.stream_buffer_maxsize
    assert MAX_POLL_RECORDS_LIMIT == maxsize - FlowControlQueue(maxsize, flow_control=FlowControlEvent()).pressure_high_size
    for bad in ("0", str(MAX_POLL_RECORDS_LIMIT + 1)):
        with pytest.raises(SettingsError, match=f"max_poll_records must be 1..{MAX_POLL_RECORDS_LIMIT}"):
            load_settings({"WF_MAX_POLL_RECORDS": bad})


def test_committers_are_one_to_eight_and_two_by_default():
    from streams.runtime.settings import MAX_COMMITTERS, SettingsError

    assert load_settings({}).committers == 2
    assert load_settings({"WF_COMMITTERS": "1"}).committers == 1
    for bad in ("0", str(MAX_COMMITTERS + 1)):
        with pytest.raises(SettingsError, match=f"committers must be 1..{MAX_COMMITTERS}"):
            load_settings({"WF_COMMITTERS": bad})


def _record(key, value):
    from faust.types import Message

    return Message("wf.calls", 2, 17, 1.0, 0, headers=[("h", b"1")], key=key, value=value, checksum=None)


@pytest.mark.parametrize(("key", "value"), [(b"k", b'{"id": 1}'), (None, b"v"), (b"k", None), (None, None), (b"", b"")])
def test_the_raw_schema_makes_the_event_faust_raw_serializers_make(key, value):
    import faust

    from streams.faustext.fastpath import RawSchema

    app = faust.App("wf-raw-schema-test", broker="kafka://localhost:1")
    faust_own = app.topic("wf.calls", key_serializer="raw", value_serializer="raw")
    ours = app.topic("wf.calls", schema=RawSchema())

    async def both():
        return await faust_own.decode(_record(key, value), propagate=True), await ours.decode(_record(key, value), propagate=True)

    theirs, mine = asyncio.run(both())
    assert type(mine) is type(theirs) is app.conf.Event
    assert (mine.key, mine.value, mine.headers) == (theirs.key, theirs.value, theirs.headers) == (key, value, {"h": b"1"})
    assert mine.message.offset == 17 and mine.app is app
    assert (ours.schema.key_serializer, ours.schema.value_serializer) == ("raw", "raw")  # what sending encodes with


def test_the_worker_topics_use_the_raw_schema_on_the_fast_path_only():
    from streams.faustext.fastpath import RawSchema
    from streams.runtime.app import create_app

    app = create_app(load_settings({}))
    assert {type(agent.channel.schema) for agent in app.agents.values()} == {RawSchema}
    app = create_app(load_settings({"WF_FAUST_FASTPATH": "0"}))
    assert RawSchema not in {type(agent.channel.schema) for agent in app.agents.values()}


class _Buffer:
    """What the worker's ProducerBuffer.wait_until_ebb reads: the app's setting, the pending queue, the limit."""

    def __init__(self, threaded, pending, max_messages=3):
        self.reads = 0
        buffer = self

        class Conf:
            @property
            def producer_threaded(self):
                buffer.reads += 1
                return threaded

        self.app = type("App", (), {"conf": Conf()})()
        self.pending = asyncio.Queue()
        for i in range(pending):
            self.pending.put_nowait(i)
        self.max_messages = max_messages


@pytest.mark.parametrize(
    ("threaded", "pending", "flushes"),
    [(False, 3, False), (False, 4, True), (True, 0, True)],  # over the limit (or threaded: Faust's own check) -> Faust's wait
)
def test_the_producer_buffer_check_reads_the_setting_once_and_waits_as_faust_does(monkeypatch, threaded, pending, flushes):
    calls = []

    async def faust_wait(self):
        calls.append(self)

    monkeypatch.setattr(faust_fastpath, "_faust_wait_until_ebb", faust_wait)
    buffer = _Buffer(threaded, pending)

    async def twice():
        await faust_fastpath._wait_until_ebb(buffer)
        await faust_fastpath._wait_until_ebb(buffer)

    asyncio.run(twice())
    assert calls == ([buffer, buffer] if flushes else [])
    assert buffer.reads == 1


class _FetchingConsumer:
    """What ``getmany`` reads of Faust's consumer: a fetch of three records on each of two partitions, one of them paused."""

    flow_active = True
    should_stop = False

    def __init__(self) -> None:
        from faust.transport.utils import DefaultSchedulingStrategy

        self.scheduler = DefaultSchedulingStrategy()
        self.tracked: list = []
        self.highwaters = 0
        self._buffered_partitions: set = set()
        consumer = self

        class Monitor:
            def track_tp_end_offset(self, tp, offset):
                consumer.tracked.append((tp, offset))

        self.app = type("App", (), {"consumer_generation_id": 1, "monitor": Monitor()})()
        self.log = type("Log", (), {"dev": staticmethod(lambda *a: None)})()

    async def _wait_next_records(self, timeout):
        from faust.types import TP

        a, b, paused = TP("wf.calls", 0), TP("wf.calls", 1), TP("wf.calls", 2)
        return {a: [0, 1, 2], b: [10, 11, 12], paused: [20]}, {a, b}

    def highwater(self, tp):
        self.highwaters += 1
        return 100 + tp.partition

    def _to_message(self, tp, record):
        return (tp.partition, record)


def test_getmany_yields_what_faust_yields_and_reads_each_partition_end_once_per_fetch():
    async def read(getmany):
        consumer = _FetchingConsumer()
        return [item async for item in getmany(consumer, timeout=1.0)], consumer

    theirs, faust_own = asyncio.run(read(faust_fastpath._faust_getmany))
    ours, patched = asyncio.run(read(faust_fastpath._getmany))
    assert ours == theirs
    assert sorted(m for _, m in ours) == [(0, 0), (0, 1), (0, 2), (1, 10), (1, 11), (1, 12)]  # not the paused partition's
    assert faust_own.highwaters == 6 and len(faust_own.tracked) == 6  # once per record
    assert patched.highwaters == 2
    assert sorted((tp.partition, end) for tp, end in patched.tracked) == [(0, 100), (1, 101)]


def test_the_worker_monitor_keeps_inbound_times_only_on_the_fast_path():
    import faust
    from faust.types import TP

    from streams.faustext.fastpath import LeanMonitor
    from streams.runtime.app import create_app

    class Stream:
        task_owner = object()

    tp = TP("wf.calls", 3)
    lean = create_app(load_settings({})).monitor
    assert type(lean) is LeanMonitor
    assert lean.on_stream_event_in(tp, 5, Stream(), None) is None
    lean.on_message_in(tp, 5, _record(b"k", b"v"))
    assert tp in lean.stream_inbound_time  # what Faust's liveness check reads
    assert (lean.events_total, lean.messages_received_total, dict(lean.tp_read_offsets)) == (0, 0, {})
    faust_own = create_app(load_settings({"WF_FAUST_FASTPATH": "0"})).monitor
    assert type(faust_own) is faust.Monitor
    faust_own.on_message_in(tp, 5, _record(b"k", b"v"))
    assert faust_own.messages_received_total == 1
