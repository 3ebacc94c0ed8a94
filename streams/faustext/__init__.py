"""Watchfloor's integration with Faust and aiokafka, in one place.

The runtime calls only this module's four functions; what they install lives in
the modules beside it (``fastpath``, ``fetch_wait``, ``kafka_backoff``).
Everything here is behind one flag, ``WF_FAUST_FASTPATH`` (``Settings.faust_fastpath``):
off, Faust and aiokafka run as released.
"""

from __future__ import annotations

from typing import Any

from streams.faustext import fastpath, fetch_wait, kafka_backoff
from streams.runtime.settings import Settings


def install(settings: Settings) -> bool:
    """Apply the integration's changes to Faust and aiokafka for this process; whether they are in force."""
    if not settings.faust_fastpath:
        return False
    kafka_backoff.install()
    fetch_wait.install()
    return fastpath.install()


def app_options(settings: Settings) -> dict[str, Any]:
    """Extra keyword arguments for ``faust.App`` (call after :func:`install`)."""
    return {"Monitor": fastpath.LeanMonitor} if settings.faust_fastpath else {}


def topic_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``app.topic``: every topic's keys and values are bytes."""
    if settings.faust_fastpath:
        return {"schema": fastpath.RawSchema()}
    return {"key_serializer": "raw", "value_serializer": "raw"}


def deliveries(settings: Settings, consumer: Any) -> dict[str, int]:  # noqa: ANN401 -- Faust's Consumer
    """The fetch loop's delivery counters for ``/metrics`` (empty when the integration is off)."""
    if not settings.faust_fastpath:
        return {}
    delivered, blocked = fastpath.deliveries(consumer)
    return {"fetch_records_delivered_total": delivered, "fetch_deliveries_blocked_total": blocked}
