"""Watchfloor's integration with Faust and aiokafka, in one place.

The runtime calls this module's functions only; what they set up lives in the
modules beside it:

- ``transport``: the worker's Kafka transport, Faust's aiokafka driver
  subclassed (its fetch loop from ``fastpath``, its fetch hold from
  ``fetch_wait``) and registered in Faust's transport registry; an app uses it
  through the broker URLs :func:`app_options` gives, every other app in the
  process runs Faust's own;
- ``fastpath``: the fetch loop, :class:`~streams.faustext.fastpath.LeanMonitor`
  (Faust's ``Monitor`` setting) and :class:`~streams.faustext.fastpath.RawSchema`
  (each topic's ``schema``);
- ``kafka_backoff``: the one patch left, aiokafka's metadata update backs off
  after a failure (aiokafka builds its clients with no hook for another class);
- ``upstream``: the pinned faust-streaming release and the hashes of the
  upstream sources all this copies or builds on;
- ``startup_log``: the expected "coordinator not available" of every start
  logged at INFO, not ERROR.

Everything but the log filter is behind one flag, ``WF_FAUST_FASTPATH``
(``Settings.faust_fastpath``): off, or on any faust-streaming but the pinned
one (:func:`install` then logs a warning), Faust and aiokafka run as released.
:func:`uninstall` gives Faust's registry and aiokafka their own attributes back.
"""

from __future__ import annotations

import logging
from typing import Any

from streams.faustext import fastpath, kafka_backoff, transport, upstream
from streams.faustext.startup_log import quiet_expected_startup_errors
from streams.runtime.settings import Settings

__all__ = ["app_options", "deliveries", "install", "installed", "quiet_expected_startup_errors", "topic_options", "uninstall"]

log = logging.getLogger(__name__)


def install(settings: Settings) -> bool:
    """Set up the integration for this process if ``settings`` ask for it and this Faust is the pinned one; whether it is in force.

    Idempotent. With the flag off it installs nothing (and leaves in force what an
    earlier call installed: see :func:`uninstall`). Call it before building the app
    with :func:`app_options` and :func:`topic_options`.
    """
    if not settings.faust_fastpath:
        return False
    refused = upstream.refusal()
    if refused is not None:
        log.warning("%s: Faust and aiokafka run as released (WF_FAUST_FASTPATH ignored)", refused)
        return False
    transport.register()
    kafka_backoff.install()
    return True


def installed() -> bool:
    """Whether :func:`install` is in force (the worker's transport registered, aiokafka's metadata updates backing off)."""
    return transport.registered() and kafka_backoff.installed()


def uninstall() -> None:
    """Undo :func:`install`: Faust's transport registry without the worker's name, aiokafka's own metadata update.

    Apps built before keep the transport they have built; build no new app from
    :func:`app_options` given before this call.
    """
    transport.unregister()
    kafka_backoff.uninstall()


def _in_force(settings: Settings) -> bool:
    return settings.faust_fastpath and installed()


def app_options(settings: Settings) -> dict[str, Any]:
    """Extra keyword arguments for ``faust.App``: the worker's transport and :class:`~.fastpath.LeanMonitor` (call after :func:`install`).

    Empty when the integration is not in force. They set ``broker_consumer`` and
    ``broker_producer``, so the app's own ``broker`` keeps its ``kafka://`` URL.
    """
    if not _in_force(settings):
        return {}
    url = transport.broker_url(settings.kafka_bootstrap)
    return {"broker_consumer": url, "broker_producer": url, "Monitor": fastpath.LeanMonitor}


def topic_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``app.topic``: every topic's keys and values are bytes (call after :func:`install`)."""
    if _in_force(settings):
        return {"schema": fastpath.RawSchema()}
    return {"key_serializer": "raw", "value_serializer": "raw"}


def deliveries(settings: Settings, consumer: Any) -> dict[str, int]:
    """The fetch loop's delivery counters for ``/metrics`` (empty when ``consumer`` is not the worker's transport's)."""
    if not isinstance(consumer, transport.Consumer):
        return {}
    delivered, blocked = fastpath.deliveries(consumer)
    return {"fetch_records_delivered_total": delivered, "fetch_deliveries_blocked_total": blocked}
