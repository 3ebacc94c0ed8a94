"""The worker's consumers ask the broker to hold an empty fetch 100 ms, not Faust's 1.5 s (see ``streams.faustext.fetch_wait``)."""

from __future__ import annotations

import asyncio

import pytest

from streams.faustext import fetch_wait
from streams.runtime.settings import load_settings


def _worker_consumer_hold(env: dict[str, str]) -> int:
    """The fetch hold (ms) of the aiokafka consumer the worker's app creates with these ``WF_*`` settings (not started: no broker)."""
    from streams.runtime.app import create_app

    async def go() -> int:
        app = create_app(load_settings(env))
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()

    return asyncio.run(go())


def test_the_worker_consumer_holds_a_fetch_100_ms_where_faust_alone_holds_it_1_5_s():
    assert _worker_consumer_hold({}) == fetch_wait.FETCH_MAX_WAIT_MS == 100
    assert _worker_consumer_hold({"WF_FAUST_FASTPATH": "0"}) == 1500


@pytest.mark.parametrize("bad", [0, -5, 1501])
def test_a_hold_outside_what_kafka_and_faust_allow_is_refused(bad):
    class Consumer:
        _fetch_max_wait_ms = 1500

    with pytest.raises(ValueError, match="1..1500"):
        fetch_wait.hold_fetches(Consumer(), bad)


def test_a_consumer_without_the_attribute_keeps_its_hold_and_says_so(caplog):
    class Other:
        pass

    consumer = Other()
    with caplog.at_level("WARNING", logger="streams.faustext.fetch_wait"):
        fetch_wait.hold_fetches(consumer)
    assert not hasattr(consumer, "_fetch_max_wait_ms")
    assert "held as Faust asks" in caplog.text
