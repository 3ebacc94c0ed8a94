"""The HTTP intake's server (aiohttp): ``POST /v1/events``, ``GET /healthz``, ``GET /metrics``.

The adapter around :mod:`streams.intake.core`: it authenticates the request
(:mod:`streams.intake.auth`), asks Redis for call owners and claims idempotency
keys, publishes through :class:`~streams.intake.publish.Publisher`, and answers
only after every accepted record is acknowledged by Kafka. See docs/intake.md
for the answers and the keys.

Idempotency keys (``P:intake:seen:<source>:<kind>:<id>``) go through two states:
``pending`` (``SET NX``, a lease of :attr:`IntakeSettings.claim_lease_s`, renewed
by the intake every :attr:`IntakeSettings.claim_renew_s` while the request is
under way) before the records are produced, ``done`` (TTL
:attr:`IntakeSettings.id_ttl_s`) after Kafka acknowledged them. A send that fails
deletes the claims, so the client's retry goes through; a request that finds
another's ``pending`` key is answered 503 with the seconds left on it. The claims
of an intake that died are renewed no more and end within the lease: the client's
retry waits that long, not a fixed minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import redis.asyncio as aioredis
from aiohttp import web
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from gateway.audit import AuditAction, AuditLog, AuditRecord
from gateway.limits import RateLimits
from streams.ingest.schema import Call, Extent
from streams.intake.auth import Unauthenticated, check_signature
from streams.intake.core import (
    DONE,
    PENDING,
    BodyError,
    Candidate,
    EventBucket,
    IntakeKeys,
    Outcome,
    check_owners,
    event_time,
    examine,
    mark_repeats,
    owner_lookups,
    owner_value,
    rekey_refused,
    resumed,
    settle,
    split_body,
    summary,
)
from streams.intake.doors import door_key, doors_key, http_fields
from streams.intake.metrics import IntakeMetrics
from streams.intake.publish import DeadLetter, KafkaUnavailable, Publisher
from streams.intake.settings import IntakeSettings
from streams.intake.sources import MAX_EVENTS, Source
from streams.intake.timing import Stopwatch
from streams.runtime.redisconn import ReplicaWarning, execute_waiting

log = logging.getLogger(__name__)

#: Seconds a client is asked to wait when Kafka or Redis is not answering.
UNAVAILABLE_RETRY_S = 5
#: Seconds a record's unfinished attempt is remembered (its tried key): a retry within them looks for it on Kafka first.
#: Short, as the lookup reads what the partitions took since and must finish within WF_INTAKE_KAFKA_TIMEOUT_S.
TRIED_TTL_S = 120
#: Seconds before an unfinished attempt's claim that its records are looked for from (clocks of two intakes may differ).
TRIED_MARGIN_S = 10.0
#: Compared against when the source is unknown, so that unknown sources and bad signatures take the same work.
_DUMMY_SECRET = b"\0" * 32
UNAUTHENTICATED = (
    "unauthenticated: unknown X-Watchfloor-Source, a bad X-Watchfloor-Signature, or an X-Watchfloor-Timestamp "
    "more than 300 s from the intake's clock"
)


class Unavailable(Exception):
    """Kafka or Redis did not answer, or another request holds some of the records: 503 with ``Retry-After``."""

    def __init__(self, message: str, retry_after: int = UNAVAILABLE_RETRY_S) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


@dataclass
class Intake:
    """What the handlers share: settings, sources, the publisher, Redis, the audit log and the counters."""

    settings: IntakeSettings
    sources: dict[str, Source]
    publisher: Publisher
    redis: aioredis.Redis
    extent: Extent | None = None
    metrics: IntakeMetrics = field(default_factory=IntakeMetrics)
    buckets: dict[str, EventBucket] = field(default_factory=dict)
    #: the claim keys of the requests under way here, renewed by :func:`_renew_claims_every`
    claims: set[str] = field(default_factory=set)
    #: warns when the done marks were not acknowledged by a Redis replica (with Sentinels)
    unreplicated: ReplicaWarning = field(
        default_factory=lambda: ReplicaWarning(
            log, "done marks were", "a failover now would lose them and a CAD's retry would be sent to Kafka again"
        )
    )

    def __post_init__(self) -> None:
        #: refused requests per client address (:attr:`IntakeSettings.anon_rate_per_s`)
        self.refusals = RateLimits(self.settings.anon_rate_per_s, 4 * self.settings.anon_rate_per_s)
        self.keys = IntakeKeys(self.settings.base.redis_prefix)
        replicated = bool(self.settings.base.redis_sentinels)
        self.audit = AuditLog(self.redis, self.keys.audit_prefix, retention_s=self.settings.audit_days * 86400, replicated=replicated)
        self.max_body = max(s.max_body_bytes for s in self.sources.values())
        for s in self.sources.values():
            self.buckets[s.id] = EventBucket(s.rate, s.burst)
        self.renew = self.redis.register_script(_RENEW_LUA)
        self.claim = self.redis.register_script(_CLAIM_LUA)


#: Claim each record (KEYS[i], i <= n; KEYS[n + i] its tried key) as ``pending`` (ARGV[1]) for ARGV[2] ms. For a
#: claim won whose ARGV[4 + i] is '1' (an event), the tried key is read, and set to ARGV[3] (now, ms) for ARGV[4]
#: seconds when it was not there. Replies per record: 0 lost, 1 won, or the earlier attempt's time (ms, text).
_CLAIM_LUA = """
local n = #KEYS / 2
local out = {}
for i = 1, n do
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) then
    out[i] = 1
    if ARGV[4 + i] == '1' then
      local before = redis.call('GET', KEYS[n + i])
      if before then out[i] = before else redis.call('SET', KEYS[n + i], ARGV[3], 'EX', ARGV[4]) end
    end
  else
    out[i] = 0
  end
end
return out
"""

#: Renew each claim (KEYS) still ``pending`` (ARGV[1]) for ARGV[2] ms; a key marked ``done`` or deleted meanwhile is left alone.
_RENEW_LUA = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2]) end
end
return 0
"""

INTAKE = web.AppKey("intake", Intake)
FLUSHER = web.AppKey("refusals_flusher", asyncio.Task[None])
RENEWER = web.AppKey("claims_renewer", asyncio.Task[None])


def create_app(intake: Intake) -> web.Application:
    """The aiohttp application serving ``intake``; it starts the publisher with the app and closes it and Redis after."""
    app = web.Application(client_max_size=intake.max_body)
    app[INTAKE] = intake
    app.router.add_post("/v1/events", post_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app


async def _start(app: web.Application) -> None:
    intake = app[INTAKE]
    app[FLUSHER] = asyncio.create_task(_flush_refusals_every(intake, 1.0), name="intake-refusals-audit")
    app[RENEWER] = asyncio.create_task(_renew_claims_every(intake), name="intake-claims-renewer")
    try:
        await intake.publisher.start()
    except KafkaUnavailable as exc:
        # the intake still starts: pushes are answered 503 until Kafka answers, /healthz says so
        log.warning("starting without Kafka: %s; requests are answered 503 until it answers", exc)


async def _stop(app: web.Application) -> None:
    intake = app[INTAKE]
    for task in (app[FLUSHER], app[RENEWER]):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    try:
        await flush_refusals(intake)
    except RedisError as exc:
        log.error("the last refusals past the address rate were not audited (%s)", exc)
    await intake.publisher.stop()
    await intake.redis.aclose()


# -- handlers --------------------------------------------------------------------------


async def post_events(request: web.Request) -> web.Response:
    intake = request.app[INTAKE]
    sw = Stopwatch()
    source: Source | None = None
    candidates: list[Candidate] = []
    reason = ""
    try:
        body = await _read_body(request, intake.max_body)
        sw.lap("read")
        source = _authenticate(intake, request, body)
        sw.lap("auth")
        candidates = await _take(intake, source, body, sw)
        counts = summary(candidates)
        response = web.json_response({"source": source.id, **counts, "records": [c.answer() for c in candidates]})
        sw.lap("answer")
    except Unauthenticated as exc:
        reason = str(exc)
        log.info("refused a push from %s claiming source %r: %s", request.remote, request.headers.get("X-Watchfloor-Source"), exc)
        response = _error(401, UNAUTHENTICATED)
    except BodyError as exc:
        reason = str(exc)
        response = _error(exc.status, str(exc))
    except _RateLimited as exc:
        reason = str(exc)
        response = _error(429, str(exc), retry_after=exc.retry_after)
    except Unavailable as exc:
        reason = str(exc)
        log.warning("answered 503 to source %s: %s", source.id if source else "?", exc)
        response = _error(503, str(exc), retry_after=exc.retry_after)
    if source is None and not intake.refusals.allow(request.remote or "", time.monotonic()):
        # an address past its rate of refusals: answered 429, and audited in one record a second (flush_refusals)
        response = _error(429, "too many refused requests from this address; slow down", retry_after=1)
        intake.metrics.request(response.status)
        return response
    intake.metrics.request(response.status)
    await _audit(intake, request, source, candidates, response.status, reason)
    sw.lap("audit")
    intake.metrics.timed(sw, stages=intake.settings.stage_timing)
    if intake.settings.stage_timing:
        response.headers["Server-Timing"] = sw.server_timing()
    return response


class _RateLimited(Exception):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


def _authenticate(intake: Intake, request: web.Request, body: bytes) -> Source:
    """The source that signed the request; :class:`Unauthenticated` otherwise (the same work for an unknown source)."""
    claimed = request.headers.get("X-Watchfloor-Source", "")
    source = intake.sources.get(claimed)
    ts, sig = request.headers.get("X-Watchfloor-Timestamp"), request.headers.get("X-Watchfloor-Signature")
    try:
        check_signature(source.secret if source else _DUMMY_SECRET, ts, sig, body, now=time.time())
    except Unauthenticated:
        if source is None:  # for the log: the client is told the same either way
            raise Unauthenticated(f"unknown source {claimed!r:.80}") from None
        raise
    if source is None:
        raise Unauthenticated(f"unknown source {claimed!r:.80}")  # (the dummy secret matched: never in practice)
    return source


async def _take(intake: Intake, source: Source, body: bytes, sw: Stopwatch) -> list[Candidate]:
    """The records of an authenticated request, each with its outcome once published (or an exception for the whole request)."""
    if len(body) > source.max_body_bytes:
        raise BodyError(413, f"the body is {len(body)} bytes; source {source.id!r} may send at most {source.max_body_bytes}")
    records = split_body(body, MAX_EVENTS)
    wait = intake.buckets[source.id].take(max(1, len(records)), time.monotonic())
    if wait > 0:
        raise _RateLimited(
            f"source {source.id!r} may send {source.rate:g} events a second (bursts of {source.burst:g}); "
            f"these {len(records)} fit in {wait:.1f} s",
            math.ceil(wait),
        )
    candidates = [examine(i, obj, source, intake.keys, now=time.time(), extent=intake.extent) for i, obj in enumerate(records)]
    sw.lap("examine")
    try:
        door_written = await _publish(intake, source, candidates, sw)
    except RedisError as exc:
        raise Unavailable(f"Redis is not answering ({exc}); nothing of this request was stored: send it again") from exc
    for c in candidates:
        intake.metrics.record(source.id, (c.outcome or Outcome.REFUSED).value, c.reason)
        if c.outcome is Outcome.ACCEPTED and c.event is not None:
            intake.metrics.newest(source.id, event_time(c.event))
            intake.metrics.dropped(source.id, c.dropped_fields)
    if not door_written:
        await _door_seen(intake, source, candidates)
        sw.lap("door")
    return candidates


def _door_fields(intake: Intake, source: Source, candidates: list[Candidate]) -> dict[str, str]:
    """This source's status hash after this request (:func:`streams.intake.doors.http_fields`), its outcomes settled."""
    accepted = [c.event for c in candidates if c.outcome is Outcome.ACCEPTED and c.event is not None]
    newest = intake.metrics.newest_event.get(source.id)
    if accepted:
        newest = max(newest if newest is not None else float("-inf"), max(event_time(e) for e in accepted))
    return http_fields(
        source.id,
        heartbeat_s=source.heartbeat_s,
        now=time.time(),
        accepted_calls=sum(1 for e in accepted if isinstance(e, Call)),
        newest_event_at=newest,
    )


async def _door_seen(intake: Intake, source: Source, candidates: list[Candidate]) -> None:
    """This source's status hash for the supervisors' "Doors in" (:mod:`streams.intake.doors`): a request came, with or without calls.

    An empty batch is a heartbeat: it moves ``last_request_at`` only. Best effort: a Redis error is logged, the
    request's answer does not depend on it.
    """
    try:
        async with intake.redis.pipeline(transaction=False) as pipe:
            _queue_door(pipe, intake, source, _door_fields(intake, source, candidates))
            await pipe.execute()
    except RedisError as exc:
        log.warning("source %s: its door status was not written (%s)", source.id, exc)


def _queue_door(pipe: Pipeline, intake: Intake, source: Source, fields: dict[str, str]) -> int:
    """Queue the writes of the source's status hash on ``pipe``; how many commands that is."""
    prefix = intake.settings.base.redis_prefix
    pipe.hset(door_key(prefix, f"http:{source.id}"), mapping={k: v for k, v in fields.items()})
    pipe.sadd(doors_key(prefix), f"http:{source.id}")
    return 2


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise BodyError(413, f"the body is {request.content_length} bytes; at most {limit} are taken")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyError(413, f"the body is larger than {limit} bytes, the most taken") from None


async def _publish(intake: Intake, source: Source, candidates: list[Candidate], sw: Stopwatch) -> bool:
    """Claim, publish and remember the records of one request, setting each candidate's outcome (see the module's docstring).

    Returns whether the source's door status went with the ``done`` marks (one round trip for both); when it did
    not (nothing to claim), the caller writes it.
    """
    keys, redis = intake.keys, intake.redis
    ids = owner_lookups(candidates)
    # decode_responses=True: the replies are str (redis-py types them bytes | str)
    owners = cast(dict[str, str | None], dict(zip(ids, await redis.mget([keys.owner(i) for i in ids]), strict=True)) if ids else {})
    sw.lap("owners")
    check_owners(candidates, owners, source)
    rekey_refused(candidates, source, keys)
    to_claim = mark_repeats(candidates)
    if not to_claim:
        return False
    lease_ms = int(intake.settings.claim_lease_s * 1000)
    replies = await intake.claim(
        keys=[c.key for c in to_claim] + [keys.tried(c.key) for c in to_claim],
        args=[PENDING, lease_ms, int(time.time() * 1000), TRIED_TTL_S, *("1" if c.event is not None else "0" for c in to_claim)],
    )
    won = [r != 0 for r in replies]
    tried = [r if isinstance(r, str) else None for r in replies]
    held = {c.key for c, ok in zip(to_claim, won, strict=True) if ok}
    intake.claims |= held  # renewed from now until this request is answered (or fails)
    try:
        return await _publish_claimed(intake, source, candidates, to_claim, won, tried, sw)
    finally:
        intake.claims -= held


async def _publish_claimed(
    intake: Intake,
    source: Source,
    candidates: list[Candidate],
    to_claim: list[Candidate],
    won: list[bool],
    tried: list[str | None],
    sw: Stopwatch,
) -> bool:
    """:func:`_publish` once the claims were asked for (``won[i]``: whether ``to_claim[i]``'s was won; ``tried[i]`` the
    time of an earlier attempt that claimed it and did not finish)."""
    redis = intake.redis
    lost = [c.key for c, ok in zip(to_claim, won, strict=True) if not ok]
    found: dict[str, str | None] = {}
    if lost:
        async with redis.pipeline(transaction=False) as pipe:
            for key in lost:
                pipe.get(key)
                pipe.pttl(key)
            replies = await pipe.execute()
        found = dict(zip(lost, replies[0::2], strict=True))
        pttl = dict(zip(lost, replies[1::2], strict=True))
    sw.lap("claim")
    blocked = settle(to_claim, won, [found.get(c.key) if not ok else None for c, ok in zip(to_claim, won, strict=True)])
    mine = [c for c in to_claim if c.send]
    if blocked:
        # nothing of this request was sent: its claims go, and the tried marks it made (not an earlier attempt's)
        fresh = [intake.keys.tried(c.key) for c, t in zip(to_claim, tried, strict=True) if c.send and c.event is not None and t is None]
        await _release(redis, mine, also=fresh)
        wait = max(pttl[c.key] for c in blocked) / 1000
        raise Unavailable(
            f"{len(blocked)} record(s) of this request (first: index {blocked[0].index}) are being published by another request, "
            f"or were left mid-publication by an intake that stopped; send the request again in {math.ceil(wait)} s",
            math.ceil(wait),
        )
    events = [c for c in mine if c.event is not None]
    letters = [c for c in mine if c.event is None]
    try:
        # events an unfinished attempt may have put on Kafka (its intake died before marking them done): looked for
        # there first, and the ones found are not sent again (answered duplicate, marked done)
        earlier = resumed(to_claim, won, tried)
        if earlier:
            since = min(t for _, t in earlier) - TRIED_MARGIN_S
            looked = [c for c, _ in earlier]
            on_kafka = await intake.publisher.find_sent([c.event for c in looked if c.event is not None], since)
            for i in on_kafka:
                looked[i].outcome = Outcome.DUPLICATE
            log.info(
                "source %s: %d record(s) of an unfinished attempt looked for on Kafka from %.0f: %d there already, not sent again",
                source.id, len(looked), since, len(on_kafka),
            )  # fmt: skip
            sw.lap("resume")
        to_send = [c for c in events if c.outcome is not Outcome.DUPLICATE]
        if to_send:
            await intake.publisher.send_events([c.event for c in to_send if c.event is not None])
            sw.lap("kafka")
    except KafkaUnavailable as exc:
        await _release(redis, mine)  # the tried marks stay: the retry looks on Kafka again
        raise Unavailable(str(exc)) from exc
    try:
        if letters:
            await intake.publisher.send_dead_letters([_dead_letter(source, c) for c in letters])
            sw.lap("dead_letters")
    except KafkaUnavailable as exc:
        await _done(intake, source, events)  # those are acknowledged: remembered, so the retry answers them duplicate
        await _release(redis, letters)
        raise Unavailable(str(exc)) from exc
    await _done(intake, source, mine, door=_door_fields(intake, source, candidates))
    sw.lap("done")
    return True


def _dead_letter(source: Source, c: Candidate) -> DeadLetter:
    return DeadLetter(c.reason or "", c.detail, f"intake:{source.id}", c.raw, hashlib.sha256(c.raw).hexdigest(), c.index)


async def _release(redis: aioredis.Redis, claimed: Sequence[Candidate], also: Sequence[str] = ()) -> None:
    """Delete this request's claims (nothing was stored under them), and the keys ``also``, so that the retry goes through."""
    if not claimed and not also:
        return
    try:
        await redis.delete(*[c.key for c in claimed], *also)
    except RedisError as exc:
        # the claims end by themselves (no longer renewed) within claim_lease_s; the retry is answered 503 until then
        log.warning("could not release %d claim(s) after a failed send (%s); they expire by themselves", len(claimed), exc)


async def _done(intake: Intake, source: Source, sent: Sequence[Candidate], *, door: dict[str, str] | None = None) -> None:
    """Mark acknowledged records ``done`` for ``id_ttl_s``, and this source the owner of the calls among them.

    With ``door``, the source's status hash is written in the same round trip; a failure of that write alone is
    logged (the answer does not depend on it), a failure of the marks raises. With Sentinels (``WF_REDIS_SENTINELS``)
    the round trip ends with ``WAIT`` for a replica (up to ``REPLICA_WAIT_MS``, then a warning at most once a minute),
    so that a failover right after the answer does not lose the marks (a CAD's retry would be sent to Kafka again).
    """
    ttl = intake.settings.id_ttl_s
    replicated = bool(intake.settings.base.redis_sentinels)
    async with intake.redis.pipeline(transaction=False) as pipe:
        for c in sent:
            pipe.set(c.key, DONE, ex=ttl)
            if c.event is not None:
                pipe.delete(intake.keys.tried(c.key))  # finished: nothing to look for on Kafka
            if isinstance(c.event, Call):
                pipe.set(intake.keys.owner(c.event.id), owner_value(source.id, c.event.received_at), ex=ttl)
        n_door = _queue_door(pipe, intake, source, door) if door is not None else 0
        replies, _ = await execute_waiting(pipe, intake.unreplicated if replicated else None, raise_on_error=False)
    marks, door_replies = replies[: len(replies) - n_door], replies[len(replies) - n_door :]
    for r in marks:
        if isinstance(r, Exception):
            raise r
    for r in door_replies:
        if isinstance(r, Exception):
            log.warning("source %s: its door status was not written (%s)", source.id, r)
            break


async def _audit(intake: Intake, request: web.Request, source: Source | None, candidates: list[Candidate], status: int, why: str) -> None:
    detail: dict[str, object] = {"status": status, **summary(candidates)}
    if why and status != 401:
        detail["why"] = why
    if source is None and status == 401:
        detail["claimed_source"] = request.headers.get("X-Watchfloor-Source", "")
    record = AuditRecord(
        AuditAction.INTAKE,
        actor=source.id if source else "",
        role="cad" if source else "",
        agency=source.agency if source else "",
        target=request.path,
        remote=request.remote or "",
        detail=detail,
    )
    try:
        await intake.audit.record(record)
    except RedisError as exc:
        log.error("intake audit record not written to %s:audit (%s): %s", intake.keys.audit_prefix, exc, record.content_fields())


async def flush_refusals(intake: Intake) -> None:
    """One ``rate_limited`` audit record per address whose refusals went past its rate since the last flush."""
    records = [
        AuditRecord(AuditAction.RATE_LIMITED, target="/v1/events", remote=who, detail={"by": "address", "refused": n})
        for who, n in intake.refusals.take_refused().items()
    ]
    if records:
        await intake.audit.record_many(records)


async def _flush_refusals_every(intake: Intake, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await flush_refusals(intake)
        except RedisError as exc:
            log.error("the refusals past the address rate were not audited (%s); they stay counted on /metrics", exc)


async def renew_claims(intake: Intake) -> None:
    """Renew the claims of the requests under way here for another :attr:`IntakeSettings.claim_lease_s` (one script)."""
    held = sorted(intake.claims)
    if held:
        await intake.renew(keys=held, args=[PENDING, int(intake.settings.claim_lease_s * 1000)])


async def _renew_claims_every(intake: Intake) -> None:
    while True:
        await asyncio.sleep(intake.settings.claim_renew_s)
        try:
            await renew_claims(intake)
        except RedisError as exc:
            # a claim that ends while its request is still under way lets a retry publish the records again (a copy the
            # worker drops for a call, a no-op for an update; docs/intake.md)
            log.warning("the claims of %d record(s) under way were not renewed (%s)", len(intake.claims), exc)


async def healthz(request: web.Request) -> web.Response:
    intake = request.app[INTAKE]
    kafka = await intake.publisher.ping()
    try:
        redis_ok = bool(await intake.redis.ping())
    except RedisError:
        redis_ok = False
    ok = kafka and redis_ok
    return web.json_response({"ok": ok, "kafka": kafka, "redis": redis_ok}, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    text = request.app[INTAKE].metrics.render(now=time.time())
    return web.Response(text=text, content_type="text/plain", charset="utf-8", headers={"X-Content-Type-Options": "nosniff"})


def _error(status: int, message: str, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    body: dict[str, object] = {"error": message}
    if retry_after is not None:
        body["retry_after"] = retry_after
    return web.json_response(body, status=status, headers=headers)
