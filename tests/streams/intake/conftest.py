"""An intake served in-process on a free port against the real stack, and signed pushes to it."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from streams.intake.auth import sign
from streams.intake.publish import Publisher
from streams.intake.service import Intake, create_app
from streams.intake.settings import IntakeSettings
from streams.intake.sources import Source
from streams.runtime.settings import Settings

SECRET = b"s" * 40
OTHER_SECRET = b"o" * 40
SOURCES = {
    "dev-cad": Source("dev-cad", "dev-agency", SECRET),
    "other-cad": Source("other-cad", "other-agency", OTHER_SECRET),
    "slow-cad": Source("slow-cad", "slow-agency", SECRET, rate=1.0, burst=500, max_body_bytes=4096),
}


def call(cid: str, *, agency: str = "dev-agency", at: str = "2026-01-01T10:00:00Z", **extra: object) -> dict:
    return {
        "type": "call", "v": 1, "id": cid, "received_at": at, "category": "EMS", "call_type": "FALL",
        "priority": 2, "lat": 40.1, "lng": -75.3, "agency": agency, "source": "whatever", **extra,
    }  # fmt: skip


def update(cid: str, status: str, at: str = "2026-01-01T10:05:00Z") -> dict:
    return {"type": "update", "v": 1, "call_id": cid, "status": status, "at": at, "unit": "M-1", "source": "whatever"}


def signed(body: bytes, source: str = "dev-cad", secret: bytes = SECRET, ts: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    return {
        "X-Watchfloor-Source": source, "X-Watchfloor-Timestamp": stamp,
        "X-Watchfloor-Signature": sign(secret, stamp, body), "Content-Type": "application/json",
    }  # fmt: skip


def body_of(*events: dict) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def make_intake(settings: Settings, *, bootstrap: str | None = None, timeout_s: float = 10.0) -> Intake:
    base = settings if bootstrap is None else Settings(**{**settings.__dict__, "kafka_bootstrap": bootstrap})
    intake_settings = IntakeSettings(port=8091, kafka_timeout_s=timeout_s, base=base)
    return Intake(
        settings=intake_settings,
        sources=dict(SOURCES),
        publisher=Publisher(base.kafka_bootstrap, base.topic_prefix, timeout_s=timeout_s),
        redis=aioredis.from_url(base.redis_url, decode_responses=True),
    )


@contextlib.asynccontextmanager
async def serving(intake: Intake) -> AsyncIterator[TestClient]:
    """A client of ``intake`` served on a real socket (a free port on 127.0.0.1)."""
    client = TestClient(TestServer(create_app(intake), host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def push(client: TestClient, body: bytes, **kw: object) -> tuple[int, dict, dict[str, str]]:
    resp = await client.post("/v1/events", data=body, headers=signed(body, **kw))  # type: ignore[arg-type]
    return resp.status, await resp.json(), dict(resp.headers)
