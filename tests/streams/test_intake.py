"""The counting agent's bulk intake (streams.intake) over a stand-in for a Faust stream's channel queue.

The real thing runs in every pipeline test (counts exact, SIGKILL, a second
worker joining and leaving, which is where stale generations occur).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from streams.intake import event_batches


class Flow:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active


def fake_stream(queue: asyncio.Queue, generation: int = 1):
    app = SimpleNamespace(flow_control=Flow(), consumer_generation_id=generation)
    return SimpleNamespace(app=app, channel=SimpleNamespace(queue=queue), should_stop=False)


def event(offset: int, generation: int = 1):
    return SimpleNamespace(offset=offset, message=SimpleNamespace(generation_id=generation))


async def take(stream, max_n: int, batches: int) -> list[list[int]]:
    out = []
    async for events in event_batches(stream, max_n):
        out.append([e.offset for e in events])
        if len(out) == batches:
            break
    return out


def test_every_waiting_event_is_taken_at_once_up_to_max_n_in_arrival_order():
    async def go():
        q: asyncio.Queue = asyncio.Queue()
        for i in range(7):
            q.put_nowait(event(i))
        return await take(fake_stream(q), 3, 3)

    assert asyncio.run(go()) == [[0, 1, 2], [3, 4, 5], [6]]


def test_it_waits_for_the_first_event_of_a_batch():
    async def go():
        q: asyncio.Queue = asyncio.Queue()
        stream = fake_stream(q)
        task = asyncio.ensure_future(take(stream, 10, 1))
        await asyncio.sleep(0.05)
        assert not task.done()
        q.put_nowait(event(5))
        return await asyncio.wait_for(task, 1)

    assert asyncio.run(go()) == [[5]]


def test_events_of_an_earlier_generation_are_dropped_unacknowledged():
    async def go():
        q: asyncio.Queue = asyncio.Queue()
        for i, gen in enumerate([1, 2, 2, 1]):
            q.put_nowait(event(i, gen))
        q.put_nowait(event(9, 1))
        return await take(fake_stream(q, generation=2), 4, 1)

    assert asyncio.run(go()) == [[1, 2]]


def test_nothing_is_given_while_faust_has_stopped_the_flow():
    async def go():
        q: asyncio.Queue = asyncio.Queue()
        stream = fake_stream(q)
        stream.app.flow_control.active = False
        q.put_nowait(event(0))
        task = asyncio.ensure_future(take(stream, 10, 1))
        await asyncio.sleep(0.05)
        stream.app.flow_control.active = True
        q.put_nowait(event(1))
        return await asyncio.wait_for(task, 1)

    assert asyncio.run(go()) == [[1]]


def test_max_n_must_be_positive():
    async def go():
        async for _ in event_batches(fake_stream(asyncio.Queue()), 0):
            pass

    with pytest.raises(ValueError, match="max_n must be >= 1"):
        asyncio.run(go())
