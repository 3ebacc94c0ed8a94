"""The worker's transport: Faust's aiokafka driver subclassed and registered, used by the worker's app and no other."""

from __future__ import annotations

import asyncio

import faust
import pytest
from faust.transport import consumer as faust_consumer
from faust.transport import producer as faust_producer
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams import faustext
from streams.faustext import fastpath, transport
from streams.runtime.settings import load_settings


def _parts(app: faust.App) -> tuple[type, ...]:
    """The classes of what ``app`` reads and writes Kafka with (built, not started: no broker needed)."""
    return type(app.transport), type(app.consumer), type(app.consumer._thread), type(app.producer), type(app.producer.buffer)


def test_the_worker_app_reads_and_writes_through_the_worker_transport_and_another_app_through_faust_own():
    from streams.runtime.app import create_app

    async def go():
        worker = create_app(load_settings({}))
        other = faust.App("wf-transport-test-other", broker="kafka://127.0.0.1:9092")
        try:
            return _parts(worker), _parts(other), str(worker.conf.broker[0]), str(worker.conf.broker_consumer[0])
        finally:
            other.consumer._thread.thread_loop.close()  # the loop Faust's consumer thread made for itself (never started here)

    worker, other, broker, consumer_broker = asyncio.run(go())
    assert worker == (transport.Transport, transport.Consumer, transport.ConsumerThread, transport.Producer, transport.ProducerBuffer)
    assert other == (
        faust_aiokafka.Transport,
        faust_aiokafka.Consumer,
        faust_aiokafka.AIOKafkaConsumerThread,
        faust_aiokafka.Producer,
        faust_producer.ProducerBuffer,
    )
    assert broker.startswith("kafka://") and consumer_broker.startswith("wfkafka://")


def test_with_the_flag_off_the_worker_app_runs_faust_own_transport_monitor_and_serializers():
    from streams.runtime.app import create_app

    async def go():
        app = create_app(load_settings({"WF_FAUST_FASTPATH": "0"}))
        return _parts(app), type(app.monitor), {type(agent.channel.schema) for agent in app.agents.values()}

    parts, monitor, schemas = asyncio.run(go())
    assert parts[:2] == (faust_aiokafka.Transport, faust_aiokafka.Consumer)
    assert parts[4] is faust_producer.ProducerBuffer
    assert monitor is faust.Monitor
    assert schemas == {faust.Schema}


def test_installing_replaces_none_of_faust_consumer_methods():
    assert faustext.install(load_settings({})) is True
    for name in ("_drain_messages", "getmany", "_wait_next_records", "on_buffer_drop", "resume_partitions"):
        assert getattr(faust_consumer.Consumer, name).__module__ == "faust.transport.consumer", name
    assert faust_producer.ProducerBuffer.wait_until_ebb.__module__ == "faust.transport.producer"
    assert faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer.__module__ == "faust.transport.drivers.aiokafka"


def test_the_worker_consumer_runs_the_fast_path_fetch_loop_and_wakes_the_fetcher_when_a_partition_resumes():
    consumer_cls = transport.Consumer
    assert consumer_cls._drain_messages is fastpath._drain_messages
    assert consumer_cls._wait_next_records is fastpath._wait_next_records
    assert consumer_cls.getmany is fastpath._getmany
    assert transport.ProducerBuffer.wait_until_ebb is fastpath._wait_until_ebb

    from faust.types import TP

    from streams.runtime.app import create_app

    async def go():
        consumer = create_app(load_settings({})).consumer
        tp = TP("wf.calls", 0)
        woken = []
        for resume in (lambda: consumer.resume_partitions({tp}), lambda: consumer.on_buffer_drop(tp)):
            fastpath._resumed(consumer).clear()
            resume()
            woken.append(fastpath._resumed(consumer).is_set())
        return woken, tp in consumer._get_active_partitions()

    woken, active = asyncio.run(go())
    assert woken == [True, True]
    assert active


def test_the_worker_producer_buffer_replaces_faust_own_and_keeps_what_faust_gave_it():
    from streams.runtime.app import create_app

    async def go():
        app = create_app(load_settings({}))
        producer = app.producer
        return producer, producer.buffer

    producer, buffer = asyncio.run(go())
    assert type(buffer) is transport.ProducerBuffer
    assert buffer.app is producer.app
    assert buffer.beacon.parent is producer.beacon
    # Faust's own buffer is out of the producer's service graph
    assert [type(node.data) for node in producer.beacon.children].count(faust_producer.ProducerBuffer) == 0


def test_the_metrics_counters_come_from_the_worker_consumer_only():
    from streams.runtime.app import create_app

    async def go():
        on, off = load_settings({}), load_settings({"WF_FAUST_FASTPATH": "0"})
        return faustext.deliveries(on, create_app(on).consumer), faustext.deliveries(off, create_app(off).consumer)

    on, off = asyncio.run(go())
    assert on == {"fetch_records_delivered_total": 0, "fetch_deliveries_blocked_total": 0}
    assert off == {}


def test_the_registry_names_the_worker_transport_only_while_installed():
    settings = load_settings({})
    faustext.uninstall()
    try:
        assert not transport.registered()
        assert faustext.app_options(settings) == {}
        with pytest.raises(ModuleNotFoundError, match="wfkafka"):
            faust.transport.by_url(transport.broker_url("127.0.0.1:9092"))
        assert faustext.install(settings) is True
        assert faust.transport.by_url(transport.broker_url("127.0.0.1:9092")) is transport.Transport
        assert faust.transport.by_url("kafka://127.0.0.1:9092") is faust_aiokafka.Transport
    finally:
        faustext.install(settings)
