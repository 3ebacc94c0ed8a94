"""What the gateway reads from and writes to Redis (adapter).

Reads the worker's keys (see :mod:`streams.counting.keys`): the alerts stream, the
per-minute buckets and the watermarks. Writes its own:

=============================  ======  ====================================================
key                            type    holds
=============================  ======  ====================================================
``P:alerts``                   stream  (shared with the worker) the gateway appends
                                       supervisors' actions as entries with field ``action``
                                       (JSON), next to the worker's ``alert`` entries, so
                                       that they are broadcast and resumable by id
``P:alert_status``             hash    alert id -> JSON of its last action (ack / resolve)
``P:zones``                    hash    zone id -> zone JSON (event zones the gateway created);
                                       read by the worker's detectors
``P:zones:version``            string  bumped on every change of ``P:zones``
``P:audit``                    stream  the audit log (:mod:`gateway.audit`), hash-chained, trimmed
                                       after ``WF_GATEWAY_AUDIT_DAYS``
``P:audit:head``               string  the hash of the newest audit record (the chain's head)
``P:released:{agreement}:{m}`` hash    window start (epoch s) -> JSON of that window of the agreement's
                                       released table (:mod:`gateway.disclosure`), written once
                                       (``HSETNX``: every gateway serves the first one written)
``P:revoked``                  zset    revoked token ids (``jti``), scored by when the token
                                       expires anyway; expired ones are pruned on each
                                       revocation and the key expires with the last one
``P:allocation``               string  the allocation a supervisor adopted last (JSON: who, when,
                                       units, floor, cap, the forecast it used, the units and
                                       share per area): the next recommendation's "previous shift"
=============================  ======  ====================================================

It also reads the worker's forecast set (``P:forecast``, ``P:forecast:version``: :mod:`gateway.forecasts`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import h3
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.overview import minutes_to_read, usable_shifts
from streams.counting.keys import ALL, Keys
from streams.counting.planner import KINDS
from streams.counting.rolling import hour_of, minute_of, window_minutes
from streams.counting.state import ALERTS_STREAM_MAXLEN
from streams.ingest.schema import CATEGORIES as _CATEGORIES
from streams.intake.doors import door_key, doors_key
from streams.runtime.redisconn import ReplicaWarning, async_client, execute_waiting

if TYPE_CHECKING:
    from gateway.settings import GatewaySettings

#: Entries of a Redis stream as the client returns them. The client decodes replies (``decode_responses=True``);
#: redis-py's types also allow bytes, hence the ``cast`` to this where the stream is read.
StreamEntries = list[tuple[str, dict[str, str]]]

#: Largest page read from the alerts stream at once.
PAGE = 500
#: Minutes of buckets read per round trip by :meth:`Store.history`.
HISTORY_CHUNK_MIN = 60


#: Connections to Redis the gateway opens at most, and how long a caller waits for a free one.
REDIS_CONNECTIONS = 100
REDIS_POOL_WAIT_S = 10.0

#: Seconds the counts of one window are shared by every reader (see :meth:`Store.cell_counts`).
COUNTS_TTL_S = 1.0
#: Seconds one overview's reads are shared by every reader asking the same (see :meth:`Store.overview_reads`).
OVERVIEW_TTL_S = 45.0
#: Minutes of buckets read per round trip by :meth:`Store.overview_reads` (11,520 minutes: 48 round trips).
OVERVIEW_CHUNK_MIN = 240
#: Most cells an overview asks each bucket for by name (HMGET); for more it reads the whole bucket (HGETALL) and
#: picks them: asking a Montgomery-sized bucket (a few fields a minute) for 1,524 named fields took 10 s a day-week.
OVERVIEW_HMGET_CELLS = 32
#: The resolution calls are summed at (the zones' and areas' cells; every counted call has one cell of it).
COUNT_RESOLUTION = 8
#: Hours of response-time hashes an overview sums: the 24 ending with the watermark's.
RESPONSE_HOURS = 24
RESPONSE_KINDS = ("dispatch", "travel")

T = TypeVar("T")

log = logging.getLogger(__name__)

# KEYS[1] alerts stream, KEYS[2] alert statuses; ARGV: the stream's MAXLEN, the action (JSON), its alert id, the
# status (JSON). One script, so that the pipeline can WAIT after it on the connection that wrote (a MULTI cannot).
_APPEND_ACTION_LUA = """
local sid = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'action', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
return sid
"""
# KEYS[1] event zones, KEYS[2] their version; ARGV: the zone's id, the zone (JSON). The worker reads the zones again
# when the version moves: both in one script (WAIT may follow it on the connection that wrote).
_SAVE_ZONE_LUA = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('INCR', KEYS[2])
"""


@functools.lru_cache(maxsize=1 << 18)
def cell_resolution(cell: str) -> int | None:
    """The H3 resolution of a bucket field's cell, or None when it is not a cell (memoized:
    the same cells come back in every minute bucket, and a window reads hundreds of thousands).

    >>> cell_resolution("882a13d237fffff"), cell_resolution("nope")
    (8, None)
    """
    return h3.get_resolution(cell) if h3.is_valid_cell(cell) else None


def _sum_fields(bucket: Mapping[str, str], category: str, cells: frozenset[str] | None = None) -> int:
    """Calls of ``category`` in one minute bucket: the sum of its res-8 ``{cell}|{category}`` fields (of ``cells``, if given).

    >>> bucket = {"882a13d237fffff|ALL": "2", "882a13d235fffff|ALL": "1", "872a13d23ffffff|ALL": "3", "882a13d237fffff|EMS": "2"}
    >>> _sum_fields(bucket, "ALL"), _sum_fields(bucket, "ALL", frozenset({"882a13d235fffff"})), _sum_fields(bucket, "EMS")
    (3, 1, 2)
    """
    n = 0
    for fld, v in bucket.items():
        cell, _, cat = fld.rpartition("|")
        if cat == category and (cell_resolution(cell) == COUNT_RESOLUTION if cells is None else cell in cells):
            n += int(v)
    return n


class StoreError(RuntimeError):
    """Redis could not be read or written."""


class Shared(Generic[T]):
    """Answers shared for ``ttl_s`` seconds by key, each computed once when several ask at the same time."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._done: dict[Hashable, tuple[float, T]] = {}
        self._pending: dict[Hashable, asyncio.Future[T]] = {}

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        now = time.monotonic()
        hit = self._done.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        pending = self._pending[key] = asyncio.get_running_loop().create_future()
        try:
            value = await compute()
        except asyncio.CancelledError:
            pending.cancel()
            raise
        except Exception as exc:
            pending.set_exception(exc)
            pending.exception()  # retrieved: the waiters, if any, get it too
            raise
        finally:
            del self._pending[key]
        self._done = {k: v for k, v in self._done.items() if now - v[0] < self.ttl_s}
        self._done[key] = (now, value)
        pending.set_result(value)
        return value


@dataclass(frozen=True)
class OverviewReads:
    """What :meth:`Store.overview_reads` read: calls per minute, the days usable, open incidents, response times."""

    #: the shifts (minutes) of the previous days whose buckets are retained (see :func:`gateway.overview.usable_shifts`)
    shifts: tuple[int, ...]
    #: calls per epoch minute (minutes without calls left out)
    counts: Mapping[int, int]
    #: open incidents in the cells (None: not asked)
    open_incidents: int | None
    #: ``{"dispatch": {"n", "sum", "le60", ...}, "travel": {...}}`` over every area (None: not asked)
    response: Mapping[str, Mapping[str, int]] | None
    #: the same per area (the worker's coarsest counted cell): ``{area: {"dispatch": {...}, "travel": {...}}}``
    response_areas: Mapping[str, Mapping[str, Mapping[str, int]]] | None = None


def stream_id(text: str) -> tuple[int, int]:
    """A Redis stream id as a comparable pair; ``ValueError`` when it is not one.

    >>> stream_id("1700000000000-3") < stream_id("1700000000001-0")
    True
    >>> stream_id("yesterday")
    Traceback (most recent call last):
    ...
    ValueError: not a stream id: 'yesterday' (expected <milliseconds>-<sequence>)
    """
    ms, dash, seq = text.partition("-")
    if not ms.isdigit() or not (seq.isdigit() or (seq == "" and not dash)) or len(text) > 41:
        raise ValueError(f"not a stream id: {text!r} (expected <milliseconds>-<sequence>)")
    return int(ms), int(seq or 0)


class Store:
    def __init__(self, client: aioredis.Redis, prefix: str, partitions: int, *, replicated: bool = False) -> None:
        self.client = client
        #: the writes a failover must not lose wait for a replica to acknowledge them (Redis WAIT,
        #: :data:`REPLICA_WAIT_MS`): with Sentinels (``WF_REDIS_SENTINELS``). A supervisor's action; a revocation (lost,
        #: the token would be let in again); an event zone (lost, a commander's zone would vanish); an adopted allocation
        #: (lost, the dashboards would show the one before); a partner's released
        #: window and an agreement's layout record (lost, a window would be computed again, perhaps from other counts,
        #: or released in two layouts: either difference tells a partner calls it may not see)
        self.replicated = replicated
        self._unreplicated = {
            what: ReplicaWarning(log, f"{what} was", "a failover now would lose it")
            for what in ("a supervisor's action", "a revocation", "an event zone", "a partner's released window", "an adopted allocation")
        }
        self._append_action = client.register_script(_APPEND_ACTION_LUA)
        self._save_zone = client.register_script(_SAVE_ZONE_LUA)
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.partitions = partitions
        self.status_key = f"{prefix}:alert_status"
        self.zones_key = f"{prefix}:zones"
        self.zones_version_key = f"{prefix}:zones:version"
        self.revoked_key = f"{prefix}:revoked"
        self.forecast_key = f"{prefix}:forecast"
        self.forecast_version_key = f"{prefix}:forecast:version"
        self.allocation_key = self.keys.allocation
        self._counts: Shared[Mapping[str, int]] = Shared(COUNTS_TTL_S)
        self._overviews: Shared[OverviewReads] = Shared(OVERVIEW_TTL_S)

    @classmethod
    def from_url(
        cls, url: str, prefix: str, partitions: int, *, sentinels: Sequence[tuple[str, int]] = (), service: str = "watchfloor"
    ) -> Store:
        """A store on ``url``, or on the primary the ``sentinels`` name for ``service`` (following a failover)."""
        # A blocking pool: when every connection is busy (a rush of handshakes after a
        # restart, each checking its token), a caller waits for one instead of failing
        # with MaxConnectionsError, which refused 4 of 1,000 clients with 503 in the soak.
        client = async_client(url, sentinels, service, blocking_pool=(REDIS_CONNECTIONS, REDIS_POOL_WAIT_S), decode_responses=True)
        return cls(client, prefix, partitions, replicated=bool(sentinels))

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> Store:
        """:meth:`from_url` with the settings' ``WF_REDIS_URL``, ``WF_REDIS_SENTINELS``, ``WF_REDIS_SENTINEL_SERVICE``."""
        return cls.from_url(
            settings.redis_url,
            settings.redis_prefix,
            settings.partitions,
            sentinels=settings.redis_sentinels,
            service=settings.redis_sentinel_service,
        )

    async def close(self) -> None:
        await self.client.aclose(close_connection_pool=True)

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except RedisError:
            return False

    # -- the alerts stream -----------------------------------------------------

    async def read_after(self, last_id: str, count: int = PAGE) -> list[tuple[str, dict[str, str]]]:
        """Entries with ids strictly after ``last_id``, oldest first (one page)."""
        return cast(StreamEntries, await self.client.xrange(self.keys.alerts, min=f"({last_id}", max="+", count=count))

    async def read_new(self, last_id: str, block_ms: int) -> list[tuple[str, dict[str, str]]]:
        """Entries after ``last_id``, waiting up to ``block_ms`` for the first."""
        got = cast(list[tuple[str, StreamEntries]], await self.client.xread({self.keys.alerts: last_id}, count=PAGE, block=block_ms))
        return got[0][1] if got else []

    async def newest_id(self) -> str:
        """Id of the newest entry, or ``0-0`` for an empty stream."""
        last = cast(StreamEntries, await self.client.xrevrange(self.keys.alerts, count=1))
        return last[0][0] if last else "0-0"

    async def oldest_id(self) -> str | None:
        first = cast(StreamEntries, await self.client.xrange(self.keys.alerts, count=1))
        return first[0][0] if first else None

    async def recent(self, count: int) -> list[tuple[str, dict[str, str]]]:
        """The newest ``count`` entries, oldest first."""
        return list(reversed(cast(StreamEntries, await self.client.xrevrange(self.keys.alerts, count=count))))

    async def entries(self, ids: Sequence[str]) -> StreamEntries:
        """The alerts-stream entries with these ids, in the order given (one round trip; ``XRANGE id id`` each).

        An id the stream no longer holds (trimmed at ``ALERTS_STREAM_MAXLEN``) is left out."""
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for sid in ids:
            pipe.xrange(self.keys.alerts, sid, sid)
        return [entry for got in cast(list[StreamEntries], await pipe.execute()) for entry in got]

    async def append_action(self, action: dict, status: dict) -> str:
        """Append a supervisor's action to the alerts stream and record the alert's status, atomically; with a replica
        (:attr:`replicated`), return once it has them or after :data:`REPLICA_WAIT_MS` (warning, at most once a minute)."""
        keys = [self.keys.alerts, self.status_key]
        args = [
            ALERTS_STREAM_MAXLEN,
            json.dumps(action, separators=(",", ":")),
            action["alert_id"],
            json.dumps(status, separators=(",", ":")),
        ]
        if not self.replicated:
            return str(await self._append_action(keys=keys, args=args))
        pipe = self.client.pipeline(transaction=False)
        await self._append_action(keys=keys, args=args, client=pipe)
        (sid,), _ = await self._execute(pipe, "a supervisor's action")
        return str(sid)

    async def _execute(self, pipe: Any, what: str) -> tuple[list[Any], bool | None]:
        """Run ``pipe``; with a replica (:attr:`replicated`), return once the replica has its writes or after
        :data:`REPLICA_WAIT_MS` (warning that ``what`` was not acknowledged, at most once a minute).

        The results, and whether a replica acknowledged them (None: no replica is expected).
        """
        # replication is asynchronous: a failover promotes the replica, and writes it lacks are gone
        return await execute_waiting(pipe, self._unreplicated[what] if self.replicated else None)

    async def statuses(self) -> dict[str, dict]:
        # decoded replies: see StreamEntries
        return {k: json.loads(v) for k, v in cast(dict[str, str], await self.client.hgetall(self.status_key)).items()}

    # -- counts ------------------------------------------------------------------

    async def watermark(self) -> float | None:
        """The newest event time the worker has counted (its "now"), or None before any call."""
        values = await self.client.mget([self.keys.watermark(kind, p) for kind in KINDS for p in range(self.partitions)])
        seen = [float(v) for v in values if v is not None]
        return max(seen) if seen else None

    async def cell_counts(self, end: float, window_min: int, resolution: int, category: str = ALL) -> Mapping[str, int]:
        """Calls per cell of ``resolution`` over the ``window_min`` minutes ending at event time ``end`` (read-only).

        Shared for :data:`COUNTS_TTL_S` by every request and counts push asking
        for the same window, and computed once when several ask at the same
        time: at 100,000 active cells one computation reads 600,000 bucket
        fields (about 0.8 s), which each dashboard's request used to repeat.
        """
        minute = minute_of(end)

        async def read() -> Mapping[str, int]:
            return MappingProxyType(await self._read_cell_counts(minute, window_min, resolution, category))

        return await self._counts.get((minute, window_min, resolution, category), read)

    async def _read_cell_counts(self, minute: int, window_min: int, resolution: int, category: str) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=False)
        for m in window_minutes(minute, window_min):
            pipe.hgetall(self.keys.bucket(m))
        out: dict[str, int] = {}
        for h in await pipe.execute():
            for fld, v in h.items():
                cell, _, cat = fld.rpartition("|")
                if cat == category and cell_resolution(cell) == resolution:
                    out[cell] = out.get(cell, 0) + int(v)
        return out

    async def overview_reads(
        self,
        end: int,
        shifts: Sequence[int],
        cells: frozenset[str] | None,
        category: str = ALL,
        since: int | None = None,
        *,
        open_incidents: bool = True,
        response: bool = True,
    ) -> OverviewReads:
        """What ``/api/overview`` reads at watermark minute ``end``, shared for :data:`OVERVIEW_TTL_S` (read-only).

        ``shifts``: the previous days' shifts (:func:`gateway.overview.day_shifts`), of which only those whose
        24 h lie after the retention horizon (``P:horizon``) and the first counted minute (the oldest of
        ``P:buckets``) and ``since`` are read. ``cells``: the res-8 cells to sum (None: every res-8 field of each bucket,
        the whole jurisdiction); ``category``: a category or ``ALL``; ``since``: today's first minute to read.
        ``open_incidents`` / ``response``: whether to read those too (the open incidents of ``cells``,
        response times over every area for the 24 hours ending with ``end``'s).

        Answers are keyed by every argument, so all the dashboards of one scope and filter share one read
        per watermark minute: 8 x 1,440 bucket minutes, in round trips of :data:`OVERVIEW_CHUNK_MIN`.
        """
        key = (end, tuple(shifts), cells, category, since, open_incidents, response)
        return await self._overviews.get(
            key, lambda: self._read_overview(end, shifts, cells, category, since, open_incidents=open_incidents, response=response)
        )

    async def counted_floor(self) -> int | None:
        """The first epoch minute whose bucket is still retained (``P:horizon``) and was counted (the oldest of
        ``P:buckets``): minutes before it read as 0 calls though nobody counted them. None before any bucket."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.keys.horizon)
        pipe.zrange(self.keys.buckets, 0, 0, withscores=True)
        horizon, oldest = await pipe.execute()
        if not oldest:
            return None
        return max(int(oldest[0][1]), int(horizon)) if horizon is not None else int(oldest[0][1])

    async def _read_overview(
        self,
        end: int,
        shifts: Sequence[int],
        cells: frozenset[str] | None,
        category: str,
        since: int | None,
        *,
        open_incidents: bool,
        response: bool,
    ) -> OverviewReads:
        # a previous day is read only when its 24 h are retained (horizon), were counted (the oldest bucket) and,
        # for a commander, lie after its zones' start (since)
        counted = await self.counted_floor()
        floor = None if counted is None else max(counted, since if since is not None else counted)
        usable = tuple(usable_shifts(end, shifts, floor))
        minutes = minutes_to_read(end, usable, since)
        counts: dict[int, int] = {}
        fields = [f"{c}|{category}" for c in sorted(cells)] if cells is not None and len(cells) <= OVERVIEW_HMGET_CELLS else None
        if cells is None or cells:
            # chunked: between round trips the event loop serves everyone else
            for i in range(0, len(minutes), OVERVIEW_CHUNK_MIN):
                chunk = minutes[i : i + OVERVIEW_CHUNK_MIN]
                pipe = self.client.pipeline(transaction=False)
                for m in chunk:
                    if fields is None:
                        pipe.hgetall(self.keys.bucket(m))
                    else:
                        pipe.hmget(self.keys.bucket(m), fields)
                for m, got in zip(chunk, await pipe.execute(), strict=True):
                    n = _sum_fields(got, category, cells) if fields is None else sum(int(v) for v in got if v is not None)
                    if n:
                        counts[m] = n
        open_n = None
        if open_incidents:
            held = cast(dict[str, str], await self.client.hgetall(self.keys.open))
            open_n = sum(int(v) for c, v in held.items() if (c in cells if cells is not None else cell_resolution(c) == COUNT_RESOLUTION))
        times: dict[str, dict[str, int]] | None = None
        by_area: dict[str, dict[str, dict[str, int]]] = {}
        if response:
            pipe = self.client.pipeline(transaction=False)
            last = hour_of(end * 60)
            for hour in range(last - RESPONSE_HOURS + 1, last + 1):
                pipe.hgetall(self.keys.rt(hour))
            sums: dict[str, dict[str, int]] = {kind: {} for kind in RESPONSE_KINDS}
            areas: dict[str, dict[str, dict[str, int]]] = {}
            for h in await pipe.execute():
                for fld, v in h.items():
                    kind, area, stat = fld.split("|")  # {kind}|{area}|{stat}: every area summed, and each
                    if kind in sums:
                        sums[kind][stat] = sums[kind].get(stat, 0) + int(v)
                        slot = areas.setdefault(area, {k: {} for k in RESPONSE_KINDS})[kind]
                        slot[stat] = slot.get(stat, 0) + int(v)
            times = sums
            by_area = areas
        return OverviewReads(usable, MappingProxyType(counts), open_n, times, by_area if response else None)

    async def history(self, cells: Iterable[str], end: float, minutes: int, step_min: int) -> list[dict]:
        """Calls in ``cells`` (summed) per ``step_min`` bin over the ``minutes`` before ``end``, by category."""
        cells = list(cells)
        first = minute_of(end) - minutes + 1
        mins = list(range(first, minute_of(end) + 1))
        fields = [f"{c}|{cat}" for c in cells for cat in _CATEGORIES]
        bins: dict[int, dict[str, int]] = {}
        # one round trip per HISTORY_CHUNK_MIN minutes, each summed before the next: between chunks the
        # event loop serves everyone else (a week at one-minute steps took 2 s of it in one go)
        for i in range(0, len(mins), HISTORY_CHUNK_MIN):
            chunk = mins[i : i + HISTORY_CHUNK_MIN]
            pipe = self.client.pipeline(transaction=False)
            for m in chunk:
                pipe.hmget(self.keys.bucket(m), fields)
            for m, values in zip(chunk, await pipe.execute(), strict=True):
                slot = bins.setdefault((m - first) // step_min, {})
                for j, v in enumerate(values):
                    if v is not None:
                        cat = _CATEGORIES[j % len(_CATEGORIES)]
                        slot[cat] = slot.get(cat, 0) + int(v)
        return [
            {"start": (first + b * step_min) * 60, "minutes": step_min, "categories": bins.get(b, {})}
            for b in range(-(-len(mins) // step_min))
        ]

    async def window_counts(self, cells: Iterable[str], start_minute: int, minutes: int) -> dict[tuple[str, str], int]:
        """Exact calls per (res-8 cell, category) in ``cells`` over the ``minutes`` from epoch minute ``start_minute``."""
        fields = [f"{c}|{cat}" for c in sorted(cells) for cat in _CATEGORIES]
        out: dict[tuple[str, str], int] = {}
        if not fields:
            return out
        mins = list(range(start_minute, start_minute + minutes))
        for i in range(0, len(mins), HISTORY_CHUNK_MIN):
            pipe = self.client.pipeline(transaction=False)
            for m in mins[i : i + HISTORY_CHUNK_MIN]:
                pipe.hmget(self.keys.bucket(m), fields)
            for values in await pipe.execute():
                for f, v in zip(fields, values, strict=True):
                    if v is not None:
                        cell, _, cat = f.partition("|")
                        out[(cell, cat)] = out.get((cell, cat), 0) + int(v)
        return out

    async def horizon(self) -> float | None:
        """Epoch seconds before which the worker's minute buckets have expired (None: nothing expired yet)."""
        value = await self.client.get(self.keys.horizon)
        return None if value is None else int(value) * 60.0

    def _released_key(self, agreement: str, window_min: int) -> str:
        return f"{self.keys.prefix}:released:{agreement}:{window_min}"

    async def released(self, agreement: str, window_min: int, starts: Iterable[float]) -> dict[float, dict]:
        """The stored windows of an agreement's released table among ``starts`` (start -> JSON)."""
        starts = list(starts)
        if not starts:
            return {}
        values = await self.client.hmget(self._released_key(agreement, window_min), [str(int(s)) for s in starts])
        return {s: json.loads(v) for s, v in zip(starts, values, strict=True) if v is not None}

    async def release(self, agreement: str, window_min: int, windows: Mapping[float, dict], keep_after: float) -> dict[float, dict]:
        """Store released windows (start -> JSON) unless stored already; returns the stored ones (the first written wins).

        One round trip however many (a partner's first read of a week is 168), and one ``WAIT`` with a replica.
        Windows that start before ``keep_after`` are deleted (the agreement's history).
        """
        if not windows:
            return {}
        key = self._released_key(agreement, window_min)
        starts = list(windows)
        pipe = self.client.pipeline(transaction=False)
        for start, window in windows.items():
            pipe.hsetnx(key, str(int(start)), json.dumps(window, separators=(",", ":")))
        pipe.hmget(key, [str(int(s)) for s in starts])
        pipe.hkeys(key)
        results, _ = await self._execute(pipe, "a partner's released window")
        stored, fields = results[-2:]
        old = [f for f in fields if int(f) < keep_after]
        if old:
            await self.client.hdel(key, *old)
        return {s: json.loads(v) for s, v in zip(starts, stored, strict=True)}

    # -- zones -------------------------------------------------------------------

    async def event_zones(self) -> list[dict]:
        return [json.loads(v) for v in (await self.client.hgetall(self.zones_key)).values()]

    async def save_zone(self, zone: dict) -> None:
        """Store ``zone`` and move the zones' version on, atomically (a script: ``WAIT`` may follow it, not a MULTI)."""
        pipe = self.client.pipeline(transaction=False)
        await self._save_zone(
            keys=[self.zones_key, self.zones_version_key], args=[zone["id"], json.dumps(zone, separators=(",", ":"))], client=pipe
        )
        await self._execute(pipe, "an event zone")

    async def zones_version(self) -> int:
        return int(await self.client.get(self.zones_version_key) or 0)

    # -- forecasts and the adopted allocation ------------------------------------

    async def forecast_version(self) -> int:
        """The worker's count of forecast sets (``P:forecast:version``; 0 before the first)."""
        return int(await self.client.get(self.forecast_version_key) or 0)

    async def forecast(self) -> tuple[int, str | None]:
        """The version and the text of the latest forecast set (None before the first), read together."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.forecast_version_key)
        pipe.get(self.forecast_key)
        version, text = await pipe.execute()
        return int(version or 0), text

    async def allocation(self) -> dict | None:
        """The allocation adopted last (``P:allocation``), or None."""
        text = await self.client.get(self.allocation_key)
        return None if text is None else json.loads(text)

    async def save_allocation(self, plan: dict) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.allocation_key, json.dumps(plan, separators=(",", ":")))
        await self._execute(pipe, "an adopted allocation")

    # -- doors in (streams.intake.doors) ------------------------------------------

    async def doors(self) -> list[tuple[str, dict[str, str]]]:
        """Each live door's status hash as ``(member, fields)``, members sorted (``poll:<name>``, ``http:<source>``)."""
        members = sorted(_text(m) for m in await self.client.smembers(doors_key(self.prefix)))
        if not members:
            return []
        pipe = self.client.pipeline(transaction=False)
        for m in members:
            pipe.hgetall(door_key(self.prefix, m))
        hashes = await pipe.execute()
        return [(m, {_text(k): _text(v) for k, v in h.items()}) for m, h in zip(members, hashes, strict=True) if h]

    # -- revoked tokens ----------------------------------------------------------

    async def revoke(self, token_id: str, until: float, now: float) -> bool | None:
        """Refuse the token ``token_id`` until ``until`` (epoch s); :class:`StoreError` when Redis cannot be written.

        Whether a replica has the revocation (None: no replica is expected); False: a failover now would lose it.
        """
        # not a MULTI (WAIT may follow): each command stands alone, the first is the revocation
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.revoked_key, {token_id: until})
        pipe.zremrangebyscore(self.revoked_key, "-inf", f"({now}")  # tokens that have expired anyway
        # the set goes when its last token would have expired (GT: never sooner than another's)
        pipe.expireat(self.revoked_key, int(until) + 1, gt=True)
        pipe.expireat(self.revoked_key, int(until) + 1, nx=True)
        try:
            _, acknowledged = await self._execute(pipe, "a revocation")
        except (RedisError, OSError) as exc:
            raise StoreError(f"cannot record the revocation in Redis: {exc}") from exc
        return acknowledged

    async def first_layout_window(self, agreement: str, table: str, open_now: float) -> dict[str, float]:
        """Record ``open_now`` as the first window of ``table`` (a layout of ``agreement``) unless one is recorded;
        every layout's first window (:class:`gateway.releases.ReleaseBook`)."""
        meta = f"{self.keys.prefix}:released:{agreement}:layouts"
        pipe = self.client.pipeline(transaction=False)
        pipe.hsetnx(meta, table, str(open_now))
        pipe.hgetall(meta)
        (_, layouts), _ = await self._execute(pipe, "a partner's released window")
        return {k: float(v) for k, v in layouts.items()}

    async def is_revoked(self, token_id: str) -> bool:
        return await self.client.zscore(self.revoked_key, token_id) is not None

    async def revoked_among(self, token_ids: Iterable[str]) -> set[str]:
        """Which of these token ids are revoked (one round trip)."""
        ids = list(token_ids)
        if not ids:
            return set()
        scores = await self.client.zmscore(self.revoked_key, ids)
        return {t for t, score in zip(ids, scores, strict=True) if score is not None}


#: categories as the counting agent stores them; ALL is their sum


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
