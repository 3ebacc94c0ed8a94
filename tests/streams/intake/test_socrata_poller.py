"""The poller against a local server that speaks the SODA API (tests/streams/intake/fakesoda.py): exactly once, through faults."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter

import pytest
from aiohttp.test_utils import TestServer

from streams.ingest.mapping import builtin_mappings
from streams.intake.poller import FeedConfig, MemoryStore, Poller, PollError, RedisStore, SodaClient, redis_keys
from streams.intake.publish import KafkaUnavailable, Publisher
from streams.topics import CALLS, DEADLETTER
from tests.stackutil import read_topic
from tests.streams.intake.fakesoda import FakeSoda

MAPPING = builtin_mappings()["seattle-fire-soda"]


def call(n: int, minute: int, second: int = 0, **extra: object) -> dict:
    return {
        "incident_number": f"F{n:06d}", "type": "Aid Response", "datetime": f"2024-01-01T00:{minute:02d}:{second:02d}.000",
        "latitude": "47.6", "longitude": "-122.3", "address": "1st Av / Pike St",
        "report_location": {"type": "Point", "coordinates": [-122.3, 47.6]}, **extra,
    }  # fmt: skip


class Collect:
    """A sink that keeps what it was sent; ``fail`` sends raise KafkaUnavailable first."""

    def __init__(self, fail: int = 0) -> None:
        self.events: list[dict] = []
        self.letters: list = []
        self.fail = fail

    async def send_events(self, events):
        if self.fail:
            self.fail -= 1
            raise KafkaUnavailable("planned: not acknowledged")
        self.events += [e.to_json() for e in events]

    async def send_dead_letters(self, letters):
        self.letters += list(letters)

    def calls(self) -> list[str]:
        return [e["id"] for e in self.events if e["type"] == "call"]


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def serve(fake: FakeSoda) -> TestServer:
    server = TestServer(fake.app())
    await server.start_server()
    return server


def poller(server: TestServer, sink, store, sleeps=None, **config) -> tuple[Poller, SodaClient]:
    url = str(server.make_url("/resource/kzjm-xkqj.json"))
    cfg = FeedConfig(url=url, mapping=MAPPING, name="sea", since="2023-12-31T00:00:00.000", page_size=10, **config)
    client = SodaClient(url)
    return Poller(cfg, client, sink, store, sleep=sleeps or Sleeps(), rng=lambda: 0.5), client


def run(fake: FakeSoda, steps, **kw):
    """Serve ``fake``, build a poller, run ``await steps(poller)``; the poller's store and sink come from ``kw`` or are new."""

    async def go():
        server = await serve(fake)
        sink, store = kw.pop("sink", Collect()), kw.pop("store", MemoryStore())
        p, client = poller(server, sink, store, **kw)
        try:
            await p.start()
            return await steps(p)
        finally:
            await client.close()
            await server.close()

    return asyncio.run(go())


def test_every_row_is_read_once_across_pages_and_a_second_poll_sends_nothing():
    """25 rows over pages of 10 (overlapping by one): 25 calls sent once; polling again re-reads the lookback and sends nothing."""
    fake = FakeSoda()
    fake.publish(*(call(i, i // 2, 30 * (i % 2)) for i in range(25)))
    sink = Collect()

    async def steps(p):
        first = await p.poll_once()
        second = await p.poll_once()
        return first, second

    first, second = run(fake, steps, sink=sink)
    assert sorted(sink.calls()) == sorted(f"F{i:06d}" for i in range(25))
    assert len(sink.calls()) == 25
    assert first["sent_calls"] == 25 and first["read"] == 25
    assert second["sent_calls"] == 0 and second["skipped|already_sent"] == second["read"] > 0
    assert [r["$offset"] for r in fake.requests[:3]] == ["0", "9", "18"]  # one row of overlap between pages
    assert fake.requests[0]["$order"] == ":updated_at, :id"


def test_a_429_is_waited_out_for_its_retry_after_and_the_page_asked_again():
    """A 429 with Retry-After: 7 makes the poller wait 7 s, count a failure, then read the same page; nothing lost or doubled."""
    fake = FakeSoda()
    fake.publish(*(call(i, i) for i in range(15)))
    fake.on_request(2, lambda: fake.fail_next(429, {"Retry-After": "7"}))
    sink, sleeps, store = Collect(), Sleeps(), MemoryStore()

    async def steps(p):
        return await p.poll_once(), p.status

    totals, status = run(fake, steps, sink=sink, sleeps=sleeps, store=store)
    assert sleeps.waits == [7.0]
    assert fake.requests[1] == fake.requests[2]  # the refused page, asked again as it was
    assert sorted(sink.calls()) == sorted(f"F{i:06d}" for i in range(15)) and len(sink.calls()) == 15
    assert status.counts["page_failures|rate_limited"] == 1 and status.consecutive_failures == 0
    assert store.status["health"] in ("ok", "starting")


def test_a_500_in_the_middle_of_the_pages_is_retried_with_backoff_without_losing_or_doubling_a_row():
    """Two 500s on the third page: the page is retried after growing backoff waits; each of the 30 rows is sent once."""
    fake = FakeSoda()
    fake.publish(*(call(i, i % 60) for i in range(30)))
    fake.on_request(3, lambda: (fake.fail_next(500), fake.fail_next(503)))
    sink, sleeps = Collect(), Sleeps()
    checkpoints: list = []
    store = MemoryStore()
    commit = store.commit

    async def spy(checkpoint, writes, forget):
        checkpoints.append((checkpoint.position, sorted(writes)))
        await commit(checkpoint, writes, forget)

    store.commit = spy  # type: ignore[method-assign]

    async def steps(p):
        return await p.poll_once()

    run(fake, steps, sink=sink, sleeps=sleeps, store=store)
    assert len(sleeps.waits) == 2 and sleeps.waits[1] > sleeps.waits[0] > 0
    assert sorted(sink.calls()) == sorted(f"F{i:06d}" for i in range(30)) and len(sink.calls()) == 30
    assert len(checkpoints) == 4  # one per page read: 10, 9, 9, 2 new rows (pages overlap by one)
    positions = [c[0] for c in checkpoints]
    assert positions == sorted(positions)


def test_rows_published_late_at_the_checkpoints_own_time_and_earlier_are_read():
    """Following the time column: a row published later with the checkpoint's time, and one 5 minutes earlier, are both read."""
    fake = FakeSoda()
    fake.publish(call(1, 10), call(2, 12))
    sink = Collect()

    async def steps(p):
        await p.poll_once()
        fake.publish(call(3, 12), call(4, 7))  # same minute as the checkpoint; within the lookback
        return await p.poll_once()

    totals = run(fake, steps, sink=sink, cursor="datetime", lookback_s=600.0)
    assert sink.calls() == ["F000001", "F000002", "F000004", "F000003"]  # the second poll reads 00:07, (00:10, 00:12 known), 00:12
    assert totals["sent_calls"] == 2 and totals["skipped|already_sent"] == 2
    assert "datetime >= '2024-01-01T00:02:00.000'" in fake.requests[-1]["$where"]  # 00:12 minus the 600 s lookback


def test_an_edited_row_is_not_counted_twice_and_the_edit_is_counted():
    """A row whose coordinates change after it was sent reappears (new :updated_at) and is not re-sent; the edit is counted once."""
    fake = FakeSoda()
    fake.publish(call(1, 5), call(2, 6))
    sink = Collect()

    async def steps(p):
        await p.poll_once()
        fake.edit("F000001", latitude="47.7")
        second = await p.poll_once()
        third = await p.poll_once()
        return second, third, p.status

    second, third, status = run(fake, steps, sink=sink)
    assert sink.calls() == ["F000001", "F000002"]
    assert second["skipped|edited"] == 1 and third["skipped|edited"] == 0
    assert status.counts["skipped|edited"] == 1


def test_a_restart_from_the_checkpoint_reads_nothing_twice_and_misses_nothing():
    """A second poller on the same store resumes: nothing already sent is sent again, rows published meanwhile are."""
    fake = FakeSoda()
    fake.publish(*(call(i, i) for i in range(12)))
    sink, store = Collect(), MemoryStore()

    async def first(p):
        return await p.poll_once()

    run(fake, first, sink=sink, store=store)
    fake.publish(call(12, 40), call(13, 41))

    async def again(p):
        assert p.checkpoint.position is not None
        return await p.poll_once()

    totals = run(fake, again, sink=sink, store=store)
    assert sorted(sink.calls()) == sorted(f"F{i:06d}" for i in range(14)) and len(sink.calls()) == 14
    assert totals["sent_calls"] == 2
    assert fake.requests[-1]["$where"].startswith(":updated_at >= ")


def test_a_row_edited_while_the_pages_are_read_makes_the_poller_read_again_from_the_checkpoint():
    """An edit between two page requests moves a row to the end (:updated_at): the overlap row is gone, the read restarts, none lost."""
    fake = FakeSoda()
    fake.publish(*(call(i, i) for i in range(25)))
    fake.on_request(2, lambda: fake.edit("F000002", type="Medic Response"))
    sink = Collect()

    async def steps(p):
        return await p.poll_once()

    totals = run(fake, steps, sink=sink)
    assert totals["restarts"] == 1
    assert sorted(sink.calls()) == sorted(f"F{i:06d}" for i in range(25)) and len(sink.calls()) == 25


def test_kafka_not_acknowledging_a_page_keeps_the_checkpoint_and_sends_the_page_again():
    """While Kafka refuses a page the checkpoint does not move; once it acknowledges, each call was sent once."""
    fake = FakeSoda()
    fake.publish(call(1, 1), call(2, 2))
    sink, sleeps, store = Collect(fail=2), Sleeps(), MemoryStore()

    async def steps(p):
        return await p.poll_once()

    run(fake, steps, sink=sink, sleeps=sleeps, store=store)
    assert sink.calls() == ["F000001", "F000002"] and len(sleeps.waits) == 2
    assert store.commits == 1


def test_an_unreadable_row_goes_to_the_dead_letter_topic_once_with_the_replay_envelope_fields():
    """A row with an unreadable time is one dead letter (origin poll:sea, the record's bytes), not one per poll."""
    fake = FakeSoda()
    fake.publish(call(1, 1), {**call(2, 2), "datetime": "not a time"})
    sink = Collect()

    async def steps(p):
        await p.poll_once()
        return await p.poll_once()

    second = run(fake, steps, sink=sink)
    assert [(d.reason, d.origin) for d in sink.letters] == [("impossible_timestamp", "poll:sea")]
    assert b'"incident_number":"F000002"' in sink.letters[0].raw
    assert second["skipped|already_refused"] == 1


def test_a_row_without_a_call_time_is_read_and_dead_lettered_once_as_the_file_door_refuses_it():
    """The --since floor is on the time column, and a null is never >= anything in SoQL: the query lets nulls
    through, so the row is refused as missing_field (as the replay refuses it) instead of silently never read."""
    fake = FakeSoda()
    fake.publish(call(1, 1), {**call(2, 2), "datetime": None})
    sink = Collect()

    async def steps(p):
        await p.poll_once()
        return await p.poll_once()

    second = run(fake, steps, sink=sink)
    assert sink.calls() == ["F000001"]
    assert [(d.reason, d.origin) for d in sink.letters] == [("missing_field", "poll:sea")]
    assert second["skipped|already_refused"] == 1


def test_after_n_failures_in_a_row_the_status_says_failing_and_the_poller_keeps_trying():
    """Six 500s in a row: the status hash says failing after the fifth, the poller keeps trying and then succeeds."""
    fake = FakeSoda()
    fake.publish(call(1, 1))
    for _ in range(6):
        fake.fail_next(500)
    store, sleeps = MemoryStore(), Sleeps()
    seen: list[str] = []
    write = store.write_status

    async def spy(fields):
        seen.append(fields["health"])
        await write(fields)

    store.write_status = spy  # type: ignore[method-assign]

    async def steps(p):
        return await p.poll_once()

    totals = run(fake, steps, store=store, sleeps=sleeps)
    assert totals["sent_calls"] == 1 and len(sleeps.waits) == 6
    assert seen[:6] == ["starting"] * 4 + ["failing"] * 2
    assert store.status["consecutive_failures"] == "0" and store.status["last_success_at"]


def test_a_wrong_dataset_stops_the_poller_with_an_error_that_says_what_to_fix():
    """A 404 will not change by retrying: PollError naming the status and what to check."""
    fake = FakeSoda(dataset="abcd-efgh")

    async def steps(p):
        return await p.poll_once()

    with pytest.raises(PollError, match="HTTP 404.*check the URL"):
        run(fake, steps)


@pytest.mark.stack
def test_against_the_real_kafka_and_redis_the_topics_hold_the_tables_calls_exactly_once(settings):
    """Through a 500, a 429, an edit, late rows and a restart, the calls topic holds each of the table's calls once."""
    import redis.asyncio as aioredis

    fake = FakeSoda()
    no_id = {k: v for k, v in call(99, 1).items() if k != "incident_number"}
    fake.publish(*(call(i, i % 60, i // 60) for i in range(40)), no_id)
    fake.on_request(2, lambda: fake.fail_next(500))
    fake.on_request(4, lambda: fake.fail_next(429, {"Retry-After": "1"}))

    async def go():
        server = await serve(fake)
        redis = aioredis.from_url(settings.redis_url)
        try:
            for round_ in range(2):  # the second round is a restart: a new publisher, store and poller on the same keys
                publisher = Publisher(settings.kafka_bootstrap, settings.topic_prefix)
                store = RedisStore(redis, settings.redis_prefix, "sea")
                p, client = poller(server, publisher, store)
                try:
                    await p.start()
                    await p.poll_once()
                    if round_ == 0:
                        fake.edit("F000003", latitude="47.9")
                        fake.publish(call(40, 39, 59), call(41, 0, 0))
                        await p.poll_once()
                        fake.publish(call(42, 50))
                        first = await redis.hgetall(redis_keys(settings.redis_prefix, "sea")[0])
                finally:
                    await client.close()
                    await publisher.stop()
            status = await redis.hgetall(redis_keys(settings.redis_prefix, "sea")[0])
            return [{k.decode(): v.decode() for k, v in h.items()} for h in (first, status)]
        finally:
            await redis.aclose()
            await server.close()

    first, status = asyncio.run(go())
    calls = read_topic(settings, CALLS, expect=43)
    expected = {f"F{i:06d}" for i in range(43)}
    assert Counter(c["id"] for c in calls) == Counter(expected)
    letters = read_topic(settings, DEADLETTER)
    assert [(d["reason"], d["topic"]) for d in letters] == [("missing_field", "poll:sea")]
    assert b'"datetime":"2024-01-01T00:01:00.000"' in base64.b64decode(letters[0]["original_b64"])
    assert first["count|skipped|edited"] == "1" and first["count|sent_calls"] == "42"  # the first process: 40 + 2 late rows
    assert "count|skipped|edited" not in status and status["count|sent_calls"] == "1"  # the restarted one counts since its start
    assert status["health"] in ("ok", "quiet")
    assert float(status["lag_s"]) > 0 and status["position"].endswith("Z")
