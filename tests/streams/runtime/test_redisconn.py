"""The one Redis client factory: which client it builds from which settings (no Redis needed: nothing connects here)."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel as syncsentinel

from gateway.settings import GatewaySettingsError, load_gateway_settings
from streams.runtime.redisconn import BlockingSentinelPool, async_client, async_client_for, sync_client, sync_client_for
from streams.runtime.settings import Settings, SettingsError, load_settings

SENTINELS = "10.0.0.5:26379,10.0.0.6:26380,10.0.0.7:26381"
SECRET = "x" * 40


def close(client: aioredis.Redis) -> None:
    asyncio.run(client.aclose())


def test_without_sentinels_a_sync_client_is_made_from_the_url():
    client = sync_client_for(Settings(redis_url="redis://127.0.0.1:6390/2"), decode_responses=True)
    try:
        assert type(client) is redis.Redis
        assert type(client.connection_pool) is redis.ConnectionPool
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["decode_responses"]) == ("127.0.0.1", 6390, 2, True)
    finally:
        client.close()


def test_without_sentinels_an_asyncio_client_is_made_from_the_url_with_a_blocking_pool_when_asked():
    plain = async_client("redis://127.0.0.1:6390/0", socket_timeout=5)
    blocking = async_client("redis://127.0.0.1:6390/0", blocking_pool=(7, 3.0))
    try:
        assert type(plain.connection_pool) is aioredis.ConnectionPool
        assert plain.connection_pool.connection_kwargs["socket_timeout"] == 5
        assert type(blocking.connection_pool) is aioredis.BlockingConnectionPool
        assert (blocking.connection_pool.max_connections, blocking.connection_pool.timeout) == (7, 3.0)
    finally:
        close(plain)
        close(blocking)


def test_with_sentinels_a_sync_client_asks_them_for_the_service_with_the_urls_db_and_password():
    settings = load_settings({"WF_REDIS_SENTINELS": SENTINELS, "WF_REDIS_SENTINEL_SERVICE": "county", "WF_REDIS_URL": "redis://:pw@x:1/3"})
    client = sync_client_for(settings, decode_responses=True)
    try:
        pool = client.connection_pool
        assert isinstance(pool, syncsentinel.SentinelConnectionPool)
        assert pool.service_name == "county" and pool.is_master
        asked = [s.connection_pool.connection_kwargs for s in pool.sentinel_manager.sentinels]
        assert [(k["host"], k["port"]) for k in asked] == [("10.0.0.5", 26379), ("10.0.0.6", 26380), ("10.0.0.7", 26381)]
        kwargs = pool.connection_kwargs
        assert (kwargs["db"], kwargs["password"], kwargs["decode_responses"]) == (3, "pw", True)
    finally:
        client.close()


def test_with_sentinels_an_asyncio_client_uses_a_sentinel_pool_and_a_blocking_one_when_asked():
    settings = load_settings({"WF_REDIS_SENTINELS": SENTINELS})
    plain = async_client_for(settings, decode_responses=True)
    blocking = async_client_for(settings, blocking_pool=(9, 2.5), decode_responses=True)
    try:
        assert type(plain.connection_pool) is aiosentinel.SentinelConnectionPool
        assert plain.connection_pool.service_name == "watchfloor"
        pool = blocking.connection_pool
        assert isinstance(pool, BlockingSentinelPool)
        assert isinstance(pool, aiosentinel.SentinelConnectionPool) and isinstance(pool, aioredis.BlockingConnectionPool)
        assert (pool.max_connections, pool.timeout, pool.service_name) == (9, 2.5, "watchfloor")
    finally:
        close(plain)
        close(blocking)


def test_the_sentinels_are_asked_with_bounded_time_outs():
    client = sync_client("redis://127.0.0.1:6379/0", [("10.0.0.5", 26379)], socket_timeout=30)
    try:
        kwargs = client.connection_pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == 2.0 and kwargs["socket_connect_timeout"] == 2.0
    finally:
        client.close()


def test_the_gateway_store_follows_the_gateway_settings_sentinels():
    from gateway.store import Store

    settings = load_gateway_settings({"WF_GATEWAY_SECRET": SECRET, "WF_REDIS_SENTINELS": SENTINELS, "WF_REDIS_SENTINEL_SERVICE": "gw"})
    store = Store.from_settings(settings)
    try:
        assert isinstance(store.client.connection_pool, BlockingSentinelPool)
        assert store.client.connection_pool.service_name == "gw"
    finally:
        asyncio.run(store.close())


def test_unset_or_empty_sentinels_mean_none():
    assert load_settings({}).redis_sentinels == ()
    assert load_settings({"WF_REDIS_SENTINELS": ""}).redis_sentinels == ()
    assert load_gateway_settings({"WF_GATEWAY_SECRET": SECRET}).redis_sentinel_service == "watchfloor"


@pytest.mark.parametrize("bad", ["10.0.0.5", "10.0.0.5:port", "10.0.0.5:70000", ":26379"])
def test_a_sentinel_that_is_not_host_port_is_refused_naming_the_variable(bad):
    with pytest.raises(SettingsError, match=r"WF_REDIS_SENTINELS: cannot read .* is not host:port"):
        load_settings({"WF_REDIS_SENTINELS": f"10.0.0.9:26379,{bad}"})
    with pytest.raises(GatewaySettingsError, match=r"WF_REDIS_SENTINELS: cannot read .* is not host:port"):
        load_gateway_settings({"WF_GATEWAY_SECRET": SECRET, "WF_REDIS_SENTINELS": bad})


def test_with_sentinels_a_url_that_cannot_give_the_db_is_refused_naming_the_variable():
    with pytest.raises(ValueError, match="WF_REDIS_URL: the path must be a database number"):
        sync_client("redis://127.0.0.1:6379/zero", [("10.0.0.5", 26379)])
