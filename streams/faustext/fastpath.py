"""Faust's per-record path, lighter: no four tasks per record, no second-long naps, no work the worker never reads.

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
counting agent commits a batch of 1,000 records in tens of them). The worker's
fetcher waits for the first partition that resumes instead, up to that second;
and while some partitions are paused, a fetch for the others waits
:data:`BUFFERED_FETCH_WAIT_S` for new records, not a second, before it looks
again at which may read. Last, the loop gives the other tasks a turn every
:data:`YIELD_EVERY` records instead of every 100.

Four costs per record buy the worker nothing (py-spy on the counting worker,
``bench/throughput.py``: together about 20 % of its process's CPU):

- decoding a ``"raw"`` topic: Faust looks up the codec and reads the app's
  settings (a slow registry) for the key and for the value, and gives the
  bytes back unchanged. The worker's topics use :class:`RawSchema`, which
  makes the event straight from the record;
- the conductor's check, per record, that the producer's buffer is not over
  its limit reads a setting through the same registry; the worker's
  ``ProducerBuffer.wait_until_ebb`` reads it once per buffer;
- the consumer's ``getmany`` reads the partition's end offset through the
  consumer thread's subscription state and hands it to Faust's monitor for
  every record; the worker's does it once per partition and fetch (it
  changes only when a fetch response arrives, and the monitor keeps it for
  Faust's statistics page);
- Faust's ``Monitor`` sensor keeps statistics on every record and event
  (counts by topic, stream and task, times in and out), read by Faust's own
  statistics page, not by the worker's ``/metrics``. The worker's app runs
  :class:`LeanMonitor`, which keeps only what Faust itself reads of them.

Nothing here changes Faust by itself: ``streams.faustext.transport`` builds
the worker's consumer and producer from these functions (subclasses of
Faust's, used only by an app whose broker URL names that transport), and the
worker's app takes :class:`LeanMonitor` and :class:`RawSchema` through Faust's
``Monitor`` setting and ``schema`` argument. The copied methods are
faust-streaming 0.15.3's with only the marked changes;
``streams.faustext.upstream`` refuses any other release.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from time import monotonic
from typing import Any, cast

import faust
from faust.transport import consumer as _consumer
from faust.transport import producer as _producer
from faust.types import AppT, EventT, Message

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


async def _finish(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:  # any coroutine's value
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
        except Exception:  # noqa: BLE001 -- coro reads the future's exception itself when resumed
            pass
        try:
            yielded = coro.send(None)
        except StopIteration as done:
            return done.value


def deliveries(consumer: _consumer.Consumer) -> tuple[int, int]:
    """Records the worker's fetch loop (:func:`_drain_messages`) of ``consumer`` has delivered, and how many of those deliveries blocked.

    A delivery blocks when the agent's buffer is full: each then costs a task
    and a ``wait_first`` (about 40 µs), so a worker that blocks on many of its
    records spends its time on waiting (see ``Settings.max_poll_records``).
    """
    counts = consumer.__dict__.get("_wf_deliveries")
    return (counts[0], counts[1]) if counts is not None else (0, 0)


async def _drain_messages(self: _consumer.Consumer, fetcher: Any) -> None:  # Faust's own
    # faust-streaming 0.15.3's Consumer._drain_messages; the changes are marked (and yield_every).
    callback: Any = self.callback  # its deliveries are coroutines (run_until_blocked)
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


async def _getmany(self: _consumer.Consumer, timeout: float) -> Any:  # Faust's AsyncIterator[tuple[TP, Message]]
    # faust-streaming 0.15.3's Consumer.getmany; the one change is marked.
    records, active_partitions = await self._wait_next_records(timeout)
    generation_id = self.app.consumer_generation_id
    if records is None or self.should_stop:
        return

    records_it = self.scheduler.iterate(records)
    to_message = self._to_message  # localize
    # -- the change: each partition's end offset is read (through the consumer thread's
    # subscription state) and handed to the monitor once per fetch, not once per record
    tracked: set = set()
    # --
    if self.flow_active:
        for tp, record in records_it:
            if not self.flow_active:
                break
            new_generation_id = self.app.consumer_generation_id
            if new_generation_id != generation_id:
                self.log.dev("Generation id changed from %r to %r. Cancelling getmany.", generation_id, new_generation_id)
                break
            if active_partitions is None or tp in active_partitions or tp in self._buffered_partitions:
                # -- the change
                if tp not in tracked:
                    tracked.add(tp)
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                # --
                yield tp, to_message(tp, record)
    else:
        self.log.dev("getmany called while flow not active. Seek back to committed offsets.")
        try:
            await self.perform_seek()
        except Exception as ex:  # noqa: BLE001 -- Faust's own
            self.log.warning(f"exception performing seek when flow not active {ex}")


_faust_getmany = _consumer.Consumer.getmany


def _resumed(self: _consumer.Consumer) -> asyncio.Event:
    ev = self.__dict__.get("_wf_resumed")
    if ev is None:
        ev = self.__dict__["_wf_resumed"] = asyncio.Event()
    return ev


async def _wait_next_records(self: _consumer.Consumer, timeout: float) -> tuple:
    # faust-streaming 0.15.3's Consumer._wait_next_records; the one change is marked.
    if not self.flow_active:
        await self.wait(self.can_resume_flow)  # type: ignore[arg-type]  # upstream's own: an asyncio.Event, typed as mode's
    try:
        self.not_waiting_next_records.set()
        is_client_only = self.app.client_only
        active_partitions = None if is_client_only else self._get_active_partitions()
        records: Any = {}
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


async def _wait_until_ebb(self: _producer.ProducerBuffer) -> None:
    # faust-streaming 0.15.3's ProducerBuffer.wait_until_ebb; the change: ``size`` reads
    # ``app.conf.producer_threaded`` at each call, here it is read once per buffer.
    threaded = self.__dict__.get("_wf_threaded")
    if threaded is None:
        threaded = self.__dict__["_wf_threaded"] = bool(cast(AppT, self.app).conf.producer_threaded)  # set by the producer
    if threaded or len(self.pending._queue) > self.max_messages:  # type: ignore[attr-defined]  # the deque Faust's size reads
        await _faust_wait_until_ebb(self)


_faust_wait_until_ebb = _producer.ProducerBuffer.wait_until_ebb


class RawSchema(faust.Schema):
    """The schema of a topic whose records the agent reads as bytes: each event is made straight from the record.

    It gives what ``key_serializer="raw", value_serializer="raw"`` gives (the
    record's key and value, ``None`` included), without Faust's codec lookups
    per record (see the module's text). Sending uses Faust's raw codec as before.
    """

    def __init__(self) -> None:
        super().__init__(key_serializer="raw", value_serializer="raw")

    def compile(self, app: AppT, *, default_propagate: bool = False, **_handlers: Any) -> Any:  # Faust's DecodeFunction
        """The topic's decode function: an event of ``app``'s event class holding the record's bytes (nothing to fail)."""
        event_class: Any = app.conf.Event

        async def decode(message: Message, *, propagate: bool = default_propagate) -> EventT:
            return event_class(app, message.key, message.value, message.headers, message)

        return decode


class LeanMonitor(faust.Monitor):
    """Faust's monitor, keeping of its per-record bookkeeping only the time each partition's stream last took an event.

    Faust's consumer reads that time for its liveness check (it logs "Stream
    has not started processing" for a partition whose stream never took one, a
    false alarm a monitor without it made after five minutes of a soak). The
    counts and times in and out of each record and event are not kept; the rest
    of the monitor (commits, end offsets, rebalances, sends) is Faust's.
    """

    def on_message_in(self, tp: Any, offset: int, message: Message) -> None:  # Faust's TP
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: EventT) -> None:  # Faust's TP and stream
        self.stream_inbound_time[tp] = monotonic()

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: EventT, state: dict | None = None) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Message) -> None:  # Faust's TP
        pass
