"""What a connected client may ask: subscribe, acknowledge or resolve an alert, create or narrow an event zone.

:meth:`Messages.handle` takes one parsed client message
(:func:`gateway.protocol.parse_client_message`) and either does it (answering
on the client's queue, auditing it) or raises
:class:`~gateway.protocol.ProtocolError`, which the session answers with an
``error`` frame and audits as a refusal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway import api
from gateway.audit import AuditAction, AuditLog, AuditRecord
from gateway.auditor import Auditor
from gateway.hub import Client, Hub
from gateway.places import Places
from gateway.policy import view
from gateway.protocol import AlertAction, CreateZone, ProtocolError, Subscribe, frame
from gateway.scopes import Scopes
from gateway.store import Store
from gateway.subscriptions import Filter, build_filter
from gateway.tokens import Role
from gateway.zones import GeometryError, Zone, ZoneError, event_zone
from streams.ingest.schema import Jurisdiction


class Messages:
    """The handlers of client messages, one per message type.

    ``jurisdiction`` bounds event zones (:func:`gateway.zones.event_zone`); ``zones_changed`` is awaited after a
    zone is saved, so that this gateway serves it before the client is answered; ``places`` gives the
    jurisdiction's clock that refusals state times in.
    """

    def __init__(
        self,
        *,
        store: Store,
        audit: AuditLog,
        auditor: Auditor,
        hub: Hub,
        scopes: Scopes,
        jurisdiction: Jurisdiction | None,
        zones_changed: Callable[[], Awaitable[None]],
        clock: Callable[[], float] = time.time,
        places: Places | None = None,
    ) -> None:
        self.places = Places() if places is None else places
        self.store = store
        self.audit = audit
        self.auditor = auditor
        self.hub = hub
        self.scopes = scopes
        self.jurisdiction = jurisdiction
        self.zones_changed = zones_changed
        self.clock = clock
        #: message type -> its handler (each takes its own type: Any)
        self._handlers: dict[type, Callable[[Client, Any, float], Awaitable[None]]] = {
            Subscribe: self._subscribe,
            AlertAction: self._alert_action,
            CreateZone: self._create_zone,
        }

    async def handle(self, client: Client, msg: object) -> None:
        """Do what ``msg`` asks for ``client``; :class:`~gateway.protocol.ProtocolError` when it may not."""
        handler = self._handlers.get(type(msg))
        if handler is not None:
            await handler(client, msg, self.clock())

    async def _subscribe(self, client: Client, msg: Subscribe, now: float) -> None:
        client.filter = build_filter(msg, client.scope, self.scopes.zones, now)
        await self.auditor.quietly(AuditAction.SUBSCRIBE, client.claims, client.remote, detail=filter_json(client.filter))
        self.hub.send(client, frame("subscribed", filters=filter_json(client.filter)))

    async def _alert_action(self, client: Client, msg: AlertAction, now: float) -> None:
        claims = client.claims
        if claims.role not in (Role.SUPERVISOR, Role.COMMANDER):
            raise ProtocolError("forbidden", f"a {claims.role.value} token cannot {msg.action} alerts")
        known = self.hub.alerts.get(msg.alert_id)
        if known is None:
            raise ProtocolError("unknown_alert", f"no alert {msg.alert_id!r} (it may be older than the gateway remembers)")
        raw = known[1]
        if view(raw, client.scope, now) is None:
            raise ProtocolError("forbidden", f"alert {msg.alert_id!r} is outside what this token may see")
        action = {
            "alert_id": msg.alert_id,
            "action": msg.action,
            "by": claims.subject,
            "role": claims.role.value,
            "agency": claims.agency,
            "note": msg.note,
            "at": now,
            "alert": raw,
        }
        status = {k: action[k] for k in ("action", "by", "role", "agency", "note", "at")}
        sid = await self.store.append_action(action, status)
        kind = AuditAction.ACK if msg.action == "ack" else AuditAction.RESOLVE
        await self.audit.record(
            AuditRecord(
                kind, claims.subject, claims.role.value, claims.agency, msg.alert_id, client.remote, {"note": msg.note, "entry": sid}, now
            )
        )

    async def _create_zone(self, client: Client, msg: CreateZone, now: float) -> None:
        """A supervisor creates or replaces an event zone; a commander may only narrow its own (never move, widen,
        back-date or extend it, nor set a threshold below the supervisor's floor). Audited with before and after."""
        claims = client.claims
        if claims.role not in (Role.SUPERVISOR, Role.COMMANDER):
            raise ProtocolError("forbidden", f"a {claims.role.value} token cannot create zones")
        if claims.role is Role.COMMANDER and msg.id not in claims.zones:
            raise ProtocolError("forbidden", f"this commander token may change only the zones it names ({', '.join(claims.zones)})")
        if msg.id in self.scopes.file_zones:
            raise ProtocolError("zone_exists", f"{msg.id!r} is a configured partner zone; choose another id")
        before = self.scopes.zones.get(msg.id)
        if claims.role is Role.COMMANDER and msg.floor is not None:
            raise ProtocolError("forbidden", "only a supervisor sets a zone's threshold floor")
        try:
            zone = event_zone(
                id=msg.id,
                name=msg.name,
                polygon=msg.polygon,
                starts_at=msg.starts_at,
                ends_at=msg.ends_at,
                agency=claims.agency if before is None or claims.role is Role.SUPERVISOR else before.agency,
                threshold=msg.threshold,
                floor=msg.floor if claims.role is Role.SUPERVISOR else None,
                expected_calls_per_hour=msg.expected_calls_per_hour,
                within=self.jurisdiction,
            )
        except GeometryError as exc:
            raise ProtocolError("bad_polygon", str(exc)) from exc
        except ZoneError as exc:
            raise ProtocolError("bad_zone", str(exc)) from exc
        if claims.role is Role.COMMANDER:
            check_narrows(before, zone, self.places)
            assert before is not None
            zone = dataclasses.replace(zone, floor=before.floor if before.floor is not None else before.threshold)
        await self.store.save_zone(zone.to_json())
        action = AuditAction.ZONE_CREATE if before is None else AuditAction.ZONE_UPDATE
        detail = {"before": None if before is None else zone_summary(before), "after": zone_summary(zone)}
        await self.audit.record(AuditRecord(action, claims.subject, claims.role.value, claims.agency, zone.id, client.remote, detail, now))
        await self.zones_changed()
        self.hub.send(client, frame("zone_created", zone=api.zone_json(zone, now)))


def zone_summary(z: Zone) -> dict:
    """What the audit log keeps of a zone: enough to see what changed (its cells by count and digest)."""
    digest = hashlib.sha256(",".join(sorted(z.cells)).encode()).hexdigest()[:16]
    return {"name": z.name, "cells": len(z.cells), "cells_sha256": digest, "active_from": z.active_from,
            "active_until": z.active_until, "threshold": z.threshold, "floor": z.floor,
            "expected_calls_per_hour": z.expected_calls_per_hour}  # fmt: skip


def check_narrows(before: Zone | None, after: Zone, places: Places | None = None) -> None:
    """:class:`ProtocolError` unless ``after`` narrows the supervisor-made ``before`` (a commander's change).

    Times in the refusal are the jurisdiction's wall clock (``places``; UTC without), with the epoch seconds
    the client sends:

    >>> from gateway.zones import Zone
    >>> before = Zone("parade", "Parade", "event", "NPD", frozenset({"882aac941dfffff"}), {}, active_from=1_700_000_000.0,
    ...               active_until=1_700_007_200.0)
    >>> later = Zone("parade", "Parade", "event", "NPD", frozenset({"882aac941dfffff"}), {}, active_from=1_700_000_000.0,
    ...              active_until=1_700_010_800.0)
    >>> check_narrows(before, later, Places("America/Los_Angeles"))
    Traceback (most recent call last):
    ...
    gateway.protocol.ProtocolError: a commander may not end its zone after 2023-11-14 16:13 PST (1700007200, the supervisor's end)
    """
    when = (Places() if places is None else places).local
    if before is None:
        raise ProtocolError("forbidden", f"event zone {after.id!r} does not exist: a supervisor creates it, a commander may narrow it")
    outside = after.cells - before.cells
    if outside:
        raise ProtocolError("forbidden", f"a commander may only narrow its zone: the polygon covers {len(outside)} cell(s) outside it")
    if before.active_from is not None and (after.active_from or 0) < before.active_from:
        raise ProtocolError(
            "forbidden",
            f"a commander may not start its zone before {when(before.active_from)} ({before.active_from:.0f}, the supervisor's start)",
        )
    if before.active_until is not None and (after.active_until is None or after.active_until > before.active_until):
        raise ProtocolError(
            "forbidden",
            f"a commander may not end its zone after {when(before.active_until)} ({before.active_until:.0f}, the supervisor's end)",
        )
    floor = before.floor if before.floor is not None else before.threshold
    if floor is not None and (after.threshold is None or after.threshold < floor):
        raise ProtocolError("forbidden", f"a commander may not set the threshold below the supervisor's floor {floor:g}")


def filter_json(f: Filter) -> dict:
    """What the audit log and the ``subscribed`` frame say of a subscription."""
    return {
        "cells": None if f.cells is None else len(f.cells),
        "categories": None if f.categories is None else sorted(f.categories),
        "min_severity": f.min_severity,
    }
