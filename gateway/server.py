"""The gateway process: WebSocket feeds and the read-only HTTP API on one port (adapter).

``python -m gateway`` serves, on ``WF_GATEWAY_HOST:WF_GATEWAY_PORT`` (8765):

=====================================  ==========================================================
``GET /``                              the dashboard (``gateway/static``)
``GET /ws?token=..[&last_id=..]``      the WebSocket feed (:mod:`gateway.protocol`)
``GET /healthz``                       ``{"status": "ok", "redis": true}`` (503 when Redis is down)
``GET /metrics``                       Prometheus text: clients by role, deliveries, refusals
``GET /api/me``                        the caller's claims and the zones it may see
``GET /api/alerts``                    current alerts in scope (``state=open|all``, ``kind``,
                                       ``min_severity``, ``limit``) and ``last_id`` to resume from
``GET /api/hotspots``                  calls per cell over ``window`` minutes (15) in scope
``GET /api/cells/{cell}/history``      a cell's calls per ``step`` minutes over ``hours`` (24)
``GET /api/cells?ids=a,b``             outlines of cells in scope (to draw alert cells on a map)
``GET /api/zones``                     zones in scope, with their cells and outline
``GET /api/audit``                     the audit log (supervisors; ``since``, ``until``, ``actor``,
                                       ``action``, ``target``, ``limit``)
``GET /api/audit/export``              the same as CSV (``format=csv``) or JSON lines (``format=jsonl``)
=====================================  ==========================================================

API calls carry ``Authorization: Bearer <token>``. Refusals are JSON
``{"error", "message"}`` with 400, 401, 403, 404 or 503, and every refusal is in the
audit log. Every handshake and API call checks the token (:func:`gateway.tokens.verify`,
with ``WF_GATEWAY_MAX_TOKEN_TTL_S``) and that it was not revoked (``P:revoked``;
refused with 401 ``revoked``, and with 503 when Redis cannot say); sockets open
with a token revoked since are closed with 4401 within :data:`REVOCATION_SWEEP_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import mimetypes
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import h3
from redis.exceptions import RedisError
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from gateway.audit import AuditAction, AuditLog, AuditRecord, to_csv
from gateway.hub import Client, Hub
from gateway.policy import Scope, ScopeError, derive_id_key, scope_for, severity, view, view_counts, visible_cells, zone_counts
from gateway.protocol import SEVERITIES as POLICY_SEVERITIES
from gateway.protocol import AlertAction, CloseCode, CreateZone, ProtocolError, Subscribe, frame, parse_client_message
from gateway.settings import GatewaySettings
from gateway.store import Store, stream_id
from gateway.subscriptions import Filter, build_filter, filter_counts
from gateway.tokens import PARTNER_ROLES, Claims, Role, TokenError, verify
from gateway.zones import ZONE_RESOLUTION, GeometryError, Zone, ZoneError, event_zone, load_zone_files

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
#: activity window of the counts frames and the hot-spot default, minutes
COUNTS_WINDOW_MIN = 15
#: bytes a connection's socket buffer may hold before frames wait in its queue (websockets' default write limit)
WRITE_LIMIT = 2**15
#: seconds between checks of the open sockets' tokens against the revoked ones
REVOCATION_SWEEP_S = 2.0
#: most res-8 cells times minutes one /api/cells/{cell}/history call reads (a week of 10 cells, a day of 69):
#: a res-0 cell is 5.7 million res-8 cells, and reading is paid for by every other client
MAX_HISTORY_CELL_MINUTES = 100_000
#: history calls read at once (the others wait their turn rather than share the event loop)
HISTORY_CONCURRENCY = 1
#: longest client-supplied text an audit record or error keeps (a refused 128 KiB frame is not copied into the log)
AUDIT_TEXT = 300
#: close codes websockets itself uses on a client's bad frame, as the refusal codes they are audited with
_PROTOCOL_CLOSES = {1007: "invalid_text", 1009: "message_too_big", 1002: "protocol_error"}


class HttpError(Exception):
    """A refused request; ``claims`` names the caller in the audit record when its token was verified."""

    def __init__(self, status: int, code: str, message: str, claims: Claims | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.claims = claims


def _json_response(status: int, body: object, extra: list[tuple[str, str]] | None = None) -> Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    return _response(status, data, "application/json", extra)


def _response(status: int, body: bytes, content_type: str, extra: list[tuple[str, str]] | None = None) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: *; style-src 'self'"),
            ("Connection", "close"),
        ]
        + (extra or [])
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


class Gateway:
    """One gateway process: the hub, the zones, and the connection handlers."""

    def __init__(self, settings: GatewaySettings, store: Store, audit: AuditLog, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.audit = audit
        self.clock = clock
        self.id = f"gateway-{uuid.uuid4().hex[:8]}"
        self.hub = Hub(store, audit, clock=clock, gateway_id=self.id)
        self.file_zones: dict[str, Zone] = load_zone_files(settings.zone_files())
        self.zones: dict[str, Zone] = dict(self.file_zones)
        self._zones_version = -1
        self._id_key = derive_id_key(settings.secret)
        self.refused: dict[str, int] = {}
        self._history_slots = asyncio.Semaphore(HISTORY_CONCURRENCY)
        self.connections: dict[ServerConnection, Client] = {}
        self._tasks: list[asyncio.Task] = []
        self.server: Server | None = None

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh_zones()
        await self.hub.start()
        for coro in (self.hub.run(), self._every(1.0, self.hub.flush_audit), self._every(self.settings.counts_every_s, self.push_counts)):
            self._tasks.append(asyncio.create_task(coro))
        self._tasks.append(asyncio.create_task(self._every(2.0, self.refresh_zones)))
        self._tasks.append(asyncio.create_task(self._every(REVOCATION_SWEEP_S, self.close_revoked)))
        self.server = await serve(
            self.handle,
            self.settings.host,
            self.settings.port,
            process_request=self.process_request,
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
        for conn in list(self.connections):
            with contextlib.suppress(Exception):
                await conn.close(CloseCode.GOING_AWAY, "gateway restarting: reconnect with last_id")
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

    async def _every(self, seconds: float, fn: Callable) -> None:
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
        zones = dict(self.file_zones)
        for data in await self.store.event_zones():
            try:
                z = Zone.from_json(data)
            except ZoneError as exc:
                log.warning("event zone skipped: %s", exc)
                continue
            if z.id not in self.file_zones:
                zones[z.id] = z
        self.zones = zones
        self._zones_version = version
        for client in list(self.hub.clients):
            with contextlib.suppress(ScopeError):
                client.scope = self._scope(client.claims)

    def _scope(self, claims: Claims) -> Scope:
        return scope_for(claims, self.zones, self.clock(), k=self.settings.k, id_key=self._id_key)

    # -- auditing --------------------------------------------------------------

    async def refuse(self, request: Request, remote: str, code: str, claims: Claims | None = None, **detail: object) -> None:
        self.refused[code] = self.refused.get(code, 0) + 1
        path = urlsplit(request.path).path
        record = AuditRecord(
            AuditAction.REFUSED,
            actor=claims.subject if claims else "",
            role=claims.role.value if claims else "",
            agency=claims.agency if claims else "",
            target=path,
            remote=remote,
            detail={"code": code, **{k: _clip(v) for k, v in detail.items()}},
            at=self.clock(),
        )
        with contextlib.suppress(RedisError, OSError):
            await self.audit.record(record)

    # -- HTTP ------------------------------------------------------------------

    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = parse_qs(url.query, keep_blank_values=True)
        remote = _remote(connection)
        claims: Claims | None = None  # verified once; named in the audit record of a refusal
        try:
            if url.path == "/ws":
                return await self._authorize_ws(connection, request, query, remote)
            if url.path in ("/", "/index.html") or url.path.startswith("/static/"):
                return self._static(url.path)
            if url.path == "/healthz":
                ok = await self.store.ping()
                return _json_response(200 if ok else 503, {"status": "ok" if ok else "degraded", "redis": ok, "gateway": self.id})
            if url.path == "/metrics":
                return _response(200, self.metrics_text().encode(), "text/plain; version=0.0.4")
            if url.path.startswith("/api/"):
                claims = await self._bearer(request)
                return await self._api(url.path, query, claims, remote)
            raise HttpError(404, "not_found", f"no such path {url.path!r}")
        except HttpError as exc:
            if exc.status in (401, 403) or url.path.startswith("/api/") or url.path == "/ws":
                await self.refuse(request, remote, exc.code, exc.claims or claims, message=exc.message)
            return _json_response(exc.status, {"error": exc.code, "message": exc.message})

    async def _verify(self, token: str | None) -> Claims:
        """The claims of a token this gateway accepts now: signed, in date, not too long-lived, not revoked."""
        try:
            claims = verify(self.settings.secret, token, now=self.clock(), max_ttl_s=self.settings.max_token_ttl_s)
        except TokenError as exc:
            raise HttpError(401, exc.code, exc.message) from exc
        try:
            revoked = await self.store.is_revoked(claims.token_id)
        except (RedisError, OSError) as exc:
            # refused rather than let a revoked token through while Redis cannot say
            raise HttpError(503, "unavailable", "cannot check the token against the revoked ones; retry shortly", claims) from exc
        if revoked:
            raise HttpError(401, "revoked", "token revoked: ask for a new one", claims)
        return claims

    async def _bearer(self, request: Request) -> Claims:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise HttpError(401, "missing", "send Authorization: Bearer <token>")
        if scheme.lower() != "bearer" or not token:
            raise HttpError(401, "malformed", "the Authorization header must be 'Bearer <token>'")
        return await self._verify(token.strip())

    async def _authorize_ws(self, connection: ServerConnection, request: Request, query: dict, remote: str) -> Response | None:
        claims = await self._verify(_one(query, "token"))
        try:
            last_id = _one(query, "last_id")
            if last_id is not None:
                stream_id(last_id)
        except ValueError as exc:
            raise HttpError(400, "bad_last_id", str(exc), claims) from exc
        except HttpError as exc:
            exc.claims = claims
            raise
        try:
            scope = self._scope(claims)
        except ScopeError as exc:
            raise HttpError(403, "no_scope", str(exc), claims) from exc
        connection.wf_claims = claims  # type: ignore[attr-defined]
        connection.wf_scope = scope  # type: ignore[attr-defined]
        connection.wf_last_id = last_id  # type: ignore[attr-defined]
        return None

    def _static(self, path: str) -> Response:
        name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
        files = {p.name: p for p in STATIC.iterdir() if p.is_file()} if STATIC.is_dir() else {}
        if name not in files:  # only files that exist in the folder: no path traversal
            raise HttpError(404, "not_found", f"no such file {name!r}")
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript",):
            ctype += "; charset=utf-8"
        return _response(200, files[name].read_bytes(), ctype)

    async def _api(self, path: str, query: dict, claims: Claims, remote: str) -> Response:
        now = self.clock()
        try:
            scope = self._scope(claims)
        except ScopeError as exc:
            raise HttpError(403, "no_scope", str(exc)) from exc
        parts = path.strip("/").split("/")
        if parts == ["api", "me"]:
            return _json_response(200, {"claims": claims.to_json(), "zones": [z.id for z in scope.zones], "k": scope.k})
        if parts == ["api", "alerts"]:
            return _json_response(200, self._alerts(query, scope, now))
        if parts == ["api", "hotspots"]:
            return _json_response(200, await self._hotspots(query, scope, now))
        if len(parts) == 4 and parts[:2] == ["api", "cells"] and parts[3] == "history":
            return _json_response(200, await self._history(parts[2], query, scope, now))
        if parts == ["api", "cells"]:
            return _json_response(200, self._cells(query, scope))
        if parts == ["api", "zones"]:
            return _json_response(200, {"zones": [_zone_json(z, now) for z in scope.zones]})
        if parts[:2] == ["api", "audit"]:
            if claims.role is not Role.SUPERVISOR:
                raise HttpError(403, "forbidden", "only supervisors read the audit log")
            return await self._audit(parts[2:], query, claims, remote)
        raise HttpError(404, "not_found", f"no such API {path!r}")

    def _alerts(self, query: dict, scope: Scope, now: float) -> dict:
        state = _one(query, "state") or "open"
        if state not in ("open", "all"):
            raise HttpError(400, "bad_state", f"state must be 'open' or 'all', got {state!r}")
        kind = _one(query, "kind")
        min_sev = _one(query, "min_severity") or "low"
        if min_sev not in POLICY_SEVERITIES:
            raise HttpError(400, "bad_severity", f"min_severity must be one of {', '.join(POLICY_SEVERITIES)}, got {min_sev!r}")
        limit = _int(query, "limit", 100, 1, 1000)
        out = []
        for alert_id, (sid, raw) in reversed(self.hub.alerts.items()):
            status = self.hub.status.get(alert_id)
            if state == "open" and (raw.get("state") == "closed" or (status or {}).get("action") == "resolve"):
                continue
            if kind and raw.get("kind") != kind:
                continue
            if POLICY_SEVERITIES.index(severity(raw)) < POLICY_SEVERITIES.index(min_sev):
                continue
            v = view(raw, scope, now)
            if v is None:
                continue
            if scope.role in (Role.SUPERVISOR, Role.COMMANDER):
                v["status"] = status
            elif status is not None:
                v["status"] = {"action": status["action"], "at": status["at"]}  # not who, not the note
            out.append({"id": sid, "alert": v})
            if len(out) >= limit:
                break
        return {"last_id": self.hub.position, "alerts": out}

    async def _hotspots(self, query: dict, scope: Scope, now: float) -> dict:
        window = _int(query, "window", COUNTS_WINDOW_MIN, 1, 24 * 60)
        limit = _int(query, "limit", 200, 1, 5000)
        wm = await self.store.watermark()
        if wm is None:
            return {"at": None, "window_min": window, "cells": [], "zones": {}}
        counts = await self.store.cell_counts(wm, window, 8)
        shown = view_counts(counts, scope, now)
        top = sorted(shown.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return {
            "at": wm,
            "window_min": window,
            "cells": [{"cell": c, "count": n, "boundary": [list(p) for p in h3.cell_to_boundary(c)]} for c, n in top],
            "zones": zone_counts(counts, scope, now),
        }

    def _cells(self, query: dict, scope: Scope) -> dict:
        """Outlines of the asked cells this scope may see: any for supervisors; partners and commanders
        their own res-8 cells and their generalized parents (what their alert views name)."""
        ids = [c for c in (_one(query, "ids") or "").split(",") if c]
        if not ids or len(ids) > 500:
            raise HttpError(400, "bad_ids", "ids must list 1 to 500 H3 cell ids, comma-separated")
        bad = [c for c in ids if not h3.is_valid_cell(c)]
        if bad:
            raise HttpError(400, "bad_ids", f"not H3 cell ids: {', '.join(bad[:5])}")
        visible = visible_cells(scope)
        if visible is not None:
            allowed = set(visible) | {h3.cell_to_parent(c, scope.generalize_res) for c in visible}
            outside = [c for c in ids if c not in allowed]
            if outside:
                raise HttpError(403, "out_of_scope", f"{len(outside)} cell(s) are outside what this token may see")
        return {"cells": [{"cell": c, "boundary": [list(p) for p in h3.cell_to_boundary(c)]} for c in ids]}

    async def _history(self, cell: str, query: dict, scope: Scope, now: float) -> dict:
        if not h3.is_valid_cell(cell):
            raise HttpError(400, "bad_cell", f"{cell!r} is not an H3 cell id")
        hours = _int(query, "hours", 24, 1, 24 * 7)
        step = _int(query, "step", 15, 1, 24 * 60)
        res = h3.get_resolution(cell)
        if res > ZONE_RESOLUTION:
            # a bad request whoever asks, and whether or not the cell is in scope (so it tells nothing about scope)
            message = f"cell {cell} is resolution {res}; calls are counted down to resolution {ZONE_RESOLUTION}: ask for its parent"
            raise HttpError(400, "bad_cell", message)
        visible = visible_cells(scope)
        if visible is None:
            # counted before they are listed: a res-0 cell has 5.7 million res-8 children
            n = h3.cell_to_children_size(cell, ZONE_RESOLUTION)
            cells = list(h3.cell_to_children(cell, ZONE_RESOLUTION)) if n * hours * 60 <= MAX_HISTORY_CELL_MINUTES else []
        else:
            # only the caller's own res-8 cells inside the asked cell: never the rest of a coarse cell
            cells = sorted(c for c in visible if c == cell or (res < ZONE_RESOLUTION and h3.cell_to_parent(c, res) == cell))
            n = len(cells)
        if not n:
            raise HttpError(403, "out_of_scope", f"cell {cell} is outside what this token may see")
        if n * hours * 60 > MAX_HISTORY_CELL_MINUTES:
            raise HttpError(
                400,
                "history_too_large",
                f"{n} res-{ZONE_RESOLUTION} cells over {hours} h is more than {MAX_HISTORY_CELL_MINUTES} cell-minutes; "
                "ask for fewer hours or a finer cell",
            )
        wm = await self.store.watermark()
        if wm is None:
            return {"cell": cell, "bins": []}
        async with self._history_slots:
            bins = await self.store.history(cells, wm, hours * 60, step)
        if scope.role in PARTNER_ROLES:
            for b in bins:
                b["categories"] = {c: n for c, n in b["categories"].items() if n >= scope.k}
        return {"cell": cell, "at": wm, "bins": bins}

    async def _audit(self, rest: list[str], query: dict, claims: Claims, remote: str) -> Response:
        since = _float(query, "since")
        until = _float(query, "until")
        limit = _int(query, "limit", 1000, 1, 100_000)
        rows = await self.audit.query(
            since=since, until=until, actor=_one(query, "actor"), action=_one(query, "action"), target=_one(query, "target"), limit=limit
        )
        action = AuditAction.QUERY if not rest else AuditAction.EXPORT
        await self.audit.record(
            AuditRecord(
                action, claims.subject, claims.role.value, claims.agency, remote=remote, detail={"rows": len(rows)}, at=self.clock()
            )
        )
        if not rest:
            return _json_response(200, {"records": [{"id": sid, **r.to_fields(), "detail": r.detail} for sid, r in rows]})
        if rest != ["export"]:
            raise HttpError(404, "not_found", "audit has /api/audit and /api/audit/export")
        fmt = _one(query, "format") or "csv"
        if fmt == "csv":
            body, ctype = to_csv(rows).encode(), "text/csv; charset=utf-8"
        elif fmt == "jsonl":
            body = "".join(json.dumps({"id": sid, **r.to_fields(), "detail": r.detail}) + "\n" for sid, r in rows).encode()
            ctype = "application/x-ndjson"
        else:
            raise HttpError(400, "bad_format", f"format must be csv or jsonl, got {fmt!r}")
        return _response(200, body, ctype, [("Content-Disposition", f'attachment; filename="watchfloor-audit.{fmt}"')])

    def metrics_text(self) -> str:
        by_role: dict[str, int] = {}
        for c in self.hub.clients:
            by_role[c.claims.role.value] = by_role.get(c.claims.role.value, 0) + 1
        lines = [
            "# HELP watchfloor_gateway_clients Connected WebSocket clients by role.",
            "# TYPE watchfloor_gateway_clients gauge",
        ]
        lines += [f'watchfloor_gateway_clients{{role="{r.value}"}} {by_role.get(r.value, 0)}' for r in Role]
        for name, key, help_ in (
            ("entries", "entries", "Alerts-stream entries read."),
            ("delivered", "delivered", "Frames of alerts and actions queued to clients."),
            ("closed_slow", "closed_slow", "Clients closed because they could not keep up."),
            ("redis_errors", "redis_errors", "Failed reads of the alerts stream."),
        ):
            lines += [f"# HELP watchfloor_gateway_{name}_total {help_}", f"# TYPE watchfloor_gateway_{name}_total counter"]
            lines.append(f"watchfloor_gateway_{name}_total {self.hub.stats[key]}")
        lines += [
            "# HELP watchfloor_gateway_refused_total Refused requests and messages by reason.",
            "# TYPE watchfloor_gateway_refused_total counter",
        ]
        lines += [f'watchfloor_gateway_refused_total{{code="{c}"}} {n}' for c, n in sorted(self.refused.items())]
        return "\n".join(lines) + "\n"

    # -- WebSocket -------------------------------------------------------------

    async def handle(self, connection: ServerConnection) -> None:
        claims: Claims = connection.wf_claims  # type: ignore[attr-defined]
        scope: Scope = connection.wf_scope  # type: ignore[attr-defined]
        last_id: str | None = connection.wf_last_id  # type: ignore[attr-defined]
        remote = _remote(connection)
        loop = asyncio.get_running_loop()

        def close(code: int, reason: str) -> None:
            loop.create_task(connection.close(code, reason))

        def write_now(text: str) -> bool:
            transport = connection.transport
            if transport is None or transport.get_write_buffer_size() > WRITE_LIMIT:
                return False
            try:
                broadcast([connection], text, raise_exceptions=True)
            except ExceptionGroup:  # this one connection could not take it: queue it instead
                return False
            return True

        client = Client(claims, scope, Filter.everything(), self.settings.queue_size, remote=remote, close=close, write_now=write_now)
        self.connections[connection] = client
        expiry = loop.call_later(
            max(0.0, claims.expires_at - self.clock()), close, CloseCode.TOKEN_EXPIRED, "token expired: reconnect with a new one"
        )
        writer = asyncio.create_task(self._write(connection, client))
        await self._audit_quietly(AuditAction.CONNECT, claims, remote, detail={"last_id": last_id, "gateway": self.id})
        try:
            self.hub.send(
                client,
                frame(
                    "welcome",
                    role=claims.role.value,
                    agency=claims.agency,
                    subject=claims.subject,
                    zones=[z.id for z in scope.zones],
                    expires_at=claims.expires_at,
                    resumed_from=last_id,
                    gateway=self.id,
                ),
            )
            warning = await self.hub.attach(client, last_id)
            if warning:
                self.hub.send(client, frame("error", code="resume_truncated", message=warning))
            await self._read(connection, client)
        except ConnectionClosed:
            pass
        finally:
            expiry.cancel()
            self.hub.detach(client)
            self.connections.pop(connection, None)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            # the code of whoever closed first (the peer's echo of ours may never arrive)
            sent = connection.protocol.close_sent
            by_us = sent is not None and not connection.protocol.close_rcvd_then_sent
            refused = _PROTOCOL_CLOSES.get(sent.code) if sent is not None and by_us else None
            if refused is not None and sent is not None:
                # websockets closed it on a bad frame (too big, not UTF-8) before the handler saw it
                self.refused[refused] = self.refused.get(refused, 0) + 1
                await self._audit_quietly(AuditAction.REFUSED, claims, remote, detail={"code": refused, "message": _clip(sent.reason)})
            code = sent.code if sent is not None and by_us else connection.close_code
            await self._audit_quietly(AuditAction.DISCONNECT, claims, remote, detail={"code": code, "last_id": client.last_sent_id})

    async def _write(self, connection: ServerConnection, client: Client) -> None:
        try:
            while True:
                text = await client.queue.get()
                client.sending = True
                await connection.send(text)
                client.sending = False
        except ConnectionClosed:
            return

    async def _read(self, connection: ServerConnection, client: Client) -> None:
        rate = self.settings.rate_per_s
        allowance, last = 2 * rate, time.monotonic()
        errors = 0
        async for message in connection:
            t = time.monotonic()
            allowance = min(2 * rate, allowance + (t - last) * rate)
            last = t
            try:
                if allowance < 1:
                    raise ProtocolError("rate_limited", f"more than {rate:g} messages a second; slow down")
                allowance -= 1
                msg = parse_client_message(message)
                await self._on_message(client, msg)
            except ProtocolError as exc:
                errors += 1
                self.refused[exc.code] = self.refused.get(exc.code, 0) + 1
                await self._audit_quietly(
                    AuditAction.REFUSED, client.claims, client.remote, detail={"code": exc.code, "message": _clip(exc.message)}
                )
                self.hub.send(client, frame("error", code=exc.code, message=exc.message))
                if errors >= self.settings.max_errors:
                    code = CloseCode.RATE_LIMITED if exc.code == "rate_limited" else CloseCode.BAD_MESSAGES
                    closing = asyncio.create_task(connection.close(code, f"too many refused messages ({errors})"))
                    # Read (and drop) what the client sent before it saw our close: messages left unread
                    # stop websockets reading, so the client's close reply would never be read and the
                    # connection would hang for the close timeout, then be reset, the code lost.
                    async for _ in connection:
                        pass
                    await closing
                    return

    async def _on_message(self, client: Client, msg: object) -> None:
        now = self.clock()
        claims = client.claims
        if isinstance(msg, Subscribe):
            client.filter = build_filter(msg, client.scope, self.zones, now)
            await self._audit_quietly(AuditAction.SUBSCRIBE, claims, client.remote, detail=_filter_json(client.filter))
            self.hub.send(client, frame("subscribed", filters=_filter_json(client.filter)))
        elif isinstance(msg, AlertAction):
            await self._alert_action(client, msg, now)
        elif isinstance(msg, CreateZone):
            await self._create_zone(client, msg, now)

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
        claims = client.claims
        if claims.role is Role.COMMANDER and msg.id not in claims.zones:
            raise ProtocolError("forbidden", f"this commander token may create only the zones it names ({', '.join(claims.zones)})")
        if claims.role not in (Role.SUPERVISOR, Role.COMMANDER):
            raise ProtocolError("forbidden", f"a {claims.role.value} token cannot create zones")
        if msg.id in self.file_zones:
            raise ProtocolError("zone_exists", f"{msg.id!r} is a configured partner zone; choose another id")
        try:
            zone = event_zone(
                id=msg.id,
                name=msg.name,
                polygon=msg.polygon,
                starts_at=msg.starts_at,
                ends_at=msg.ends_at,
                agency=claims.agency,
                threshold=msg.threshold,
                within=self.settings.jurisdiction,
            )
        except GeometryError as exc:
            raise ProtocolError("bad_polygon", str(exc)) from exc
        except ZoneError as exc:
            raise ProtocolError("bad_zone", str(exc)) from exc
        await self.store.save_zone(zone.to_json())
        await self.audit.record(
            AuditRecord(
                AuditAction.ZONE_CREATE, claims.subject, claims.role.value, claims.agency, zone.id, client.remote,
                {"name": zone.name, "cells": len(zone.cells), "active_from": zone.active_from, "active_until": zone.active_until},
                now,
            )
        )  # fmt: skip
        await self.refresh_zones()
        self.hub.send(client, frame("zone_created", zone=_zone_json(zone, now)))

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
            if key not in scoped:
                scoped[key] = (view_counts(counts, client.scope, now), zone_counts(counts, client.scope, now))
            text_key = (key, client.filter)
            if text_key not in texts:
                cells, zones = filter_counts(client.filter, *scoped[key], client.scope, self.zones)
                texts[text_key] = frame("counts", at=wm, window_min=COUNTS_WINDOW_MIN, cells=cells, zones=zones)
            self.hub.send(client, texts[text_key])

    async def close_revoked(self) -> None:
        """Close the sockets whose token was revoked since they connected (4401), one Redis call for all."""
        clients = [c for c in self.hub.clients if not c.closed]
        revoked = await self.store.revoked_among({c.claims.token_id for c in clients})
        for client in clients:
            if client.claims.token_id in revoked and not client.closed:
                self.refused["revoked"] = self.refused.get("revoked", 0) + 1
                detail = {"code": "revoked", "message": "token revoked while connected"}
                await self._audit_quietly(AuditAction.REFUSED, client.claims, client.remote, detail=detail)
                self.hub.detach(client)
                client.close(CloseCode.TOKEN_REVOKED, "token revoked: reconnect with a new one")

    async def _audit_quietly(self, action: AuditAction, claims: Claims, remote: str, detail: dict) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.audit.record(
                AuditRecord(action, claims.subject, claims.role.value, claims.agency, remote=remote, detail=detail, at=self.clock())
            )


def _clip(value: object, limit: int = AUDIT_TEXT) -> object:
    """Client-supplied text cut to ``limit`` characters (other values as they are).

    >>> _clip("abcdef", limit=3), _clip(3)
    ('abc… (6 chars)', 3)
    """
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}… ({len(value)} chars)"
    return value


def _remote(connection: ServerConnection) -> str:
    addr = connection.remote_address
    return f"{addr[0]}:{addr[1]}" if addr else ""


def _one(query: dict, name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise HttpError(400, f"bad_{name}", f"{name} given {len(values)} times")
    return values[0]


def _int(query: dict, name: str, default: int, low: int, high: int) -> int:
    text = _one(query, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise HttpError(400, f"bad_{name}", f"{name} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise HttpError(400, f"bad_{name}", f"{name} must be between {low} and {high}, got {value}")
    return value


def _float(query: dict, name: str) -> float | None:
    text = _one(query, name)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise HttpError(400, f"bad_{name}", f"{name} must be epoch seconds, got {text!r}") from None


def _zone_json(z: Zone, now: float) -> dict:
    return {**z.to_json(), "active": z.active(now)}


def _filter_json(f: Filter) -> dict:
    return {
        "cells": None if f.cells is None else len(f.cells),
        "categories": None if f.categories is None else sorted(f.categories),
        "min_severity": f.min_severity,
    }
