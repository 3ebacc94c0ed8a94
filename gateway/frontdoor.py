"""Every HTTP request the gateway's port receives, before any WebSocket frame (adapter over websockets' ``process_request``).

:meth:`FrontDoor.process_request` routes a request to the feed's handshake
(``/ws``), the dashboard's files, ``/healthz`` or the API's route table
(:mod:`gateway.api`), and answers each refusal as JSON ``{"error", "message"}``
with its status. Refusals of the API, the feed and ``/metrics`` (and every 401
and 403) are audited; an address refused past ``WF_GATEWAY_ANON_RATE`` a
second is answered 429 and counted, and audited once a second by
:meth:`gateway.auditor.Auditor.flush_rate_limited`.

A handshake that is let through leaves a :class:`Handshake` on the connection
(:func:`handshake_of`) for :class:`gateway.sessions.Sessions` to open the session with.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from gateway import api
from gateway.audit import AuditAction
from gateway.auditor import Auditor
from gateway.auth import Authenticator, check_origin, peer_origin
from gateway.cursors import CursorError
from gateway.http import HttpError, clip, json_response, one, response
from gateway.hub import Hub
from gateway.limits import RateLimits
from gateway.policy import Scope, ScopeError, stream_id_for
from gateway.scopes import Scopes
from gateway.settings import BASEMAP_PATH, GatewaySettings
from gateway.static import StaticFiles
from gateway.store import Store, stream_id
from gateway.tokens import Claims, Role

if TYPE_CHECKING:
    from gateway.server import Gateway


@dataclass(frozen=True)
class Handshake:
    """An accepted WebSocket handshake: who connects, what it may see, and where its feed starts."""

    claims: Claims
    scope: Scope
    #: the stream id the client resumes after (from its ``last_id``), or None for a new client
    last_id: str | None
    #: the ``last_id`` as the client sent it (sealed for partners), told back in its welcome frame
    cursor: str | None
    #: where its feed starts: ``last_id``, or the hub's position at the handshake for a new client
    start_id: str


def handshake_of(connection: ServerConnection) -> Handshake:
    """The :class:`Handshake` :meth:`FrontDoor.process_request` accepted for ``connection``."""
    return connection.wf_handshake  # type: ignore[attr-defined]  # websockets' connection carries no user data slot


def remote_of(connection: ServerConnection) -> str:
    """``host:port`` of the peer (empty when the socket no longer says)."""
    addr = connection.remote_address
    return f"{addr[0]}:{addr[1]}" if addr else ""


class FrontDoor:
    """The gateway's HTTP side. ``context`` is what API handlers are called with (the :class:`~gateway.server.Gateway`)."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        gateway_id: str,
        store: Store,
        hub: Hub,
        scopes: Scopes,
        auth: Authenticator,
        auditor: Auditor,
        static: StaticFiles,
        api_limits: RateLimits,
        anon_limits: RateLimits,
        csp: str,
        context: Gateway,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.gateway_id = gateway_id
        self.store = store
        self.hub = hub
        self.scopes = scopes
        self.auth = auth
        self.auditor = auditor
        self.static = static
        self.api_limits = api_limits
        self.anon_limits = anon_limits
        self.csp = csp
        self.context = context
        self.clock = clock

    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """websockets' hook: an HTTP answer, or None to let a ``/ws`` handshake through (with its :class:`Handshake`).

        A dashboard served by one of ``WF_GATEWAY_PEERS`` may call this gateway's API once its own gateway is lost:
        answers to such a page (its ``Origin`` is a peer's) carry CORS headers, and its preflight ``OPTIONS`` is
        answered (:meth:`_cors`). Every other origin gets no CORS header, so its pages cannot read an answer.
        """
        resp = await self._answer(connection, request)
        if resp is not None and self.settings.peers:
            return self._cors(request, resp)
        return resp

    def _cors(self, request: Request, resp: Response) -> Response:
        """``resp`` with ``Access-Control-Allow-Origin`` for a peer's page (the Fetch standard's CORS protocol)."""
        origin = peer_origin(request, self.settings.peers)
        if origin is None or not urlsplit(request.path).path.startswith(("/api/", "/healthz")):
            return resp
        resp.headers["Access-Control-Allow-Origin"] = origin
        resp.headers["Vary"] = "Origin"
        return resp

    async def _answer(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if request.method == "OPTIONS" and peer_origin(request, self.settings.peers) is not None:
            # a peer's page asking whether it may send Authorization: one answer for every API path, cached 10 min
            cors = [("Access-Control-Allow-Methods", "GET, POST"), ("Access-Control-Allow-Headers", "Authorization"),
                    ("Access-Control-Max-Age", "600")]  # fmt: skip
            return response(204, b"", "text/plain", cors, csp=self.csp)
        remote = remote_of(connection)
        claims: Claims | None = None  # verified once; named in the audit record of a refusal
        try:
            query = parse_qs(url.query, keep_blank_values=True, max_num_fields=50)
        except ValueError:
            query = None
        try:
            if query is None:
                raise HttpError(400, "bad_query", "more than 50 query parameters")
            if url.path == "/ws":
                connection.wf_handshake = await self._handshake(request, query)  # type: ignore[attr-defined]  # see handshake_of
                return None
            if url.path in ("/", "/index.html", BASEMAP_PATH) or url.path.startswith("/static/"):
                return self.static.response(url.path, request.headers, request.method)
            if url.path == "/healthz":
                ok = await self.store.ping()
                return json_response(200 if ok else 503, {"status": "ok" if ok else "degraded", "redis": ok, "gateway": self.gateway_id})
            found = api.find_route(url.path, request.method)
            if found is None:
                raise HttpError(404, "not_found", f"no such path {clip(url.path, 100)!r}")
            route, params = found
            claims = await self.auth.bearer(request)
            if not self.api_limits.allow(claims.token_id, time.monotonic()):
                raise HttpError(429, "rate_limited", f"more than {self.settings.api_rate_per_s:g} API calls a second; slow down", claims)
            return await self._api(route, params, url.path, query, claims, remote, request.headers.get("If-None-Match"))
        except HttpError as exc:
            return await self._refusal(exc, request, url.path, remote, claims)

    async def _refusal(self, exc: HttpError, request: Request, path: str, remote: str, claims: Claims | None) -> Response:
        """The answer to a refused request, counted and audited (or, past the address's rate, only counted)."""
        if exc.status == 429 and exc.code == "rate_limited" and (exc.claims or claims) is not None:
            return json_response(429, {"error": exc.code, "message": exc.message}, csp=self.csp)
        host = remote.rpartition(":")[0]
        if not self.anon_limits.allow(host, time.monotonic()):
            # refusals past the address's rate: answered, counted, audited once a second in one record
            self.auditor.count("rate_limited")
            return json_response(429, {"error": "rate_limited", "message": "too many refused requests; slow down"}, csp=self.csp)
        if exc.status in (401, 403) or path.startswith(("/api/", "/feeds/")) or path in ("/ws", "/metrics"):
            await self.auditor.refused_request(request, remote, exc.code, exc.claims or claims, message=exc.message)
        return json_response(exc.status, {"error": exc.code, "message": exc.message}, csp=self.csp)

    def _scope(self, claims: Claims) -> Scope:
        try:
            return self.scopes.scope(claims)
        except ScopeError as exc:
            raise HttpError(403, "no_scope", str(exc), claims) from exc

    async def _api(
        self, route: api.Route, params: tuple[str, ...], path: str, query: dict, claims: Claims, remote: str, if_none_match: str | None
    ) -> Response:
        now = self.clock()
        scope = self._scope(claims)
        if claims.role not in route.roles:
            raise HttpError(403, "forbidden", f"a {claims.role.value} token cannot read {path}", claims)
        req = api.ApiRequest(path, params, query, claims, scope, remote, now, if_none_match=if_none_match)
        try:
            resp = await route.handler(self.context, req)
        except HttpError as exc:
            exc.claims = exc.claims or claims
            raise
        if claims.role is not Role.SUPERVISOR:
            # every read of a partner or a commander: who read what, with which parameters
            detail = {"path": clip(path, 200), "query": {k: [clip(v, 100) for v in vs[:5]] for k, vs in list(query.items())[:10]}}
            await self.auditor.quietly(AuditAction.READ, claims, remote, detail={**detail, "status": resp.status_code})
        del resp.headers["Content-Security-Policy"]  # the handlers' default; Headers appends, it would be sent twice
        resp.headers["Content-Security-Policy"] = self.csp
        return resp

    async def _handshake(self, request: Request, query: dict) -> Handshake:
        # a dashboard served by a peer gateway moves its feed here when its own gateway is lost
        check_origin(request, (*self.settings.origins, *self.settings.peers))
        claims = await self.auth.verify(one(query, "token"))
        if not self.api_limits.allow(claims.token_id, time.monotonic()):
            # a handshake counts as an API call: reconnecting must not buy a fresh allowance of messages
            raise HttpError(429, "rate_limited", f"more than {self.settings.api_rate_per_s:g} calls a second; slow down", claims)
        scope = self._scope(claims)
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
        # A new client is live from the stream position at its handshake, taken before the 101 is sent: the
        # handler's first awaits (the connect audit) let the hub read on, and an alert published just after
        # the handshake would otherwise be skipped. attach catches up from it like any resume.
        start_id = last_id if last_id is not None else self.hub.position
        return Handshake(claims, scope, last_id, cursor, start_id)
