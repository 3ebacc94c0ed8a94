"""A WebSocket client of several gateways for scripts and tests: moves to the next on loss, resumes by id (adapter over websockets).

:class:`FailoverClient` connects to the first gateway of its list that answers, yields every frame it reads,
and when the connection drops (the gateway was killed or restarted, the network failed, no pong within
``ping_s``, no frame for three of the heartbeats its ``welcome`` announced) moves to the next address
(:class:`gateway.failover.Rotation`) and reconnects with the ``last_id``
of the last ``alert`` or ``action`` frame it yielded; a frame already yielded is dropped
(:class:`gateway.failover.Resume`). What happened is kept in :attr:`FailoverClient.events`, with monotonic
times, so a caller can tell how long each move took.

Typical use::

    client = FailoverClient(["http://10.0.0.5:8080", "http://10.0.0.6:8080"], token)
    async for frame in client.frames():
        if frame["type"] == "alert":
            ...

A token the gateway refuses (HTTP 401 or 403 at the handshake, or a close with 4401, 4403 or 4400) ends the
iteration with :class:`ClientRefused`: every gateway shares the token secret, so another one would refuse it too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from gateway.failover import MISSED_HEARTBEATS, Resume, Rotation, socket_url

log = logging.getLogger(__name__)

#: close codes after which retrying with the same token cannot help (as the dashboard's FINAL_CLOSE)
FINAL_CLOSES = {4401: "token expired or revoked", 4403: "forbidden", 4400: "too many refused messages"}


class ClientRefused(RuntimeError):
    """The gateways refuse this token (or closed it for good); ``code`` is the HTTP status or the close code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"refused ({code}): {message}")
        self.code = code


class _Silent(Exception):
    """The gateway sent no frame for :data:`gateway.failover.MISSED_HEARTBEATS` of its heartbeats."""


@dataclass(frozen=True)
class Event:
    """One step of the client's life: ``kind`` is ``connected`` (handshake done), ``caught_up`` (what was missed
    is sent: live again), ``lost`` (the connection dropped or a connection attempt failed); ``gateway`` the index
    of the address in the list; ``at`` time.monotonic()."""

    kind: str
    gateway: int
    at: float
    detail: str = ""


@dataclass
class FailoverClient:
    """WebSocket feed of ``addresses`` (gateway base URLs, e.g. ``WF_GATEWAY_PEERS``) with ``token``.

    ``last_id``: resume after this id from the start (None: live from now). ``ping_s``: the client's keepalive
    (a gateway that stops answering is left after about twice that). ``rng`` (``random.random``) sets the jitter.
    """

    addresses: Sequence[str]
    token: str
    last_id: str | None = None
    ping_s: float = 5.0
    open_timeout_s: float = 5.0
    rng: Callable[[], float] = random.random
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rotation = Rotation(self.addresses, rng=self.rng)
        self.resume = Resume(self.last_id)
        self._stopped = False

    @property
    def current(self) -> int:
        """The index of the address the client is on (or trying)."""
        return self.rotation.index

    def stop(self) -> None:
        """End :meth:`frames` after the frame being read (or at the next connection attempt)."""
        self._stopped = True

    async def frames(self) -> AsyncIterator[dict]:
        """Every frame of every connection, in order, without repeats of alert and action frames; forever, until
        :meth:`stop` or :class:`ClientRefused`."""
        while not self._stopped:
            index = self.rotation.index
            url = socket_url(self.rotation.current, self.token, self.resume.last_id)
            why = ""
            try:
                async with connect(
                    url, open_timeout=self.open_timeout_s, ping_interval=self.ping_s, ping_timeout=self.ping_s,
                    close_timeout=2, compression=None, proxy=None, max_size=2**22,
                ) as ws:  # fmt: skip
                    self._note("connected", index)
                    silence: float | None = None  # 3 heartbeats, once the welcome says how often they come
                    while True:
                        try:
                            message = await asyncio.wait_for(ws.recv(), silence)
                        except TimeoutError:
                            # a gateway gone from the network sends no close; do not wait for one either
                            ws.transport.abort()
                            raise _Silent(f"sent nothing for {silence:g} s") from None
                        frame = json.loads(message)
                        if frame.get("type") == "welcome" and isinstance(frame.get("heartbeat_s"), (int, float)):
                            silence = MISSED_HEARTBEATS * float(frame["heartbeat_s"]) or None
                        if frame.get("type") == "caught_up":
                            self.rotation.connected()
                            self._note("caught_up", index)
                        if self.resume.accept(frame):
                            yield frame
                        if self._stopped:
                            return
            except _Silent as exc:
                why = str(exc)
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                self._final(code, exc.rcvd.reason if exc.rcvd is not None else "")
                why = f"dropped ({exc})"
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    raise ClientRefused(status, exc.response.body.decode(errors="replace") if exc.response.body else "") from exc
                why = f"handshake answered {status}"
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                why = f"cannot connect ({exc!r})"
            self._note("lost", index, why)
            delay = self.rotation.lost()
            log.info("gateway %d (%s) lost: %s; trying %s in %.2f s", index + 1, self.addresses[index], why, self.rotation.label, delay)
            await asyncio.sleep(delay)

    def _final(self, code: int | None, reason: str) -> None:
        if code in FINAL_CLOSES:
            raise ClientRefused(code, reason or FINAL_CLOSES[code])

    def _note(self, kind: str, index: int, detail: str = "") -> None:
        self.events.append(Event(kind, index, time.monotonic(), detail))
