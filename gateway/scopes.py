"""What each token may see: the zones, the data-sharing agreements and their plans, and the keys that seal partners' ids.

One :class:`Scopes` per gateway process. It holds the configured zones (read
once, at start), the event zones supervisors made (replaced whenever the
gateway reloads them: :meth:`Scopes.use_event_zones`), and turns a verified
token's claims into its :class:`~gateway.policy.Scope` (:meth:`Scopes.scope`).
It does no I/O after construction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from gateway.agreements import load_agreements
from gateway.cursors import cursor_key
from gateway.disclosure import Plan
from gateway.policy import Scope, derive_id_key, scope_for
from gateway.settings import GatewaySettings
from gateway.tokens import Claims
from gateway.zones import Zone, load_zone_files


class Scopes:
    """The zones and agreements of one gateway, and the scope of a token under them.

    Construction reads the zone files and the agreements file (:class:`~gateway.zones.ZoneError`,
    :class:`~gateway.agreements.AgreementError` when they are wrong) and plans every agreement.
    """

    def __init__(self, settings: GatewaySettings, *, clock: Callable[[], float] = time.time) -> None:
        self.k = settings.k
        self.clock = clock
        #: the configured zones (partners' and supervisors'), by id: never replaced by an event zone
        self.file_zones: dict[str, Zone] = load_zone_files(settings.zone_files())
        #: the configured zones and the current event zones, by id
        self.zones: dict[str, Zone] = dict(self.file_zones)
        self.agreements = load_agreements(settings.agreements_path, min_k=settings.k)
        # every agreement's zones must exist now: a partner must never be served a partial agreement
        self.plans: dict[str, Plan] = {a.id: a.plan(self.file_zones) for a in self.agreements.values()}
        self._id_key = derive_id_key(settings.secret)
        self._cursor_key = cursor_key(settings.secret)

    def use_event_zones(self, event_zones: Iterable[Zone]) -> None:
        """Serve ``event_zones`` from now on, with the configured zones (an event zone never replaces one of those)."""
        zones = dict(self.file_zones)
        for z in event_zones:
            if z.id not in self.file_zones:
                zones[z.id] = z
        self.zones = zones

    def scope(self, claims: Claims) -> Scope:
        """The scope of ``claims`` now; :class:`~gateway.policy.ScopeError` when they name nothing this gateway knows."""
        return scope_for(
            claims,
            self.zones,
            self.clock(),
            k=self.k,
            agreements=self.agreements,
            plans=self.plans,
            id_key=self._id_key,
            cursor_key=self._cursor_key,
        )
