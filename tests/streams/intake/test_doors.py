"""The doors' status hashes as the poller's store writes them, read back as the gateway reads them (real Redis)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from streams.intake.doors import doors_key, read_door
from streams.intake.feedstate import PollStatus
from streams.intake.poller import RedisStore

pytestmark = pytest.mark.stack


def test_the_pollers_store_lists_its_status_among_the_doors_and_it_reads_back_with_its_health(settings):
    async def go():
        client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        try:
            store = RedisStore(client, settings.redis_prefix, "sea")
            status = PollStatus("sea", "http://x/resource/a.json", 60.0, 3, started_at=0.0, last_success_at=1000.0, consecutive_failures=4)
            await store.write_status(status.fields(1000.0))
            members = await client.smembers(doors_key(settings.redis_prefix))
            fields = await client.hgetall(store.status_key)
        finally:
            await client.aclose()
        return members, fields

    members, fields = asyncio.run(go())
    assert members == {"poll:sea"}
    assert read_door("poll:sea", fields, 1010.0).health == "failing"  # 4 failures in a row, unhealthy after 3
    assert read_door("poll:sea", fields, 1000.0 + 181).health == "stalled"  # no completed poll for 3 intervals
