"""Claims are leases (a dead intake holds a retry up for one lease), and a retry looks on Kafka for what an unfinished attempt wrote."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
import redis

from streams.intake.core import DONE, PENDING, IntakeKeys
from streams.intake.publish import KafkaUnavailable
from streams.intake.settings import load_intake_settings
from streams.runtime.settings import SettingsError
from streams.topics import CALLS, INCIDENT_UPDATES
from tests.stackutil import read_topic

from .conftest import body_of, call, make_intake, push, serving, update

pytestmark = pytest.mark.stack

LEASE_S = 0.5


def test_the_claims_of_a_request_waiting_on_kafka_for_several_leases_are_renewed_and_a_retry_meanwhile_waits_one_lease(settings):
    intake = make_intake(settings)
    intake.settings = replace(intake.settings, claim_lease_s=LEASE_S)
    real_send = intake.publisher.send_events

    async def slow_send(events):  # Kafka slow to acknowledge: the request outlives three leases
        await asyncio.sleep(3 * LEASE_S)
        return await real_send(events)

    intake.publisher.send_events = slow_send  # type: ignore[method-assign]
    key = IntakeKeys(settings.redis_prefix).claim("dev-cad", "call", "L1")
    body = body_of(call("L1"))

    async def go():
        async with serving(intake) as client:
            first = asyncio.ensure_future(push(client, body))
            await asyncio.sleep(2 * LEASE_S)
            with redis.Redis.from_url(settings.redis_url, decode_responses=True) as r:
                mid = r.get(key), r.pttl(key)
            retry = await push(client, body)  # a retry while the first is under way
            status, answer, _ = await first
            with redis.Redis.from_url(settings.redis_url, decode_responses=True) as r:
                after = r.get(key), r.pttl(key)
            return mid, retry, (status, answer), after, set(intake.claims)

    mid, (s2, a2, h2), (s1, a1), after, held = asyncio.run(go())
    assert mid[0] == PENDING and 0 < mid[1] <= LEASE_S * 1000  # renewed past its first lease, never longer than one
    assert s2 == 503 and int(h2["Retry-After"]) == 1, a2
    assert s1 == 200 and a1["accepted"] == 1
    assert after[0] == DONE and after[1] > 3600 * 1000  # the renewal left the done mark's TTL alone
    assert held == set()


def test_a_claim_lease_outside_half_a_second_to_a_minute_is_refused_naming_the_variable():
    with pytest.raises(SettingsError, match="WF_INTAKE_CLAIM_LEASE_S must be in"):
        load_intake_settings({"WF_INTAKE_CLAIM_LEASE_S": "0.1"})
    assert load_intake_settings({"WF_INTAKE_CLAIM_LEASE_S": "2"}).claim_renew_s == 0.4


def test_records_an_unfinished_attempt_put_on_kafka_are_answered_duplicate_on_the_retry_and_not_written_again(settings):
    # The first attempt's send reaches Kafka for its first call and then fails (as a send that timed out here but was
    # written, or an intake that died before its done marks): the retry finds that call on Kafka and sends only the rest.
    intake = make_intake(settings)
    real_send = intake.publisher.send_events
    body = body_of(call("R1"), call("R2"), update("R1", "dispatched"))

    async def half_send(events):
        await real_send(events[:1])
        raise KafkaUnavailable("not acknowledged in time (the test)")

    async def go():
        async with serving(intake) as client:
            intake.publisher.send_events = half_send  # type: ignore[method-assign]
            first = await push(client, body)
            intake.publisher.send_events = real_send  # type: ignore[method-assign]
            second = await push(client, body)
            third = await push(client, body)
        return first, second, third

    (s1, _, _), (s2, a2, _), (s3, a3, _) = asyncio.run(go())
    assert s1 == 503
    assert s2 == 200 and [r["outcome"] for r in a2["records"]] == ["duplicate", "accepted", "accepted"]
    assert s3 == 200 and a3["duplicate"] == 3
    assert sorted(c["id"] for c in read_topic(settings, CALLS, expect=2, timeout_s=5)) == ["R1", "R2"]
    assert [u["call_id"] for u in read_topic(settings, INCIDENT_UPDATES, expect=1, timeout_s=5)] == ["R1"]
    with redis.Redis.from_url(settings.redis_url, decode_responses=True) as r:
        assert list(r.scan_iter(f"{settings.redis_prefix}:intake:tried:*")) == []  # finished: nothing left to look for
