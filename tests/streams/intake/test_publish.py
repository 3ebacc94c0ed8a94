"""The shared publisher on the real broker: records acknowledged where the contract says, KafkaUnavailable otherwise."""

from __future__ import annotations

import asyncio
import base64

import pytest

from infra.processes import free_port
from streams.ingest.schema import Call, Category, IncidentUpdate, Status
from streams.intake.publish import DeadLetter, KafkaUnavailable, Publisher
from streams.topics import CALLS, DEADLETTER, INCIDENT_UPDATES
from tests.stackutil import read_topic

CALL = Call("C-1", 1.7e9, Category.EMS, "FALL", 2, 40.1, -75.3, "dev-agency", "dev")
UPDATE = IncidentUpdate("C-1", Status.DISPATCHED, 1.7e9 + 60, "M-1", "dev")


@pytest.mark.stack
def test_events_and_dead_letters_are_on_their_topics_once_a_send_returns(settings):
    async def go():
        pub = Publisher(settings.kafka_bootstrap, settings.topic_prefix)
        try:
            await pub.start()
            await pub.send_events([CALL, UPDATE])
            await pub.send_dead_letters([DeadLetter("not_json", "broken", "intake:dev", b"{x", "abc", 4)])
        finally:
            await pub.stop()

    asyncio.run(go())
    calls = read_topic(settings, CALLS)
    updates = read_topic(settings, INCIDENT_UPDATES)
    letters = read_topic(settings, DEADLETTER)
    assert [c["id"] for c in calls] == ["C-1"] and calls[0]["agency"] == "dev-agency"
    assert [(u["call_id"], u["status"]) for u in updates] == [("C-1", "dispatched")]
    assert len(letters) == 1
    assert letters[0]["topic"] == "intake:dev" and letters[0]["reason"] == "not_json" and letters[0]["offset"] == 4
    assert base64.b64decode(letters[0]["original_b64"]) == b"{x"


def test_a_publisher_pointed_at_a_closed_port_raises_kafka_unavailable_on_start_and_on_send():
    async def go():
        pub = Publisher(f"127.0.0.1:{free_port()}", "nowhere", timeout_s=2.0)
        try:
            with pytest.raises(KafkaUnavailable, match="cannot reach Kafka"):
                await pub.start()
            with pytest.raises(KafkaUnavailable, match="cannot reach Kafka"):
                await pub.send_events([CALL])
            assert not pub.started
            assert await pub.ping() is False
        finally:
            await pub.stop()

    asyncio.run(go())


@pytest.mark.parametrize(("kw", "bad"), [({"linger_ms": -1}, "-1"), ({"max_batch_bytes": 100}, "100"), ({"timeout_s": 0}, "0")])
def test_a_publisher_refuses_a_negative_linger_a_tiny_batch_or_no_timeout(kw, bad):
    with pytest.raises(ValueError, match=bad):
        Publisher("127.0.0.1:9", "x", **kw)


def test_a_publisher_sends_at_once_in_batches_a_whole_request_fits_in_by_default():
    pub = Publisher("127.0.0.1:9", "x")
    # 500 records (the most a request takes) of about 300 bytes on one partition: one batch, one produce request
    assert (pub.linger_ms, pub.max_batch_bytes >= 500 * 300) == (0, True)
