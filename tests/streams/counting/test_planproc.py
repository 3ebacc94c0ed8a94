"""The plan process: the same counts as planning in the worker, Redis errors that the worker waits out, a dead child noticed."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.counting.planner import CALL, UPDATE, CallState, Snapshot
from streams.counting.planproc import OffloadedState, PlanProcessDied
from streams.counting.state import RedisState, StateError
from tests.streams.counting.test_planner import T0, call, recs, update

pytestmark = pytest.mark.stack


def run(coro):
    return asyncio.run(coro)


def _batches() -> list:
    # updates before their calls (held), calls, a duplicate id, a malformed record, a redelivery
    return [
        recs(UPDATE, [update(f"c{i}", "dispatched", T0 + 60 + i) for i in range(5)], partition=1),
        recs(CALL, [call(f"c{i}", T0 + i) for i in range(10)] + [call("c3", T0 + 20), b"{oops"], partition=1),
        recs(UPDATE, [update(f"c{i}", "closed", T0 + 900 + i) for i in range(10)], partition=1, start=5),
        recs(CALL, [call(f"c{i}", T0 + i) for i in range(4)], partition=1),
    ]


async def _apply_all(st: RedisState) -> tuple[list, dict, dict]:
    results = [await st.apply(b) for b in _batches()]
    counts, metrics = await st.bucket_counts(), await st.metrics()
    await st.close()
    return results, counts, metrics


def test_the_plan_process_counts_exactly_what_planning_in_the_worker_counts(settings):
    here = run(_apply_all(RedisState.from_settings(settings)))
    there = run(_apply_all(OffloadedState.from_settings(dataclasses.replace(settings, redis_prefix=settings.redis_prefix + "x"))))
    assert there[1] == here[1] and there[1]
    assert there[2] == here[2]
    for mine, theirs in zip(here[0], there[0], strict=True):
        assert (theirs.plan.applied, theirs.plan.skipped, theirs.plan.points, theirs.plan.offsets) == (
            mine.plan.applied, mine.plan.skipped, mine.plan.points, mine.plan.offsets,
        )  # fmt: skip
        refused = [[(d.reason, d.source.offset) for d in r.plan.dead_letters] for r in (mine, theirs)]
        assert refused[0] == refused[1]
    assert there[0][3].plan.skipped == 4  # the redelivered batch


def test_redis_unreachable_from_the_plan_process_is_the_same_error_the_worker_waits_out(settings):
    async def go():
        st = OffloadedState.from_settings(dataclasses.replace(settings, redis_url="redis://127.0.0.1:1/0"))
        try:
            with pytest.raises(StateError) as caught:
                await st.apply(recs(CALL, [call("a", T0)]))
        finally:
            await st.close()
        return caught.value

    err = run(go())
    assert isinstance(err.__cause__, RedisConnectionError)


def test_a_plan_process_that_died_fails_the_batch_and_the_next_batch_starts_a_new_one(settings):
    async def go():
        st = OffloadedState.from_settings(settings)
        await st.apply(recs(CALL, [call("a", T0)]))
        first = st._proc.pid
        os.kill(first, signal.SIGKILL)
        with pytest.raises(PlanProcessDied, match="died"):
            await st.apply(recs(CALL, [call("b", T0 + 1)], start=1))
        await st.apply(recs(CALL, [call("b", T0 + 1)], start=1))
        second = st._proc.pid
        counts = await st.bucket_counts()
        await st.close()
        return first, second, counts

    first, second, counts = run(go())
    assert first != second
    assert sum(n for (_, _, cat), n in counts.items() if cat == "ALL") == 3 * 2  # two calls, three resolutions


def test_the_snapshot_check_sees_the_applied_offsets_and_can_stop_the_commit(settings):
    seen: list[Snapshot] = []

    class Lost(Exception):
        pass

    async def go():
        st = OffloadedState.from_settings(settings)
        await st.apply(recs(CALL, [call("a", T0), call("b", T0)]))

        async def check(snap: Snapshot) -> None:
            seen.append(snap)
            raise Lost

        with pytest.raises(Lost):
            await st.apply(recs(CALL, [call("c", T0)], start=2), check_snapshot=check)
        applied = await st.applied_offsets()
        await st.close()
        return applied

    applied = run(go())
    assert seen[0].offsets == {(CALL, 0): 1}
    assert applied == {(CALL, 0): 1}  # nothing of the checked batch was committed


def test_a_plan_process_that_died_between_planning_and_committing_is_not_asked_to_commit(settings):
    async def go():
        st = OffloadedState.from_settings(settings)
        plan, _ = await st._plan_once(recs(CALL, [call("a", T0)]))
        proc = st._proc
        proc.kill()
        await proc.wait()
        with pytest.raises(PlanProcessDied, match="between planning and committing"):
            await st._commit_plan(plan, Snapshot())
        result = await st.apply(recs(CALL, [call("a", T0)]))  # planned again, by a new one
        applied = await st.applied_offsets()
        await st.close()
        return result, applied

    result, applied = run(go())
    assert result.plan.applied == 1 and applied == {(CALL, 0): 0}


async def _apply_all_ahead(st: OffloadedState) -> tuple[list, dict, dict, int, int]:
    """Every batch of :func:`_batches`, each planned while the one before it committed."""
    batches = _batches()
    results = []
    for i, batch in enumerate(batches):
        following = batches[i + 1] if i + 1 < len(batches) else None
        results.append(await st.apply(batch, take_next=lambda b=following: None if b is None else (b, frozenset())))
    counts, metrics = await st.bucket_counts(), await st.metrics()
    await st.close()
    return results, counts, metrics, st.planned_ahead, st.used_ahead


def test_batches_planned_during_the_commit_before_them_count_what_one_by_one_counts(settings):
    # Each batch depends on the one before: held updates meet their calls, then the calls close.
    # A plan made on Redis before the commit before it would hold the updates again.
    here = run(_apply_all(RedisState.from_settings(settings)))
    results, counts, metrics, planned, used = run(
        _apply_all_ahead(OffloadedState.from_settings(dataclasses.replace(settings, redis_prefix=settings.redis_prefix + "x")))
    )
    assert (planned, used) == (3, 3)
    assert counts == here[1] and counts
    assert metrics == here[2]
    for mine, theirs in zip(here[0], results, strict=True):
        assert (theirs.plan.applied, theirs.plan.skipped, theirs.plan.points, theirs.plan.offsets) == (
            mine.plan.applied, mine.plan.skipped, mine.plan.points, mine.plan.offsets,
        )  # fmt: skip


def test_a_plan_made_ahead_is_used_only_for_that_very_batch(settings):
    async def go():
        st = OffloadedState.from_settings(settings)
        first = recs(CALL, [call("a", T0)])
        second = recs(UPDATE, [update("a", "dispatched", T0 + 30)])
        await st.apply(first, take_next=lambda: (second, frozenset()))
        # an equal copy, not the list handed over: planned again, and counted once
        again = await st.apply(list(second))
        calls = await st.client.hgetall(st.keys.calls(0))
        await st.close()
        return st.planned_ahead, st.used_ahead, again, calls

    planned, used, again, calls = run(go())
    assert (planned, used) == (1, 0)
    assert again.plan.applied == 1
    (text,) = calls.values()
    assert CallState.from_text(text).dispatched == T0 + 30


def test_nothing_is_planned_ahead_of_a_commit_that_another_worker_beat(settings):
    async def go():
        st = OffloadedState.from_settings(settings)
        other = RedisState.from_settings(settings)
        first = recs(CALL, [call("a", T0)])
        second = recs(CALL, [call("b", T0 + 1)], start=1)
        moved = []

        async def move_offset_once(plan) -> None:  # another worker commits the partition first
            if not moved:
                moved.append(True)
                await other.client.set(other.keys.offset(CALL, 0), "-1")

        result = await st.apply(first, move_offset_once, take_next=lambda: (second, frozenset()))
        ahead_after_failed_commit = st.planned_ahead  # the retry planned it ahead, the failed commit did not
        await st.apply(second)
        counts = await st.bucket_counts()
        await st.close()
        await other.close()
        return result, ahead_after_failed_commit, st.used_ahead, counts

    result, planned, used, counts = run(go())
    assert result.attempts == 2
    assert (planned, used) == (1, 1)
    assert sum(n for (_, _, cat), n in counts.items() if cat == "ALL") == 2 * len(settings.resolutions)


def test_a_stop_between_planning_and_committing_commits_the_batch_and_later_batches_are_counted_without_a_plan_process(settings):
    # The worker closes its states at shutdown (on_before_shutdown) while its committers still run: here
    # the stop comes as the batch's dead letters and detector input are published, its plan in the child.
    async def go():
        st = OffloadedState.from_settings(settings)
        closing: list[asyncio.Task] = []

        async def stop_now(plan) -> None:
            closing.append(asyncio.ensure_future(st.close()))
            await asyncio.sleep(0.2)  # the close is under way when the commit is asked for

        first = await st.apply(recs(CALL, [call("a", T0), b"{oops"]), stop_now)
        child = st._proc
        await closing[0]
        after = await st.apply(recs(CALL, [call("b", T0 + 1)], start=2))  # a batch the committer took before its cancel
        started = st._proc
        counts = await st.bucket_counts()
        applied = await st.applied_offsets()
        await st.close()
        return first, child, after, started, counts, applied

    first, child, after, started, counts, applied = run(go())
    assert first.attempts == 1 and len(first.plan.dead_letters) == 1  # committed by the child, not planned again
    assert after.plan.applied == 1
    assert child is not None and child.returncode == 0  # closed once its plan was committed
    assert started is None  # no plan process started after the stop
    assert applied == {(CALL, 0): 2}
    assert sum(n for (_, _, cat), n in counts.items() if cat == "ALL") == 2 * len(settings.resolutions)


def test_a_stop_while_the_first_plan_is_being_made_closes_the_plan_process_after_its_commit(settings):
    async def go():
        st = OffloadedState.from_settings(settings)
        applying = asyncio.ensure_future(st.apply(recs(CALL, [call("a", T0)])))
        await asyncio.sleep(0)  # the plan process is starting for the first plan
        await st.close()
        result = await applying
        applied = await st.applied_offsets()
        proc = st._proc
        await st.close()
        return result, applied, proc

    result, applied, proc = run(go())
    assert result.plan.applied == 1 and applied == {(CALL, 0): 0}
    assert proc is None
