"""Back off between failed Kafka metadata updates (aiokafka retries them at once).

When the broker is down, aiokafka's producer and fetcher ask for a metadata
update, the update fails at once (connection refused), and they ask again: a
busy loop that burnt a core and wrote about 6,000 ERROR lines a second to the
worker's log during a 30-second broker outage (3 GB an hour). The Java client
and kafka-python wait ``retry.backoff.ms`` after a failed update, growing to a
maximum; :func:`install` makes aiokafka's clients (Faust's included) do the
same: after the n-th failure in a row, wait ``retry_backoff_ms * 2**(n-1)``,
at most :data:`MAX_BACKOFF_S`. A success resets it.

>>> [backoff_s(0.1, n) for n in (1, 2, 3, 6, 9)]
[0.1, 0.2, 0.4, 2.0, 2.0]
"""

from __future__ import annotations

import asyncio
from typing import Any

#: The longest wait between two failed metadata updates (Kafka's reconnect.backoff.max.ms is 1 s).
MAX_BACKOFF_S = 2.0


def backoff_s(retry_backoff_s: float, failures: int) -> float:
    """The wait after ``failures`` failed updates in a row (``failures >= 1``)."""
    return min(MAX_BACKOFF_S, retry_backoff_s * 2 ** (failures - 1))


def install() -> None:
    """Wrap ``AIOKafkaClient._metadata_update`` for every aiokafka client in the process (idempotent; :func:`uninstall` undoes it).

    A patch, not a subclass: aiokafka builds its clients inside its producer,
    consumer and admin client, with no hook to hand it another class.
    """
    from aiokafka.client import AIOKafkaClient

    original = AIOKafkaClient._metadata_update
    if installed():
        return

    async def _metadata_update(self, cluster_metadata, topics):
        ok = await original(self, cluster_metadata, topics)
        failures = 0 if ok else getattr(self, "_watchfloor_md_failures", 0) + 1
        self._watchfloor_md_failures = failures
        if failures:
            await asyncio.sleep(backoff_s(self._retry_backoff, failures))
        return ok

    patch: Any = _metadata_update
    patch.watchfloor_original = original  # what installed() looks for and uninstall() puts back
    AIOKafkaClient._metadata_update = patch


def installed() -> bool:
    """Whether aiokafka's metadata updates back off (:func:`install` is in force)."""
    from aiokafka.client import AIOKafkaClient

    return hasattr(AIOKafkaClient._metadata_update, "watchfloor_original")


def uninstall() -> None:
    """Give ``AIOKafkaClient`` back its own ``_metadata_update`` (nothing to do when not installed)."""
    from aiokafka.client import AIOKafkaClient

    patched = AIOKafkaClient._metadata_update
    original = getattr(patched, "watchfloor_original", None)
    if original is not None:
        AIOKafkaClient._metadata_update = original
