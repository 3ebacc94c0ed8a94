"""Every Redis client of the worker, the plan process, the gateway, the intake and the poller comes from here.

Without Sentinels (``WF_REDIS_SENTINELS`` unset) a client is ``from_url(WF_REDIS_URL)``,
as before. With Sentinels, it is redis-py's ``Sentinel(...).master_for(service)``
(``redis.sentinel`` or ``redis.asyncio.sentinel``): each new connection asks the
Sentinels which node is the primary of ``WF_REDIS_SENTINEL_SERVICE``, so after a
failover the next command reaches the promoted replica. A command in flight when
the primary dies fails with ``ConnectionError``; one that reaches a demoted
primary gets ``READONLY``, which redis-py's Sentinel connections turn into
``ConnectionError`` too, after dropping the connection. The callers' retry loops
(:func:`streams.runtime.retry.until_reachable`, the gateway hub's reader) treat
those as Redis being unreachable and try again. ``WF_REDIS_URL`` still gives the
database number, user name and password (its host and port are not used); the
Sentinels themselves are asked without a password.

The same options each caller passed before go through unchanged
(``decode_responses``, time-outs). :func:`async_client`'s ``blocking_pool``
makes the pool wait for a free connection when all are busy, as the gateway's
``BlockingConnectionPool`` does; with Sentinels that is
:class:`BlockingSentinelPool`. Closing a client made here also closes its
connections to the Sentinels.

This is an adapter (it imports redis); which class is built from which settings
is decided by :func:`plan_client`, plain data in and out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel as syncsentinel

#: Seconds a Sentinel has to answer "which node is the primary" (per Sentinel, then the next is asked).
SENTINEL_TIMEOUT_S = 2.0
#: With Sentinels (``WF_REDIS_SENTINELS``): milliseconds a write that must survive a failover waits for a replica to
#: acknowledge it (Redis ``WAIT``), so that a failover right after it does not lose it. Past that it goes on, with a warning.
REPLICA_WAIT_MS = 200
#: Seconds between two warnings (of one writer) that its writes were not acknowledged by a replica.
REPLICA_WARN_EVERY_S = 60.0


class ReplicaWarning:
    """Tells the operator, at most once every :data:`REPLICA_WARN_EVERY_S`, that ``what`` (``"audit records were"``)
    not acknowledged by a Redis replica within :data:`REPLICA_WAIT_MS`: ``lost`` says what a failover now would lose.

    >>> import logging
    >>> w = ReplicaWarning(logging.getLogger("doctest"), "audit records were", "a failover now would lose them")
    >>> w.check(1), w.check(0), w.check(0)  # acknowledged; warned; not again within the minute
    (True, False, False)
    >>> w.message()  # doctest: +ELLIPSIS
    'audit records were not acknowledged by a Redis replica within 200 ms: a failover now would lose them (is the...)'
    """

    def __init__(self, log: logging.Logger, what: str, lost: str) -> None:
        self.log, self.what, self.lost = log, what, lost
        self._warned = float("-inf")

    def message(self) -> str:
        return (
            f"{self.what} not acknowledged by a Redis replica within {REPLICA_WAIT_MS} ms: {self.lost} "
            "(is the replica down? python -m infra.redisha status)"
        )

    def check(self, replicas: object) -> bool:
        """Whether ``replicas`` (``WAIT``'s reply, or the error a pipeline returned in its place) says a replica has
        the writes; warns when not, unless it did less than :data:`REPLICA_WARN_EVERY_S` ago."""
        acknowledged = isinstance(replicas, int) and replicas >= 1
        if not acknowledged and time.monotonic() - self._warned >= REPLICA_WARN_EVERY_S:
            self._warned = time.monotonic()
            self.log.warning("%s", self.message())
        return acknowledged


async def execute_waiting(pipe: Any, unreplicated: ReplicaWarning | None, **execute: Any) -> tuple[list[Any], bool | None]:
    """Run ``pipe``; with a replica expected (``unreplicated`` given), ``WAIT`` after it on the connection that wrote,
    up to :data:`REPLICA_WAIT_MS`, and warn through ``unreplicated`` when none acknowledged.

    The results, and whether a replica acknowledged them (None: no replica is expected). ``execute``: passed on to
    ``pipe.execute`` (``raise_on_error=False``: the WAIT's error, too, comes back in its place).
    """
    if unreplicated is None:
        return list(await pipe.execute(**execute)), None
    pipe.wait(1, REPLICA_WAIT_MS)
    *results, replicas = await pipe.execute(**execute)
    return results, unreplicated.check(replicas)


class RedisSettings(Protocol):
    """What the factory reads: :class:`streams.runtime.settings.Settings` and :class:`gateway.settings.GatewaySettings` have it."""

    @property
    def redis_url(self) -> str: ...
    @property
    def redis_sentinels(self) -> tuple[tuple[str, int], ...]: ...
    @property
    def redis_sentinel_service(self) -> str: ...


@dataclass(frozen=True)
class ClientPlan:
    """How a client is made: through Sentinels (``sentinels`` non-empty) or straight from ``url``.

    ``node_options`` are the connection options for the data nodes when Sentinels
    are used (db, user name, password from the URL, then the caller's options).
    """

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    node_options: dict[str, Any] = field(default_factory=dict)

    @property
    def through_sentinels(self) -> bool:
        return bool(self.sentinels)


def plan_client(url: str, sentinels: Sequence[tuple[str, int]] = (), service: str = "watchfloor", **options: Any) -> ClientPlan:
    """Decide how to connect (pure): the URL alone, or the Sentinels with the URL's db and credentials.

    >>> plan_client("redis://127.0.0.1:6379/0").through_sentinels
    False
    >>> p = plan_client("redis://:pw@ignored:1/3", [("10.0.0.5", 26379)], "wf", decode_responses=True)
    >>> p.through_sentinels, p.service, p.node_options
    (True, 'wf', {'db': 3, 'password': 'pw', 'decode_responses': True})
    >>> plan_client("unix:///run/redis.sock", [("10.0.0.5", 26379)])
    Traceback (most recent call last):
    ...
    ValueError: WF_REDIS_URL: with WF_REDIS_SENTINELS set it must be a redis:// or rediss:// URL (it gives the db and password), found 'unix:///run/redis.sock'
    """
    if not sentinels:
        return ClientPlan(url=url, node_options=dict(options))
    if not service:
        raise ValueError("WF_REDIS_SENTINEL_SERVICE: empty; it names the primary the Sentinels monitor (watchfloor by default)")
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(
            "WF_REDIS_URL: with WF_REDIS_SENTINELS set it must be a redis:// or rediss:// URL "
            f"(it gives the db and password), found {url!r}"
        )
    node: dict[str, Any] = {}
    path = parts.path.strip("/")
    if path:
        if not path.isdigit():
            raise ValueError(f"WF_REDIS_URL: the path must be a database number, found {parts.path!r} in {url!r}")
        node["db"] = int(path)
    if parts.username:
        node["username"] = unquote(parts.username)
    if parts.password is not None:
        node["password"] = unquote(parts.password)
    if parts.scheme == "rediss":
        node["ssl"] = True
    node.update(options)
    return ClientPlan(url=url, sentinels=tuple(sentinels), service=service, node_options=node)


def _sentinel_options(options: dict[str, Any]) -> dict[str, Any]:
    """The Sentinels' connection options: bounded time-outs (a silent Sentinel must not hang a caller)."""
    out: dict[str, Any] = {"socket_timeout": SENTINEL_TIMEOUT_S, "socket_connect_timeout": SENTINEL_TIMEOUT_S}
    for name in ("socket_timeout", "socket_connect_timeout"):
        if options.get(name) is not None:
            out[name] = min(float(options[name]), SENTINEL_TIMEOUT_S)
    return out


class BlockingSentinelPool(aiosentinel.SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """A Sentinel pool that waits (``timeout`` seconds) for a free connection instead of failing when all are busy.

    The Sentinel pool decides where a connection goes (the primary the Sentinels
    name); :class:`redis.asyncio.BlockingConnectionPool` decides when a caller
    gets one. Neither overrides the other's methods, so the two combine by inheritance.
    """


class _AsyncSentinelRedis(aioredis.Redis):
    """An asyncio client through Sentinels whose :meth:`aclose` also closes its connections to the Sentinels."""

    sentinel_manager: aiosentinel.Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel_manager is not None:
            await self.sentinel_manager.aclose()


class _SyncSentinelRedis(redis.Redis):
    """A client through Sentinels whose :meth:`close` also closes its connections to the Sentinels."""

    sentinel_manager: syncsentinel.Sentinel | None = None

    def close(self) -> None:
        super().close()
        if self.sentinel_manager is not None:
            for client in self.sentinel_manager.sentinels:
                client.close()


def async_client(
    url: str,
    sentinels: Sequence[tuple[str, int]] = (),
    service: str = "watchfloor",
    *,
    blocking_pool: tuple[int, float] | None = None,
    **options: Any,
) -> aioredis.Redis:
    """An asyncio Redis client for the primary: through ``sentinels`` when given, else from ``url``.

    ``blocking_pool=(max_connections, wait_s)``: a pool of at most that many
    connections where a caller waits up to ``wait_s`` for one to be free.
    ``options`` go to every connection (``decode_responses``, time-outs).
    """
    plan = plan_client(url, sentinels, service, **options)
    if not plan.through_sentinels:
        if blocking_pool is None:
            return aioredis.Redis.from_url(url, **options)
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=blocking_pool[0], timeout=blocking_pool[1], **options)
        return aioredis.Redis(connection_pool=pool)
    manager = aiosentinel.Sentinel(list(plan.sentinels), sentinel_kwargs=_sentinel_options(options))
    extra: dict[str, Any] = {}
    pool_class: type[aiosentinel.SentinelConnectionPool] = aiosentinel.SentinelConnectionPool
    if blocking_pool is not None:
        pool_class = BlockingSentinelPool
        extra = {"max_connections": blocking_pool[0], "timeout": blocking_pool[1]}
    client = manager.master_for(
        plan.service, redis_class=_AsyncSentinelRedis, connection_pool_class=pool_class, **plan.node_options, **extra
    )
    client.sentinel_manager = manager
    return client


def sync_client(url: str, sentinels: Sequence[tuple[str, int]] = (), service: str = "watchfloor", **options: Any) -> redis.Redis:
    """A blocking Redis client for the primary: through ``sentinels`` when given, else from ``url``."""
    plan = plan_client(url, sentinels, service, **options)
    if not plan.through_sentinels:
        return redis.Redis.from_url(url, **options)
    manager = syncsentinel.Sentinel(list(plan.sentinels), sentinel_kwargs=_sentinel_options(options))
    client = manager.master_for(plan.service, redis_class=_SyncSentinelRedis, **plan.node_options)
    client.sentinel_manager = manager
    return client


def async_client_for(settings: RedisSettings, *, blocking_pool: tuple[int, float] | None = None, **options: Any) -> aioredis.Redis:
    """:func:`async_client` with the settings' ``WF_REDIS_URL``, ``WF_REDIS_SENTINELS`` and ``WF_REDIS_SENTINEL_SERVICE``."""
    return async_client(
        settings.redis_url, settings.redis_sentinels, settings.redis_sentinel_service, blocking_pool=blocking_pool, **options
    )


def sync_client_for(settings: RedisSettings, **options: Any) -> redis.Redis:
    """:func:`sync_client` with the settings' ``WF_REDIS_URL``, ``WF_REDIS_SENTINELS`` and ``WF_REDIS_SENTINEL_SERVICE``."""
    return sync_client(settings.redis_url, settings.redis_sentinels, settings.redis_sentinel_service, **options)


def describe(settings: RedisSettings) -> str:
    """Where the settings point, for messages (never the password).

    >>> from streams.runtime.settings import Settings
    >>> describe(Settings(redis_sentinels=(("10.0.0.5", 26379), ("10.0.0.6", 26379))))
    "the primary of 'watchfloor' named by the Sentinels at 10.0.0.5:26379,10.0.0.6:26379"
    >>> describe(Settings(redis_url="redis://:secret@db:6379/0"))
    'Redis at redis://db:6379/0'
    """
    if settings.redis_sentinels:
        where = ",".join(f"{h}:{p}" for h, p in settings.redis_sentinels)
        return f"the primary of {settings.redis_sentinel_service!r} named by the Sentinels at {where}"
    parts = urlsplit(settings.redis_url)
    if parts.password is not None or parts.username:
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        return f"Redis at {parts._replace(netloc=netloc).geturl()}"
    return f"Redis at {settings.redis_url}"
