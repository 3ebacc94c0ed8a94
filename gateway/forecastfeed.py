"""The ``forecast`` frames: each live client is sent the new forecast set, in its scope, when the worker makes one (adapter).

Every few seconds :meth:`ForecastFeed.push_forecast` reads ``P:forecast:version`` (one GET); when it has changed
it reads the set once and sends every live client a ``forecast`` frame
``{"type": "forecast", "version": N, "forecast": {...}}``: supervisors the set, commanders what lies in their cells
(:func:`gateway.forecasts.scoped`, as ``GET /api/forecast``), both without the res-7 cells
(:func:`gateway.forecasts.frame_view`). Partners are never sent on the worker's schedule: the set's version and
when it changes follow the worker's event clock, which their released table does not determine. Their frame
``{"type": "forecast", "forecast": {...}}`` holds their agreement's view (``partner_view``:
:func:`gateway.partnerforecast.partner_forecast_view`), checked on every call and sent when it changes, i.e. when
a new window of their released table is out (its ``after``), or nothing. Clients that see the same get the same
text, built once. A client that connects later reads ``GET /api/forecast``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gateway import forecasts
from gateway.http import HttpError
from gateway.hub import Hub
from gateway.policy import Scope, visible_cells
from gateway.protocol import frame
from gateway.store import Store

#: a partner's forecast view, or None when it has none (its agreement shares no history)
PartnerView = Callable[[Scope], Awaitable[dict[str, Any] | None]]


class ForecastFeed:
    """Pushes ``forecast`` frames; call :meth:`push_forecast` every couple of seconds."""

    def __init__(self, store: Store, hub: Hub, partner_view: PartnerView | None = None) -> None:
        self.store = store
        self.hub = hub
        self.partner_view = partner_view
        #: the version last pushed (None: none seen yet)
        self.version: int | None = None
        #: each partner scope's view last sent, by its ``after`` (the end of the newest released window it is made from)
        self.partner_after: dict[tuple, float] = {}

    async def push_forecast(self) -> None:
        """Send the live clients the new set when ``P:forecast:version`` changed since the last call; partners their
        view when it changed."""
        await self._push_partners()
        version = await self.store.forecast_version()
        if version == self.version:
            return
        version, text = await self.store.forecast()
        self.version = version
        fs = forecasts.parse_set(text)
        if fs is None or not forecasts.is_ready(fs) or not self.hub.clients:
            return
        texts: dict[tuple, str | None] = {}
        for client in list(self.hub.clients):
            if client.catching_up or client.closed or client.scope.plan is not None:
                continue
            if client.key not in texts:
                texts[client.key] = await self._text(client.scope, fs, version)
            text = texts[client.key]
            if text:
                self.hub.send(client, text)

    async def _text(self, scope: Scope, fs: dict[str, Any], version: int) -> str:
        view = forecasts.frame_view(forecasts.scoped(fs, visible_cells(scope)))
        return frame("forecast", version=version, forecast=view)

    async def _push_partners(self) -> None:
        """Each partner scope's view, sent to its live clients when its ``after`` moved (a new released window)."""
        if self.partner_view is None:
            return
        texts: dict[tuple, str | None] = {}
        for client in list(self.hub.clients):
            if client.scope.plan is None or client.catching_up or client.closed:
                continue
            if client.key not in texts:
                texts[client.key] = await self._partner_text(client.key, client.scope)
            text = texts[client.key]
            if text:
                self.hub.send(client, text)

    async def _partner_text(self, key: tuple, scope: Scope) -> str | None:
        assert self.partner_view is not None
        try:
            view = await self.partner_view(scope)
        except (HttpError, ValueError):
            return None
        after = None if view is None else view.get("after")
        if view is None or after is None or self.partner_after.get(key) == after:
            return None
        self.partner_after[key] = after
        return frame("forecast", forecast=view)
