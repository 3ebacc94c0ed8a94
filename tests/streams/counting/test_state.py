"""Redis state against a real redis-server: atomic commits, exactly-once under redelivery and races, expiry."""

from __future__ import annotations

import asyncio
import json

import pytest

from streams.counting.planner import CALL, UPDATE, Incoming
from streams.counting.rolling import cells_for, minute_of
from streams.counting.state import RedisState, RedisWentBack
from tests.streams.counting.test_planner import T0, call, recs, update

pytestmark = pytest.mark.stack


def run(coro):
    return asyncio.run(coro)


async def _state(settings) -> RedisState:
    return RedisState.from_settings(settings)


def test_applying_the_same_batch_twice_counts_it_once(settings):
    async def go():
        st = await _state(settings)
        batch = recs(CALL, [call(f"c{i}", T0 + i) for i in range(20)])
        await st.apply(batch)
        second = await st.apply(batch)
        counts = await st.bucket_counts()
        await st.close()
        return second, counts

    second, counts = run(go())
    assert second.plan.skipped == 20
    cell8 = cells_for(40.12, -75.34, settings.resolutions)[0]
    assert counts[(minute_of(T0), cell8, "ALL")] == 20


def test_two_writers_racing_on_one_partition_count_each_record_once(settings):
    async def go():
        a, b = await _state(settings), await _state(settings)
        batches = [recs(CALL, [call(f"c{j}-{i}", T0 + i) for i in range(10)], start=j * 10) for j in range(10)]
        # a and b both apply every batch (as a zombie and its successor would), interleaved.
        for batch in batches:
            await asyncio.gather(a.apply(batch), b.apply(batch))
        cell = cells_for(40.12, -75.34, settings.resolutions)[0]
        total = sum(n for (_, c, k), n in (await a.bucket_counts()).items() if k == "ALL" and c == cell)
        await a.close()
        await b.close()
        return total

    assert run(go()) == 100


def test_rolling_windows_sum_the_minute_buckets(settings):
    async def go():
        st = await _state(settings)
        times = [T0 + 60 * m for m in (0, 5, 14, 15, 59, 60, 600, 1400, 1439, 1440)]
        await st.apply(recs(CALL, [call(f"c{i}", t) for i, t in enumerate(times)]))
        cell = cells_for(40.12, -75.34, settings.resolutions)[0]
        end = T0 + 60 * 1440
        got = {w: await st.rolling_count(cell, window=w, end=end) for w in ("15m", "1h", "24h")}
        ems = await st.rolling_count(cell, window="24h", category="EMS", end=end)
        await st.close()
        return got, ems

    got, ems = run(go())
    # windows ending at minute 1440 include minutes (1440-L, 1440]
    assert got == {"15m": 2, "1h": 3, "24h": 9}
    assert ems == 9


def test_buckets_older_than_retention_expire_with_the_watermark(settings):
    async def go():
        st = await _state(settings)
        day = 86400
        await st.apply(recs(CALL, [call("old", T0)]))
        await st.apply(recs(CALL, [call("new", T0 + settings.retention_s + day)], start=1))
        counts = await st.bucket_counts()
        calls_left = await st.client.hexists(st.keys.calls(0), "old")
        await st.close()
        return counts, calls_left

    counts, calls_left = run(go())
    minutes = {m for m, _, _ in counts}
    assert minutes == {minute_of(T0 + settings.retention_s + 86400)}
    assert calls_left == 0


def test_open_incidents_follow_closures_and_time_out_when_never_closed(settings):
    async def go():
        st = await _state(settings)
        await st.apply(recs(CALL, [call("a", T0), call("b", T0 + 1)]))
        await st.apply(recs(UPDATE, [update("a", "closed", T0 + 100)]))
        mid = await st.open_incidents()
        # 7 hours later another call arrives: "b" never closed and times out (6 h).
        await st.apply(recs(CALL, [call("c", T0 + 7 * 3600)], start=2))
        end = await st.open_incidents()
        metrics = await st.metrics()
        await st.close()
        return mid, end, metrics

    mid, end, metrics = run(go())
    cell8 = cells_for(40.12, -75.34, settings.resolutions)[0]
    assert mid[cell8] == 1
    assert end[cell8] == 1
    assert metrics["stale_closed_total"] == 1


def test_response_times_are_summed_per_area(settings):
    async def go():
        st = await _state(settings)
        await st.apply(recs(CALL, [call("a", T0), call("b", T0)]))
        await st.apply(
            recs(UPDATE, [update("a", "dispatched", T0 + 100), update("b", "dispatched", T0 + 300), update("a", "on_scene", T0 + 700)])
        )
        d = await st.response_times("dispatch", T0, T0 + 3600)
        t = await st.response_times("travel", T0, T0 + 3600)
        await st.close()
        return d, t

    d, t = run(go())
    area = cells_for(40.12, -75.34, settings.resolutions)[-1]
    assert d[area]["n"] == 2 and d[area]["sum"] == 400
    assert t[area] == {"n": 1, "sum": 600, "le600": 1}


def test_incoming_from_other_partition_does_not_see_state(settings):
    async def go():
        st = await _state(settings)
        await st.apply([Incoming(CALL, 0, 0, call("a", T0))])
        await st.apply([Incoming(UPDATE, 1, 0, update("a", "closed", T0 + 5))])
        m = await st.metrics()
        await st.close()
        return m

    assert run(go())["updates_pending_total"] == 1


def test_event_zones_are_read_with_their_version_and_bad_records_are_skipped(settings):
    """Only the gateway's event-kind zones come back, decoded; values that are not JSON objects are skipped, not fatal."""

    async def go():
        st = await _state(settings)
        empty = (await st.zones_version(), await st.event_zones())
        event = {"id": "z1", "name": "Parade", "kind": "event", "cells": ["882aac941dfffff"], "active_from": 1, "active_until": 2}
        partner = {**event, "id": "p1", "kind": "partner"}
        await st.client.hset(st.keys.zones, mapping={"z1": json.dumps(event), "p1": json.dumps(partner), "bad": "{not json", "list": "[1]"})
        await st.client.incr(st.keys.zones_version)
        got = (await st.zones_version(), await st.event_zones())
        await st.close()
        return empty, got, event

    empty, got, event = run(go())
    assert empty == (None, (None, []))
    assert got == (1, (1, [event]))


def test_calls_read_ahead_of_updates_still_to_read_time_out_by_the_updates_clock(settings):
    """A backfill: the calls are read 7 h ahead of the updates, which still have records in Kafka. "a" does not time
    out while they do (its "closed" update comes next); once the updates have nothing left, the faster clock rules."""

    async def go():
        st = await _state(settings)
        behind = frozenset({(UPDATE, 0)})
        await st.apply(recs(CALL, [call("a", T0), call("b", T0 + 1)]), catching_up=behind)
        await st.apply(recs(UPDATE, [update("x", "dispatched", T0 - 60)]), catching_up=behind)
        await st.apply(recs(CALL, [call("c", T0 + 7 * 3600)], start=2), catching_up=behind)
        held = await st.open_incidents(), await st.metrics()
        await st.apply(recs(UPDATE, [update("a", "closed", T0 + 100)], start=1))  # nothing left to read after it
        await st.apply(recs(CALL, [call("d", T0 + 7 * 3600 + 1)], start=3))
        after = await st.open_incidents(), await st.metrics()
        await st.close()
        return held, after

    (open_held, metrics_held), (open_after, metrics_after) = run(go())
    cell8 = cells_for(40.12, -75.34, settings.resolutions)[0]
    assert open_held[cell8] == 3 and "stale_closed_total" not in metrics_held
    # "a" closed by its update; "b" (never closed) times out by the calls' clock now; "c" and "d" open
    assert open_after[cell8] == 2 and metrics_after["stale_closed_total"] == 1


def test_call_state_is_kept_for_updates_read_days_behind_their_calls(settings):
    """In a backfill the calls are read days of event time ahead of their updates: a call's state stays until the
    updates reach it (its dispatch update is then applied, not dropped as an orphan)."""

    async def go():
        st = await _state(settings)
        day = 86400
        await st.apply(recs(CALL, [call("a", T0)]))
        await st.apply(recs(UPDATE, [update("x", "dispatched", T0 - 60)]))  # the updates stream, far behind
        await st.apply(recs(CALL, [call("later", T0 + settings.retention_s + 2 * day)], start=1))
        kept = await st.client.hexists(st.keys.calls(0), "a")
        await st.apply(recs(UPDATE, [update("a", "dispatched", T0 + 100)], start=1))
        d = await st.response_times("dispatch", T0, T0 + 3600)
        await st.close()
        return kept, d

    kept, d = run(go())
    assert kept
    assert d[cells_for(40.12, -75.34, settings.resolutions)[-1]]["n"] == 1


def test_alerts_appended_before_the_first_checkpoint_are_not_a_checkpoint(settings):
    # A worker that fed detector input and was killed before its first
    # checkpoint leaves only the ``applied`` offset: its successor starts the
    # detectors from scratch (it crashed with KeyError here once), and the
    # alert made again is not appended twice.
    async def go():
        st = await _state(settings)
        first = await st.append_alerts(7, ['{"id":"a1"}'])
        before = await st.load_detection()
        again = await st.append_alerts(7, ['{"id":"a1"}'])
        await st.commit_detection(7, b"state")
        after = await st.load_detection()
        await st.close()
        return first, before, again, after

    first, before, again, after = run(go())
    assert (first, before, again) == (1, None, 0)
    assert after == (7, b"state")


def test_the_detectors_journal_goes_with_the_alerts_and_a_checkpoint_forgets_what_it_saw_and_other_journals(settings):
    # Entries are added with the alert append (once: a second write of one is a no-op), kept past the fence refusal
    # only when the append is not refused, and a checkpoint stamped (j2, 3) keeps only j2's entries after 3.
    async def go():
        st = await _state(settings)
        keys = st.keys.detector_journal
        await st.append_alerts(1, [], journal=[(7, "j1 7 1 100.5 0"), (8, "j1 8 1 101.0 1")])
        await st.append_alerts(2, ['{"id":"a2"}'], journal=[(2, "j2 2 2 102.25 0"), (3, "j2 3 2 103.0 1")])
        await st.append_alerts(3, [], journal=[(3, "j2 3 2 103.0 1"), (4, "j2 4 3 104.0 0")])
        held = await st.detection_journal()
        with pytest.raises(RedisWentBack):
            await st.append_alerts(5, [], fence=9, journal=[(5, "j2 5 5 105.0 0")])
        refused = await st.client.zcard(keys)
        await st.commit_detection(3, b"state", journal=("j2", 3))
        kept = await st.detection_journal()
        await st.seed_detection(3, b"seeded", force=True)
        seeded = await st.client.exists(keys)
        await st.close()
        return held, refused, kept, seeded

    held, refused, kept, seeded = run(go())
    assert held == ["j2 2 2 102.25 0", "j2 3 2 103.0 1", "j2 4 3 104.0 0", "j1 7 1 100.5 0", "j1 8 1 101.0 1"]
    assert refused == 5, "a fenced append writes no entry"
    assert kept == ["j2 4 3 104.0 0"]
    assert seeded == 0, "a seeded checkpoint starts without a journal"


def test_a_batch_too_large_for_one_command_per_key_is_written_whole(settings):
    # 2,500 new calls on one partition in one batch: every one committed.
    async def go():
        st = await _state(settings)
        n = 2_500
        result = await st.apply(recs(CALL, [call(f"c{i}", T0 + i) for i in range(n)]))
        k = st.keys
        sizes = (
            await st.client.zcard(k.callq(0)),
            await st.client.zcard(k.openq(0)),
            await st.client.hlen(k.calls(0)),
        )
        counts = await st.bucket_counts()
        await st.close()
        return n, result, sizes, counts

    n, result, sizes, counts = run(go())
    assert result.plan.applied == n
    assert sizes == (n, n, n)
    assert sum(v for (_, _, cat), v in counts.items() if cat == "ALL") == n * len(settings.resolutions)


def test_a_checkpoint_behind_the_stored_one_is_refused_and_changes_nothing(settings):
    # A detection worker that lost its partition (a rebalance, a pause) still holds older detectors: its checkpoint
    # must not replace its successor's, which has seen more of the detector input.
    from streams.counting.state import CheckpointFenced

    async def go():
        st = await _state(settings)
        await st.append_alerts(9, ['{"id":"a9"}'])
        await st.commit_detection(10, b"successor")
        with pytest.raises(CheckpointFenced, match="another detection worker"):
            await st.commit_detection(7, b"stale")
        stored = await st.load_detection()
        await st.commit_detection(10, b"same offset, again")  # the same worker saving again at the same offset
        again = await st.load_detection()
        await st.commit_detection(12, b"further")
        further = await st.load_detection()
        await st.close()
        return stored, again, further

    stored, again, further = run(go())
    assert stored == (10, b"successor")
    assert again == (10, b"same offset, again") and further == (12, b"further")
