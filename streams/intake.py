"""The counting agent's intake: a Faust agent's events taken from its channel in bulk.

Faust's stream iterator gives an agent one event at a time. For each it
yields to the event loop, runs the stream's sensors and does its own
acknowledgement bookkeeping: at 12,000 records a second that was most of the
worker's main thread (py-spy, see the README's performance section), more than
the work of counting. :func:`event_batches` takes what the channel's queue
holds, up to ``max_n`` events at a time, and leaves the rest to the agent:

- events of an earlier consumer generation (fetched before a rebalance) or
  taken while Faust has stopped the flow (during a rebalance) are dropped, as
  Faust's iterator drops them; they are not acknowledged, so they are read
  again from the committed offset;
- the agent acknowledges each event itself (``event.ack()``) once it is
  committed, which is what lets Faust commit its offset.

The queue's own flow control is kept: taking events from it (``get``,
``get_nowait``) is what tells Faust to resume fetching a partition whose
buffer was full.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import faust
from faust.types import EventT


async def event_batches(stream: faust.StreamT, max_n: int) -> AsyncIterator[list[EventT]]:
    """The events of ``stream``'s channel, every event waiting at once up to ``max_n``, in arrival order.

    Waits for the first event of each batch; never gives an empty batch.
    """
    if max_n < 1:
        raise ValueError(f"max_n must be >= 1, found {max_n}")
    app = stream.app
    queue = stream.channel.queue
    flow = app.flow_control
    while not stream.should_stop:
        events = [await queue.get()]
        while len(events) < max_n and not queue.empty():
            events.append(queue.get_nowait())
        if not flow.is_active():
            continue
        generation = app.consumer_generation_id
        fresh = [e for e in events if e.message.generation_id == generation]
        if fresh:
            yield fresh
