"""Publish calls, incident updates and dead letters to Kafka and wait until they are durable.

The one adapter every push or poll door shares (the HTTP intake, a Socrata poller):
it turns validated records into Kafka records on ``{prefix}.calls``,
``{prefix}.incident-updates`` and ``{prefix}.deadletter`` and returns only once
the broker has acknowledged every one of them with ``acks=all``.

Contract
    ``publisher = Publisher(bootstrap, prefix)``; ``await publisher.start()``
    (optional: a publisher that is not started, or whose start failed, starts on
    its next send); then any number of

    - ``await publisher.send_events(events)``: :class:`~streams.ingest.schema.Call`
      and :class:`~streams.ingest.schema.IncidentUpdate` records, encoded with
      :func:`~streams.ingest.schema.encode`, keyed by call id on both topics (the
      topics are co-partitioned: a call and its updates land in the same partition
      number, :mod:`streams.topics`), produced in the order given;
    - ``await publisher.send_dead_letters(letters)``: :class:`DeadLetter` records in
      the worker's and the replay's envelope (:func:`dead_letter_envelope`);

    and finally ``await publisher.stop()`` (also after a failed start).

    Each send returns when **every** record it was given is acknowledged by all
    in-sync replicas (``acks="all"``, idempotent producer: the producer's own
    retries never write a record twice). Otherwise it raises
    :class:`KafkaUnavailable` (translated from aiokafka's errors, ``raise ... from
    exc``) within about ``timeout_s`` seconds: the broker cannot be reached, or a
    send was not acknowledged in time. After :class:`KafkaUnavailable` **none** of
    that call's records may be treated as stored, and some of them may still
    have been written (a send that timed out here can be acknowledged later):
    callers retry the whole call and must be safe against a copy (the worker
    counts a call id once; re-applying an identical status update changes no
    count, see ``docs/intake.md``).

    The publisher validates nothing: callers pass records that went through
    :func:`~streams.ingest.schema.parse_event`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streams.ingest.schema import Call, Event, encode
from streams.topics import CALLS, DEADLETTER, INCIDENT_UPDATES, topic_name

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

log = logging.getLogger(__name__)

#: Seconds a send (or a start) may take before :class:`KafkaUnavailable`.
DEFAULT_TIMEOUT_S = 10.0
#: Bytes of one partition's batch. aiokafka keeps one open batch per partition and a send that finds it full waits
#: until it has been sent, one produce request at a time per broker: with its default (16 KiB) a 500-record
#: request, or the records that piled up while the intake was held, took several round trips in turn.
DEFAULT_MAX_BATCH_BYTES = 256 * 1024


class KafkaUnavailable(RuntimeError):
    """Kafka did not acknowledge the records in time (or cannot be reached); nothing of that send counts as stored."""


@dataclass(frozen=True)
class DeadLetter:
    """A refused record for the dead-letter topic.

    ``origin`` names where it came from (the envelope's ``topic``: ``intake:<source>``,
    ``poll:<source>``); ``key`` is the Kafka key (something stable for the record,
    such as the hex SHA-256 of ``raw``); ``offset`` is the record's index in what
    the door received, or None.
    """

    reason: str
    detail: str
    origin: str
    raw: bytes
    key: str
    offset: int | None = None


def dead_letter_envelope(letter: DeadLetter, refused_at: float) -> dict[str, Any]:
    """The dead-letter envelope of ``letter``, as the worker and the replay write it.

    >>> dead_letter_envelope(DeadLetter("not_json", "record is not valid UTF-8 JSON", "intake:dev", b"{", "k", 3), 1.5)
    ... # doctest: +NORMALIZE_WHITESPACE
    {'v': 1, 'reason': 'not_json', 'detail': 'record is not valid UTF-8 JSON', 'topic': 'intake:dev',
     'partition': None, 'offset': 3, 'refused_at': 1.5, 'original_b64': 'ew=='}
    """
    return {
        "v": 1,
        "reason": letter.reason,
        "detail": letter.detail,
        "topic": letter.origin,
        "partition": None,
        "offset": letter.offset,
        "refused_at": refused_at,
        "original_b64": base64.b64encode(letter.raw).decode(),
    }


class Publisher:
    """An idempotent ``acks=all`` producer for the ingest and dead-letter topics of ``prefix`` (see the module's contract)."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        linger_ms: int = 0,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        if linger_ms < 0 or max_batch_bytes < 1024:
            raise ValueError(f"linger_ms must be >= 0 and max_batch_bytes >= 1024, got {linger_ms!r} and {max_batch_bytes!r}")
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.linger_ms = linger_ms
        self.max_batch_bytes = max_batch_bytes
        self.calls_topic = topic_name(prefix, CALLS)
        self.updates_topic = topic_name(prefix, INCIDENT_UPDATES)
        self.deadletter_topic = topic_name(prefix, DEADLETTER)
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """Connect to the broker; :class:`KafkaUnavailable` when it cannot be reached within ``timeout_s``."""
        async with self._lock:
            await self._start_locked()

    async def stop(self) -> None:
        """Flush and close the producer (records not yet acknowledged are given up to ``timeout_s``)."""
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def send_events(self, events: Sequence[Event]) -> None:
        """Produce calls and updates keyed by call id and wait for every acknowledgement (or :class:`KafkaUnavailable`)."""
        records = []
        for event in events:
            if isinstance(event, Call):
                records.append((self.calls_topic, event.id.encode(), encode(event)))
            else:
                records.append((self.updates_topic, event.call_id.encode(), encode(event)))
        await self._send_all(records)

    async def find_sent(self, events: Sequence[Event], since_s: float) -> set[int]:
        """The indexes of ``events`` already on their topic in a record written at ``since_s`` (epoch seconds) or later.

        For a request resumed after an attempt that did not finish (its intake died, or
        Kafka did not acknowledge in time): what that attempt put on Kafka is not sent
        again. A record matches when its topic and bytes are the event's
        (:func:`~streams.ingest.schema.encode` is deterministic). Reads the partitions
        the events' keys go to, from ``since_s`` (the records' times) to their end now;
        :class:`KafkaUnavailable` when that takes over ``timeout_s``.
        """
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.errors import KafkaError
        from aiokafka.partitioner import DefaultPartitioner

        wanted: dict[tuple[str, bytes], list[int]] = {}
        keys: dict[str, set[bytes]] = {}
        for i, event in enumerate(events):
            topic, key = (self.calls_topic, event.id) if isinstance(event, Call) else (self.updates_topic, event.call_id)
            wanted.setdefault((topic, encode(event)), []).append(i)
            keys.setdefault(topic, set()).add(key.encode())
        found: set[int] = set()
        if not wanted:
            return found
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, request_timeout_ms=int(self.timeout_s * 1000)
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                await consumer.start()
                producer = await self._ready()  # its metadata: the topics' partitions
                tps = []
                for topic, topic_keys in sorted(keys.items()):
                    every = sorted(await producer.partitions_for(topic))
                    # only the partitions the producer put these keys in (its default partitioner: murmur2 of the key)
                    tps += [TopicPartition(topic, p) for p in sorted({DefaultPartitioner()(k, every, every) for k in topic_keys})]
                consumer.assign(tps)
                starts = await consumer.offsets_for_times(dict.fromkeys(tps, int(since_s * 1000)))
                ends = await consumer.end_offsets(tps)
                todo = {tp: ends[tp] for tp in tps if starts.get(tp) is not None and starts[tp].offset < ends[tp]}
                for tp in todo:
                    consumer.seek(tp, starts[tp].offset)
                while todo:
                    batches = await consumer.getmany(*todo, timeout_ms=200)
                    for tp, records in batches.items():
                        for record in records:
                            found.update(wanted.get((tp.topic, record.value or b""), ()))
                    for tp in list(todo):
                        if await consumer.position(tp) >= todo[tp]:
                            del todo[tp]
        except (KafkaError, TimeoutError) as exc:
            raise KafkaUnavailable(
                f"could not read {sorted({t for t, _ in wanted})} at {self.bootstrap} from {since_s:.0f} within {self.timeout_s:g} s "
                f"({f'{exc}' or type(exc).__name__}) to find what an unfinished attempt stored"
            ) from exc
        finally:
            await consumer.stop()
        return found

    async def send_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Produce refused records in the dead-letter envelope and wait for every acknowledgement (or :class:`KafkaUnavailable`)."""
        now = time.time()
        records = [
            (self.deadletter_topic, letter.key.encode(), json.dumps(dead_letter_envelope(letter, now), separators=(",", ":")).encode())
            for letter in letters
        ]
        await self._send_all(records)

    async def ping(self) -> bool:
        """Whether the broker answers a metadata request within ``timeout_s`` (for health checks); starts the producer if needed."""
        from aiokafka.errors import KafkaError

        try:
            producer = await self._ready()
            await asyncio.wait_for(producer.client.fetch_all_metadata(), self.timeout_s)
        except (KafkaUnavailable, KafkaError, TimeoutError):
            return False
        return True

    # -- internals ---------------------------------------------------------------------

    async def _ready(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            return await self._start_locked()

    async def _start_locked(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=self.linger_ms,
            max_batch_size=self.max_batch_bytes,
            request_timeout_ms=int(self.timeout_s * 1000),
        )
        try:
            await asyncio.wait_for(producer.start(), self.timeout_s)
        except (KafkaError, TimeoutError, OSError) as exc:
            await producer.stop()
            why = f"{exc}" or type(exc).__name__
            raise KafkaUnavailable(f"cannot reach Kafka at {self.bootstrap} within {self.timeout_s:g} s ({why})") from exc
        self._producer = producer
        log.info("publisher connected to Kafka at %s (topics %s.*)", self.bootstrap, self.prefix)
        return producer

    async def _send_all(self, records: list[tuple[str, bytes, bytes]]) -> None:
        if not records:
            return
        from aiokafka.errors import KafkaError

        producer = await self._ready()
        try:
            async with asyncio.timeout(self.timeout_s):
                futures = [await producer.send(topic, key=key, value=value) for topic, key, value in records]
                await asyncio.gather(*futures)
        except (KafkaError, TimeoutError) as exc:
            raise KafkaUnavailable(
                f"Kafka at {self.bootstrap} did not acknowledge {len(records)} record(s) within {self.timeout_s:g} s "
                f"({f'{exc}' or type(exc).__name__}); none of them counts as stored: send them again"
            ) from exc
