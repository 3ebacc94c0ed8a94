"""The intake on the real broker and Redis: what a push puts on the topics, retries, refusals and limits."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
import redis

from infra.processes import free_port
from streams.intake.core import IntakeKeys
from streams.topics import CALLS, DEADLETTER, INCIDENT_UPDATES
from tests.stackutil import read_topic

from .conftest import OTHER_SECRET, body_of, call, make_intake, push, serving, signed, update

pytestmark = pytest.mark.stack


def _count(settings, base: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    from streams.topics import topic_name

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        topic = topic_name(settings.topic_prefix, base)
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def test_a_batch_of_calls_and_updates_is_on_the_topics_keyed_by_call_id_with_the_source_set(settings):
    body = body_of(call("A1"), update("A1", "dispatched"), call("A2", phone="555-0100"), update("A2", "closed"))

    async def go():
        async with serving(make_intake(settings)) as client:
            return await push(client, body)

    status, answer, _ = asyncio.run(go())
    assert status == 200, answer
    assert (answer["accepted"], answer["duplicate"], answer["refused"]) == (4, 0, 0)
    assert [r["id"] for r in answer["records"]] == ["A1", "A1|dispatched|2026-01-01T10:05:00Z", "A2", "A2|closed|2026-01-01T10:05:00Z"]
    calls = read_topic(settings, CALLS, expect=2)
    updates = read_topic(settings, INCIDENT_UPDATES, expect=2)
    assert sorted(c["id"] for c in calls) == ["A1", "A2"]
    assert {c["source"] for c in calls} | {u["source"] for u in updates} == {"dev-cad"}
    assert all("phone" not in c for c in calls)
    assert sorted((u["call_id"], u["status"]) for u in updates) == [("A1", "dispatched"), ("A2", "closed")]


def test_a_retried_push_same_body_or_re_signed_later_adds_nothing_and_no_second_dead_letter(settings):
    body = body_of(call("R1"), update("R1", "dispatched"), {"type": "call", "v": 1, "id": "bad"})

    async def go():
        async with serving(make_intake(settings)) as client:
            first = await push(client, body)
            again = await push(client, body)
            resigned = await push(client, body, ts=int(__import__("time").time()) + 30)
            spaced = await push(client, json.dumps({"events": json.loads(body)["events"]}, indent=2).encode())
            return first, again, resigned, spaced

    first, again, resigned, spaced = asyncio.run(go())
    assert [r["outcome"] for r in first[1]["records"]] == ["accepted", "accepted", "refused"]
    for status, answer, _ in (again, resigned, spaced):
        assert status == 200
        assert [r["outcome"] for r in answer["records"]] == ["duplicate", "duplicate", "refused"]
        assert answer["records"][2]["reason"] == "missing_field"
    assert (_count(settings, CALLS), _count(settings, INCIDENT_UPDATES), _count(settings, DEADLETTER)) == (1, 1, 1)
    letter = read_topic(settings, DEADLETTER)[0]
    assert letter["topic"] == "intake:dev-cad" and letter["reason"] == "missing_field" and letter["offset"] == 2
    assert json.loads(base64.b64decode(letter["original_b64"])) == {"type": "call", "v": 1, "id": "bad"}


def test_a_call_for_another_agency_is_refused_per_record_and_dead_lettered_once(settings):
    body = body_of(call("W1", agency="not-mine"), call("W2"))

    async def go():
        async with serving(make_intake(settings)) as client:
            return await push(client, body), await push(client, body)

    (status, answer, _), _again = asyncio.run(go())
    assert status == 200
    assert answer["records"][0]["outcome"] == "refused" and answer["records"][0]["reason"] == "wrong_agency"
    assert "dev-agency" in answer["records"][0]["detail"]
    assert answer["records"][1]["outcome"] == "accepted"
    assert _count(settings, DEADLETTER) == 1
    assert [c["id"] for c in read_topic(settings, CALLS)] == ["W2"]


def test_an_update_is_accepted_only_for_a_call_its_source_sent(settings):
    async def go():
        async with serving(make_intake(settings)) as client:
            first = await push(client, body_of(call("O1")))
            later = await push(client, body_of(update("O1", "on_scene")))
            theirs = await push(client, body_of(update("O1", "closed")), source="other-cad", secret=OTHER_SECRET)
            stolen = await push(client, body_of(call("O1", agency="other-agency")), source="other-cad", secret=OTHER_SECRET)
            orphan = await push(client, body_of(update("NEVER", "closed")))
            return first, later, theirs, stolen, orphan

    first, later, theirs, stolen, orphan = asyncio.run(go())
    assert first[1]["accepted"] == 1 and later[1]["accepted"] == 1
    assert theirs[1]["records"][0]["reason"] == "unknown_call"
    assert stolen[1]["records"][0]["reason"] == "duplicate_id"
    assert orphan[1]["records"][0]["reason"] == "unknown_call"
    assert _count(settings, INCIDENT_UPDATES) == 1 and _count(settings, CALLS) == 1


def test_a_status_timed_before_its_call_is_moved_within_the_tolerance_and_refused_beyond_it_in_a_later_request(settings):
    """As files are read: a dispatch 60 s before the received time (clock skew) is put at the received time, one
    10 min before is refused alone as status_before_received (the call, sent in an earlier request, stays)."""

    async def go():
        async with serving(make_intake(settings)) as client:
            await push(client, body_of(call("T1", at="2026-01-01T10:00:00Z")))
            return await push(
                client, body_of(update("T1", "dispatched", "2026-01-01T09:59:00Z"), update("T1", "en_route", "2026-01-01T09:50:00Z"))
            )

    status, answer, _ = asyncio.run(go())
    assert status == 200
    assert [(r["outcome"], r.get("reason")) for r in answer["records"]] == [("accepted", None), ("refused", "status_before_received")]
    updates = read_topic(settings, INCIDENT_UPDATES, expect=1)
    assert [(u["status"], u["at"]) for u in updates] == [("dispatched", "2026-01-01T10:00:00Z")]
    letters = read_topic(settings, DEADLETTER, expect=1)
    assert [d["reason"] for d in letters] == ["status_before_received"]


def test_bad_signature_and_unknown_source_get_the_same_401(settings):
    body = body_of(call("S1"))

    async def go():
        async with serving(make_intake(settings)) as client:
            bad = await client.post("/v1/events", data=body, headers={**signed(body), "X-Watchfloor-Signature": "sha256=" + "0" * 64})
            unknown = await client.post("/v1/events", data=body, headers=signed(body, source="nobody"))
            stale = await client.post("/v1/events", data=body, headers=signed(body, ts=1_000_000_000))
            return [(r.status, await r.text()) for r in (bad, unknown, stale)]

    answers = asyncio.run(go())
    assert [s for s, _ in answers] == [401, 401, 401]
    assert answers[0][1] == answers[1][1] == answers[2][1]
    assert _count(settings, CALLS) == 0


def test_an_oversize_body_is_413_and_a_malformed_one_400_with_a_clear_message(settings):
    big = body_of(*[call(f"B{i}", call_type="X" * 100) for i in range(30)])  # over slow-cad's 4 KiB
    too_many = body_of(*[call(f"M{i}") for i in range(501)])
    broken = b'{"events": [1, '

    async def go():
        async with serving(make_intake(settings)) as client:
            return (
                await push(client, big, source="slow-cad"),
                await push(client, too_many),
                await push(client, broken),
            )

    (s1, a1, _), (s2, a2, _), (s3, a3, _) = asyncio.run(go())
    assert s1 == 413 and "4096" in a1["error"]
    assert s2 == 413 and "501 events" in a2["error"]
    assert s3 == 400 and "not valid JSON" in a3["error"]


def test_a_source_that_spent_its_burst_is_answered_429_with_the_seconds_to_wait(settings):
    intake = make_intake(settings)
    intake.buckets["slow-cad"].take(500, now=__import__("time").monotonic())  # the burst spent

    async def go():
        async with serving(intake) as client:
            return await push(client, body_of(call("T1", agency="slow-agency"), call("T2", agency="slow-agency")), source="slow-cad")

    status, answer, headers = asyncio.run(go())
    assert status == 429
    assert headers["Retry-After"] == "2" and "1 events a second" in answer["error"]
    assert _count(settings, CALLS) == 0


def test_with_kafka_unreachable_the_answer_is_503_and_no_key_is_written_then_the_same_push_is_accepted(settings):
    body = body_of(call("K1"), update("K1", "dispatched"), {"type": "nonsense"})
    r = redis.Redis.from_url(settings.redis_url)
    pattern = f"{IntakeKeys(settings.redis_prefix).audit_prefix}:seen:*"

    async def down():
        async with serving(make_intake(settings, bootstrap=f"127.0.0.1:{free_port()}", timeout_s=2.0)) as client:
            return await push(client, body)

    async def up():
        async with serving(make_intake(settings)) as client:
            return await push(client, body)

    status, answer, headers = asyncio.run(down())
    assert status == 503 and int(headers["Retry-After"]) >= 1 and "Kafka" in answer["error"]
    assert list(r.scan_iter(pattern)) == []
    assert r.get(f"{settings.redis_prefix}:intake:owner:K1") is None
    status, answer, _ = asyncio.run(up())
    assert status == 200 and [x["outcome"] for x in answer["records"]] == ["accepted", "accepted", "refused"]
    accepted_calls = [x["id"] for x in answer["records"] if x["outcome"] == "accepted" and "|" not in x["id"]]
    assert [c["id"] for c in read_topic(settings, CALLS)] == accepted_calls
    assert _count(settings, INCIDENT_UPDATES) == 1 and _count(settings, DEADLETTER) == 1
    assert len(list(r.scan_iter(pattern))) == 3
    r.close()


def test_a_record_another_request_is_publishing_is_answered_503_until_its_claim_ends(settings):
    r = redis.Redis.from_url(settings.redis_url)
    keys = IntakeKeys(settings.redis_prefix)
    r.set(keys.claim("dev-cad", "call", "P1"), "pending", ex=7)  # as an intake that stopped mid-request leaves it

    async def go():
        async with serving(make_intake(settings)) as client:
            blocked = await push(client, body_of(call("P1"), call("P2")))
            assert r.get(keys.claim("dev-cad", "call", "P2")) is None  # P2's claim was released
            r.delete(keys.claim("dev-cad", "call", "P1"))  # the claim expires
            later = await push(client, body_of(call("P1"), call("P2")))
            return blocked, later

    (s1, a1, h1), (s2, a2, _) = asyncio.run(go())
    assert s1 == 503 and 1 <= int(h1["Retry-After"]) <= 7 and "index 0" in a1["error"]
    assert s2 == 200 and a2["accepted"] == 2
    r.close()


def test_every_request_is_audited_and_counted_in_metrics(settings):
    async def go():
        async with serving(make_intake(settings)) as client:
            await push(client, body_of(call("M1"), call("M2", agency="x")))
            await client.post("/v1/events", data=b"{}", headers=signed(b"{}", source="nobody"))
            health = await client.get("/healthz")
            text = await (await client.get("/metrics")).text()
            return health.status, await health.json(), text

    status, health, text = asyncio.run(go())
    assert status == 200 and health == {"ok": True, "kafka": True, "redis": True}
    assert 'watchfloor_intake_records_total{source="dev-cad",outcome="accepted",reason=""} 1' in text
    assert 'watchfloor_intake_records_total{source="dev-cad",outcome="refused",reason="wrong_agency"} 1' in text
    assert 'watchfloor_intake_requests_total{status="200"} 1' in text and 'watchfloor_intake_requests_total{status="401"} 1' in text
    assert 'watchfloor_intake_newest_event_seconds{source="dev-cad"} 1767261600.0' in text
    assert 'watchfloor_intake_lag_seconds{source="dev-cad"}' in text
    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    entries = r.xrange(f"{settings.redis_prefix}:intake:audit")
    r.close()
    assert [(e["action"], e["actor"], json.loads(e["detail"])["status"]) for _, e in entries] == [
        ("intake", "dev-cad", 200), ("intake", "", 401),
    ]  # fmt: skip
    assert json.loads(entries[0][1]["detail"])["accepted"] == 1 and json.loads(entries[1][1]["detail"])["claimed_source"] == "nobody"


def test_each_request_leaves_the_sources_door_status_and_an_empty_batch_is_a_heartbeat(settings):
    """The gateway's "Doors in" reads it back: a push with calls moves last_call_at, an empty batch only last_request_at."""
    from streams.intake.doors import door_key, doors_key, read_door

    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    key = door_key(settings.redis_prefix, "http:dev-cad")

    async def go():
        async with serving(make_intake(settings)) as client:
            s1 = (await push(client, body_of(call("D1"))))[0]
            first = r.hgetall(key)
            s2 = (await push(client, body_of()))[0]
            return s1, first, s2, r.hgetall(key)

    try:
        s1, first, s2, second = asyncio.run(go())
        members = r.smembers(doors_key(settings.redis_prefix))
    finally:
        r.close()
    assert (s1, s2) == (200, 200)
    assert members == {"http:dev-cad"}
    assert first["last_call_at"] == first["last_request_at"] and first["newest_event_at"] == "1767261600.000"
    assert second["last_call_at"] == first["last_call_at"] and float(second["last_request_at"]) >= float(first["last_request_at"])
    t = float(second["last_request_at"])
    assert read_door("http:dev-cad", second, t + 1).health == "ok"
    assert read_door("http:dev-cad", second, t + 3 * 60 + 5).health == "silent"  # three missed heartbeats of the default 60 s


def test_metrics_histogram_every_answer_and_each_kafka_wait_without_a_server_timing_header_by_default(settings):
    async def go():
        async with serving(make_intake(settings)) as client:
            _, _, with_events = await push(client, body_of(call("H1"), update("H1", "dispatched")))
            _, _, refused_only = await push(client, body_of(call("H2", agency="not-mine")))
            await client.post("/v1/events", data=b"{}", headers=signed(b"{}", source="nobody"))
            return with_events, refused_only, await (await client.get("/metrics")).text()

    with_events, refused_only, text = asyncio.run(go())
    assert "Server-Timing" not in with_events and "Server-Timing" not in refused_only
    assert "watchfloor_intake_answer_seconds_count 3" in text  # the 401 too
    assert "watchfloor_intake_kafka_ack_seconds_count 1" in text  # the refused record's dead letter is not an event
    assert 'watchfloor_intake_answer_seconds_bucket{le="+Inf"} 3' in text
    assert "watchfloor_intake_stage_seconds" not in text


def test_with_stage_timing_each_answer_says_how_long_each_stage_took(settings):
    from dataclasses import replace

    from streams.intake.timing import STAGES, parse_server_timing

    intake = make_intake(settings)
    intake.settings = replace(intake.settings, stage_timing=True)

    async def go():
        async with serving(intake) as client:
            status, _, headers = await push(client, body_of(call("T1"), update("T1", "dispatched"), call("T2", agency="not-mine")))
            _, _, heartbeat = await push(client, body_of())
            return status, headers, heartbeat, await (await client.get("/metrics")).text()

    status, headers, heartbeat, text = asyncio.run(go())
    assert status == 200
    stages = parse_server_timing(headers["Server-Timing"])
    # every stage ran (events, a dead letter, the audit) but "door": the status hash went with the done marks
    assert list(stages) == [*(s for s in STAGES if s != "door"), "total"]
    assert all(v >= 0 for v in stages.values())
    assert sum(v for k, v in stages.items() if k != "total") == pytest.approx(stages["total"], abs=1e-5)
    # a heartbeat has nothing to mark done: its door status is written alone
    assert list(parse_server_timing(heartbeat["Server-Timing"])) == [
        "read",
        "auth",
        "examine",
        "owners",
        "door",
        "answer",
        "audit",
        "total",
    ]
    assert 'watchfloor_intake_stage_seconds_count{stage="kafka"} 1' in text
    assert 'watchfloor_intake_stage_seconds_count{stage="audit"} 2' in text


def test_a_door_status_that_cannot_be_written_is_logged_and_the_records_are_still_marked_done(settings, caplog):
    """The status hash goes in the done marks' round trip; its failure alone does not turn the answer into a 503."""
    from streams.intake.doors import door_key

    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    r.set(door_key(settings.redis_prefix, "http:dev-cad"), "not a hash")  # HSET on it: WRONGTYPE

    async def go():
        async with serving(make_intake(settings)) as client:
            first = await push(client, body_of(call("DW1")))
            again = await push(client, body_of(call("DW1")))
            return first, again

    try:
        (s1, a1, _), (s2, a2, _) = asyncio.run(go())
    finally:
        r.close()
    assert (s1, a1["accepted"]) == (200, 1)
    assert (s2, a2["duplicate"]) == (200, 1)  # marked done: the retry is a duplicate
    assert "its door status was not written" in caplog.text and "WRONGTYPE" in caplog.text


def test_an_address_flooding_bad_signatures_is_answered_429_and_audited_once_a_second_not_per_request(settings):
    body = body_of(call("F1"))
    bad = {**signed(body), "X-Watchfloor-Signature": "sha256=" + "0" * 64}

    async def go():
        intake = make_intake(settings)
        async with serving(intake) as client:
            statuses = [(await client.post("/v1/events", data=body, headers=bad)).status for _ in range(60)]
            # a signed push from the same address still goes through: only refusals count against it
            ok, _, _ = await push(client, body)
            text = await (await client.get("/metrics")).text()
        return statuses, ok, text

    statuses, ok, text = asyncio.run(go())
    # the default rate is 5 a second in bursts of 20: the first 20 (and a few refilled) are 401, the rest 429
    assert 20 <= statuses.count(401) < 30 and statuses.count(429) == 60 - statuses.count(401)
    assert statuses[:20] == [401] * 20 and statuses[-1] == 429
    assert ok == 200
    assert f'watchfloor_intake_requests_total{{status="429"}} {statuses.count(429)}' in text
    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    entries = [e for _, e in r.xrange(f"{settings.redis_prefix}:intake:audit")]
    r.close()
    refused = [e for e in entries if e["action"] == "intake" and json.loads(e["detail"])["status"] == 401]
    flood = [json.loads(e["detail"]) for e in entries if e["action"] == "rate_limited"]
    assert len(refused) == statuses.count(401)
    # every refusal past the rate is in the audit stream, summed in a few records (one per address a second), not one each
    assert sum(d["refused"] for d in flood) == statuses.count(429) and 1 <= len(flood) <= 3
