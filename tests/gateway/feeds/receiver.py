"""A partner's webhook receiver for the tests: an aiohttp server on 127.0.0.1 in its own thread, recording every request.

``answer`` decides each request's reply from (the delivery id, the attempt number of that
delivery, the body): a status and headers. It can be changed while the server runs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

Answer = Callable[[str, int, bytes], tuple[int, dict[str, str]]]


@dataclass
class Request:
    delivery: str
    timestamp: str
    signature: str
    body: bytes
    status: int
    attempt: int
    at: float = field(default_factory=time.time)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.answer: Answer = lambda delivery, attempt, body: (200, {})
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        delivery = request.headers.get("X-Watchfloor-Delivery", "")
        with self._lock:
            attempt = 1 + sum(1 for r in self.requests if r.delivery == delivery)
            status, headers = self.answer(delivery, attempt, body)
            self.requests.append(
                Request(delivery, request.headers.get("X-Watchfloor-Timestamp", ""), request.headers.get("X-Watchfloor-Signature", ""),
                        body, status, attempt)
            )  # fmt: skip
        return web.Response(status=status, headers=headers)

    def delivered(self) -> list[Request]:
        """The requests answered 2xx, in arrival order."""
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def all(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def wait_for(pred: Callable[[], bool], timeout_s: float = 15.0, what: str = "condition") -> None:
    """Poll ``pred`` until it holds; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout_s} s")
