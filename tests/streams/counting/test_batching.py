"""The counting agent's batcher: order, sizes, waiting, backpressure (pure asyncio)."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from streams.counting.batching import Batcher


def run(coro):
    return asyncio.run(coro)


def test_items_come_out_in_order_in_batches_no_larger_than_max_size_while_adding_goes_on():
    async def go():
        b: Batcher[int] = Batcher(max_size=100, within=0.005, max_pending=250)
        rng = random.Random(7)
        got: list[list[int]] = []

        async def produce():
            for i in range(5000):
                if b.add(i):
                    await b.room()
                if rng.random() < 0.01:
                    await asyncio.sleep(rng.random() * 0.01)

        async def consume():
            n = 0
            while n < 5000:
                batch = await b.next_batch()
                got.append(batch)
                n += len(batch)
                if rng.random() < 0.2:
                    await asyncio.sleep(0.002)  # a commit taking its time

        await asyncio.gather(produce(), consume())
        return got

    batches = run(go())
    assert [i for batch in batches for i in batch] == list(range(5000))
    assert max(len(batch) for batch in batches) == 100
    assert all(batch for batch in batches)


def test_a_full_batch_is_given_at_once_and_a_partial_one_after_within():
    async def go():
        b: Batcher[int] = Batcher(max_size=3, within=0.2)
        for i in range(4):
            b.add(i)
        t0 = time.monotonic()
        full = await b.next_batch()
        t1 = time.monotonic()
        rest = await b.next_batch()
        t2 = time.monotonic()
        return full, rest, t1 - t0, t2 - t1

    full, rest, waited_full, waited_rest = run(go())
    assert full == [0, 1, 2] and rest == [3]
    assert waited_full < 0.05
    assert 0.15 <= waited_rest < 1.0


def test_when_the_reader_has_nothing_more_buffered_a_partial_batch_goes_at_once():
    """A lone call at a quiet time goes to its committer as soon as it is read, not ``within`` later."""

    async def go():
        b: Batcher[int] = Batcher(max_size=100, within=5.0)
        taker = asyncio.ensure_future(b.next_batch())
        await asyncio.sleep(0)
        b.add(1)
        await asyncio.sleep(0.01)
        waiting = not taker.done()
        b.ready()
        return waiting, await asyncio.wait_for(taker, 1.0)

    waiting, batch = run(go())
    assert waiting, "without ready() the batch waits for its time limit"
    assert batch == [1]


def test_ready_batches_come_at_most_one_per_within():
    """Under load every fetch brings a few records and the reader is often idle: batches still come at most one per ``within``."""

    async def go():
        b: Batcher[int] = Batcher(max_size=100, within=0.2)
        b.add(1)
        b.ready()
        first = await b.next_batch()  # no batch given yet: at once
        t0 = time.monotonic()
        b.add(2)
        b.ready()
        second = await b.next_batch()
        return first, second, time.monotonic() - t0

    first, second, waited = run(go())
    assert first == [1] and second == [2]
    assert 0.15 <= waited < 1.0


def test_adding_after_ready_waits_for_the_reader_to_say_so_again():
    """ready() holds until the next add: records arriving meanwhile are not cut off mid-fetch."""

    async def go():
        b: Batcher[int] = Batcher(max_size=100, within=0.2)
        b.add(1)
        b.ready()
        b.add(2)
        t0 = time.monotonic()
        batch = await b.next_batch()
        return batch, time.monotonic() - t0

    batch, waited = run(go())
    assert batch == [1, 2]
    assert 0.15 <= waited < 1.0  # the time limit, as before ready()


def test_a_waiting_taker_gets_the_batch_as_soon_as_it_fills():
    async def go():
        b: Batcher[int] = Batcher(max_size=2, within=5.0)
        taker = asyncio.ensure_future(b.next_batch())
        b.add(1)
        await asyncio.sleep(0.01)
        assert not taker.done()  # one item, and the oldest has not waited 5 s
        t0 = time.monotonic()
        b.add(2)
        batch = await asyncio.wait_for(taker, 1.0)
        return batch, time.monotonic() - t0

    batch, waited = run(go())
    assert batch == [1, 2] and waited < 0.5


def test_adding_says_when_max_pending_items_wait_and_room_comes_when_a_batch_is_taken():
    async def go():
        b: Batcher[int] = Batcher(max_size=2, within=1.0, max_pending=4)
        assert not any(b.add(i) for i in range(3))
        assert b.add(3)  # 4 wait now
        blocked = asyncio.ensure_future(b.room())
        await asyncio.sleep(0.02)
        was_blocked = not blocked.done()
        await b.next_batch()
        await asyncio.wait_for(blocked, 1.0)
        return was_blocked, len(b)

    was_blocked, left = run(go())
    assert was_blocked and left == 2


@pytest.mark.parametrize(
    "kwargs", [{"max_size": 0, "within": 1.0}, {"max_size": 5, "within": 0}, {"max_size": 5, "within": 1.0, "max_pending": 4}]
)
def test_impossible_sizes_are_refused(kwargs):
    with pytest.raises(ValueError):
        Batcher(**kwargs)
