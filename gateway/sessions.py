"""The WebSocket sessions: one per accepted handshake, from the welcome frame to the audited close (adapter over websockets).

:meth:`Sessions.handle` is websockets' connection handler. A session sends the
``welcome`` frame, attaches its client to the hub (which first sends what it
missed after its ``last_id``: :meth:`gateway.hub.Hub.attach`), then reads the
client's messages, at most ``WF_GATEWAY_RATE`` a second, and hands each to
:class:`gateway.messages.Messages`; a writer task sends the client's queued
frames. A client refused ``WF_GATEWAY_MAX_ERRORS`` times is closed (4429 or
4400). The token's expiry closes the socket with 4401 ``token expired``, and
:meth:`Sessions.close_revoked` closes those whose token was revoked.
Connects, disconnects (with the close code of whoever closed first) and every
refused message are audited.

Closes started from synchronous code (the hub dropping a slow client, the
expiry timer) run as tasks held in :class:`BackgroundTasks` until they finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

from redis.exceptions import RedisError
from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed

from gateway.audit import AuditAction
from gateway.auditor import Auditor
from gateway.frontdoor import Handshake, handshake_of, remote_of
from gateway.http import clip
from gateway.hub import Client, Hub
from gateway.messages import Messages
from gateway.protocol import CloseCode, ProtocolError, frame, parse_client_message
from gateway.settings import GatewaySettings
from gateway.store import Store
from gateway.subscriptions import Filter

#: bytes a connection's socket buffer may hold before frames wait in its queue (websockets' default write limit)
WRITE_LIMIT = 2**15
#: messages read and dropped after closing a flooding client before its connection is dropped outright
DRAIN_AFTER_CLOSE = 1000
#: close codes websockets itself uses on a client's bad frame, as the refusal codes they are audited with
_PROTOCOL_CLOSES = {1007: "invalid_text", 1009: "message_too_big", 1002: "protocol_error"}


class BackgroundTasks:
    """Tasks started and not awaited where they start, each held here until it is done.

    The event loop keeps only a weak reference to a task: one nobody holds can be
    garbage-collected before it runs (the ``asyncio.create_task`` documentation).
    :meth:`spawn` must be called with an event loop running.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        """Run ``coro`` in a task held until it is done; returns the task (it may also be awaited)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task: object) -> bool:
        return task in self._tasks


def closer(connection: ServerConnection, background: BackgroundTasks) -> Callable[[int, str], None]:
    """A client's ``close(code, reason)``: starts ``connection``'s close handshake in a task ``background`` holds."""

    def close(code: int, reason: str) -> None:
        background.spawn(connection.close(code, reason))

    return close


def immediate_writer(connection: ServerConnection) -> Callable[[str], bool]:
    """A client's ``write_now(text)``: the frame written at once when the socket's buffer has room (True), else False."""

    def write_now(text: str) -> bool:
        transport = connection.transport
        if transport is None or transport.get_write_buffer_size() > WRITE_LIMIT:
            return False
        try:
            broadcast([connection], text, raise_exceptions=True)
        except ExceptionGroup:  # this one connection could not take it: queue it instead
            return False
        return True

    return write_now


class Sessions:
    """The open sessions of one gateway (``connections``: each socket's hub client), and websockets' handler for new ones."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        gateway_id: str,
        store: Store,
        hub: Hub,
        auditor: Auditor,
        messages: Messages,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.gateway_id = gateway_id
        self.store = store
        self.hub = hub
        self.auditor = auditor
        self.messages = messages
        self.clock = clock
        self.connections: dict[ServerConnection, Client] = {}
        self.background = BackgroundTasks()

    async def handle(self, connection: ServerConnection) -> None:
        """Serve one connection whose handshake :class:`gateway.frontdoor.FrontDoor` accepted, until it closes."""
        hs = handshake_of(connection)
        claims = hs.claims
        remote = remote_of(connection)
        close = closer(connection, self.background)
        client = Client(claims, hs.scope, Filter.everything(), self.settings.queue_size, remote=remote, close=close,
                        write_now=immediate_writer(connection))  # fmt: skip
        self.connections[connection] = client
        expiry = asyncio.get_running_loop().call_later(
            max(0.0, claims.expires_at - self.clock()), close, CloseCode.TOKEN_EXPIRED, "token expired: reconnect with a new one"
        )
        writer = asyncio.create_task(self._write(connection, client))
        await self.auditor.quietly(AuditAction.CONNECT, claims, remote, detail={"last_id": hs.last_id, "gateway": self.gateway_id})
        try:
            await self._serve(connection, client, hs)
        except ConnectionClosed:
            pass
        finally:
            expiry.cancel()
            self.hub.detach(client)
            self.connections.pop(connection, None)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            await self._audit_close(connection, client)

    async def _serve(self, connection: ServerConnection, client: Client, hs: Handshake) -> None:
        """Welcome the client, send what it missed, then read its messages until it leaves."""
        claims = hs.claims
        self.hub.send(
            client,
            frame(
                "welcome",
                role=claims.role.value,
                agency=claims.agency,
                subject=claims.subject,
                zones=[z.id for z in hs.scope.zones],
                expires_at=claims.expires_at,
                resumed_from=hs.cursor,
                gateway=self.gateway_id,
                heartbeat_s=self.settings.heartbeat_s,
            ),
        )
        try:
            warning = await self.hub.attach(client, hs.start_id)
        except (RedisError, OSError) as exc:
            # the catch-up could not be read: say so with a code, audit it, and let the client retry
            detail = {"code": "resume_failed", "message": clip(str(exc))}
            await self.auditor.quietly(AuditAction.REFUSED, claims, client.remote, detail=detail)
            self.hub.send(client, frame("error", code="resume_failed", message="could not read what was missed; reconnect to retry"))
            await connection.close(1011, "resume failed: reconnect with the same last_id")
            return
        if warning:
            self.hub.send(client, frame("error", code="resume_truncated", message=warning))
        await self._read(connection, client)

    async def _audit_close(self, connection: ServerConnection, client: Client) -> None:
        """Audit the disconnect with the code of whoever closed first (the peer's echo of ours may never arrive)."""
        sent = connection.protocol.close_sent
        by_us = sent is not None and not connection.protocol.close_rcvd_then_sent
        refused = _PROTOCOL_CLOSES.get(sent.code) if sent is not None and by_us else None
        if refused is not None and sent is not None:
            # websockets closed it on a bad frame (too big, not UTF-8) before the handler saw it
            self.auditor.count(refused)
            await self.auditor.quietly(
                AuditAction.REFUSED, client.claims, client.remote, detail={"code": refused, "message": clip(sent.reason)}
            )
        code = sent.code if sent is not None and by_us else connection.close_code
        await self.auditor.quietly(
            AuditAction.DISCONNECT, client.claims, client.remote, detail={"code": code, "last_id": client.last_sent_id}
        )

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
                await self.messages.handle(client, parse_client_message(message))
            except ProtocolError as exc:
                errors += 1
                self.auditor.count(exc.code)
                detail = {"code": exc.code, "message": clip(exc.message)}
                await self.auditor.quietly(AuditAction.REFUSED, client.claims, client.remote, detail=detail)
                self.hub.send(client, frame("error", code=exc.code, message=exc.message))
                if errors >= self.settings.max_errors:
                    code = CloseCode.RATE_LIMITED if exc.code == "rate_limited" else CloseCode.BAD_MESSAGES
                    await self._close_and_drain(connection, code, f"too many refused messages ({errors})")
                    return

    async def _close_and_drain(self, connection: ServerConnection, code: int, reason: str) -> None:
        """Close with ``code``, reading (and dropping) what the client sent before it saw our close.

        Messages left unread stop websockets reading, so the client's close reply would never be read and the
        connection would hang for the close timeout, then be reset, the code lost. A client that keeps sending
        after our close would keep this loop busy: past :data:`DRAIN_AFTER_CLOSE` messages the connection is
        dropped without a close handshake.
        """
        closing = self.background.spawn(connection.close(code, reason))
        drained = 0
        async for _ in connection:
            drained += 1
            if drained > DRAIN_AFTER_CLOSE:
                if connection.transport is not None:
                    connection.transport.abort()
                break
        with contextlib.suppress(ConnectionClosed):
            await closing

    async def close_revoked(self) -> None:
        """Close the sockets whose token was revoked since they connected (4401), one Redis call for all."""
        clients = [c for c in self.hub.clients if not c.closed]
        revoked = await self.store.revoked_among({c.claims.token_id for c in clients})
        for client in clients:
            if client.claims.token_id in revoked and not client.closed:
                self.auditor.count("revoked")
                detail = {"code": "revoked", "message": "token revoked while connected"}
                await self.auditor.quietly(AuditAction.REFUSED, client.claims, client.remote, detail=detail)
                self.hub.detach(client)
                client.close(CloseCode.TOKEN_REVOKED, "token revoked: reconnect with a new one")

    async def close_all(self) -> None:
        """Close every session with 1001 (going away): its client resumes elsewhere by id."""
        for conn in list(self.connections):
            with contextlib.suppress(Exception):
                await conn.close(CloseCode.GOING_AWAY, "gateway restarting: reconnect with last_id")
