"""Follow a Socrata dataset live: read new rows over HTTP (aiohttp), send them to Kafka, keep the checkpoint in Redis.

The adapter around :mod:`streams.intake.socrata` (queries, paging, waits) and
:mod:`streams.intake.feedstate` (checkpoint, id memory, decisions, status).
``python -m streams.intake.poll`` (:mod:`streams.intake.poll`) wires it.

One poll (:meth:`Poller.poll_once`) reads pages from the checkpoint (minus the
lookback) until a short page. For each page, in this order: the page is read
(retried until it is read), its rows mapped and decided, the events and dead
letters sent and acknowledged by Kafka (retried until they are), then the
checkpoint and the ids sent are written to Redis in one transaction. A crash
anywhere before that write re-reads the page on restart; the ids already
acknowledged then are recognised only if the write happened, so a crash in
that window can send a call a second time, which the worker counts once
(``duplicate_id``).

Failures: a ``429`` waits for its ``Retry-After`` (or the backoff when it has
none), a ``5xx``, a timeout or a connection error waits a capped exponential
backoff with jitter; both restart the page without moving the checkpoint.
After ``unhealthy_after`` failures in a row the poller logs that it is
unhealthy and its status says ``failing``; it keeps trying. An answer that
will not change by retrying (``400`` a query the portal refuses, ``401``,
``403``, ``404``) stops the poller with :class:`PollError`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from streams.ingest.mapping import Mapping as SourceMapping
from streams.ingest.schema import Event
from streams.ingest.sources import parse_records
from streams.intake.doors import doors_key
from streams.intake.feedstate import Checkpoint, Memory, PagePlan, PollStatus, Refusal, Sent, plan_page
from streams.intake.publish import DeadLetter, KafkaUnavailable
from streams.intake.socrata import (
    DEFAULT_PAGE_SIZE,
    UPDATED_AT,
    backoff_s,
    continues,
    later,
    page_params,
    retry_after_s,
    row_key,
    shift_back,
)

log = logging.getLogger(__name__)

#: Reads started again within one poll when rows move under the paging; past it the poll reads on (a row skipped by the
#: shift is read by a later poll when its cursor value is within the lookback, or it was moved to the end and read there).
MAX_RESTARTS = 3
#: Longest ``Retry-After`` honoured as given (a longer one is waited this long, then the page is asked again).
MAX_RETRY_AFTER_S = 3600.0


class PollError(RuntimeError):
    """The portal refuses the query in a way retrying will not change (wrong URL, column, token); the message says what to fix."""


class _PageFailed(Exception):
    """A page could not be read this time (5xx, timeout, connection); worth trying again."""

    def __init__(self, detail: str, retry_after: float | None = None, rate_limited: bool = False) -> None:
        super().__init__(detail)
        self.detail, self.retry_after, self.rate_limited = detail, retry_after, rate_limited


# --------------------------------------------------------------------------- ports


class Sink(Protocol):
    """Where events go; :class:`streams.intake.publish.Publisher` is one. Each send returns once Kafka acknowledged it all."""

    async def send_events(self, events: Sequence[Event]) -> None: ...

    async def send_dead_letters(self, letters: Sequence[DeadLetter]) -> None: ...


class Store(Protocol):
    """Where the checkpoint, the id memory and the status are kept (:class:`RedisStore`; :class:`MemoryStore` for a dry run)."""

    async def load(self) -> tuple[Checkpoint | None, dict[str, Sent]]: ...

    async def commit(self, checkpoint: Checkpoint, writes: Mapping[str, Sent], forget: Sequence[str]) -> None: ...

    async def write_status(self, fields: Mapping[str, str]) -> None: ...

    async def reset(self) -> None: ...


def redis_keys(prefix: str, name: str) -> tuple[str, str, str]:
    """The status hash, the checkpoint string and the memory hash of feed ``name``.

    >>> redis_keys("wf", "seattle-fire-soda")[0]
    'wf:intake:poll:seattle-fire-soda'
    """
    base = f"{prefix}:intake:poll:{name}"
    return base, f"{base}:checkpoint", f"{base}:sent"


class RedisStore:
    """The store in the deployment's Redis, under its key prefix (:func:`redis_keys`)."""

    def __init__(self, redis: Any, prefix: str, name: str) -> None:
        self.redis = redis
        self.prefix, self.name = prefix, name
        self.status_key, self.checkpoint_key, self.sent_key = redis_keys(prefix, name)

    async def load(self) -> tuple[Checkpoint | None, dict[str, Sent]]:
        raw = await self.redis.get(self.checkpoint_key)
        checkpoint = None if raw is None else Checkpoint.from_json(raw)
        entries = await self.redis.hgetall(self.sent_key)
        sent = {}
        for k, v in entries.items():
            key = k.decode() if isinstance(k, bytes) else str(k)
            sent[key] = Sent.from_json(key, v)
        return checkpoint, sent

    async def commit(self, checkpoint: Checkpoint, writes: Mapping[str, Sent], forget: Sequence[str]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            if writes:
                pipe.hset(self.sent_key, mapping={k: s.to_json() for k, s in writes.items()})
            if forget:
                pipe.hdel(self.sent_key, *forget)
            pipe.set(self.checkpoint_key, checkpoint.to_json())
            await pipe.execute()

    async def write_status(self, fields: Mapping[str, str]) -> None:
        """Replace the status hash (one transaction): a field this process does not have is not left from an earlier one."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.status_key)
            pipe.hset(self.status_key, mapping=dict(fields))
            # listed among the doors the gateway shows supervisors (streams.intake.doors)
            pipe.sadd(doors_key(self.prefix), f"poll:{self.name}")
            await pipe.execute()

    async def reset(self) -> None:
        await self.redis.delete(self.checkpoint_key, self.sent_key)


@dataclass
class MemoryStore:
    """A store in this process only (a dry run, tests): nothing survives the process."""

    checkpoint: Checkpoint | None = None
    sent: dict[str, Sent] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    commits: int = 0

    async def load(self) -> tuple[Checkpoint | None, dict[str, Sent]]:
        return self.checkpoint, dict(self.sent)

    async def commit(self, checkpoint: Checkpoint, writes: Mapping[str, Sent], forget: Sequence[str]) -> None:
        self.sent.update(writes)
        for k in forget:
            self.sent.pop(k, None)
        self.checkpoint = checkpoint
        self.commits += 1

    async def write_status(self, fields: Mapping[str, str]) -> None:
        self.status.update(fields)

    async def reset(self) -> None:
        self.checkpoint, self.sent = None, {}


# --------------------------------------------------------------------------- HTTP


class SodaClient:
    """GETs pages of a SODA resource; translates HTTP answers into rows, :class:`_PageFailed` (retry) or :class:`PollError` (stop)."""

    def __init__(self, url: str, *, app_token: str | None = None, timeout_s: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.headers = {"Accept": "application/json", "User-Agent": "watchfloor-poller"}
        if app_token:
            self.headers["X-App-Token"] = app_token  # https://dev.socrata.com/docs/app-tokens.html
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def page(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout, headers=self.headers)
        try:
            async with self._session.get(self.url, params=dict(params)) as resp:
                body = await resp.read()
                if resp.status == 429:
                    wait = retry_after_s(resp.headers.get("Retry-After"), self.clock())
                    raise _PageFailed(f"HTTP 429 (rate limited), Retry-After {resp.headers.get('Retry-After')!r}", wait, rate_limited=True)
                if resp.status >= 500:
                    raise _PageFailed(
                        f"HTTP {resp.status} from {self.url}: {_excerpt(body)}",
                        retry_after_s(resp.headers.get("Retry-After"), self.clock()),
                    )
                if resp.status != 200:
                    raise PollError(f"{self.url} answered HTTP {resp.status} to {dict(params)}: {_excerpt(body)}; " + _hint(resp.status))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _PageFailed(f"cannot read {self.url} ({type(exc).__name__}: {exc})") from exc
        try:
            rows = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _PageFailed(f"{self.url} answered 200 with a body that is not JSON ({exc}): {_excerpt(body)}") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise PollError(f"{self.url} answered a JSON {type(rows).__name__}, not a list of rows; expected a SODA /resource/ID.json URL")
        return rows


def _excerpt(body: bytes) -> str:
    return body[:300].decode("utf-8", "replace").replace("\n", " ")


def _hint(status: int) -> str:
    return {
        400: "the portal refuses the query: check --cursor and --time-column are the dataset's API field names",
        401: "the app token is refused: check the variable --app-token-env names",
        403: "access is refused: check the app token and that the dataset is public",
        404: "no such dataset: check the URL (https://HOST/resource/xxxx-xxxx.json)",
    }.get(status, "expected 200 with a JSON list of rows")


# --------------------------------------------------------------------------- the poller


@dataclass(frozen=True)
class FeedConfig:
    """How to follow one dataset (the CLI's options; see ``python -m streams.intake.poll --help``)."""

    url: str
    mapping: SourceMapping
    name: str
    cursor: str = UPDATED_AT
    time_column: str | None = None
    since: str | None = None
    lookback_s: float = 600.0
    page_size: int = DEFAULT_PAGE_SIZE
    interval_s: float = 60.0
    memory_s: float = 48 * 3600.0
    unhealthy_after: int = 5
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    timezone: str | None = None

    def __post_init__(self) -> None:
        if self.page_size < 2:
            raise ValueError(f"page_size must be at least 2, got {self.page_size}")
        if not 0 <= self.lookback_s < self.memory_s:
            raise ValueError(f"lookback_s ({self.lookback_s:g}) must be >= 0 and below the memory window ({self.memory_s:g} s)")
        if not self.interval_s > 0 or self.unhealthy_after < 1:
            raise ValueError(f"interval_s must be positive and unhealthy_after >= 1, got {self.interval_s!r}, {self.unhealthy_after!r}")
        if self.mapping.grain != "call":
            raise ValueError(f"mapping {self.mapping.name!r} has grain {self.mapping.grain!r}; a poller reads one row per call")


class Poller:
    """Follows one dataset: :meth:`start`, then :meth:`poll_once` or :meth:`run`; see the module."""

    def __init__(
        self,
        config: FeedConfig,
        client: SodaClient,
        sink: Sink,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.config, self.client, self.sink, self.store = config, client, sink, store
        self.clock, self.sleep, self.rng = clock, sleep, rng
        self.origin = f"poll:{config.name}"
        self.checkpoint = Checkpoint(config.cursor, None, config.since)
        self.memory = Memory(window_s=config.memory_s)
        self.status = PollStatus(config.name, config.url, config.interval_s, config.unhealthy_after, started_at=clock())

    async def start(self) -> None:
        """Load the checkpoint and the id memory (a first start begins at ``config.since``)."""
        cfg = self.config
        checkpoint, sent = await self.store.load()
        if checkpoint is not None:
            if checkpoint.cursor != self.config.cursor:
                raise PollError(
                    f"the checkpoint of {self.config.name!r} follows {checkpoint.cursor!r}, not {self.config.cursor!r}; "
                    "pass the same --cursor, or --reset to start again from --since"
                )
            if cfg.since is not None and checkpoint.since != cfg.since:
                log.warning(
                    "poll %s: --since %s ignored: resuming from the checkpoint (--reset starts again)", self.config.name, self.config.since
                )
            self.checkpoint = checkpoint
        self.memory = Memory(sent, self.checkpoint.floor, self.config.memory_s)
        self.status.position = self.checkpoint.position
        log.info(
            "poll %s: %s from %s, %d ids remembered",
            self.config.name,
            self.config.url,
            f"{self.config.cursor} >= {self.checkpoint.position}"
            if self.checkpoint.position
            else f"since {self.checkpoint.since or 'the start'}",
            len(self.memory),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every ``interval_s`` (from the start of one poll to the next) until ``stop`` is set."""
        while not stop.is_set():
            began = self.clock()
            await self.poll_once()
            wait = max(0.0, began + self.config.interval_s - self.clock())
            try:
                await asyncio.wait_for(stop.wait(), wait)
            except TimeoutError:
                pass

    async def poll_once(self) -> Counter[str]:
        """Read and send everything from the checkpoint on; the outcome counts of this poll."""
        cfg = self.config
        self.status.last_attempt_at = self.clock()
        totals: Counter[str] = Counter()
        pages = 0
        while True:  # once, or again when the pages shifted under the read
            low = shift_back(self.checkpoint.position, cfg.lookback_s) if self.checkpoint.position else None
            offset, previous = 0, None
            shifted = False
            while True:
                params = page_params(
                    cursor=cfg.cursor,
                    low=low,
                    limit=cfg.page_size,
                    offset=offset,
                    time_column=self._time_column(),
                    since=self.checkpoint.since,
                )
                records = await self._read(params, offset)
                pages += 1
                keys = [row_key(r, cfg.cursor) for r in records]
                if not continues(previous, keys) and totals["restarts"] < MAX_RESTARTS:
                    log.warning(
                        "poll %s: rows moved while paging (row %s left the page at offset %d); reading again from the checkpoint",
                        cfg.name,
                        previous,
                        offset,
                    )
                    totals["restarts"] += 1
                    shifted = True
                    break
                skip = keys.index(previous) + 1 if previous is not None and previous in keys else 0
                plan = plan_page(
                    parse_records(records[skip:], cfg.mapping, origin=self.origin, timezone=cfg.timezone),
                    [k[0] for k in keys[skip:]],
                    self.memory,
                    now=self.clock(),
                    offset=offset + skip,
                )
                await self._deliver(plan)
                totals.update(plan.outcomes)
                if len(records) < cfg.page_size:
                    break
                offset += cfg.page_size - 1
                previous = keys[-1]
            if not shifted:
                break
        now = self.clock()
        self.status.last_success_at = now
        if totals["sent_calls"] or totals["sent_updates"]:
            self.status.last_new_rows_at = now
        self.status.counts["polls"] += 1
        await self._write_status()
        log.info("poll %s: %s", cfg.name, _summary(totals, pages, self.status, now))
        return totals

    def _time_column(self) -> str | None:
        if self.config.time_column is not None:
            return self.config.time_column
        return self.config.mapping.fields["received_at"].column

    async def _read(self, params: Mapping[str, str], offset: int) -> list[dict[str, Any]]:
        """One page, tried until it is read (a ``PollError`` stops)."""
        while True:
            try:
                rows = await self.client.page(params)
            except _PageFailed as exc:
                why = "rate limited" if exc.rate_limited else "failed"
                self.status.counts["page_failures|rate_limited" if exc.rate_limited else "page_failures|error"] += 1
                wait = await self._failed(f"page at offset {offset} {why}: {exc.detail}", exc.retry_after)
                log.warning("poll %s: page at offset %d %s (%s); trying again in %.1f s", self.config.name, offset, why, exc.detail, wait)
                await self.sleep(wait)
                continue
            self._recovered()
            return rows

    async def _deliver(self, plan: PagePlan) -> None:
        """Send a page's events and dead letters until Kafka acknowledges them, then commit the checkpoint and memory."""
        letters = [DeadLetter(r.reason, r.detail, self.origin, r.raw, r.key, r.offset) for r in plan.refusals]
        while True:
            try:
                if letters:
                    await self.sink.send_dead_letters(letters)
                if plan.events:
                    await self.sink.send_events(plan.events)
            except KafkaUnavailable as exc:
                self.status.counts["send_failures"] += 1
                wait = await self._failed(f"Kafka: {exc}", None)
                log.warning("poll %s: %s; sending the page again in %.1f s (checkpoint not moved)", self.config.name, exc, wait)
                await self.sleep(wait)
                continue
            break
        for text in plan.edits:
            log.info("poll %s: %s", self.config.name, text)
        self.memory.apply(plan.writes)
        forget = self.memory.prune()
        position = later(self.checkpoint.position, plan.position)
        self.checkpoint = Checkpoint(self.checkpoint.cursor, position, self.checkpoint.since, self.memory.floor)
        await self.store.commit(self.checkpoint, plan.writes, forget)
        self.status.position = position
        if plan.newest_event is not None:
            self.status.newest_event_at = max(self.status.newest_event_at or plan.newest_event, plan.newest_event)
        self.status.counts.update(plan.outcomes)
        self._recovered()
        await self._write_status()

    async def _failed(self, error: str, retry_after: float | None) -> float:
        """Count a failure in a row; the wait before the next try (``retry_after`` when the portal gave one)."""
        self.status.consecutive_failures += 1
        self.status.last_error = error
        n = self.status.consecutive_failures
        if n == self.config.unhealthy_after:
            log.error("poll %s: unhealthy after %d failures in a row (last: %s); still trying", self.config.name, n, error)
        await self._write_status()
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_S)
        return backoff_s(n, base=self.config.backoff_base_s, cap=self.config.backoff_cap_s, jitter=self.rng())

    def _recovered(self) -> None:
        if self.status.consecutive_failures:
            log.info("poll %s: recovered after %d failures in a row", self.config.name, self.status.consecutive_failures)
        self.status.consecutive_failures = 0

    async def _write_status(self) -> None:
        await self.store.write_status(self.status.fields(self.clock()))


def _summary(totals: Counter[str], pages: int, status: PollStatus, now: float) -> str:
    skipped = {k.split("|", 1)[1]: n for k, n in totals.items() if k.startswith("skipped|")}
    rejected = {k.split("|", 1)[1]: n for k, n in totals.items() if k.startswith("rejected|")}

    def listed(d: dict[str, int]) -> str:
        return f" ({', '.join(f'{k} {n:,}' for k, n in sorted(d.items()))})" if d else ""

    lag = status.lag_s(now)
    return (
        f"{pages} page(s), {totals['read']:,} rows read, {totals['sent_calls']:,} calls and {totals['sent_updates']:,} updates sent, "
        f"{sum(skipped.values()):,} skipped{listed(skipped)}, {sum(rejected.values()):,} rejected{listed(rejected)}; "
        f"position {status.position or '-'}; lag {'-' if lag is None else f'{lag:,.0f} s'}"
    )


# --------------------------------------------------------------------------- /metrics


async def serve_metrics(
    status: PollStatus, port: int, host: str = "127.0.0.1", clock: Callable[[], float] = time.time
) -> aiohttp.web.AppRunner:
    """Serve ``status`` as Prometheus text on ``http://host:port/metrics``; the runner (``await runner.cleanup()`` to stop)."""
    from aiohttp import web

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=status.prometheus(clock()), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("poll %s: metrics on http://%s:%d/metrics", status.name, host, port)
    return runner


__all__ = [
    "FeedConfig", "MemoryStore", "PollError", "Poller", "RedisStore", "Refusal", "Sink", "SodaClient", "Store", "redis_keys",
    "serve_metrics",
]  # fmt: skip
