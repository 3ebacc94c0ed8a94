"""The gateway process: the WebSocket feeds, the dashboard and the HTTP API on one port (adapter).

``python -m gateway`` serves, on ``WF_GATEWAY_HOST:WF_GATEWAY_PORT`` (8765):

=====================================  ==========================================================
``GET /``                              the dashboard (``gateway/static``)
``GET /ws?token=..[&last_id=..]``      the WebSocket feed (:mod:`gateway.protocol`)
``GET /healthz``                       ``{"status": "ok", "redis": true}`` (503 when Redis is down)
``GET /api/...``, ``GET /metrics``     the API (:mod:`gateway.api`: its route table and handlers)
=====================================  ==========================================================

API calls carry ``Authorization: Bearer <token>`` (once: two headers are a 400).
Refusals are JSON ``{"error", "message"}`` with 400, 401, 403, 404, 429 or 503,
and every refusal is in the audit log (refusals of one address past
``WF_GATEWAY_ANON_RATE`` a second are answered 429 and audited once a second, as
one ``rate_limited`` record). Every handshake and API call checks the token
(:func:`gateway.tokens.verify`, with ``WF_GATEWAY_MAX_TOKEN_TTL_S``) and that it
was not revoked (``P:revoked``; refused with 401 ``revoked``, and with 503 when
Redis cannot say); sockets open with a token revoked since are closed with 4401
within :data:`REVOCATION_SWEEP_S`. A browser may open the WebSocket only from
the gateway's own origin or one of ``WF_GATEWAY_ORIGINS`` (403 ``bad_origin``).
Each token may make ``WF_GATEWAY_API_RATE`` API calls or handshakes a second (429
``rate_limited``); every partner and commander read is audited.

:class:`Gateway` composes the parts, each in its own module:

=============================  ==================================================================
:mod:`gateway.scopes`          the zones, agreements and plans; a token's scope
:mod:`gateway.auth`            tokens verified and not revoked; the Authorization and Origin headers
:mod:`gateway.frontdoor`       every HTTP request: handshake, dashboard files, /healthz, the API
:mod:`gateway.sessions`        the WebSocket sessions: welcome, catch-up, reading, closing
:mod:`gateway.messages`        what a client may ask: subscribe, ack/resolve, event zones
:mod:`gateway.counts`          the counts frames pushed every few seconds
:mod:`gateway.forecastfeed`    the forecast frames pushed when the worker makes a new forecast set
:mod:`gateway.hub`             fan-out of the alerts stream to the clients
:mod:`gateway.feeds`           partners' alerts pushed as signed webhooks, and their CAP 1.2 Atom feeds
:mod:`gateway.auditor`         the gateway's own audit records and refusal counts
:mod:`gateway.static`          the dashboard's files; :mod:`gateway.metrics`: the /metrics page
=============================  ==================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping

from redis.exceptions import RedisError
from websockets.asyncio.server import Server, ServerConnection, serve

from gateway.agreements import Agreement
from gateway.audit import AuditLog
from gateway.auditor import Auditor
from gateway.auth import Authenticator
from gateway.counts import COUNTS_WINDOW_MIN, CountsFeed
from gateway.disclosure import Plan
from gateway.feeds.config import feed_targets, load_feed_settings
from gateway.feeds.deliverer import Feeds
from gateway.forecastfeed import ForecastFeed
from gateway.frontdoor import FrontDoor
from gateway.http import content_security_policy
from gateway.hub import Client, Hub
from gateway.limits import RateLimits
from gateway.messages import Messages
from gateway.metrics import metrics_text
from gateway.places import Places, load_places
from gateway.policy import Scope, ScopeError
from gateway.releases import ReleaseBook
from gateway.scopes import Scopes
from gateway.sessions import BackgroundTasks, Sessions
from gateway.settings import GatewaySettings, GatewaySettingsError, read_basemap
from gateway.static import STATIC, StaticFiles
from gateway.store import Store
from gateway.zones import Zone, ZoneError

__all__ = ["COUNTS_WINDOW_MIN", "HISTORY_CONCURRENCY", "REVOCATION_SWEEP_S", "STATIC", "Gateway"]

log = logging.getLogger(__name__)

#: seconds between checks of the open sockets' tokens against the revoked ones
REVOCATION_SWEEP_S = 2.0
#: seconds between reads of ``P:forecast:version`` (a new set every 15 minutes of event time; faster in a replay)
FORECAST_POLL_S = 2.0
#: history calls read at once (the others wait their turn rather than share the event loop)
HISTORY_CONCURRENCY = 1


class Gateway:
    """One gateway process: the hub, the zones, the agreements, and the connection handlers.

    Construction reads the zone and agreement files (:class:`~gateway.zones.ZoneError`,
    :class:`~gateway.agreements.AgreementError`); :meth:`start` loads the alerts and listens,
    :meth:`stop` closes every client and flushes the audit log. The API handlers
    (:mod:`gateway.api`) are called with the gateway and read ``settings``, ``store``, ``audit``,
    ``hub``, ``zones``, ``agreements``, ``releases``, ``history_slots``, ``places`` and :meth:`metrics_text`.
    ``places`` (the jurisdiction's zone and named areas) is read from ``settings.profile`` when not given.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        store: Store,
        audit: AuditLog,
        *,
        clock: Callable[[], float] = time.time,
        places: Places | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.places = load_places(settings.profile) if places is None else places
        profile_basemap = self.places.basemap_setting()
        if settings.basemap is None and settings.tiles is None and profile_basemap is not None:
            # the profile's [basemap] when neither WF_GATEWAY_BASEMAP nor WF_GATEWAY_TILES says otherwise
            try:
                settings = dataclasses.replace(settings, basemap=read_basemap(profile_basemap))
            except ValueError as exc:  # read_basemap's, naming the file or URL and what is wrong
                raise GatewaySettingsError(f"WF_PROFILE {settings.profile}: [basemap]: {exc}") from None
        self.settings = settings
        self.store = store
        self.audit = audit
        self.clock = clock
        self.id = f"gateway-{uuid.uuid4().hex[:8]}"
        self.hub = Hub(store, audit, clock=clock, gateway_id=self.id)
        self.scopes = Scopes(settings, clock=clock)
        self.releases = ReleaseBook(store, settings.settle_s)
        self._zones_version = -1
        self.history_slots = asyncio.Semaphore(HISTORY_CONCURRENCY)
        self.api_limits = RateLimits(settings.api_rate_per_s, 4 * settings.api_rate_per_s)
        self.anon_limits = RateLimits(settings.anon_rate_per_s, 4 * settings.anon_rate_per_s)
        self.auditor = Auditor(audit, {"address": self.anon_limits, "token": self.api_limits}, clock=clock)
        basemap = settings.basemap
        self.csp = content_security_policy(settings.tiles, basemap.origin if basemap else None, settings.peers)
        self.front = FrontDoor(
            settings,
            gateway_id=self.id,
            store=store,
            hub=self.hub,
            scopes=self.scopes,
            auth=Authenticator(settings.secret, settings.max_token_ttl_s, store, clock=clock),
            auditor=self.auditor,
            static=StaticFiles(STATIC, self.csp, basemap.path if basemap else None),
            api_limits=self.api_limits,
            anon_limits=self.anon_limits,
            csp=self.csp,
            context=self,
            clock=clock,
        )
        messages = Messages(
            store=store,
            audit=audit,
            auditor=self.auditor,
            hub=self.hub,
            scopes=self.scopes,
            jurisdiction=settings.jurisdiction or self.places.box,
            zones_changed=self.refresh_zones,
            clock=clock,
            places=self.places,
        )
        self.sessions = Sessions(
            settings, gateway_id=self.id, store=store, hub=self.hub, auditor=self.auditor, messages=messages, clock=clock
        )
        self.counts = CountsFeed(store, self.hub, self.scopes, self.releases, clock=clock)
        self.forecasts = ForecastFeed(store, self.hub, self._partner_forecast)
        # partners' webhooks and CAP feeds: a named secret that is not set stops the gateway here (FeedConfigError)
        env = os.environ if environ is None else environ
        feed_settings = load_feed_settings(env)
        self.feeds = Feeds(
            feed_targets(self.agreements, env, feed_settings),
            feed_settings,
            gateway_id=self.id,
            secret=settings.secret,
            store=store,
            hub=self.hub,
            scopes=self.scopes,
            audit=audit,
            clock=clock,
        )
        self._tasks: list[asyncio.Task] = []
        self.server: Server | None = None

    # -- what the API handlers read --------------------------------------------

    @property
    def zones(self) -> dict[str, Zone]:
        """The configured and the current event zones, by id."""
        return self.scopes.zones

    @property
    def agreements(self) -> dict[str, Agreement]:
        return self.scopes.agreements

    @property
    def plans(self) -> dict[str, Plan]:
        return self.scopes.plans

    @property
    def refused(self) -> dict[str, int]:
        """Refusals by code since start (shown on /metrics)."""
        return self.auditor.refused

    @property
    def connections(self) -> dict[ServerConnection, Client]:
        return self.sessions.connections

    @property
    def background(self) -> BackgroundTasks:
        """Closes started and not awaited, held until they are done."""
        return self.sessions.background

    async def _partner_forecast(self, scope: Scope) -> dict | None:
        """A partner's forecast frame's content (:mod:`gateway.partnerforecast`); None without that module."""
        try:
            from gateway import partnerforecast
        except ModuleNotFoundError:
            return None
        return await partnerforecast.partner_forecast_view(self, scope)

    def metrics_text(self) -> str:
        return metrics_text(self.hub.clients, self.hub.stats, self.auditor.refused, {d.agreement: d.stats for d in self.feeds.deliverers})

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh_zones()
        await self.hub.start()
        await self.feeds.start()
        for coro in (
            self.hub.run(),
            self._every(1.0, self.hub.flush_audit),
            self._every(1.0, self.auditor.flush_rate_limited),
            self._every(self.settings.counts_every_s, self.counts.push_counts),
            self._every(self.settings.heartbeat_s, self.hub.heartbeat),
            self._every(FORECAST_POLL_S, self.forecasts.push_forecast),
            self._every(2.0, self.refresh_zones),
            self._every(REVOCATION_SWEEP_S, self.sessions.close_revoked),
        ):
            self._tasks.append(asyncio.create_task(coro))
        self.server = await serve(
            self.sessions.handle,
            self.settings.host,
            self.settings.port,
            process_request=self.front.process_request,
            max_size=self.settings.max_message,
            ping_interval=self.settings.ping_s,
            ping_timeout=self.settings.ping_s,
            # a peer that stops reading cannot finish a close handshake: do not wait long for it
            close_timeout=min(5.0, 2 * self.settings.ping_s),
            max_queue=4,
            compression=None,
            # a restarted gateway is reconnected to by every client at once
            backlog=self.settings.backlog,
        )
        log.info("gateway %s listening on http://%s:%d", self.id, self.settings.host, self.port)

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1] if self.server.sockets else self.settings.port

    async def stop(self) -> None:
        """Close every client with GOING_AWAY (they resume elsewhere by id), flush the audit log, stop."""
        await self.sessions.close_all()
        await self.feeds.stop()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        with contextlib.suppress(RedisError, OSError):
            await self.hub.flush_audit()
            await self.auditor.flush_rate_limited()

    async def _every(self, seconds: float, fn: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await fn()
            except (RedisError, OSError) as exc:
                log.warning("%s failed: %s", getattr(fn, "__name__", fn), exc)

    async def refresh_zones(self) -> None:
        """Reload event zones when another gateway (or this one) changed them."""
        version = await self.store.zones_version()
        if version == self._zones_version:
            return
        event_zones = []
        for data in await self.store.event_zones():
            try:
                event_zones.append(Zone.from_json(data))
            except ZoneError as exc:
                log.warning("event zone skipped: %s", exc)
        self.scopes.use_event_zones(event_zones)
        self._zones_version = version
        for client in list(self.hub.clients):
            with contextlib.suppress(ScopeError):
                client.scope = self.scopes.scope(client.claims)
