"""Faust's fetch loop without four tasks per record, and without a one-second nap when its buffers are full.

Faust's consumer hands every record to its conductor through
``Service.wait_first(callback(message), suspend_flow.wait())``: four new tasks
and an ``asyncio.wait`` per record, so that a rebalance can interrupt a
delivery blocked on a full buffer. Nearly always the delivery does not block
(the conductor puts the event in a queue with room), and those tasks are
about 40 % of the framework's cost per record (a bare Faust agent: 13,177
records/s as released, 22,196 with this module, ``bench/throughput.py``). :func:`run_until_blocked` runs the
delivery in the fetch loop itself up to its first real suspension; only a
delivery that does block is finished in a task, under the same
``wait_first`` as before.

When every partition's buffer is full, the fetcher sleeps a whole second
before looking again, although the buffers drain in milliseconds (the
counting agent commits a batch of 1,000 records in tens of them). The patched
fetcher waits for the first partition that resumes instead, up to that second;
and while some partitions are paused, a fetch for the others waits
:data:`BUFFERED_FETCH_WAIT_S` for new records, not a second, before it looks
again at which may read. Last, the loop gives the other tasks a turn every
:data:`YIELD_EVERY` records instead of every 100.

:func:`install` patches ``faust.transport.consumer.Consumer`` once per process.
The patched methods are copies of faust-streaming 0.15.3's with only these
changes, so another version of Faust is left as released (with a warning).
``WF_FAUST_FASTPATH=0`` leaves Faust as released too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import faust
from faust.transport import consumer as _consumer

log = logging.getLogger(__name__)

#: The faust-streaming versions whose consumer methods the patched ones copy.
PATCHED_VERSIONS = ("0.15.",)

_installed = False

#: Records the fetch loop delivers between two turns it gives the other tasks. Faust's 100 are up
#: to about 3 ms of delivery that every other task (the counting agent's committer, timers, the
#: metrics page) may wait for at each await; no change in throughput was measured either way.
YIELD_EVERY = 10

#: How long a fetch waits for new records while some partitions are paused for full buffers.
BUFFERED_FETCH_WAIT_S = 0.01


def run_until_blocked(coro: Coroutine[Any, Any, Any]) -> Coroutine[Any, Any, Any] | None:
    """Run ``coro`` in the caller until it finishes (None) or first waits (a coroutine that finishes it).

    The caller must await what this returns, if anything, as it would have awaited ``coro``:

    >>> async def no_wait():
    ...     return 1
    >>> run_until_blocked(no_wait()) is None
    True
    >>> async def waits(log):
    ...     log.append("before")
    ...     await asyncio.sleep(0.001)
    ...     log.append("after")
    >>> async def demo():
    ...     log = []
    ...     rest = run_until_blocked(waits(log))
    ...     seen = list(log)
    ...     await rest
    ...     return seen, log
    >>> asyncio.run(demo())
    (['before'], ['before', 'after'])
    """
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    return _finish(coro, yielded)


async def _finish(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:  # noqa: ANN401 -- any coroutine's value
    """Go on with ``coro`` as its task would: wait for what it yielded, resume it, until it returns.

    The awaited future's result or exception reaches ``coro`` when it resumes
    (``Future.__await__`` reads it); a cancellation of this task cancels that
    future, so ``coro`` sees it too.
    """
    while True:
        try:
            if yielded is None:  # a bare yield: one turn of the loop
                await asyncio.sleep(0)
            else:
                yielded._asyncio_future_blocking = False
                await yielded
        except asyncio.CancelledError:
            if yielded is None or not yielded.cancelled():
                # cancelled after what it waited for was done: coro gets the cancellation here
                try:
                    yielded = coro.throw(asyncio.CancelledError())
                except StopIteration as done:
                    return done.value
                continue
        except Exception:  # noqa: BLE001, S110 -- coro reads the future's exception itself when resumed
            pass
        try:
            yielded = coro.send(None)
        except StopIteration as done:
            return done.value


def deliveries(consumer: _consumer.Consumer) -> tuple[int, int]:
    """Records the patched fetch loop of ``consumer`` has delivered, and how many of those deliveries blocked.

    A delivery blocks when the agent's buffer is full: each then costs a task
    and a ``wait_first`` (about 40 µs), so a worker that blocks on many of its
    records spends its time on waiting (see ``Settings.max_poll_records``).
    """
    counts = consumer.__dict__.get("_wf_deliveries")
    return (counts[0], counts[1]) if counts is not None else (0, 0)


async def _drain_messages(self: _consumer.Consumer, fetcher: Any) -> None:  # noqa: ANN401, C901 -- Faust's own
    # faust-streaming 0.15.3's Consumer._drain_messages; the changes are marked (and yield_every).
    callback = self.callback
    # -- a change: [delivered, blocked], read by deliveries()
    counts = self.__dict__.setdefault("_wf_deliveries", [0, 0])
    # --
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = _consumer.CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for

    yield_every = YIELD_EVERY
    num_since_yield = 0
    sleep = asyncio.sleep

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            # -- a change: while partitions wait for room in their buffers, the fetch
            # waits for new records of the others only briefly, then looks again at which may read
            ait = getmany(timeout=BUFFERED_FETCH_WAIT_S if self._buffered_partitions else 1.0)
            # --
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0

                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset:
                            acks_enabled = acks_enabled_for(message.topic)
                            if acks_enabled:
                                await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None:
                            if self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                        # -- a change: deliver in this loop; a task only for a delivery that blocks
                        counts[0] += 1
                        rest = run_until_blocked(callback(message))
                        if rest is not None:
                            counts[1] += 1
                            await self.wait_first(rest, self.suspend_flow.wait())
                        # --
                        set_read_offset(tp, offset)
                    else:
                        self.log.dev("DROPPED MESSAGE ROFF %r: k=%r v=%r", offset, message.key, message.value)
                unset_flag(flag_consumer_fetching)

    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)


def _resumed(self: _consumer.Consumer) -> asyncio.Event:
    ev = self.__dict__.get("_wf_resumed")
    if ev is None:
        ev = self.__dict__["_wf_resumed"] = asyncio.Event()
    return ev


async def _wait_next_records(self: _consumer.Consumer, timeout: float) -> tuple:
    # faust-streaming 0.15.3's Consumer._wait_next_records; the one change is marked.
    if not self.flow_active:
        await self.wait(self.can_resume_flow)
    try:
        self.not_waiting_next_records.set()
        is_client_only = self.app.client_only
        active_partitions = None if is_client_only else self._get_active_partitions()
        records: dict = {}
        if is_client_only or active_partitions:
            records = await self._getmany(active_partitions=active_partitions, timeout=timeout)
        else:
            # -- the change: wait for a partition to resume, at most the second Faust sleeps
            resumed = _resumed(self)
            resumed.clear()
            try:
                await asyncio.wait_for(resumed.wait(), 1.0)
            except TimeoutError:
                pass
            # --
        return records, active_partitions
    finally:
        self.not_waiting_next_records.set()


def install() -> bool:
    """Patch Faust's consumer (idempotent; see the module's text); False when this Faust is not one it copies."""
    global _installed
    if _installed:
        return True
    if not faust.__version__.startswith(PATCHED_VERSIONS):
        log.warning(
            "faust-streaming %s: the fetch loop's fast path copies %s only; running Faust's own",
            faust.__version__, ", ".join(v + "x" for v in PATCHED_VERSIONS),
        )  # fmt: skip
        return False
    cls = _consumer.Consumer
    on_buffer_drop, resume_partitions = cls.on_buffer_drop, cls.resume_partitions

    def on_buffer_drop_and_wake(self: _consumer.Consumer, tp: Any) -> None:  # noqa: ANN401 -- Faust's TP
        on_buffer_drop(self, tp)
        _resumed(self).set()

    def resume_partitions_and_wake(self: _consumer.Consumer, tps: Any) -> None:  # noqa: ANN401 -- Faust's TPs
        resume_partitions(self, tps)
        _resumed(self).set()

    cls._drain_messages = _drain_messages
    cls._wait_next_records = _wait_next_records
    cls.on_buffer_drop = on_buffer_drop_and_wake
    cls.resume_partitions = resume_partitions_and_wake
    _installed = True
    return True
