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
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import mimetypes
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from redis.exceptions import RedisError
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from gateway import api
from gateway.agreements import load_agreements
from gateway.audit import AuditAction, AuditLog, AuditRecord
from gateway.cursors import CursorError, cursor_key
from gateway.disclosure import Plan
from gateway.http import HttpError, clip, content_security_policy, json_response, one, response
from gateway.hub import Client, Hub
from gateway.limits import RateLimits
from gateway.policy import Scope, ScopeError, derive_id_key, scope_for, stream_id_for, view, view_counts, zone_counts
from gateway.protocol import AlertAction, CloseCode, CreateZone, ProtocolError, Subscribe, frame, parse_client_message
from gateway.releases import ReleaseBook
from gateway.settings import GatewaySettings
from gateway.store import Store, stream_id
from gateway.subscriptions import Filter, build_filter, filter_counts
from gateway.tokens import Claims, Role, TokenError, verify
from gateway.zones import GeometryError, Zone, ZoneError, event_zone, load_zone_files

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
#: activity window of the counts frames (supervisors and commanders), minutes
COUNTS_WINDOW_MIN = 15
#: bytes a connection's socket buffer may hold before frames wait in its queue (websockets' default write limit)
WRITE_LIMIT = 2**15
#: seconds between checks of the open sockets' tokens against the revoked ones
REVOCATION_SWEEP_S = 2.0
#: history calls read at once (the others wait their turn rather than share the event loop)
HISTORY_CONCURRENCY = 1
#: messages read and dropped after closing a flooding client before its connection is dropped outright
DRAIN_AFTER_CLOSE = 1000
#: close codes websockets itself uses on a client's bad frame, as the refusal codes they are audited with
_PROTOCOL_CLOSES = {1007: "invalid_text", 1009: "message_too_big", 1002: "protocol_error"}


class Gateway:
    """One gateway process: the hub, the zones, the agreements, and the connection handlers."""

    def __init__(self, settings: GatewaySettings, store: Store, audit: AuditLog, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.audit = audit
        self.clock = clock
        self.id = f"gateway-{uuid.uuid4().hex[:8]}"
        self.hub = Hub(store, audit, clock=clock, gateway_id=self.id)
        self.file_zones: dict[str, Zone] = load_zone_files(settings.zone_files())
        self.zones: dict[str, Zone] = dict(self.file_zones)
        self.agreements = load_agreements(settings.agreements_path, min_k=settings.k)
        # every agreement's zones must exist now: a partner must never be served a partial agreement
        self.plans: dict[str, Plan] = {a.id: a.plan(self.file_zones) for a in self.agreements.values()}
        self.releases = ReleaseBook(store, settings.settle_s)
        self._zones_version = -1
        self._id_key = derive_id_key(settings.secret)
        self._cursor_key = cursor_key(settings.secret)
        self.refused: dict[str, int] = {}
        self.history_slots = asyncio.Semaphore(HISTORY_CONCURRENCY)
        self.api_limits = RateLimits(settings.api_rate_per_s, 4 * settings.api_rate_per_s)
        self.anon_limits = RateLimits(settings.anon_rate_per_s, 4 * settings.anon_rate_per_s)
        self.csp = content_security_policy(settings.tiles)
        #: the dashboard's files by path below gateway/static: only these are served (no path traversal)
        self.static_files = {p.relative_to(STATIC).as_posix(): p for p in STATIC.rglob("*") if p.is_file()} if STATIC.is_dir() else {}
        self.connections: dict[ServerConnection, Client] = {}
        self._tasks: list[asyncio.Task] = []
        self._closing: set[asyncio.Task] = set()
        self.server: Server | None = None

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh_zones()
        await self.hub.start()
        for coro in (
            self.hub.run(),
            self._every(1.0, self.hub.flush_audit),
            self._every(1.0, self.flush_rate_limited),
            self._every(self.settings.counts_every_s, self.push_counts),
            self._every(2.0, self.refresh_zones),
            self._every(REVOCATION_SWEEP_S, self.close_revoked),
        ):
            self._tasks.append(asyncio.create_task(coro))
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
            await self.flush_rate_limited()

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
        return scope_for(
            claims,
            self.zones,
            self.clock(),
            k=self.settings.k,
            agreements=self.agreements,
            plans=self.plans,
            id_key=self._id_key,
            cursor_key=self._cursor_key,
        )

    # -- auditing --------------------------------------------------------------

    async def refuse(self, request: Request, remote: str, code: str, claims: Claims | None = None, **detail: object) -> None:
        self.refused[code] = self.refused.get(code, 0) + 1
        path = urlsplit(request.path).path
        record = AuditRecord(
            AuditAction.REFUSED,
            actor=claims.subject if claims else "",
            role=claims.role.value if claims else "",
            agency=claims.agency if claims else "",
            target=str(clip(path, 200)),
            remote=remote,
            detail={"code": code, **{k: clip(v) for k, v in detail.items()}},
            at=self.clock(),
        )
        with contextlib.suppress(RedisError, OSError):
            await self.audit.record(record)

    async def flush_rate_limited(self) -> None:
        """One ``rate_limited`` audit record per address or token refused for its rate in the last second."""
        records = [
            AuditRecord(AuditAction.RATE_LIMITED, actor=who if kind == "token" else "", remote=who if kind == "address" else "",
                        detail={"by": kind, "refused": n}, at=self.clock())
            for kind, limits in (("address", self.anon_limits), ("token", self.api_limits))
            for who, n in limits.take_refused().items()
        ]  # fmt: skip
        if records:
            await self.audit.record_many(records)

    # -- HTTP ------------------------------------------------------------------

    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        remote = _remote(connection)
        host = remote.rpartition(":")[0]
        claims: Claims | None = None  # verified once; named in the audit record of a refusal
        try:
            query = parse_qs(url.query, keep_blank_values=True, max_num_fields=50)
        except ValueError:
            query = None
        try:
            if query is None:
                raise HttpError(400, "bad_query", "more than 50 query parameters")
            if url.path == "/ws":
                return await self._authorize_ws(connection, request, query, remote)
            if url.path in ("/", "/index.html") or url.path.startswith("/static/"):
                return self._static(url.path)
            if url.path == "/healthz":
                ok = await self.store.ping()
                return json_response(200 if ok else 503, {"status": "ok" if ok else "degraded", "redis": ok, "gateway": self.id})
            found = api.find_route(url.path)
            if found is None:
                raise HttpError(404, "not_found", f"no such path {clip(url.path, 100)!r}")
            route, params = found
            claims = await self._bearer(request)
            if not self.api_limits.allow(claims.token_id, time.monotonic()):
                raise HttpError(429, "rate_limited", f"more than {self.settings.api_rate_per_s:g} API calls a second; slow down", claims)
            return await self._api(route, params, url.path, query, claims, remote)
        except HttpError as exc:
            if exc.status == 429 and exc.code == "rate_limited" and (exc.claims or claims) is not None:
                return json_response(429, {"error": exc.code, "message": exc.message}, csp=self.csp)
            if not self.anon_limits.allow(host, time.monotonic()):
                # refusals past the address's rate: answered, counted, audited once a second in one record
                self.refused["rate_limited"] = self.refused.get("rate_limited", 0) + 1
                return json_response(429, {"error": "rate_limited", "message": "too many refused requests; slow down"}, csp=self.csp)
            if exc.status in (401, 403) or url.path.startswith("/api/") or url.path in ("/ws", "/metrics"):
                await self.refuse(request, remote, exc.code, exc.claims or claims, message=exc.message)
            return json_response(exc.status, {"error": exc.code, "message": exc.message}, csp=self.csp)

    async def _api(self, route: api.Route, params: tuple[str, ...], path: str, query: dict, claims: Claims, remote: str) -> Response:
        now = self.clock()
        try:
            scope = self._scope(claims)
        except ScopeError as exc:
            raise HttpError(403, "no_scope", str(exc), claims) from exc
        if claims.role not in route.roles:
            raise HttpError(403, "forbidden", f"a {claims.role.value} token cannot read {path}", claims)
        req = api.ApiRequest(path, params, query, claims, scope, remote, now)
        try:
            resp = await route.handler(self, req)
        except HttpError as exc:
            exc.claims = exc.claims or claims
            raise
        if claims.role is not Role.SUPERVISOR:
            # every read of a partner or a commander: who read what, with which parameters
            detail = {"path": clip(path, 200), "query": {k: [clip(v, 100) for v in vs[:5]] for k, vs in list(query.items())[:10]}}
            await self._audit_quietly(AuditAction.READ, claims, remote, detail={**detail, "status": resp.status_code})
        del resp.headers["Content-Security-Policy"]  # the handlers' default; Headers appends, it would be sent twice
        resp.headers["Content-Security-Policy"] = self.csp
        return resp

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
        headers = request.headers.get_all("Authorization")
        if len(headers) > 1:
            raise HttpError(400, "duplicate_header", f"Authorization given {len(headers)} times; send it once")
        header = headers[0] if headers else ""
        scheme, _, token = header.partition(" ")
        if not header:
            raise HttpError(401, "missing", "send Authorization: Bearer <token>")
        if scheme.lower() != "bearer" or not token:
            raise HttpError(401, "malformed", "the Authorization header must be 'Bearer <token>'")
        return await self._verify(token.strip())

    def _check_origin(self, request: Request) -> None:
        """A browser (which always sends Origin) may open the socket from this gateway's origin or an allowed one.

        Clients that are not browsers send no Origin and cannot be made to carry a victim's token by another
        site, so they are let through; ``null`` (sandboxed frames, files) and every other origin are refused.
        """
        origins = request.headers.get_all("Origin")
        if not origins:
            return
        if len(origins) > 1:
            raise HttpError(400, "duplicate_header", "Origin given more than once")
        origin = origins[0].rstrip("/")
        own = {f"{scheme}://{h}" for h in request.headers.get_all("Host") for scheme in ("http", "https")}
        if origin not in own and origin not in self.settings.origins:
            raise HttpError(403, "bad_origin", f"origin {clip(origin, 100)!r} may not open this gateway's feed (WF_GATEWAY_ORIGINS)")

    async def _authorize_ws(self, connection: ServerConnection, request: Request, query: dict, remote: str) -> Response | None:
        self._check_origin(request)
        claims = await self._verify(one(query, "token"))
        if not self.api_limits.allow(claims.token_id, time.monotonic()):
            # a handshake counts as an API call: reconnecting must not buy a fresh allowance of messages
            raise HttpError(429, "rate_limited", f"more than {self.settings.api_rate_per_s:g} calls a second; slow down", claims)
        try:
            scope = self._scope(claims)
        except ScopeError as exc:
            raise HttpError(403, "no_scope", str(exc), claims) from exc
        try:
            cursor = one(query, "last_id")
            last_id = None if cursor is None else stream_id_for(cursor, scope)
            if last_id is not None:
                stream_id(last_id)
        except (ValueError, CursorError) as exc:
            raise HttpError(400, "bad_last_id", str(clip(str(exc), 200)), claims) from exc
        except HttpError as exc:
            exc.claims = claims
            raise
        connection.wf_claims = claims  # type: ignore[attr-defined]  # websockets' connection carries no user data slot
        connection.wf_scope = scope  # type: ignore[attr-defined]
        connection.wf_last_id = last_id  # type: ignore[attr-defined]
        connection.wf_cursor = cursor  # type: ignore[attr-defined]
        # A new client is live from the stream position at its handshake, taken before the 101 is sent: the
        # handler's first awaits (the connect audit) let the hub read on, and an alert published just after
        # the handshake would otherwise be skipped. attach catches up from it like any resume.
        connection.wf_start_id = last_id if last_id is not None else self.hub.position  # type: ignore[attr-defined]
        return None

    def _static(self, path: str) -> Response:
        name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
        files = self.static_files
        if name not in files:
            raise HttpError(404, "not_found", f"no such file {clip(name, 100)!r}")
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript",):
            ctype += "; charset=utf-8"
        return response(200, files[name].read_bytes(), ctype, csp=self.csp)

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
        start_id: str = connection.wf_start_id  # type: ignore[attr-defined]
        remote = _remote(connection)
        loop = asyncio.get_running_loop()

        def close(code: int, reason: str) -> None:
            task = loop.create_task(connection.close(code, reason))
            self._closing.add(task)  # held until done: the loop keeps only a weak reference to a task
            task.add_done_callback(self._closing.discard)

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
                    resumed_from=connection.wf_cursor,  # type: ignore[attr-defined]
                    gateway=self.id,
                ),
            )
            try:
                warning = await self.hub.attach(client, start_id)
            except (RedisError, OSError) as exc:
                # the catch-up could not be read: say so with a code, audit it, and let the client retry
                await self._audit_quietly(AuditAction.REFUSED, claims, remote, detail={"code": "resume_failed", "message": clip(str(exc))})
                self.hub.send(client, frame("error", code="resume_failed", message="could not read what was missed; reconnect to retry"))
                await connection.close(1011, "resume failed: reconnect with the same last_id")
                return
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
                await self._audit_quietly(AuditAction.REFUSED, claims, remote, detail={"code": refused, "message": clip(sent.reason)})
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
                    AuditAction.REFUSED, client.claims, client.remote, detail={"code": exc.code, "message": clip(exc.message)}
                )
                self.hub.send(client, frame("error", code=exc.code, message=exc.message))
                if errors >= self.settings.max_errors:
                    code = CloseCode.RATE_LIMITED if exc.code == "rate_limited" else CloseCode.BAD_MESSAGES
                    closing = asyncio.create_task(connection.close(code, f"too many refused messages ({errors})"))
                    # Read (and drop) what the client sent before it saw our close: messages left unread
                    # stop websockets reading, so the client's close reply would never be read and the
                    # connection would hang for the close timeout, then be reset, the code lost.
                    # A client that keeps sending after our close would keep this loop busy: past
                    # DRAIN_AFTER_CLOSE messages the connection is dropped without a close handshake.
                    drained = 0
                    async for _ in connection:
                        drained += 1
                        if drained > DRAIN_AFTER_CLOSE:
                            if connection.transport is not None:
                                connection.transport.abort()
                            break
                    with contextlib.suppress(ConnectionClosed):
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
        """A supervisor creates or replaces an event zone; a commander may only narrow its own (never move, widen,
        back-date or extend it, nor set a threshold below the supervisor's floor). Audited with before and after."""
        claims = client.claims
        if claims.role not in (Role.SUPERVISOR, Role.COMMANDER):
            raise ProtocolError("forbidden", f"a {claims.role.value} token cannot create zones")
        if claims.role is Role.COMMANDER and msg.id not in claims.zones:
            raise ProtocolError("forbidden", f"this commander token may change only the zones it names ({', '.join(claims.zones)})")
        if msg.id in self.file_zones:
            raise ProtocolError("zone_exists", f"{msg.id!r} is a configured partner zone; choose another id")
        before = self.zones.get(msg.id)
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
                within=self.settings.jurisdiction,
            )
        except GeometryError as exc:
            raise ProtocolError("bad_polygon", str(exc)) from exc
        except ZoneError as exc:
            raise ProtocolError("bad_zone", str(exc)) from exc
        if claims.role is Role.COMMANDER:
            _check_narrows(before, zone)
            assert before is not None
            zone = dataclasses.replace(zone, floor=before.floor if before.floor is not None else before.threshold)
        await self.store.save_zone(zone.to_json())
        action = AuditAction.ZONE_CREATE if before is None else AuditAction.ZONE_UPDATE
        detail = {"before": None if before is None else _zone_summary(before), "after": _zone_summary(zone)}
        await self.audit.record(AuditRecord(action, claims.subject, claims.role.value, claims.agency, zone.id, client.remote, detail, now))
        await self.refresh_zones()
        self.hub.send(client, frame("zone_created", zone=api.zone_json(zone, now)))

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
                cells, zones = filter_counts(client.filter, *scoped[key], client.scope, self.zones)
                texts[text_key] = frame("counts", at=wm, window_min=COUNTS_WINDOW_MIN, cells=cells, zones=zones)
            self.hub.send(client, texts[text_key])

    async def _partner_counts(self, scope: Scope, plan: Plan, wm: float) -> str:
        """A partner's counts frame: its units in the newest window of its released table (empty when it shares no counts)."""
        if "counts" not in self.agreements[plan.agreement].shares:
            return ""
        latest = await self.releases.latest(plan, wm)
        units = {} if latest is None else latest.for_units(scope.unit_ids).values
        at = None if latest is None else latest.start + latest.minutes * 60
        return frame("counts", at=at, window_min=plan.window_min, k=plan.k, cells={}, zones={}, units=units)

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


def _remote(connection: ServerConnection) -> str:
    addr = connection.remote_address
    return f"{addr[0]}:{addr[1]}" if addr else ""


def _zone_summary(z: Zone) -> dict:
    """What the audit log keeps of a zone: enough to see what changed (its cells by count and digest)."""
    import hashlib

    digest = hashlib.sha256(",".join(sorted(z.cells)).encode()).hexdigest()[:16]
    return {"name": z.name, "cells": len(z.cells), "cells_sha256": digest, "active_from": z.active_from,
            "active_until": z.active_until, "threshold": z.threshold, "floor": z.floor}  # fmt: skip


def _check_narrows(before: Zone | None, after: Zone) -> None:
    """:class:`ProtocolError` unless ``after`` narrows the supervisor-made ``before`` (a commander's change)."""
    if before is None:
        raise ProtocolError("forbidden", f"event zone {after.id!r} does not exist: a supervisor creates it, a commander may narrow it")
    outside = after.cells - before.cells
    if outside:
        raise ProtocolError("forbidden", f"a commander may only narrow its zone: the polygon covers {len(outside)} cell(s) outside it")
    if before.active_from is not None and (after.active_from or 0) < before.active_from:
        raise ProtocolError("forbidden", f"a commander may not start its zone before {before.active_from:.0f} (the supervisor's start)")
    if before.active_until is not None and (after.active_until is None or after.active_until > before.active_until):
        raise ProtocolError("forbidden", f"a commander may not end its zone after {before.active_until:.0f} (the supervisor's end)")
    floor = before.floor if before.floor is not None else before.threshold
    if floor is not None and (after.threshold is None or after.threshold < floor):
        raise ProtocolError("forbidden", f"a commander may not set the threshold below the supervisor's floor {floor:g}")


def _filter_json(f: Filter) -> dict:
    return {
        "cells": None if f.cells is None else len(f.cells),
        "categories": None if f.categories is None else sorted(f.categories),
        "min_severity": f.min_severity,
    }
