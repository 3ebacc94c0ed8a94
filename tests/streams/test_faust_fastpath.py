"""The fetch loop's fast path: a delivery runs in the loop until it blocks, then finishes as its task would have.

These are pure asyncio; the worker's stack tests (``test_pipeline.py``) run on the patched Faust.
"""

from __future__ import annotations

import asyncio

import pytest
from faust.transport import consumer as faust_consumer

from streams import faust_fastpath
from streams.faust_fastpath import _wait_next_records, install, run_until_blocked
from streams.settings import load_settings


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

    async def _getmany(self, active_partitions, timeout):  # noqa: ANN001, ANN202
        return {"tp": ["record"]}


def test_a_fetcher_with_every_partition_paused_looks_again_as_soon_as_one_resumes():
    # Faust sleeps a whole second here; the counting agent drains a buffer in milliseconds.
    async def go():
        consumer = _PausedConsumer()
        waiting = asyncio.ensure_future(_wait_next_records(consumer, timeout=1.0))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        consumer.active.add("tp")
        faust_fastpath._resumed(consumer).set()  # what the patched on_buffer_drop and resume_partitions do
        records, _ = await asyncio.wait_for(waiting, 0.5)
        # and the next call reads from the partition that resumed
        return records, await _wait_next_records(consumer, timeout=1.0)

    first, (second, active) = asyncio.run(go())
    assert first == {}
    assert second == {"tp": ["record"]} and active == {"tp"}


def test_install_patches_faust_once_and_is_on_by_default():
    assert install() is True
    assert install() is True
    cls = faust_consumer.Consumer
    assert cls._drain_messages is faust_fastpath._drain_messages
    assert cls._wait_next_records is faust_fastpath._wait_next_records
    assert cls.on_buffer_drop.__name__ == "on_buffer_drop_and_wake"
    assert load_settings({}).faust_fastpath is True
    assert load_settings({"WF_FAUST_FASTPATH": "0"}).faust_fastpath is False


def test_another_faust_version_is_left_as_released(monkeypatch, caplog):
    monkeypatch.setattr(faust_fastpath, "_installed", False)
    monkeypatch.setattr(faust_fastpath.faust, "__version__", "0.16.0")
    drain = faust_consumer.Consumer._drain_messages
    with caplog.at_level("WARNING"):
        assert install() is False
    assert faust_consumer.Consumer._drain_messages is drain
    assert "running Faust's own" in caplog.text


def test_the_worker_keeps_faust_monitor_whose_inbound_times_feed_faust_own_liveness_check():
    # Faust's consumer logs "Stream has not started processing" (an ERROR) for a partition whose
    # monitor never recorded an event: a monitor without per-record calls made that false alarm
    # after 5 minutes of a soak.
    from faust.types import TP

    from streams.app import create_app

    class Owner:
        pass

    class Stream:  # what the monitor reads of a stream: itself and its task's owner, both weakly referenced
        task_owner = Owner()

    app = create_app(load_settings({}))
    tp = TP("wf.calls", 1)
    app.monitor.on_stream_event_in(tp, 0, Stream(), None)
    assert tp in app.monitor.stream_inbound_time


def test_the_worker_bounds_each_fetch_by_max_poll_records_and_refuses_a_bound_past_the_buffer_room():
    from streams.app import create_app
    from streams.settings import MAX_POLL_RECORDS_LIMIT, SettingsError

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
    from streams.settings import MAX_COMMITTERS, SettingsError

    assert load_settings({}).committers == 2
    assert load_settings({"WF_COMMITTERS": "1"}).committers == 1
    for bad in ("0", str(MAX_COMMITTERS + 1)):
        with pytest.raises(SettingsError, match=f"committers must be 1..{MAX_COMMITTERS}"):
            load_settings({"WF_COMMITTERS": bad})
