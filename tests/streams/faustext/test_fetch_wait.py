"""The worker's consumers ask the broker to hold an empty fetch 100 ms, not Faust's 1.5 s (see ``streams.faustext.fetch_wait``)."""

from __future__ import annotations

import asyncio

import pytest
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from streams.faustext import fetch_wait
from streams.runtime.settings import load_settings


def _worker_consumer_hold(*, as_released: bool = False, then_install: int | None = None) -> int:
    """The fetch hold (ms) of the aiokafka consumer Faust creates for a worker app (not started: no broker needed);
    ``as_released``: by Faust's own method; ``then_install``: a hold installed after the app is created."""
    from streams.runtime.app import create_app

    async def go() -> int:
        app = create_app(load_settings({}))  # installs streams.faustext.fetch_wait
        if then_install is not None:
            fetch_wait.install(then_install)
        create = AIOKafkaConsumerThread._create_worker_consumer
        if as_released:
            create = create.watchfloor_original
        consumer = create(app.consumer._thread, app.transport)
        try:
            return consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()

    return asyncio.run(go())


def test_the_worker_consumer_holds_a_fetch_100_ms_where_faust_alone_holds_it_1_5_s():
    assert _worker_consumer_hold() == fetch_wait.FETCH_MAX_WAIT_MS == 100
    assert _worker_consumer_hold(as_released=True) == 1500


def test_install_is_idempotent_and_a_later_value_applies_to_consumers_created_afterwards():
    fetch_wait.install()
    original = AIOKafkaConsumerThread._create_worker_consumer.watchfloor_original
    try:
        fetch_wait.install(40)
        fetch_wait.install(40)
        # each install wraps Faust's own method, not the previous wrapper
        assert AIOKafkaConsumerThread._create_worker_consumer.watchfloor_original is original
        assert _worker_consumer_hold(then_install=40) == 40
    finally:
        fetch_wait.install()
    assert _worker_consumer_hold() == 100


@pytest.mark.parametrize("bad", [0, -5, 1501])
def test_a_hold_outside_what_kafka_and_faust_allow_is_refused(bad):
    with pytest.raises(ValueError, match="1..1500"):
        fetch_wait.install(bad)
