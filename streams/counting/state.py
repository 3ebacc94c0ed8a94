"""Redis adapter: snapshot, atomic commit, expiry, and the queries on the counts.

The pure planner (``planner.py``) decides what to write; this module reads what
it needs, and commits each plan with a single Lua script, so a batch's counts,
its call state and its consumed offsets change together or not at all.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from streams.counting.keys import ALL, Keys
from streams.counting.planner import (
    KINDS,
    CallState,
    Incoming,
    Plan,
    PlanConfig,
    Snapshot,
    Validated,
    parse_batch,
    plan_batch,
    referenced_calls,
)
from streams.counting.rolling import WINDOWS_MIN, hour_of, minute_of, window_minutes
from streams.ingest.schema import Extent, Jurisdiction
from streams.runtime.redisconn import ReplicaWarning, async_client_for, execute_waiting
from streams.runtime.settings import Settings, load_jurisdiction

#: ``take_next()`` of :meth:`RedisState.apply`: the batch after this one and its ``catching_up``, or None.
TakeNext = Callable[[], "tuple[list[Incoming], frozenset[tuple[str, int]]] | None"]

log = logging.getLogger(__name__)

# ARGV layout (all strings):
#   n_cas, then n_cas x (offset_key, expected_offset or "", new_offset)
#   n_set, then n_set x (key, value)                      -- watermarks, horizon
#   n_evict, then n_evict x (openq, callq, pendq, calls_hash, pend_hash, stale_cutoff, retention_cutoff)
#   open_key, metrics_key, buckets_zset, bucket_prefix, bucket_cutoff_minute or "",
#   rthours_zset, rt_prefix, rt_cutoff_hour or ""
#   then the plan's ops, joined by the unit separator \x1f into one argument
#   (one string instead of tens of thousands: encoding arguments was most of the
#   commit's cost; ids cannot contain control characters, see schema.py):
#     B key n (field delta) x n   HINCRBY each; a field that reaches 0 is deleted
#     H key field value           HSET
#     X key field                 HDEL
#     Z key score member          ZADD
#     R key member                ZREM
# Returns 0 when an offset check fails (nothing written), else 1.
_COMMIT_LUA = r"""
local a = ARGV
local i = 1
local n = tonumber(a[i]); i = i + 1
for _ = 1, n do
  local cur = redis.call('GET', a[i])
  if (cur or '') ~= a[i + 1] then return 0 end
  i = i + 3
end
local j = 2
for _ = 1, n do redis.call('SET', a[j], a[j + 2]); j = j + 3 end
n = tonumber(a[i]); i = i + 1
for _ = 1, n do redis.call('SET', a[i], a[i + 1]); i = i + 2 end
local evicts = {}
n = tonumber(a[i]); i = i + 1
for _ = 1, n do evicts[#evicts + 1] = {a[i], a[i + 1], a[i + 2], a[i + 3], a[i + 4], a[i + 5], a[i + 6]}; i = i + 7 end
local open_key, metrics_key = a[i], a[i + 1]
local buckets, bucket_prefix, bucket_cut = a[i + 2], a[i + 3], a[i + 4]
local rthours, rt_prefix, rt_cut = a[i + 5], a[i + 6], a[i + 7]
-- the ops: one token stream, read in order (one token per statement: Lua
-- does not promise an evaluation order for the arguments of a call)
local tok = string.gmatch(a[i + 8] .. '\31', '([^\31]*)\31')
if a[i + 8] == '' then tok = function() return nil end end
local op = tok()
while op do
  local key = tok()
  if op == 'B' then
    local n = tonumber(tok())
    for _ = 1, n do
      local f = tok()
      if redis.call('HINCRBY', key, f, tok()) == 0 then redis.call('HDEL', key, f) end
    end
  elseif op == 'H' then local f = tok(); redis.call('HSET', key, f, tok())
  elseif op == 'X' then redis.call('HDEL', key, tok())
  elseif op == 'Z' then local score = tok(); redis.call('ZADD', key, score, tok())
  elseif op == 'R' then redis.call('ZREM', key, tok())
  else return redis.error_reply('unknown op ' .. tostring(op)) end
  op = tok()
end
for _, e in ipairs(evicts) do
  local openq, callq, pendq, calls, pend = e[1], e[2], e[3], e[4], e[5]
  -- calls open for longer than the timeout stop counting as open
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', openq, '-inf', '(' .. e[6])) do
    local state = redis.call('HGET', calls, id)
    if state then
      local cells = string.match(state, '^([^;]*)')
      for cell in string.gmatch(cells, '[^,]+') do
        if redis.call('HINCRBY', open_key, cell, -1) == 0 then redis.call('HDEL', open_key, cell) end
      end
      -- status is the sixth field of CallState.to_text()
      local p = {}
      for part in string.gmatch(state .. ';', '([^;]*);') do p[#p + 1] = part end
      p[6] = 'stale'
      redis.call('HSET', calls, id, table.concat(p, ';'))
    end
    redis.call('ZREM', openq, id)
    redis.call('HINCRBY', metrics_key, 'stale_closed_total', 1)
  end
  -- call state and held updates older than the retention go
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', callq, '-inf', '(' .. e[7])) do redis.call('HDEL', calls, id) end
  redis.call('ZREMRANGEBYSCORE', callq, '-inf', '(' .. e[7])
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', pendq, '-inf', '(' .. e[7])) do
    local held = redis.call('HGET', pend, id)
    if held then
      local _, lines = string.gsub(held, '\n', '')
      redis.call('HINCRBY', metrics_key, 'orphan_updates_expired_total', lines + 1)
      redis.call('HDEL', pend, id)
    end
  end
  redis.call('ZREMRANGEBYSCORE', pendq, '-inf', '(' .. e[7])
end
if bucket_cut ~= '' then
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', buckets, '-inf', '(' .. bucket_cut)) do redis.call('DEL', bucket_prefix .. m) end
  redis.call('ZREMRANGEBYSCORE', buckets, '-inf', '(' .. bucket_cut)
end
if rt_cut ~= '' then
  for _, h in ipairs(redis.call('ZRANGEBYSCORE', rthours, '-inf', '(' .. rt_cut)) do redis.call('DEL', rt_prefix .. h) end
  redis.call('ZREMRANGEBYSCORE', rthours, '-inf', '(' .. rt_cut)
end
return 1
"""


OP_SEPARATOR = "\x1f"
#: How far (event time) a partition's calls may run ahead of its updates and still keep
#: the state their updates need; beyond it, the faster stream's time decides expiry.
MAX_STREAM_SKEW_S = 31 * 24 * 3600


def expiry_times(watermarks: dict[str, float], catching_up: Collection[str]) -> tuple[float, float] | None:
    """The event times by which one partition's open calls time out and its call state expires (None: nothing yet).

    ``watermarks`` are the partition's streams' (``"call"``, ``"update"``) newest
    event times; ``catching_up`` the streams with records still to read in Kafka.
    Live, open calls time out by the faster stream and call state goes by the
    slower, within :data:`MAX_STREAM_SKEW_S` (a stream that stopped for good
    must not keep call state forever):

    >>> expiry_times({"call": 1_000_000.0, "update": 990_000.0}, set())
    (1000000.0, 990000.0)

    While the slower stream still has records to read (a backfill, where one
    fetch brings weeks of calls ahead of their updates; a worker restarting
    behind), both go by it: no call times out, and no state goes, ahead of
    updates not read yet. A stream not read at all yet holds everything:

    >>> expiry_times({"call": 1_000_000.0, "update": 990_000.0}, {"update"})
    (990000.0, 990000.0)
    >>> expiry_times({"call": 1_000_000.0}, {"update"})
    (-inf, -inf)
    >>> expiry_times({"call": 1_000_000.0, "update": 990_000.0}, {"call"})  # the faster has more: as live
    (1000000.0, 990000.0)
    """
    if not watermarks:
        return None
    faster = max(watermarks.values())
    behind = min((watermarks.get(kind, float("-inf")) for kind in catching_up), default=faster)
    if behind < faster:
        return behind, behind
    return faster, max(min(watermarks.values()), faster - MAX_STREAM_SKEW_S)


#: Alert records kept in the Redis stream (about a year of a busy centre's alert changes).
ALERTS_STREAM_MAXLEN = 100_000

#: A Redis hash as the client returns it. The client decodes replies (``decode_responses=True``, see
#: :meth:`RedisState.from_settings`); redis-py's types also allow bytes, hence the ``cast`` where a reply is read.
_Hash = dict[str, str]

# KEYS[1] alerts stream, KEYS[2] digests of the records appended since the last
# checkpoint (zset scored by the detector-input offset that made them), KEYS[3]
# the detectors' hash, KEYS[4] the detectors' journal; ARGV[1] stream length kept, ARGV[2] detector-input offset
# applied ("" to leave it), ARGV[3] the records' score, ARGV[4] the fence: the
# applied offset this worker last wrote ("" for none), ARGV[5] the highest stream
# id this worker's appends got ("" for none), ARGV[6] the number n of the detectors'
# journal entries (KEYS[4]), then n (sequence number, entry) pairs, then (digest,
# record) pairs.
# Fenced: when the hash holds less than the fence (its larger of ``applied`` and
# the checkpoint's ``offset``; -1 when it is gone) Redis went back under the worker
# (a failover to a replica that lacked the last writes, a restart from an older
# snapshot): nothing is written and {"went-back", stored} is returned.
# Ids: "*", except that a record never gets an id at or below ARGV[5] (a new primary
# whose clock is behind the old one's would give ids below those clients hold).
# Returns {added, last id added or ""}.
_APPEND_ALERTS_LUA = """
if ARGV[4] ~= '' then
  local h = redis.call('HMGET', KEYS[3], 'applied', 'offset')
  local stored = math.max(tonumber(h[1] or '-1'), tonumber(h[2] or '-1'))
  if stored < tonumber(ARGV[4]) then return {'went-back', tostring(stored)} end
end
local floor_ms, floor_seq = nil, nil
if ARGV[5] ~= '' then
  floor_ms, floor_seq = string.match(ARGV[5], '^(%d+)-(%d+)$')
  floor_ms, floor_seq = tonumber(floor_ms), tonumber(floor_seq)
end
local n = tonumber(ARGV[6])
for i = 7, 6 + 2 * n, 2 do
  redis.call('ZADD', KEYS[4], 'NX', ARGV[i], ARGV[i + 1])
end
local added, last = 0, ''
for i = 7 + 2 * n, #ARGV, 2 do
  if redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[i]) == 1 then
    local id = '*'
    if floor_ms and last == '' then  -- after one record of this script the stream's newest is past the floor
      local now = redis.call('TIME')
      local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
      local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
      local top_ms, top_seq = -1, -1
      if top then
        top_ms, top_seq = string.match(top[1], '^(%d+)-(%d+)$')
        top_ms, top_seq = tonumber(top_ms), tonumber(top_seq)
      end
      if now_ms <= floor_ms and (top_ms < floor_ms or (top_ms == floor_ms and top_seq < floor_seq)) then
        id = string.format('%d-%d', floor_ms, floor_seq + 1)
      end
    end
    last = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], id, 'alert', ARGV[i + 1])
    added = added + 1
  end
end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[3], 'applied', ARGV[2])
end
return {added, last}
"""


# A checkpoint made outside the worker (streams.detection.bootstrap), written only where
# the worker keeps none. KEYS: the detectors' hash, its written-alerts zset, its journal; ARGV[1] the
# detector-input offset, ARGV[2] the state (base64), ARGV[3] "1" to replace what is there.
# The hash at all (a checkpoint, or "applied" before a worker's first) means a worker has run.
_SEED_DETECTION_LUA = """
if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], 'offset', ARGV[1], 'state', ARGV[2])
return 1
"""


#: A detectors' checkpoint at ``ARGV[1]``, written only when the one stored is not further along: a detection worker
#: that lost its partition in a rebalance (or was paused) cannot put its older detectors over its successor's.
#: Forgets the alert records appended for the messages it covers, and the journal's entries (``KEYS[3]``) it has seen:
#: those of the journal ``ARGV[4]`` up to its sequence number ``ARGV[5]``, and any other journal's ("" : none forgotten).
#: 1 written, 0 refused. ``ARGV[3]``, the offset of this worker's last checkpoint ("" for none), fences the other way:
#: a stored one below it (or none) means Redis went back under the worker; nothing is written and -2 - the stored
#: offset (-1 when there is none) is returned.
_COMMIT_DETECTION_LUA = """
local stored = redis.call('HGET', KEYS[1], 'offset')
if ARGV[3] ~= '' and tonumber(stored or '-1') < tonumber(ARGV[3]) then
  return -2 - tonumber(stored or '-1')
end
if stored and tonumber(stored) > tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'offset', ARGV[1], 'state', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if ARGV[4] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[5])
  local own = ARGV[4] .. ' '
  for _, member in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    if string.sub(member, 1, #own) ~= own then redis.call('ZREM', KEYS[3], member) end
  end
end
return 1
"""


class StateError(RuntimeError):
    """Redis could not be read or written; the batch was not committed."""


class CheckpointFenced(StateError):
    """A detectors' checkpoint was refused: the one in Redis covers more of the detector input (another worker's)."""


class RedisWentBack(StateError):
    """Redis holds less of the detection than this worker wrote (a failover lost the last writes); nothing was written.

    ``stored`` is the detector-input offset Redis holds (-1: nothing), ``wrote`` the one this worker wrote last.
    The caller restores the stored checkpoint and feeds the detectors again from Kafka
    (:meth:`streams.detection.agent.DetectionAgent.refeed`).
    """

    def __init__(self, what: str, stored: int, wrote: int) -> None:
        super().__init__(
            f"Redis went back under the detection: {what} holds detector-input offset {stored}, this worker wrote {wrote} "
            "(a failover to a replica that lacked the last writes, or a restart from an older snapshot)"
        )
        self.stored = stored
        self.wrote = wrote


@dataclass(frozen=True)
class BatchResult:
    plan: Plan
    attempts: int


class RedisState:
    """Exact rolling counts in Redis, written batch by batch.

    Call :meth:`apply` with each batch consumed from Kafka; it returns after the
    batch is committed (or was found already committed). What the batch sends
    on (dead letters, detector input) must be published before the commit, or a
    crash in between would lose it: :meth:`apply` takes an async
    ``before_commit(plan)`` callback that runs between planning and committing.
    """

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.keys = Keys(settings.redis_prefix, detection=settings.detection_set)
        self.config = PlanConfig(
            keys=self.keys,
            resolutions=settings.resolutions,
            allowed_lateness_s=settings.allowed_lateness_s,
            jurisdiction=jurisdiction_extent(settings),
        )
        self._commit = client.register_script(_COMMIT_LUA)
        self._append_alerts = client.register_script(_APPEND_ALERTS_LUA)
        self._seed_detection = client.register_script(_SEED_DETECTION_LUA)
        self._commit_detection = client.register_script(_COMMIT_DETECTION_LUA)
        # with Sentinels: the warnings that alert records, or a checkpoint, were not acknowledged by a replica
        self._unreplicated = ReplicaWarning(log, "alert records were", "a failover now would lose them from the stream")
        self._unreplicated_checkpoint = ReplicaWarning(
            log, "the detectors' checkpoint was", "a failover now would take it back to the one before"
        )
        #: the highest alerts-stream id this process's appends got ("": none yet); no later record gets one at or below it
        self.alerts_floor = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisState:
        # through the Sentinels when WF_REDIS_SENTINELS is set (the plan process too: it is given these settings)
        return cls(async_client_for(settings, decode_responses=True), settings)

    async def close(self) -> None:
        await self.client.aclose()

    # -- writing ------------------------------------------------------------

    async def apply(
        self,
        batch: list[Incoming],
        before_commit: Callable[[Plan], Awaitable[None]] | None = None,
        *,
        max_attempts: int = 20,
        check_snapshot: Callable[[Snapshot], Awaitable[None]] | None = None,
        catching_up: frozenset[tuple[str, int]] = frozenset(),
        take_next: TakeNext | None = None,
    ) -> BatchResult:
        """Plan and commit one batch; retry when another worker committed the same partition first.

        ``check_snapshot(snap)`` runs after every read of the snapshot, before
        anything is published or committed, and may raise to abandon the batch: the worker checks there
        that Redis still holds what the batch follows (see :func:`streams.counting.rebuild.find_gaps`).
        The commit's offset check then makes sure the snapshot it passed is the one committed on.
        ``catching_up``: the streams ``(kind, partition)`` with records still to read in Kafka after
        this batch (see :func:`expiry_times`).
        ``take_next()``, called just before the commit, may hand over the batch
        that comes next (with its ``catching_up``) so that it is planned while
        this one commits; a later :meth:`apply` of that same list then starts
        from that plan. Here it is not called: planning ahead is the plan
        process's (:class:`streams.counting.planproc.OffloadedState`).
        """
        for attempt in range(1, max_attempts + 1):
            try:
                plan, snap = await self._plan_once(batch, check_snapshot, catching_up)
                if before_commit is not None and (plan.dead_letters or plan.points):
                    await before_commit(plan)
                if not plan.offsets:
                    return BatchResult(plan, attempt)
                if await self._commit_plan(plan, snap, take_next):
                    return BatchResult(plan, attempt)
            except RedisError as exc:
                raise StateError(f"Redis failed while committing a batch of {len(batch)} records: {exc}") from exc
            log.info("offset check failed (another worker committed first); re-planning, attempt %d", attempt)
            await asyncio.sleep(0.01 * attempt)
        raise StateError(f"batch not committed after {max_attempts} attempts: the partitions keep moving under this worker")

    async def _plan_once(
        self,
        batch: list[Incoming],
        check_snapshot: Callable[[Snapshot], Awaitable[None]] | None = None,
        catching_up: frozenset[tuple[str, int]] = frozenset(),
    ) -> tuple[Plan, Snapshot]:
        """Validate, read the snapshot, check it, plan: one attempt of :meth:`apply` up to its commit."""
        return await self._plan_parsed(batch, parse_batch(batch, self.config, now=time.time()), check_snapshot, catching_up)

    async def _plan_parsed(
        self,
        batch: list[Incoming],
        parsed: list[Validated],
        check_snapshot: Callable[[Snapshot], Awaitable[None]] | None = None,
        catching_up: frozenset[tuple[str, int]] = frozenset(),
    ) -> tuple[Plan, Snapshot]:
        """:meth:`_plan_once` for a batch already validated (``parsed``: :func:`parse_batch`'s result)."""
        snap = await self.snapshot(batch, referenced_calls(batch, parsed))
        if check_snapshot is not None:
            await check_snapshot(snap)
        plan = plan_batch(batch, snap, self.config, now=time.time(), parsed=parsed)
        plan.catching_up = catching_up
        return plan, snap

    async def snapshot(self, batch: Iterable[Incoming], calls: list[tuple[int, str]]) -> Snapshot:
        """Read the offsets, watermarks, horizon, and the state and held updates of ``calls``."""
        k = self.keys
        tps = sorted({(r.kind, r.partition) for r in batch})
        all_tps = [(kind, p) for kind in KINDS for p in range(self.settings.partitions)]
        by_partition: dict[int, list[str]] = {}
        for p, cid in calls:
            by_partition.setdefault(p, []).append(cid)
        pipe = self.client.pipeline(transaction=False)
        pipe.mget([k.offset(kind, p) for kind, p in tps])
        pipe.mget([k.watermark(kind, p) for kind, p in all_tps])
        pipe.get(k.horizon)
        for p, ids in by_partition.items():
            pipe.hmget(k.calls(p), ids)
            pipe.hmget(k.pending(p), ids)
        res = await pipe.execute()
        offsets = {tp: int(v) for tp, v in zip(tps, res[0], strict=True) if v is not None}
        watermarks = {tp: float(v) for tp, v in zip(all_tps, res[1], strict=True) if v is not None}
        horizon = int(res[2]) if res[2] is not None else None
        states: dict[tuple[int, str], CallState] = {}
        pending: dict[tuple[int, str], list[str]] = {}
        for n, (p, ids) in enumerate(by_partition.items()):
            for cid, text, held in zip(ids, res[3 + 2 * n], res[4 + 2 * n], strict=True):
                if text is not None:
                    states[(p, cid)] = CallState.from_text(text)
                if held is not None:
                    pending[(p, cid)] = held.split("\n")
        return Snapshot(offsets=offsets, watermarks=watermarks, horizon=horizon, calls=states, pending=pending)

    async def _commit_plan(self, plan: Plan, snap: Snapshot, take_next: TakeNext | None = None) -> bool:
        """Commit ``plan``, made on ``snap``; False when an offset moved since (nothing written)."""
        return bool(await self._commit(args=self.commit_args(plan, snap)))

    def commit_args(self, plan: Plan, snap: Snapshot) -> list[str]:
        """The commit script's arguments for ``plan``, made on ``snap`` (the script takes no keys)."""
        k = self.keys
        s = self.settings
        args: list[str] = [str(len(plan.offsets))]
        for tp, new in plan.offsets.items():
            old = snap.offsets.get(tp)
            args += [k.offset(*tp), "" if old is None else str(old), str(new)]
        wms = {**snap.watermarks, **plan.watermarks}
        sets = [(k.watermark(*tp), repr(v)) for tp, v in plan.watermarks.items()]
        bucket_cut = rt_cut = ""
        if wms:
            global_wm = min(wms.values())
            cut = minute_of(global_wm - s.retention_s)
            if snap.horizon is None or cut > snap.horizon:
                bucket_cut = str(cut)
                rt_cut = str(hour_of(global_wm - s.retention_s))
                sets.append((k.horizon, bucket_cut))
        args.append(str(len(sets)))
        for key, value in sets:
            args += [key, value]
        parts = sorted({p for _, p in plan.offsets})
        args.append(str(len(parts)))
        for p in parts:
            stale = retention = "-inf"
            behind = {kind for kind, q in plan.catching_up if q == p}
            times = expiry_times({kind: wms[(kind, p)] for kind in KINDS if (kind, p) in wms}, behind)
            if times is not None:
                stale, retention = repr(times[0] - s.open_timeout_s), repr(times[1] - s.retention_s)
            args += [k.openq(p), k.callq(p), k.pendq(p), k.calls(p), k.pending(p), stale, retention]
        args += [k.open, k.metrics, k.buckets, k.bucket(0)[:-1], bucket_cut, k.rt_hours, k.rt(0)[:-1], rt_cut]
        args.append(OP_SEPARATOR.join(plan.ops))
        return args

    # -- reading ------------------------------------------------------------

    async def rolling_count(self, cell: str, *, window: str = "15m", category: str = ALL, end: float | None = None) -> int:
        """Calls in ``cell`` over the rolling ``window`` ("15m", "1h", "24h") ending at event time ``end``.

        ``end`` defaults to the newest watermark; the window includes its minute.
        """
        if window not in WINDOWS_MIN:
            raise ValueError(f"window must be one of {', '.join(WINDOWS_MIN)}, got {window!r}")
        if end is None:
            end = await self.watermark()
            if end is None:
                return 0
        pipe = self.client.pipeline(transaction=False)
        for m in window_minutes(minute_of(end), WINDOWS_MIN[window]):
            pipe.hget(self.keys.bucket(m), f"{cell}|{category}")
        return sum(int(v) for v in await pipe.execute() if v is not None)

    async def watermark(self) -> float | None:
        """The newest event time any partition has reached."""
        values = await self.client.mget([self.keys.watermark(kind, p) for kind in KINDS for p in range(self.settings.partitions)])
        seen = [float(v) for v in values if v is not None]
        return max(seen) if seen else None

    async def bucket_counts(self) -> dict[tuple[int, str, str], int]:
        """Every stored count as ``{(minute, cell, category): n}`` (for checks and exports)."""
        minutes = [int(m) for m in cast(list[str], await self.client.zrange(self.keys.buckets, 0, -1))]  # decoded replies
        pipe = self.client.pipeline(transaction=False)
        for m in minutes:
            pipe.hgetall(self.keys.bucket(m))
        out: dict[tuple[int, str, str], int] = {}
        for m, h in zip(minutes, await pipe.execute(), strict=True):
            for fld, v in h.items():
                cell, cat = fld.split("|")
                out[(m, cell, cat)] = int(v)
        return out

    async def open_incidents(self) -> dict[str, int]:
        return {cell: int(v) for cell, v in cast(_Hash, await self.client.hgetall(self.keys.open)).items()}

    async def response_times(self, kind: str, start: float, end: float) -> dict[str, dict[str, int]]:
        """Response-time sums per area for samples ending in ``[start, end]``: ``{area: {"n", "sum", "le60", ...}}``."""
        if kind not in ("dispatch", "travel"):
            raise ValueError(f"kind must be 'dispatch' or 'travel', got {kind!r}")
        out: dict[str, dict[str, int]] = {}
        for hour in range(hour_of(start), hour_of(end) + 1):
            for fld, v in cast(_Hash, await self.client.hgetall(self.keys.rt(hour))).items():
                k, area, stat = fld.split("|")
                if k == kind:
                    slot = out.setdefault(area, {})
                    slot[stat] = slot.get(stat, 0) + int(v)
        return out

    async def metrics(self) -> dict[str, int]:
        return {k: int(v) for k, v in cast(_Hash, await self.client.hgetall(self.keys.metrics)).items()}

    async def applied_offsets(self) -> dict[tuple[str, int], int]:
        tps = [(kind, p) for kind in KINDS for p in range(self.settings.partitions)]
        values = await self.client.mget([self.keys.offset(kind, p) for kind, p in tps])
        return {tp: int(v) for tp, v in zip(tps, values, strict=True) if v is not None}

    async def append_alerts(
        self,
        offset: int,
        alerts: list[str],
        *,
        clock: bool = False,
        fence: int | None = None,
        journal: Sequence[tuple[int, str]] = (),
    ) -> int:
        """Append alert records (JSON) to the alerts stream, each at most once per checkpoint; how many were new.

        Called for every detector-input message, at ``offset``, which becomes
        the ``applied`` offset (what :func:`streams.runtime.progress.wait_detected`
        waits for); ``clock=True`` for alerts of the detectors' clock after
        ``offset`` (kept past a checkpoint at ``offset`` taken before them).
        A record is skipped when the same bytes were appended since the
        checkpoint before them: after a crash the agent reloads the last
        checkpoint and feeds the messages after it again, and the detectors,
        which are deterministic, make the same records again.

        ``fence``: the ``applied`` offset this worker wrote last. When Redis
        holds less (its ``applied`` and checkpoint offset both below it, or the
        detectors' hash gone), Redis went back under the worker: nothing is
        written and :class:`RedisWentBack` is raised, in the same script, so no
        record lands after the lost ones before they are written again.

        A record's stream id is Redis's ``*`` (its clock, after the stream's
        newest), except that it is never at or below the highest id this
        process got before (:attr:`alerts_floor`): a new primary whose clock is
        behind the old one's would otherwise give ids below those clients hold
        as their ``last_id``, and they would skip the records.

        ``journal``: the detectors' journal entries not in Redis yet, as
        ``(sequence number, entry)`` (see :mod:`streams.detection.journal`),
        added to ``P:detector:journal`` in the same script, after the fence.
        """
        args: list[str | int | float] = [
            ALERTS_STREAM_MAXLEN,
            "" if clock else offset,
            offset + 0.5 if clock else offset,
            "" if fence is None else fence,
            self.alerts_floor,
            len(journal),
        ]
        for seq, member in journal:
            args += [seq, member]
        for body in alerts:
            args += [hashlib.blake2b(body.encode(), digest_size=12).hexdigest(), body]
        keys = [self.keys.alerts, self.keys.detector_written, self.keys.detector, self.keys.detector_journal]
        try:
            if not (alerts and self.settings.redis_sentinels):
                reply = await self._append_alerts(keys=keys, args=args)
            else:
                # Replication is asynchronous: WAIT, on the connection that wrote, until the replica has the
                # records (a failover promotes the replica; records it lacks would be gone from the stream).
                pipe = self.client.pipeline(transaction=False)
                await self._append_alerts(keys=keys, args=args, client=pipe)
                (reply,), _ = await execute_waiting(pipe, self._unreplicated)
        except RedisError as exc:
            raise StateError(f"Redis failed while appending {len(alerts)} alert record(s): {exc}") from exc
        first, last = reply
        if first == "went-back":
            raise RedisWentBack(self.keys.detector, int(last), -1 if fence is None else fence)
        if last and _stream_id(last) > _stream_id(self.alerts_floor):
            self.alerts_floor = last
        return int(first)

    async def commit_detection(
        self, offset: int, state: bytes, *, fence: int | None = None, journal: tuple[str, int] | None = None
    ) -> None:
        """Checkpoint the detectors: ``state`` has seen every detector-input message up to ``offset``.

        ``state`` is stored as given (the detection agent signs it, see
        :mod:`streams.detection.checkpoint`). Atomically forgets the alert
        records appended for those messages: they are never fed again.
        Raises :class:`CheckpointFenced`, writing nothing, when the checkpoint
        in Redis is at a higher offset: another detection worker holds the
        input now, and this one's detectors are behind it. ``fence``, the
        offset of this worker's last checkpoint, fences the other way: a
        stored checkpoint below it (or none) raises :class:`RedisWentBack`,
        writing nothing. With Sentinels it
        waits (up to ``REPLICA_WAIT_MS``) for the replica to have it, as
        :meth:`append_alerts` does: Kafka's committed offsets move on this
        checkpoint, and a failover must not take it back.

        ``journal``: the detectors' journal id and sequence number ``state``
        was stamped with; the journal entries it has seen (and any other
        journal's) are forgotten in the same script. None: none are.
        """
        keys = [self.keys.detector, self.keys.detector_written, self.keys.detector_journal]
        jid, seq = journal if journal is not None else ("", 0)
        args: list[str | int] = [offset, base64.b64encode(state).decode(), "" if fence is None else fence, jid, seq]
        try:
            if self.settings.redis_sentinels:
                pipe = self.client.pipeline(transaction=False)
                await self._commit_detection(keys=keys, args=args, client=pipe)
                (written,), _ = await execute_waiting(pipe, self._unreplicated_checkpoint)
            else:
                written = await self._commit_detection(keys=keys, args=args)
        except RedisError as exc:
            raise StateError(f"Redis failed while checkpointing the detectors at offset {offset}: {exc}") from exc
        if int(written) < 0:
            raise RedisWentBack(f"the checkpoint in {self.keys.detector}", -2 - int(written), -1 if fence is None else fence)
        if not int(written):
            raise CheckpointFenced(
                f"the detectors' checkpoint in {self.keys.detector} is past detector-input offset {offset}: another "
                "detection worker holds that input now; this one's detectors are behind it and were not saved"
            )

    async def seed_detection(self, offset: int, state: bytes, *, force: bool = False) -> bool:
        """Write a checkpoint made outside the worker (a bootstrap) where the worker has none; whether it was written.

        Atomic (one script): refused (False) when the detectors' hash exists at
        all, a checkpoint or the ``applied`` offset a worker writes before its
        first, since the worker's live state would be lost; ``force`` replaces
        it, and forgets the alert records appended since its checkpoint.
        """
        keys = [self.keys.detector, self.keys.detector_written, self.keys.detector_journal]
        try:
            return bool(await self._seed_detection(keys=keys, args=[offset, base64.b64encode(state).decode(), "1" if force else "0"]))
        except RedisError as exc:
            raise StateError(f"Redis failed while writing the detectors' checkpoint to {self.keys.detector}: {exc}") from exc

    async def load_detection(self) -> tuple[int, bytes] | None:
        """The detectors' last checkpoint as ``(offset, state)``, or None before the first.

        ``state`` is the bytes :meth:`commit_detection` was given, unchecked:
        verify them before unpickling (:func:`streams.detection.checkpoint.restore`).
        The hash also holds ``applied`` (see :meth:`append_alerts`), which a
        worker writes before its first checkpoint: that alone is no checkpoint.
        """
        h = await self.client.hgetall(self.keys.detector)
        if "offset" not in h:
            return None
        try:
            return int(h["offset"]), base64.b64decode(h.get("state", ""), validate=True)
        except (ValueError, binascii.Error) as exc:
            raise unreadable_checkpoint(self.keys.detector, exc) from exc

    async def detection_journal(self) -> list[str]:
        """The detectors' journal entries in Redis (``P:detector:journal``), in order; read them with
        :func:`streams.detection.journal.follow`."""
        try:
            return cast(list[str], await self.client.zrange(self.keys.detector_journal, 0, -1))  # decoded replies
        except RedisError as exc:
            raise StateError(f"Redis failed while reading {self.keys.detector_journal}: {exc}") from exc

    async def zones_version(self) -> int | None:
        """The gateway's zone counter ``P:zones:version`` (None before the first zone). Cheap: poll this."""
        try:
            raw = cast(str | None, await self.client.get(self.keys.zones_version))  # decoded replies: see _Hash
        except RedisError as exc:
            raise StateError(f"Redis failed while reading {self.keys.zones_version}: {exc}") from exc
        return _version(raw, self.keys.zones_version)

    async def event_zones(self) -> tuple[int | None, list[dict]]:
        """The event zones the gateway stored in ``P:zones``, as decoded JSON objects, and the counter read with them.

        Read in one transaction, so the zones are those of that version.
        Only ``kind: "event"`` records are returned (partner zones are the
        gateway's business); a value that is not a JSON object is skipped with a
        warning. The objects are not validated further (see
        :func:`streams.detection.runner.parse_zones`).
        """
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.keys.zones_version)
        pipe.hgetall(self.keys.zones)
        try:
            raw_version, raw_zones = await pipe.execute()
        except RedisError as exc:
            raise StateError(f"Redis failed while reading {self.keys.zones}: {exc}") from exc
        zones = []
        for zone_id, body in sorted(raw_zones.items()):
            try:
                zone = json.loads(body)
            except json.JSONDecodeError as exc:
                log.warning("zone %r in %s skipped: not JSON (%s)", zone_id, self.keys.zones, exc)
                continue
            if not isinstance(zone, dict):
                log.warning("zone %r in %s skipped: a JSON %s, not an object", zone_id, self.keys.zones, type(zone).__name__)
                continue
            if zone.get("kind") == "event":
                zones.append(zone)
        return _version(raw_version, self.keys.zones_version), zones

    async def write_forecast(self, body: str) -> int:
        """Store a forecast set (JSON text) as ``P:forecast`` and INCR ``P:forecast:version``, in one transaction; the new version."""
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.keys.forecast, body)
        pipe.incr(self.keys.forecast_version)
        try:
            _, version = await pipe.execute()
        except RedisError as exc:
            raise StateError(f"Redis failed while writing the forecast set to {self.keys.forecast}: {exc}") from exc
        return int(version)

    async def forecast(self) -> tuple[int | None, dict[str, Any] | None]:
        """The latest forecast set (decoded) and its version, read together; ``(None, None)`` before the first."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.keys.forecast_version)
        pipe.get(self.keys.forecast)
        try:
            raw_version, body = await pipe.execute()
        except RedisError as exc:
            raise StateError(f"Redis failed while reading {self.keys.forecast}: {exc}") from exc
        return _version(raw_version, self.keys.forecast_version), (json.loads(body) if body is not None else None)

    async def recent_alerts(self, count: int = 100) -> list[tuple[str, dict[str, Any]]]:
        """The newest ``count`` alert records, oldest first, as ``(stream id, alert)``."""
        entries = cast(list[tuple[str, _Hash]], await self.client.xrevrange(self.keys.alerts, count=count))
        return [(sid, json.loads(fields["alert"])) for sid, fields in reversed(entries)]

    async def clear(self) -> int:
        """Delete every key under the prefix (a rebuild starts from here). Returns how many."""
        n = 0
        async for key in self.client.scan_iter(match=self.keys.pattern, count=1000):
            n += await self.client.delete(key)
        return n


def _stream_id(sid: str) -> tuple[int, int]:
    """A stream id as a comparable pair ("" sorts first).

    >>> _stream_id("1700000000000-3") > _stream_id("1699999999999-9") > _stream_id("")
    True
    """
    if not sid:
        return (-1, -1)
    ms, _, seq = sid.partition("-")
    return int(ms), int(seq or 0)


def _version(raw: str | None, key: str) -> int | None:
    """A counter's value; one that is not an integer counts as absent (logged), so a stray write cannot stop detection."""
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        log.warning("%s holds %r, not an integer counter; treated as absent", key, raw)
        return None


def jurisdiction_extent(settings: Settings) -> Extent | None:
    """Where the worker accepts calls: the profile's boundary (``WF_PROFILE``), else ``WF_JURISDICTION``'s box, else anywhere (None).

    The profile is read once per process and file (:func:`_profile_extent`).
    """
    if settings.profile is None:
        return settings.jurisdiction
    return _profile_extent(settings.profile, settings.jurisdiction)


@functools.lru_cache(maxsize=4)
def _profile_extent(path: str, box: Jurisdiction | None) -> Extent | None:
    """The profile at ``path`` (with ``box`` as WF_JURISDICTION) when it bounds the jurisdiction, else None."""
    profile = load_jurisdiction(Settings(profile=path, jurisdiction=box))
    return profile if profile.boundary is not None or profile.box is not None else None


def unreadable_checkpoint(key: str, exc: BaseException) -> StateError:
    return StateError(
        f"the detectors' checkpoint in {key} cannot be read ({exc!r}); delete that key "
        f"(redis-cli DEL {key}) and restart the worker: the detectors then start empty and warm up again"
    )
