"""Fixtures of the gateway tests: a real gateway process per test on its own Redis prefix."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.gateway.live import REDIS_URL, GatewayProcess


@pytest.fixture
def prefix(stack) -> str:
    return f"g{uuid.uuid4().hex[:10]}"


@pytest.fixture
def r(stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def gw(prefix, tmp_path) -> Iterator[GatewayProcess]:
    g = GatewayProcess(prefix).start(tmp_path)
    yield g
    g.stop()
