"""A shorter hold on the worker's Kafka fetches than Faust's 1.5 s, so a busy agent's records do not wait behind an empty fetch.

aiokafka sends one fetch at a time to a broker, for the assigned partitions
that hold no records the application has not taken yet; while it is in flight
it sends no other to that broker. When an agent falls behind for a moment its
partition still holds records as the next fetch leaves, so that fetch asks
only for the quiet partitions (at least Faust's ``<app>-__assignor-__leader``,
which never has a record), and the broker holds it the whole
``fetch_max_wait_ms`` before answering it empty: Faust hard-codes 1,500 ms.
The agent's next records were written meanwhile and wait until that fetch
returns. In ``bench/latency.py`` at 1,000 calls/s after 100, the detection
worker got no message for 1.0-1.5 s two to four times a minute, each a fetch
of the leader topic alone held 1.50 s, and the call-to-alert p99 was
0.9-2.0 s in five runs of six.

The worker's consumer thread (``streams.faustext.transport.ConsumerThread``)
gives every aiokafka consumer it creates :data:`FETCH_MAX_WAIT_MS` through
:func:`hold_fetches` (Kafka's Java consumer holds 500 ms by default). An idle
worker then sends a fetch every tenth of a second instead of every 1.5 s, a
small cost for the broker. Other Faust apps in the process keep Faust's hold.

>>> class Consumer:  # what aiokafka 0.14's AIOKafkaConsumer keeps until start() builds its fetcher
...     _fetch_max_wait_ms = 1500
>>> consumer = Consumer()
>>> hold_fetches(consumer)
>>> consumer.__dict__
{'_fetch_max_wait_ms': 100}
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

#: How long the broker may hold a worker's fetch that finds no record (Faust: 1,500 ms).
FETCH_MAX_WAIT_MS = 100


def hold_fetches(consumer: Any, max_wait_ms: int = FETCH_MAX_WAIT_MS) -> None:
    """Make ``consumer`` (an aiokafka consumer, before its ``start()``) ask the broker to hold a fetch ``max_wait_ms`` at most.

    Raises ``ValueError`` for a hold outside 1..1500 ms (Faust's own is 1500).
    """
    if not 1 <= max_wait_ms <= 1500:
        raise ValueError(f"max_wait_ms must be 1..1500 (Faust's own hold is 1500), got {max_wait_ms}")
    # read by AIOKafkaConsumer.start() when it creates its fetcher (aiokafka 0.14; see streams.faustext.upstream)
    if isinstance(getattr(consumer, "_fetch_max_wait_ms", None), int):
        consumer._fetch_max_wait_ms = max_wait_ms
    else:
        log.warning("this aiokafka keeps no _fetch_max_wait_ms: the worker's fetches are held as Faust asks (1.5 s)")
