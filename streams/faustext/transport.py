"""The worker's Kafka transport: Faust's aiokafka driver with the worker's fetch loop, fetch hold and producer buffer.

Faust chooses a transport by the scheme of its broker URL, from a registry
(``faust.transport.drivers.TRANSPORTS``). :func:`register` adds
:data:`SCHEME` to it, naming :class:`Transport` here; an app built with
``broker_consumer`` and ``broker_producer`` set to :func:`broker_url` then
gets these subclasses, and every other Faust app in the process (a test's,
a benchmark's, one with ``kafka://``) keeps Faust's own. Nothing of Faust's is
replaced: :func:`unregister` takes the name out again.

What the subclasses change (each explained where it is written):

- :class:`Consumer`: the fetch loop of ``streams.faustext.fastpath``
  (a delivery runs in the loop until it blocks; a fetcher with every partition
  paused waits for the first to resume instead of a second; one end-offset
  read per partition and fetch);
- :class:`ConsumerThread`: the broker holds an empty fetch
  ``streams.faustext.fetch_wait.FETCH_MAX_WAIT_MS``, not 1.5 s;
- :class:`Producer`: a :class:`ProducerBuffer` that reads Faust's
  ``producer_threaded`` setting once, not on every record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from faust.transport import drivers
from faust.transport import producer as faust_producer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.faustext import fastpath
from streams.faustext.fetch_wait import FETCH_MAX_WAIT_MS, hold_fetches

#: The broker URL scheme that names the worker's transport in Faust's registry.
SCHEME = "wfkafka"


def broker_url(bootstrap: str) -> str:
    """The broker URL of the worker's transport for the bootstrap ``host:port`` (Faust reads it as it reads ``kafka://``).

    >>> broker_url("127.0.0.1:9092")
    'wfkafka://127.0.0.1:9092'
    """
    return f"{SCHEME}://{bootstrap}"


def register() -> None:
    """Name :class:`Transport` :data:`SCHEME` in Faust's transport registry (idempotent)."""
    drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"


def unregister() -> None:
    """Take :data:`SCHEME` out of Faust's transport registry (nothing to do when it is not there).

    An app that has already built its transport keeps it; one that has not fails
    to build it (Faust: "'wfkafka' is not a valid name").
    """
    drivers.TRANSPORTS.aliases.pop(SCHEME, None)


def registered() -> bool:
    """Whether :data:`SCHEME` names this module's transport in Faust's registry."""
    return drivers.TRANSPORTS.aliases.get(SCHEME) == f"{__name__}:Transport"


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread whose worker consumers have the broker hold an empty fetch briefly."""

    #: The broker's hold on a fetch that finds no record (see ``streams.faustext.fetch_wait``).
    fetch_max_wait_ms = FETCH_MAX_WAIT_MS

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        hold_fetches(consumer, self.fetch_max_wait_ms)
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer on the worker's fetch loop (``streams.faustext.fastpath``).

    ``fastpath.deliveries(consumer)`` reads its delivery counters.
    """

    _drain_messages = fastpath._drain_messages
    _wait_next_records = fastpath._wait_next_records
    getmany = fastpath._getmany

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    # Faust resumes a partition in these two; the fetcher that waits for one (fastpath._wait_next_records) is woken.

    def on_buffer_drop(self, tp: TP) -> None:
        super().on_buffer_drop(tp)
        fastpath._resumed(self).set()

    def resume_partitions(self, tps: Any) -> None:
        super().resume_partitions(tps)
        fastpath._resumed(self).set()


class ProducerBuffer(faust_producer.ProducerBuffer):
    """Faust's producer buffer whose check per record reads ``producer_threaded`` once (``fastpath._wait_until_ebb``)."""

    wait_until_ebb = fastpath._wait_until_ebb


class Producer(faust_aiokafka.Producer):
    """Faust's aiokafka producer with a :class:`ProducerBuffer`, idempotent.

    Faust asks aiokafka for idempotence only inside transactions; the worker
    wants it always, so that a send retried across a broker's loss (the leader
    of the detector-input or alerts partition moving) is written once.
    Idempotence needs ``acks=all``: the app sets ``producer_acks=-1``.
    """

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}

    def __init__(self, transport: Any, loop: Any = None, **kwargs: Any) -> None:
        super().__init__(transport, loop=loop, **kwargs)
        # Faust's __init__ builds its own buffer and gives it the app (and the threaded producer,
        # if any): this one takes its place before anything has started or used it.
        faust_own = cast(faust_producer.ProducerBuffer, self.buffer)
        buffer = ProducerBuffer(loop=self.loop, beacon=self.beacon)
        buffer.app = faust_own.app
        if hasattr(faust_own, "threaded_producer"):
            buffer.threaded_producer = faust_own.threaded_producer
        faust_own.beacon.detach(self.beacon)
        self.buffer = buffer


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with the worker's :class:`Consumer` and :class:`Producer` (registered as :data:`SCHEME`)."""

    Consumer = Consumer
    Producer = Producer
