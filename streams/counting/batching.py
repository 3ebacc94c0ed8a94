"""Batches for the counting agent, filled while the previous batch commits.

Faust's ``take_events`` stops filling its buffer while the agent works on the
batch it gave (it awaits the agent before adding the next event), so reading
and committing take turns. :class:`Batcher` lets them overlap: the agent adds
every event as it arrives and a committer takes batches in arrival order, one
at a time, while the agent goes on adding. The agent waits only when
``max_pending`` events are already waiting (backpressure), so a slow Redis
still slows the reading, as it must.

A batch is given when it is full (``max_size``), when its oldest event has
waited ``within`` seconds, as with ``take_events``, or when the reader says it
has nothing more buffered (:meth:`Batcher.ready`: the records that came in
one fetch are all here, and waiting longer would only wait for the next
fetch) and the last batch was given ``within`` seconds ago or more. At a few
calls a second a call then goes to its committer as soon as it is read, not
``within`` later; at a thousand a second, when every fetch brings a few
records, batches still come at most one per ``within`` (each costs a plan, a
Redis commit and a detector-input message: one per fetch took the worker
several times the CPU). Pure asyncio, no Faust.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    """A FIFO of items given out in batches.

    >>> async def demo():
    ...     b = Batcher(max_size=2, within=0.01)
    ...     for i in range(3):
    ...         b.add(i)
    ...     return await b.next_batch(), await b.next_batch()
    >>> asyncio.run(demo())
    ([0, 1], [2])
    """

    def __init__(self, max_size: int, within: float, *, max_pending: int | None = None) -> None:
        if max_size < 1 or within <= 0:
            raise ValueError(f"max_size must be >= 1 and within > 0, found {max_size}, {within}")
        self.max_size = max_size
        self.within = within
        self.max_pending = max_pending if max_pending is not None else 2 * max_size
        if self.max_pending < max_size:
            raise ValueError(f"max_pending ({self.max_pending}) must hold at least one batch ({max_size})")
        self._items: list[T] = []
        #: when the first item of each batch-to-be (items 0, max_size, 2 max_size, ...) arrived
        self._starts: list[float] = []
        self._changed = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        #: the reader had nothing more buffered after the last item it added: what waits may go now
        self._ready = False
        #: when the last batch was given (event loop time)
        self._last_take = float("-inf")

    def __len__(self) -> int:
        return len(self._items)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def add(self, item: T) -> bool:
        """Add one item; True when ``max_pending`` items now wait: then await :meth:`room` before adding more.

        (Not a coroutine: the agent adds every record, and most never wait.)
        """
        items = self._items
        if len(items) % self.max_size == 0:
            # the first item of a future batch: batches are taken whole, or all that waits
            self._starts.append(self._now())
        items.append(item)
        self._ready = False
        n = len(items)
        if n == 1 or n == self.max_size:
            self._changed.set()
        return n >= self.max_pending

    def ready(self) -> None:
        """The reader has nothing more buffered: the items waiting may go as soon as the last batch is ``within`` old.

        (Until the next :meth:`add`.)

        >>> async def demo():
        ...     b = Batcher(max_size=10, within=60.0)
        ...     b.add("a"); b.add("b"); b.ready()
        ...     return await b.next_batch()   # no batch was given yet: at once
        >>> asyncio.run(demo())
        ['a', 'b']
        """
        if self._items:
            self._ready = True
            self._changed.set()

    async def room(self) -> None:
        """Return once fewer than ``max_pending`` items wait."""
        while len(self._items) >= self.max_pending:
            self._room.clear()
            await self._room.wait()

    async def next_batch(self) -> list[T]:
        """The oldest items, up to ``max_size``: once that many wait, once the oldest has waited ``within`` seconds, or
        once the reader is :meth:`ready` and the last batch was given ``within`` seconds ago."""
        while True:
            if len(self._items) >= self.max_size:
                break
            if self._items:
                deadline = self._starts[0] + self.within
                if self._ready:
                    deadline = min(deadline, self._last_take + self.within)
                left = deadline - self._now()
                if left <= 0:
                    break
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except TimeoutError:
                    break
            else:
                self._changed.clear()
                await self._changed.wait()
        return self._take()

    def take_full(self) -> list[T] | None:
        """The oldest ``max_size`` items if that many wait, else None (not a coroutine: nothing is awaited).

        >>> async def demo():
        ...     b = Batcher(max_size=2, within=1.0)
        ...     return b.add("a"), b.take_full(), b.add("b"), b.take_full(), len(b)
        >>> asyncio.run(demo())
        (False, None, False, ['a', 'b'], 0)
        """
        return self._take() if len(self._items) >= self.max_size else None

    def _take(self) -> list[T]:
        batch = self._items[: self.max_size]
        del self._items[: self.max_size]
        del self._starts[0]
        if not self._items:
            self._ready = False
        self._last_take = self._now()
        self._room.set()
        return batch
