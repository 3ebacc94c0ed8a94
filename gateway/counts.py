"""The ``counts`` frames: every few seconds, each live client's activity in its scope (adapter: one Redis read for all).

Supervisors and commanders get the calls per cell and per zone over the last
:data:`COUNTS_WINDOW_MIN` minutes, within their scope and subscription;
partners get their units in the newest window of their released table
(:mod:`gateway.releases`), and nothing when their agreement shares no counts.
Clients that see the same get the same text, built once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.disclosure import Plan
from gateway.hub import Hub
from gateway.policy import Scope, view_counts, zone_counts
from gateway.protocol import frame
from gateway.releases import ReleaseBook
from gateway.scopes import Scopes
from gateway.store import Store
from gateway.subscriptions import filter_counts

#: activity window of the counts frames (supervisors and commanders), minutes
COUNTS_WINDOW_MIN = 15


class CountsFeed:
    """Pushes the counts frames to the hub's clients; call :meth:`push_counts` every ``WF_GATEWAY_COUNTS_EVERY_S``."""

    def __init__(self, store: Store, hub: Hub, scopes: Scopes, releases: ReleaseBook, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.hub = hub
        self.scopes = scopes
        self.releases = releases
        self.clock = clock

    async def push_counts(self) -> None:
        """Send every live client the activity in its scope (one Redis read for all of them)."""
        if not self.hub.clients:
            return
        wm = await self.store.watermark()
        if wm is None:
            return
        counts = await self.store.cell_counts(wm, COUNTS_WINDOW_MIN, 8)
        now = self.clock()
        scoped: dict[tuple, tuple[dict, dict]] = {}
        texts: dict[tuple, str] = {}
        for client in list(self.hub.clients):
            if client.catching_up or client.closed:
                continue
            key = client.key
            plan = client.scope.plan
            if plan is not None:
                if key not in texts:
                    texts[key] = await self._partner_counts(client.scope, plan, wm)
                if texts[key]:
                    self.hub.send(client, texts[key])
                continue
            if key not in scoped:
                scoped[key] = (view_counts(counts, client.scope, now), zone_counts(counts, client.scope, now))
            text_key = (key, client.filter)
            if text_key not in texts:
                cells, zones = filter_counts(client.filter, *scoped[key], client.scope, self.scopes.zones)
                texts[text_key] = frame("counts", at=wm, window_min=COUNTS_WINDOW_MIN, cells=cells, zones=zones)
            self.hub.send(client, texts[text_key])

    async def _partner_counts(self, scope: Scope, plan: Plan, wm: float) -> str:
        """A partner's counts frame: its units in the newest window of its released table (empty when it shares no counts)."""
        if "counts" not in self.scopes.agreements[plan.agreement].shares:
            return ""
        latest = await self.releases.latest(plan, wm)
        units = {} if latest is None else latest.for_units(scope.unit_ids).values
        at = None if latest is None else latest.start + latest.minutes * 60
        return frame("counts", at=at, window_min=plan.window_min, k=plan.k, cells={}, zones={}, units=units)
